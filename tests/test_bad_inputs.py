"""Bad inputs end in one clear line (naming the file, key or option) or the correct result; never in a wrong result
reported as success, and never in code from a file being run. Each case here failed before it was fixed."""
from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

import ndr_plugin  # noqa: F401  (compat before BasicSR)
from ndr_plugin import compare, convert_official
from ndr_plugin import train as ndr_train
from ndr_plugin.archs.ndr_arch import NDRNet
from ndr_plugin.checkpoints import CheckpointError, torch_load
from ndr_plugin.options import OptionError, load_option_file
from ndr_plugin.restore.cli import main as restore_main
from tiny_data import TINY_NDRNET, tiny_train_options

PY = sys.executable
PWNED = 'PWNED'


def malicious_option_file(folder: Path, valid_rest: dict | None = None) -> Path:
    """An option file whose first value would run `touch PWNED` under PyYAML's full loader (BasicSR's)."""
    body = yaml.safe_dump(valid_rest or {'name': 'x', 'model_type': 'SRModel'}, sort_keys=False)
    path = folder / 'evil.yml'
    path.write_text(f'pwn: !!python/object/apply:os.system ["touch {folder / PWNED}"]\n' + body)
    return path


# ---------------------------------------------------------------------------------------------- option files run code
def test_option_loader_refuses_python_tags_and_names_file_line_tag(tmp_path):
    path = malicious_option_file(tmp_path)
    with pytest.raises(OptionError, match=r'evil\.yml, line 1: the tag .*python/object/apply:os\.system.* not allowed'):
        load_option_file(path)
    assert not (tmp_path / PWNED).exists()


def test_option_loader_reads_standard_tags_and_the_registration_tag(tmp_path):
    path = tmp_path / 'ok.yml'
    path.write_text('ndr_plugin: !!python/name:ndr_plugin.REGISTERED\nlr: !!float 2e-4\nn: !!int "3"\n'
                    's: !!str 5\nlist: [1, 2]\nmap: {a: ~}\n')
    opt = load_option_file(path)
    assert opt == {'ndr_plugin': True, 'lr': 2e-4, 'n': 3, 's': '5', 'list': [1, 2], 'map': {'a': None}}
    assert type(opt).__name__ == 'OrderedDict'  # as BasicSR's loader builds mappings


def test_opt_out_reads_other_python_tags_with_basicsrs_loader(tmp_path, monkeypatch):
    path = tmp_path / 'name_tag.yml'
    path.write_text('sep: !!python/name:os.sep\n')
    with pytest.raises(OptionError, match='NDR_ALLOW_PYTHON_TAGS=1'):
        load_option_file(path)
    monkeypatch.setenv('NDR_ALLOW_PYTHON_TAGS', '1')
    import os
    assert load_option_file(path)['sep'] == os.sep


def test_ndr_train_refuses_malicious_option_file_before_anything_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = malicious_option_file(tmp_path, {'name': 'typo', 'model_type': 'NDRModle'})
    with pytest.raises(SystemExit) as exit_info:
        ndr_train.main(['-opt', str(path)])
    assert exit_info.value.code == 2
    assert 'not allowed in option files' in capsys.readouterr().err
    assert not (tmp_path / PWNED).exists()
    assert not (tmp_path / 'experiments').exists()


def test_ndr_compare_refuses_malicious_option_file_in_a_run_folder(tmp_path, capsys):
    run = tmp_path / 'someone_elses_run'
    run.mkdir()
    malicious_option_file(run)
    assert compare.main([str(run), '--out', str(tmp_path / 'table.md')]) == 2
    assert 'not allowed in option files' in capsys.readouterr().err
    assert not (run / PWNED).exists()


