"""The ablation switches of options/ablations/ (ours) and the source labels of every option file: each ablation
builds, trains an iteration and reloads its checkpoint strictly; the paper-size parameter count of each variant; every
option file opens with where its settings come from, and the "paper" recipe leaves no training setting unlabelled."""
from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import ndr_plugin  # noqa: F401  (compat + registration before BasicSR)
from basicsr.archs import build_network
from basicsr.models import build_model
from ndr_plugin.options import load_option_file
from tiny_data import TINY_NDRNET, noisy_pairs

OPTIONS = Path(__file__).resolve().parents[1] / 'options'
ABLATIONS = sorted((OPTIONS / 'ablations').glob('*.yml'))
# Option files another change owns (five-task and composite settings) carry their own source notes.
LABELLED = sorted(p for p in OPTIONS.rglob('*.yml') if not re.search(r'5task|composite', p.name))
SOURCE_TAGS = re.compile(r'\[(paper|code|issue #\d+|PromptIR|AirNet|BasicSR|ours)\]')
# Paper-size parameters of network_g in each ablation (NDRNet's own count; NDR-Degrad adds 9,632,169 in training).
PARAMETERS = {'no_ndr': 26_018_024, 'no_bidirectional': 27_330_315, 'no_dictionary': 27_326_216,
              'concat_injection': 26_348_091, 'alternate_query': 27_330_315, 'alternate_encoder': 27_330_315,
              'joint': 27_330_315}
TINY_DEGRADATION_NET = {'type': 'NDRDegradationNet', 'dim': 8, 'degradation_dim': 8, 'cp_rank': 4,
                        'attention_reduction': 4}


def tiny_training_options(path: Path, root: Path) -> dict:
    """The ablation's options with tiny networks and no datasets, as BasicSR's parse_options leaves them."""
    opt = copy.deepcopy(load_option_file(str(path)))
    tiny = {k: v for k, v in TINY_NDRNET.items() if k != 'type'}
    if not opt['network_g'].get('use_ndr', True):
        tiny = {k: v for k, v in tiny.items() if k not in ('num_atoms', 'atom_dim', 'degradation_dim', 'cp_rank')}
    opt['network_g'].update(tiny)
    if 'network_deg' in opt:
        opt['network_deg'] = dict(TINY_DEGRADATION_NET)
    for folder in ('models', 'training_states'):
        (root / folder).mkdir(exist_ok=True)
    opt.update(num_gpu=0, is_train=True, dist=False, rank=0, world_size=1, datasets={})
    opt['path'].update(models=str(root / 'models'), training_states=str(root / 'training_states'),
                       visualization=str(root / 'visualization'))
    opt['logger'] = {'print_freq': 1}
    return opt


def noisy_batch() -> dict:
    pairs = noisy_pairs(2, 16, 25, seed=0)
    gt = torch.from_numpy(np.stack([p[1][..., ::-1] for p in pairs]).copy()).permute(0, 3, 1, 2).float() / 255
    lq = torch.from_numpy(np.stack([p[2][..., ::-1] for p in pairs]).copy()).permute(0, 3, 1, 2).float() / 255
    return {'lq': lq, 'gt': gt}


@pytest.mark.parametrize('path', ABLATIONS, ids=lambda p: p.stem)
def test_ablation_builds_trains_and_reloads_strictly(path, tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_training_options(path, tmp_path))
    before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    for it in (1, 2):
        model.update_learning_rate(it)
        model.feed_data(noisy_batch())
        model.optimize_parameters(it)
    log = model.log_dict
    assert log['updates_rest'] == 2 and math.isfinite(log['l_rest'])
    assert log['updates_deg'] == (0 if model.mode == 'off' else 2)
    assert any(not torch.equal(v, before[k]) for k, v in model.net_g.state_dict().items())
    model.save(epoch=0, current_iter=2)
    for label in ('g',) + (('deg',) if hasattr(model, 'net_deg') else ()):
        fresh = build_network(dict(model.opt[f'network_{label}']))
        model.load_network(fresh, str(tmp_path / 'models' / f'net_{label}_2.pth'), strict=True)
        trained = getattr(model, f'net_{label}').state_dict()
        assert all(torch.equal(v, trained[k]) for k, v in fresh.state_dict().items())


@pytest.mark.parametrize('path', ABLATIONS, ids=lambda p: p.stem)
def test_ablation_parameter_counts_at_paper_size(path):
    opt = load_option_file(str(path))
    with torch.device('meta'):
        net = build_network(dict(opt['network_g']))
    assert sum(p.numel() for p in net.parameters()) == PARAMETERS[path.stem]


def test_ablations_differ_from_the_paper_recipe_only_in_their_switch():
    reference = load_option_file(str(OPTIONS / 'ndr_allinone.yml'))
    for path in ABLATIONS:
        opt = load_option_file(str(path))
        for key in ('datasets', 'val', 'manual_seed'):
            assert opt[key] == reference[key], f'{path.name}: {key} differs from options/ndr_allinone.yml'
        for key in ('optim_g', 'scheduler', 'total_iter', 'ema_decay', 'pixel_opt'):
            assert opt['train'][key] == reference['train'][key], f'{path.name}: train.{key} differs'


