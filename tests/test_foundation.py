"""The installable plugin: registration, start-up hook, entry points, resume on CPU, unmodified BasicSR scripts."""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

import ndr_plugin
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY
from ndr_plugin import checkpoints, compat
from ndr_plugin.options import OptionError, check_option_file
from tiny_data import tiny_test_options, tiny_train_options

PY = sys.executable


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([PY, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc


def test_import_registers_expected_names_and_is_idempotent():
    expected = {ARCH_REGISTRY: ['NDRNet', 'NDRDegradationNet'], MODEL_REGISTRY: ['NDRModel'],
                LOSS_REGISTRY: ['FrequencyLoss', 'InputRelativeL1Loss'], DATASET_REGISTRY: ['MultiDegradationDataset']}
    for registry, names in expected.items():
        for name in names:
            assert name in registry, f'{name} not registered in {registry._name}'
    assert any(name not in ('calculate_psnr', 'calculate_ssim', 'calculate_psnr_pt', 'calculate_ssim_pt',
                            'calculate_niqe') for name in METRIC_REGISTRY._obj_map)
    import importlib
    compat.apply()
    compat.apply()
    again = importlib.import_module('ndr_plugin')
    assert again is ndr_plugin


def test_hook_registers_on_plain_basicsr_import_and_costs_nothing_otherwise(subprocess_env, tmp_path):
    code = 'import json, sys; print("torch" in sys.modules, "basicsr" in sys.modules)'
    proc = run(['-c', code], tmp_path, subprocess_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['False', 'False']
    pth = Path(sysconfig.get_paths()['purelib']) / 'ndr_plugin_hook.pth'
    if not pth.is_file():
        pytest.skip(f'start-up hook not installed at {pth} (run: ndr-install-hook)')
    code = ('import basicsr, sys; from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY;'
            'print("NDRNet" in ARCH_REGISTRY, "NDRModel" in MODEL_REGISTRY, "ndr_plugin" in sys.modules)')
    proc = run(['-c', code], tmp_path, subprocess_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-3:] == ['True', 'True', 'True']


def test_train_resume_and_test_through_our_entry_points(tmp_path, subprocess_env):
    opt = tiny_train_options(tmp_path, 'tiny_entry', total_iter=4)
    proc = run(['-m', 'ndr_plugin.train', '-opt', str(opt)], tmp_path, subprocess_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = tmp_path / 'experiments' / 'tiny_entry'
    assert (exp / 'models' / 'net_g_latest.pth').is_file()
    assert (exp / 'training_states' / '4.state').is_file()
    assert (tmp_path / 'tb_logger' / 'tiny_entry').is_dir()

    # Continue the same experiment for 2 more iterations from its newest state, on CPU.
    opt6 = tiny_train_options(tmp_path, 'tiny_entry', total_iter=6)
    proc = run(['-m', 'ndr_plugin.train', '-opt', str(opt6), '--auto_resume'], tmp_path, subprocess_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = '\n'.join(p.read_text() for p in exp.glob('train_*.log'))
    assert 'Resuming training from epoch' in log and 'iter: 4' in log
    state4 = checkpoints.torch_load(str(exp / 'training_states' / '4.state'))
    state6 = checkpoints.torch_load(str(exp / 'training_states' / '6.state'))
    assert state6['iter'] == 6
    # The schedule halves the rate at iteration 2: the resumed run continued from the restored scheduler.
    assert state6['schedulers'][0]['last_epoch'] == state4['schedulers'][0]['last_epoch'] + 2
    assert state6['optimizers'][0]['state'][0]['step'] == state4['optimizers'][0]['state'][0]['step'] + 2 == 6
    assert state6['optimizers'][0]['param_groups'][0]['lr'] == pytest.approx(1e-4)

    test_opt = tiny_test_options(tmp_path, 'tiny_entry_test', str(exp / 'models' / 'net_g_latest.pth'))
    proc = run(['-m', 'ndr_plugin.test', '-opt', str(test_opt)], tmp_path, subprocess_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = tmp_path / 'results' / 'tiny_entry_test'
    logs = list(results.glob('test_*.log'))
    assert logs and '# psnr:' in logs[0].read_text()
    assert len(list((results / 'visualization' / 'tiny_test').glob('*.png'))) == 2


def test_unmodified_basicsr_train_uses_our_classes(tmp_path, subprocess_env):
    pth = Path(sysconfig.get_paths()['purelib']) / 'ndr_plugin_hook.pth'
    if not pth.is_file():
        pytest.skip(f'start-up hook not installed at {pth} (run: ndr-install-hook)')
    name = f'ndr_plugin_unmodified_{tmp_path.name}'
    # NDRModel with both networks, alternating phases: nothing of ours is imported by the command line.
    train = {'ema_decay': 0, 'optim_g': {'type': 'Adam', 'lr': 2e-4}, 'optim_deg': {'type': 'Adam', 'lr': 2e-4},
             'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5}, 'total_iter': 2,
             'warmup_iter': -1, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0},
             'degradation_opt': {'type': 'L1Loss', 'loss_weight': 1.0}, 'bidirectional': {'mode': 'alternate'}}
    opt = tiny_train_options(tmp_path, name, total_iter=2, model_type='NDRModel', extra={
        'network_deg': {'type': 'NDRDegradationNet', 'dim': 8, 'degradation_dim': 8, 'cp_rank': 4}, 'train': train})
    import basicsr
    # BasicSR's `-m basicsr.train` writes next to its own package; clean that up afterwards.
    root = Path(basicsr.__file__).resolve().parents[1]
    try:
        proc = run(['-m', 'basicsr.train', '-opt', str(opt)], tmp_path, subprocess_env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert (root / 'experiments' / name / 'models' / 'net_g_latest.pth').is_file()
        assert (root / 'experiments' / name / 'models' / 'net_deg_latest.pth').is_file()
    finally:
        for folder in ('experiments', 'tb_logger'):
            shutil.rmtree(root / folder / name, ignore_errors=True)


def test_unknown_type_names_the_key_and_the_closest_names(tmp_path):
    opt = tiny_train_options(tmp_path, 'typo', network_g={'type': 'NDRNett'})
    with pytest.raises(OptionError, match=r"network_g\.type: no arch named 'NDRNett'.*Did you mean 'NDRNet'"):
        check_option_file(str(opt))
    text = opt.read_text().replace('NDRNett', 'NDRNet').replace('PairedImageDataset', 'PairedImageDatset', 1)
    opt.write_text(text)
    with pytest.raises(OptionError, match=r"datasets\.train\.type: no dataset named 'PairedImageDatset'"):
        check_option_file(str(opt))
    text = text.replace('PairedImageDatset', 'PairedImageDataset').replace('model_type: SRModel',
                                                                          'model_type: NDRModle')
    opt.write_text(text)
    with pytest.raises(OptionError, match=r"model_type: no model named 'NDRModle'.*'NDRModel'"):
        check_option_file(str(opt))


def test_missing_and_invalid_option_files_are_reported_cleanly(tmp_path, subprocess_env):
    missing = tmp_path / 'nope.yml'
    proc = run(['-m', 'ndr_plugin.train', '-opt', str(missing)], tmp_path, subprocess_env)
    assert proc.returncode == 2 and f'Option file not found: {missing}' in proc.stderr
    assert 'Traceback' not in proc.stderr
    bad = tmp_path / 'bad.yml'
    bad.write_text('name: x\nmodel_type: SRModel\nnetwork_g:\n  type: NDRNet\n   dim: 8\n')
    proc = run(['-m', 'ndr_plugin.test', '-opt', str(bad)], tmp_path, subprocess_env)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert f'Invalid YAML in option file {bad}:5:' in proc.stderr


def test_untrusted_pickles_are_refused_unless_the_user_opts_in(tmp_path, monkeypatch):
    import argparse
    path = tmp_path / 'odd.pth'
    torch.save({'params': {}, 'args': argparse.Namespace(a=1)}, path)
    import pickle
    with pytest.raises(pickle.UnpicklingError, match='NDR_TRUST_CHECKPOINTS=1'):
        checkpoints.torch_load(str(path))
    monkeypatch.setenv('NDR_TRUST_CHECKPOINTS', '1')
    assert checkpoints.torch_load(str(path))['args'].a == 1
