"""Two-process (gloo, CPU) training through torchrun and ``python -m ndr_plugin.train --launcher pytorch``.

Every rank must end with the same weights in every bidirectional mode, including the degradation phase (whose query
path is reached outside DDP's forward) and a step that only one rank sees as non-finite.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
import yaml
from tiny_data import TINY_NDRNET, noisy_pairs, write_paired_lmdb

from ndr_plugin.checkpoints import torch_load

# Runs the real entry point once per option file in the same two processes (startup dominates on CPU; the process
# group is created once and reused), keeps a handle on the model BasicSR builds, poisons one batch on rank 1 and dumps
# each rank's final weights.
RUNNER = '''
import sys
import torch
import torch.distributed as dist
import ndr_plugin.train
import basicsr.train
import basicsr.utils.options

build_model, init_dist = basicsr.train.build_model, basicsr.utils.options.init_dist


def keep(opt):
    model = build_model(opt)
    built.append(model)
    if opt['rank'] == 1:
        feed_data, calls = model.feed_data, []

        def poisoned_feed_data(data):
            feed_data(data)
            calls.append(1)
            if len(calls) == 3:
                model.lq[0, 0, 0, 0] = float('nan')

        model.feed_data = poisoned_feed_data
    return model


def init_dist_once(launcher, **kwargs):
    if not dist.is_initialized():
        init_dist(launcher, **kwargs)


basicsr.train.build_model = keep
basicsr.utils.options.init_dist = init_dist_once
for option_file in sys.argv[1:]:
    built = []
    ndr_plugin.train.main(['-opt', option_file, '--launcher', 'pytorch'])
    model = built[0]
    weights = {'net_g': model.get_bare_model(model.net_g).state_dict(), 'net_g_ema': model.net_g_ema.state_dict()}
    if hasattr(model, 'net_deg'):
        weights['net_deg'] = model.get_bare_model(model.net_deg).state_dict()
    torch.save(weights, f"{model.opt['name']}_rank{dist.get_rank()}.pth")
    dist.barrier()
dist.destroy_process_group()
'''
MODES = ('alternate', 'joint', 'off')


def option_file(tmp_path: Path, mode: str) -> Path:
    train_gt, train_lq = write_paired_lmdb(tmp_path, 'train', noisy_pairs(4, 32, 25, seed=0))
    val_gt, val_lq = write_paired_lmdb(tmp_path, 'val', noisy_pairs(1, 24, 25, seed=1))
    lmdb = {'type': 'lmdb'}
    opt = {
        'name': f'ddp_{mode}', 'model_type': 'NDRModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {
            'train': {'name': 'train', 'type': 'PairedImageDataset', 'dataroot_gt': train_gt, 'dataroot_lq': train_lq,
                      'io_backend': lmdb, 'gt_size': 24, 'use_hflip': True, 'use_rot': True,
                      'num_worker_per_gpu': 0, 'batch_size_per_gpu': 1, 'dataset_enlarge_ratio': 2},
            'val': {'name': 'val', 'type': 'PairedImageDataset', 'dataroot_gt': val_gt, 'dataroot_lq': val_lq,
                    'io_backend': lmdb},
        },
        'network_g': dict(TINY_NDRNET),
        'network_deg': {'type': 'NDRDegradationNet', 'dim': 8, 'degradation_dim': 8, 'cp_rank': 4,
                        'attention_reduction': 4},
        'path': {'pretrain_network_g': None, 'resume_state': None},
        'train': {
            'ema_decay': 0.9, 'total_iter': 5, 'warmup_iter': -1,
            'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'optim_deg': {'type': 'AdamW', 'lr': 1e-3},
            'scheduler': {'type': 'MultiStepLR', 'milestones': [3], 'gamma': 0.5},
            'pixel_opt': {'type': 'L1Loss'}, 'degradation_opt': {'type': 'L1Loss'},
            'bidirectional': {'mode': mode, 'grad_clip': 10},
        },
        'val': {'val_freq': 2, 'save_img': False,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 100, 'use_tb_logger': False, 'wandb': {'project': None}},
    }
    if mode == 'off':
        del opt['network_deg']
    path = tmp_path / f'ddp_{mode}.yml'
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


def test_two_process_training_keeps_ranks_identical_in_every_mode(tmp_path: Path, subprocess_env):
    (tmp_path / 'runner.py').write_text(RUNNER)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', 'runner.py',
           *[str(option_file(tmp_path, mode)) for mode in MODES]]
    proc = subprocess.run(cmd, cwd=tmp_path, env=subprocess_env, capture_output=True, text=True, timeout=400,
                          check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    # Only rank 1 saw the NaN at iteration 3, and both must skip every update of that iteration: in alternate mode
    # the restoration and the degradation update, in joint and off mode their one update.
    for phase in ('restoration', 'degradation', 'joint'):
        assert f'Iteration 3 ({phase} phase): non-finite' in output, f'the poisoned {phase} step was not skipped'
    assert output.count('update skipped') == len(MODES) + 1
    assert output.count('Validation val') >= 2 * len(MODES)

    for mode in MODES:
        ranks = [torch_load(str(tmp_path / f'ddp_{mode}_rank{r}.pth')) for r in (0, 1)]
        saved = torch_load(str(tmp_path / 'experiments' / f'ddp_{mode}' / 'models' / 'net_g_latest.pth'))
        expected = {'net_g', 'net_g_ema'} | ({'net_deg'} if mode != 'off' else set())
        assert set(ranks[0]) == expected
        for name, state in ranks[0].items():
            for key, value in state.items():
                assert torch.isfinite(value).all(), f'{name}.{key} is not finite ({mode})'
                assert torch.equal(value, ranks[1][name][key]), f'{name}.{key} differs between ranks ({mode})'
        assert all(torch.equal(v, ranks[0]['net_g'][k]) for k, v in saved['params'].items())
        assert all(torch.equal(v, ranks[0]['net_g_ema'][k]) for k, v in saved['params_ema'].items())