def header_entries(path: Path) -> dict[str, str]:
    """'# - key, key: [source] text' entries of the comment block that opens the file (continuation lines joined)."""
    entries: list[str] = []
    for line in path.read_text().splitlines():
        if not line.startswith('#'):
            break
        if line.startswith('# - '):
            entries.append(line[4:])
        elif entries and line.startswith('#     '):
            entries[-1] += ' ' + line[1:].strip()
    labelled = {}
    for entry in entries:
        keys, _, text = entry.partition(': ')
        labelled.update({key.strip(): text for key in keys.split(', ')})
    return labelled


@pytest.mark.parametrize('path', LABELLED, ids=lambda p: str(p.relative_to(OPTIONS)))
def test_option_files_open_with_their_sources(path):
    entries = header_entries(path)
    assert entries, f'{path.name}: no "# - key: [source] ..." lines in the opening comment'
    for key, text in entries.items():
        assert SOURCE_TAGS.search(text), f'{path.name}: {key} names no source tag ([paper], [code], [ours], ...)'
    assert 'restoration_iters' not in path.read_text() and 'degradation_iters' not in path.read_text()


def leaf_keys(tree: object, prefix: str) -> list[str]:
    if isinstance(tree, dict):
        return [leaf for key, value in tree.items() for leaf in leaf_keys(value, f'{prefix}.{key}')]
    return [prefix]


def test_paper_recipe_labels_every_training_setting():
    path = OPTIONS / 'ndr_allinone.yml'
    opt = load_option_file(str(path))
    labelled = header_entries(path)
    settings = leaf_keys({k: opt[k] for k in ('network_g', 'network_deg', 'train')}, '')
    settings = [s[1:] for s in settings] + leaf_keys(opt['datasets']['train'], 'datasets.train') + ['manual_seed']
    for key in settings:
        assert any(key == label or key.startswith(label + '.') for label in labelled), f'{key} has no source label'
    for label in labelled:  # and every label names a setting of the file (no stale entries)
        if not label.startswith(('datasets.val', 'val.')):
            assert any(key == label or key.startswith(label + '.') for key in settings), f'{label} is no setting'
    assert '[issue #6]' in labelled['train.optim_g.weight_decay'] and '[ours]' in labelled['train.ema_decay']
    assert '[ours]' in labelled['train.total_iter'] and '[ours]' in labelled['train.bidirectional.mode']


def test_demo_baselines_differ_from_the_ndr_demo_only_in_what_they_ablate(tmp_path):
    from ndr_plugin.demo.options import TINY_NDRNET as DEMO_NDRNET
    from ndr_plugin.demo.options import network_options, train_options
    ndr_sizes = ('num_atoms', 'atom_dim', 'degradation_dim', 'cp_rank')
    no_ndr = network_options('no_ndr')
    assert no_ndr == {k: v for k, v in DEMO_NDRNET.items() if k not in ndr_sizes} | {'use_ndr': False}
    assert no_ndr['legacy_residuals'] and no_ndr['zero_init_output']
    ndr, baseline = train_options('n', tmp_path, 10, 0), train_options('b', tmp_path, 10, 0, model='no_ndr')
    assert ndr['train']['bidirectional'] == {'mode': 'alternate', 'degradation_every': 1}
    assert baseline['train']['bidirectional'] == {'mode': 'off'}
    for key in ('optim_g', 'scheduler', 'total_iter', 'pixel_opt', 'ema_decay'):
        assert baseline['train'][key] == ndr['train'][key]
    assert baseline['datasets'] == ndr['datasets'] and baseline['val'] == ndr['val']


def test_ablation_study_writes_seeded_runs_and_summarizes_them(tmp_path, capsys):
    from ndr_plugin import ablation_study
    variants = [OPTIONS / 'ablations' / 'joint.yml', OPTIONS / 'ablations' / 'no_ndr.yml']
    written = ablation_study.write_study(variants, [0, 1], 10_000, tmp_path / 'opts')
    assert [p.name for p in written] == ['AIO3_ablation_joint_seed0.yml', 'AIO3_ablation_joint_seed1.yml',
                                         'AIO3_ablation_no_ndr_seed0.yml', 'AIO3_ablation_no_ndr_seed1.yml']
    opt = load_option_file(str(written[1]))
    assert opt['manual_seed'] == 1 and opt['train']['total_iter'] == 10_000
    assert opt['train']['scheduler']['milestones'] == [2000, 4000, 6000, 8000] and opt['val']['val_freq'] == 50
    # Two finished seeds of one ablation: BasicSR's validation log lines.
    for seed, psnr in ((0, 30.0), (1, 31.0)):
        run = tmp_path / 'experiments' / f'AIO3_ablation_joint_seed{seed}'
        run.mkdir(parents=True)
        (run / 'opt.yml').write_text(written[seed].read_text())
        (run / 'train.log').write_text(f'Validation Rain100L\n\t # psnr_aio: {psnr:.4f}\tBest: {psnr:.4f} @ 10 iter\n')
    summary = ablation_study.summarize(tmp_path / 'experiments', 'aio')
    mean, std, n = summary['AIO3_ablation_joint']['Rain100L']
    assert (mean, n) == (30.5, 2) and std == pytest.approx(0.7071, abs=1e-4)
    assert '30.50 ± 0.71 (2)' in ablation_study.to_markdown(summary, 'aio')
