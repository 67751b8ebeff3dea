"""The option files one reproduction runs: the shipped ones with their data paths moved under the work folder, the
test file given the trained model's network and weights, and for ``--tiny`` a shrunk copy (tiny networks, a few
iterations on CPU) of the same files, as ``tests/test_option_files.py`` shrinks them."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from ndr_plugin.options import load_option_file

__all__ = ['TINY_NETWORKS', 'TINY_ITERATIONS', 'default_options_dir', 'training_options', 'test_options',
           'write_options']

# Small versions of every network type of the shipped option files (ours; the same sizes as the option-file tests).
TINY_NETWORKS = {
    'NDRNet': {'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1, 'heads': [1, 1, 1, 1],
               'num_atoms': 8, 'atom_dim': 16, 'degradation_dim': 8, 'cp_rank': 4},
    'NDRDegradationNet': {'dim': 8, 'degradation_dim': 8, 'cp_rank': 4},
    'PromptIR': {'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1, 'heads': [1, 1, 1, 1],
                 'prompt_dims': [8, 16, 32], 'prompt_sizes': [16, 8, 4]},
}
_NDR_ONLY_KEYS = ('num_atoms', 'atom_dim', 'degradation_dim', 'cp_rank')
TINY_ITERATIONS = 4


def default_options_dir() -> Path:
    """``options/`` of the checkout this package runs from (an editable install or the source tree)."""
    return Path(__file__).resolve().parents[2] / 'options'


def _load(options_dir: Path, relative: str) -> dict[str, Any]:
    path = options_dir / relative
    if not path.is_file():
        raise FileNotFoundError(f'option file not found: {path} (give the folder of the shipped option files with '
                                '--options)')
    opt = load_option_file(str(path))
    # Plain data only (the registration tag is not needed: ndr_plugin.train/test import ndr_plugin themselves).
    return json.loads(json.dumps({k: v for k, v in opt.items() if k != 'ndr_plugin'}))


def _move_data(opt: dict[str, Any], work: Path) -> None:
    """Relative ``dataroot_*`` paths (``datasets/...``) are read under the work folder, where ndr-prepare wrote them."""
    for dataset in opt.get('datasets', {}).values():
        for entry in [dataset] + list(dataset.get('sources', [])):
            for key in ('dataroot_gt', 'dataroot_lq'):
                if entry.get(key) and not Path(entry[key]).is_absolute():
                    entry[key] = str(work / entry[key])


def _shrink(opt: dict[str, Any]) -> None:
    opt['num_gpu'] = 0
    for key in [k for k in opt if k.startswith('network_')]:
        small = dict(TINY_NETWORKS[opt[key]['type']])
        if opt[key].get('use_ndr', True) is False:
            small = {k: v for k, v in small.items() if k not in _NDR_ONLY_KEYS}
        opt[key].update(small)
    if 'train' in opt.get('datasets', {}):
        opt['datasets']['train'].update(gt_size=32, batch_size_per_gpu=2, num_worker_per_gpu=0,
                                        persistent_workers=False)
    if 'train' in opt:
        opt['train']['total_iter'] = TINY_ITERATIONS
        opt['val']['val_freq'] = TINY_ITERATIONS
        opt['logger'].update(print_freq=1, save_checkpoint_freq=TINY_ITERATIONS, use_tb_logger=False)
        opt['logger']['wandb'] = {'project': None, 'resume_id': None}
        opt['dist_params'] = {'backend': 'gloo', 'port': opt.get('dist_params', {}).get('port', 29500)}
    else:
        opt['val']['save_img'] = False
        opt['val']['pbar'] = False


def training_options(options_dir: Path, relative: str, work: Path, tiny: bool) -> dict[str, Any]:
    opt = _load(options_dir, relative)
    _move_data(opt, work)
    if tiny:
        _shrink(opt)
    return opt


def test_options(options_dir: Path, relative: str, trained: dict[str, Any], work: Path,
                 tiny: bool) -> dict[str, Any]:
    """The setting's test file for the model ``trained`` describes: its network_g, its EMA weights, its name."""
    opt = _load(options_dir, relative)
    _move_data(opt, work)
    opt['name'] = f'test_{trained["name"]}'
    opt['network_g'] = copy.deepcopy(trained['network_g'])
    opt['path']['pretrain_network_g'] = str(work / 'experiments' / trained['name'] / 'models' / 'net_g_latest.pth')
    if tiny:
        _shrink(opt)
        opt['network_g'] = copy.deepcopy(trained['network_g'])
    return opt


def write_options(opt: dict[str, Any], path: Path) -> Path:
    """Write ``opt`` as YAML (atomically: a run never reads half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix('.yml.partial')
    partial.write_text(yaml.safe_dump(opt, sort_keys=False), encoding='utf-8')
    partial.replace(path)
    return path
