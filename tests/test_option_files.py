"""Every shipped option file builds its networks and datasets and runs: one training iteration plus a validation for
training files, a full test for test files. Data paths point to tiny LMDBs; networks keep their real sizes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import ndr_plugin  # noqa: F401
from basicsr.archs import build_network
from ndr_plugin import train as ndr_train
from ndr_plugin.options import load_option_file
from ndr_plugin.reproduce.option_files import TINY_NETWORKS
from tiny_data import noisy_pairs, write_paired_lmdb

OPTIONS = Path(__file__).resolve().parents[1] / 'options'
OPTION_FILES = sorted(p for p in OPTIONS.rglob('*.yml'))
# The one-iteration runs use small versions of each network type (the real sizes are built, not run, by
# test_option_file_networks_build_at_their_real_size): a paper-size iteration takes minutes on 2 cores.
SMALL_NETWORKS = {
    **TINY_NETWORKS,  # the sizes ndr-reproduce --tiny runs
    'SwinIR': {'depths': [1], 'embed_dim': 12, 'num_heads': [1], 'img_size': 32},
    'RRDBNet': {'num_feat': 8, 'num_block': 1, 'num_grow_ch': 4},
    'RIDNet': {'mid_channels': 16},
}


def shrink_for_one_iteration(opt: dict, root: Path, name: str) -> dict:
    opt = json.loads(json.dumps({k: v for k, v in opt.items() if k != 'ndr_plugin'}))  # plain dicts for safe_dump
    opt['name'] = name
    opt['num_gpu'] = 0
    pairs = noisy_pairs(1, 32, 25, seed=3)
    # One LMDB per dataset entry: an LMDB environment can be open only once per process.
    for phase, dataset in opt['datasets'].items():
        if 'sources' in dataset:
            for source in dataset['sources']:
                gt, lq = write_paired_lmdb(root, f"{phase}_{source['name']}", pairs)
                source['dataroot_gt'] = gt
                if 'dataroot_lq' in source:
                    source['dataroot_lq'] = lq
        else:
            dataset['dataroot_gt'], dataset['dataroot_lq'] = write_paired_lmdb(root, phase, pairs)
        if phase == 'train':
            dataset.update(gt_size=32, batch_size_per_gpu=1, num_worker_per_gpu=0, persistent_workers=False)
    for key in [k for k in opt if k.startswith('network_')]:
        small = dict(SMALL_NETWORKS[opt[key]['type']])
        if 'use_ndr' in opt[key] and not opt[key]['use_ndr']:
            small = {k: v for k, v in small.items() if k not in ('num_atoms', 'atom_dim', 'degradation_dim', 'cp_rank')}
        opt[key].update(small)
    if 'train' in opt:
        opt['train']['total_iter'] = 1
        if 'val' in opt:  # the compact recipe has no validation (its header says why)
            opt['val']['val_freq'] = 1
        opt['logger'].update(print_freq=1, save_checkpoint_freq=1, use_tb_logger=False)
    return opt


@pytest.mark.parametrize('path', OPTION_FILES, ids=lambda p: str(p.relative_to(OPTIONS)))
def test_option_file_runs(path, tmp_path, monkeypatch, subprocess_env):
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(2)
    opt = load_option_file(str(path))
    name = f'optcheck_{path.stem}'
    small = shrink_for_one_iteration(opt, tmp_path / 'data', name)
    if 'train' in small:
        small_path = tmp_path / f'{name}.yml'
        small_path.write_text(yaml.safe_dump(small, sort_keys=False))
        ndr_train.main(['-opt', str(small_path)])
        models = tmp_path / 'experiments' / name / 'models'
        assert (models / 'net_g_latest.pth').is_file()
        if 'network_deg' in small:
            assert (models / 'net_deg_latest.pth').is_file()
    else:
        weights = tmp_path / 'random_weights.pth'
        net = build_network(small['network_g'])
        torch.save({'params': net.state_dict(), 'params_ema': net.state_dict()}, weights)
        small['path']['pretrain_network_g'] = str(weights)
        small['val']['save_img'] = False
        small_path = tmp_path / f'{name}.yml'
        small_path.write_text(yaml.safe_dump(small, sort_keys=False))
        # A subprocess: BasicSR's logger writes to the log file of the first run in a process.
        proc = subprocess.run([sys.executable, '-m', 'ndr_plugin.test', '-opt', str(small_path)], cwd=tmp_path,
                              env=subprocess_env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        logs = list((tmp_path / 'results' / name).glob('test_*.log'))
        assert logs
        text = logs[0].read_text()
        for dataset in small['datasets'].values():
            assert f"Validation {dataset['name']}" in text
        assert 'psnr_aio' in text


@pytest.mark.parametrize('path', OPTION_FILES, ids=lambda p: str(p.relative_to(OPTIONS)))
def test_option_file_networks_build_at_their_real_size(path):
    opt = load_option_file(str(path))
    for key in [k for k in opt if k.startswith('network_')]:
        net = build_network(dict(opt[key]))
        if opt[key]['type'] == 'NDRNet' and opt[key].get('dim') == 48 and opt[key].get('use_ndr', True) \
                and opt[key].get('ndr_dictionary', True) and opt[key].get('injection', 'cp') == 'cp':
            assert sum(p.numel() for p in net.parameters()) == 27_330_315
        if opt[key]['type'] == 'NDRDegradationNet' and opt[key].get('dim') == 48:
            assert sum(p.numel() for p in net.parameters()) == 9_632_169