@pytest.mark.parametrize('module', ['basicsr.train', 'basicsr.test'])
def test_basicsrs_own_scripts_read_option_files_safely(module, tmp_path, subprocess_env):
    if not (Path(sysconfig.get_paths()['purelib']) / 'ndr_plugin_hook.pth').is_file():
        pytest.skip('start-up hook not installed (run: ndr-install-hook)')
    path = malicious_option_file(tmp_path)
    proc = subprocess.run([PY, '-m', module, '-opt', str(path)], cwd=tmp_path, env=subprocess_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert 'not allowed in option files' in proc.stderr
    assert not (tmp_path / PWNED).exists()


# --------------------------------------------------------------------------------------- build-time option errors
def _tiny_ndr_options(tmp_path: Path) -> dict:
    train = {'optim_g': {'type': 'Adam', 'lr': 2e-4}, 'optim_deg': {'type': 'Adam', 'lr': 2e-4},
             'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5}, 'total_iter': 2,
             'warmup_iter': -1, 'pixel_opt': {'type': 'L1Loss'}, 'degradation_opt': {'type': 'L1Loss'},
             'bidirectional': {'mode': 'alternate'}}
    path = tiny_train_options(tmp_path / 'data', 'bad_case', total_iter=2, model_type='NDRModel', extra={
        'network_deg': {'type': 'NDRDegradationNet', 'dim': 8, 'degradation_dim': 8, 'cp_rank': 4}, 'train': train})
    return yaml.safe_load(path.read_text())


def _set(opt: dict, dotted: str, value) -> None:
    *parents, last = dotted.split('.')
    node = opt
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value


BUILD_ERRORS = [
    ('train.bidirectional.mode', 'sideways', r'train\.bidirectional\.mode must be one of'),
    ('train.bidirectional.unknown_key', 1, r'train\.bidirectional: unknown keys \[.unknown_key.\]'),
    ('datasets.train.dataroot_gt', 'no/such/gt.lmdb', r'datasets\.train\.dataroot_gt: no/such/gt\.lmdb does not exist'),
    ('datasets.train.gt_size', 64, r'datasets\.train\.gt_size 64 is larger than the smallest image'),
    ('datasets.train.batch_size_per_gpu', 0, r'datasets\.train\.batch_size_per_gpu must be a positive integer'),
    ('train.optim_g.lr', '2e-4', r'train\.optim_g\.lr must be a positive number.*!!float'),
    ('path.resume_state', 'no/such/5.state', r'path\.resume_state: no/such/5\.state does not exist'),
    ('datasets.val.dataroot_lq', 'missing/val_lq.lmdb', r'datasets\.val\.dataroot_lq: missing/val_lq\.lmdb does not'),
]


@pytest.mark.parametrize('key,value,message', BUILD_ERRORS, ids=[case[0] for case in BUILD_ERRORS])
def test_build_time_option_errors_are_one_line_and_create_no_experiment(key, value, message, tmp_path, monkeypatch,
                                                                        capsys):
    opt = _tiny_ndr_options(tmp_path)
    _set(opt, key, value)
    path = tmp_path / 'bad.yml'
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        ndr_train.main(['-opt', str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0, err
    assert str(path) in err
    assert __import__('re').search(message, err), err
    assert not (tmp_path / 'experiments').exists()


# ------------------------------------------------------------------------------------------ truncated training state
def test_auto_resume_skips_a_truncated_newest_state(tmp_path, subprocess_env):
    opt = tiny_train_options(tmp_path, 'resume_truncated', total_iter=4)
    run = [PY, '-m', 'ndr_plugin.train', '-opt', str(opt)]
    proc = subprocess.run(run, cwd=tmp_path, env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    states = tmp_path / 'experiments' / 'resume_truncated' / 'training_states'
    newest = states / '4.state'
    newest.write_bytes(newest.read_bytes()[:1000])
    opt6 = tiny_train_options(tmp_path, 'resume_truncated', total_iter=6)
    proc = subprocess.run([PY, '-m', 'ndr_plugin.train', '-opt', str(opt6), '--auto_resume'], cwd=tmp_path,
                          env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'skipping {newest}' in proc.stderr and 'truncated or damaged' in proc.stderr
    assert torch_load(str(states / '6.state'))['iter'] == 6
    log = '\n'.join(p.read_text() for p in states.parent.glob('train_*.log'))
    assert 'iter: 2' in log  # resumed from 2.state, the newest complete one


# ------------------------------------------------------------------------------------------------------ weights files
@pytest.mark.parametrize('content,message', [
    (b'', r'is empty \(0 bytes\)'),
    (bytes(range(256)) * 4, r'is not a PyTorch checkpoint'),
], ids=['empty', 'random-bytes'])
def test_weights_that_are_not_checkpoints_are_named_as_such(content, message, tmp_path):
    path = tmp_path / 'weights.pth'
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as info:
        torch_load(str(path))
    assert str(path) in str(info.value) and 'NDR_TRUST_CHECKPOINTS' not in str(info.value)


def test_truncated_weights_are_named(tmp_path):
    path = tmp_path / 'weights.pth'
    torch.save({'params': {'w': torch.ones(4096)}}, path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r'weights\.pth is truncated or damaged'):
        torch_load(str(path))


# --------------------------------------------------------------------------------------------------- convert_official
@pytest.fixture
def official_like_checkpoint(tmp_path) -> Path:
    net = NDRNet(**{k: v for k, v in TINY_NDRNET.items() if k != 'type'})
    path = tmp_path / 'model.pth'
    torch.save({'params': net.state_dict()}, path)
    return path


@pytest.mark.parametrize('input_name,output_name,message', [
    ('model.pth', 'model.pth', 'is the input file'),
    ('x_deg.pth', 'x.pth', 'is the input file'),  # the NDRDegradationNet weights would go to OUT_deg.pth
    ('model.pth', '.', 'is a folder'),
], ids=['output-is-input', 'deg-output-is-input', 'output-is-folder'])
def test_convert_official_refuses_to_overwrite_its_input_or_write_to_a_folder(input_name, output_name, message,
                                                                               official_like_checkpoint, tmp_path,
                                                                               capsys):
    source = official_like_checkpoint.rename(tmp_path / input_name)
    before = source.read_bytes()
    assert convert_official.main([str(source), str(tmp_path / output_name)]) == 1
    assert message in capsys.readouterr().err
    assert source.read_bytes() == before


# ------------------------------------------------------------------------------------------------------- ndr-compare
def _run_folder(tmp_path: Path, log_text: str) -> Path:
    run = tmp_path / 'run'
    run.mkdir(exist_ok=True)
    opt = {'name': 'run', 'model_type': 'SRModel',
           'val': {'metrics': {'psnr': {'type': 'calculate_psnr'}, 'ssim': {'type': 'calculate_ssim'}}}}
    (run / 'run.yml').write_text(yaml.safe_dump(opt))
    (run / 'train_run.log').write_text(log_text)
    return run


COMPLETE = 'Validation setA\n\t # psnr: 30.1234\tBest: 30.1234 @ 2 iter\n\t # ssim: 0.8123\tBest: 0.8123 @ 2 iter\n'


@pytest.mark.parametrize('log_tail,cell,warning', [
    ('Validation setB\n\t # psnr: 2', 'truncated/-', 'psnr value of setB is truncated'),
    ('Validation setB\n\t # psnr: 31.5x12\n\t # ssim: 0.9000\n', 'malformed/0.9000', 'psnr value of setB is malformed'),
    ('Validation setB\n\t # psnr: nan\n\t # ssim: nan\n', 'nan/nan', None),
], ids=['cut-mid-number', 'malformed', 'nan'])
def test_compare_never_shows_a_cut_or_malformed_log_value_as_a_result(log_tail, cell, warning, tmp_path, capsys):
    run = _run_folder(tmp_path, COMPLETE + log_tail)
    summary = compare.summarize_run(str(run), 'basicsr', 16, 1, [])
    header, rows = compare.build_table([summary], 16)
    err = capsys.readouterr().err
    assert rows[0][header.index('setB PSNR/SSIM')] == cell
    assert rows[0][header.index('setA PSNR/SSIM')] == '30.12/0.8123'
    assert rows[0][header.index('average PSNR/SSIM')].startswith('nan' if cell == 'nan/nan' else '-')
    assert (warning in err) if warning else 'warning' not in err


def test_compare_ignores_a_folder_named_like_a_log(tmp_path, capsys):
    run = _run_folder(tmp_path, COMPLETE)
    (run / 'zzz_newer.log').mkdir()
    summary = compare.summarize_run(str(run), 'basicsr', 16, 1, [])
    assert summary.metrics == {'setA': {'psnr': 30.1234, 'ssim': 0.8123}}


def test_ndr_restore_refuses_malicious_option_file_before_loading_anything(tmp_path, capsys):
    weights = tmp_path / 'net_g.pth'
    torch.save({'params': NDRNet(**{k: v for k, v in TINY_NDRNET.items() if k != 'type'}).state_dict()}, weights)
    image = tmp_path / 'in.png'
    cv2.imwrite(str(image), np.full((24, 24, 3), 128, np.uint8))
    opt = malicious_option_file(tmp_path, {'network_g': TINY_NDRNET})
    code = restore_main(['-i', str(image), '-o', str(tmp_path / 'out'), '--weights', str(weights), '--opt', str(opt)])
    assert code == 2
    assert 'not allowed in option files' in capsys.readouterr().err
    assert not (tmp_path / PWNED).exists()
    assert not (tmp_path / 'out').exists() or not any((tmp_path / 'out').iterdir())
