"""The demo's networks and the BasicSR option files it trains and tests with.

The tiny networks and the training settings are ours, sized so that every degradation improves on a CPU within the
demo's time. The training scheme is NDRModel's ``alternate`` mode (our reading of the paper): each iteration performs
a restoration update and a degradation update.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ndr_plugin.demo.photos import NOISE_SIGMAS, TEST_SETS, TRAIN_DEGRADATIONS

# Sampling ratios of the training sources: noise is synthesised on the clean patches, the others are paired LMDBs.
# Downsampling gets the most: bicubic inputs leave little to gain (a 7x7 least-squares filter fitted on the x3/x4 test
# crops themselves gains only 0.3 dB), so the small sharpening there is to learn needs many samples.
TRAIN_RATIOS = {'denoise': 3, 'derain': 1, 'dehaze': 1, 'sr': 6}
# Each sample's L1 relative to its input's L1: with plain L1 the large dehazing correction is applied to every input
# the tiny network cannot yet tell from haze, and the downsampled ones lost 5-6 dB (see InputRelativeL1Loss).
PIXEL_LOSS = {'type': 'InputRelativeL1Loss', 'loss_weight': 1.0, 'eps': 0.005}
# Test sets validated during training (one per degradation); the test run scores all of TEST_SETS.
VAL_SETS = ('denoise_25', 'derain', 'dehaze', 'sr_x4')
# legacy_residuals: the official variant with the global input residual (before commit 7c0bd21); with a zero output
# convolution the untrained network is the identity and only learns the correction, which a tiny network manages in
# about a thousand CPU iterations (HEAD's variant must first learn the identity itself).
TINY_NDRNET = {
    'type': 'NDRNet', 'dim': 16, 'num_blocks': [1, 1, 1, 2], 'num_refinement_blocks': 1, 'heads': [1, 1, 2, 2],
    'ffn_expansion_factor': 2.0, 'num_atoms': 16, 'atom_dim': 32, 'degradation_dim': 16, 'cp_rank': 4,
    'legacy_residuals': True, 'zero_init_output': True,
}
TINY_DEGRADATION_NET = {'type': 'NDRDegradationNet', 'dim': 16, 'degradation_dim': 16, 'cp_rank': 4}
# Baselines trained on the same demo data with the same schedule (restoration loss only), for ndr-compare. Each
# differs from the NDR demo only in what it ablates: the no-NDR network keeps the backbone options (legacy_residuals,
# here only the global input residual, and zero_init_output); PromptIR has neither option (its output always adds
# the input).
BASELINES = {
    'no_ndr': {k: v for k, v in TINY_NDRNET.items() if k not in ('num_atoms', 'atom_dim', 'degradation_dim', 'cp_rank')}
    | {'use_ndr': False},
    'promptir': {'type': 'PromptIR', 'dim': 16, 'num_blocks': [1, 1, 1, 2], 'num_refinement_blocks': 1,
                 'heads': [1, 1, 2, 2], 'ffn_expansion_factor': 2.0, 'prompt_dims': [16, 32, 64],
                 'prompt_sizes': [32, 16, 8], 'prompt_len': 5},
}
METRICS = {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}}
TEST_METRICS = {**METRICS,
                'ssim': {'type': 'calculate_ssim', 'crop_border': 0, 'test_y_channel': False},
                'psnr_aio': {'type': 'calculate_psnr_aio'},
                'ssim_aio': {'type': 'calculate_ssim_aio'}}


def network_options(model: str) -> dict[str, Any]:
    """``network_g`` of ``model``: ``ndr`` or a key of :data:`BASELINES`."""
    return dict(TINY_NDRNET) if model == 'ndr' else dict(BASELINES[model])


def paired_lmdb(name: str, folder: Path) -> dict[str, Any]:
    """A BasicSR PairedImageDataset over one of the demo's paired LMDB folders."""
    return {'name': name, 'type': 'PairedImageDataset', 'dataroot_gt': str(folder / 'gt.lmdb'),
            'dataroot_lq': str(folder / 'lq.lmdb'), 'io_backend': {'type': 'lmdb'}}


def train_sources(data_root: Path) -> list[dict[str, Any]]:
    """The MultiDegradationDataset sources: noise synthesised on the clean patches, then the paired LMDBs."""
    sources = [{'name': 'denoise', 'dataroot_gt': str(data_root / 'train' / 'clean.lmdb'),
                'degradation': {'type': 'noise', 'sigmas': NOISE_SIGMAS}, 'ratio': TRAIN_RATIOS['denoise']}]
    for degradation in TRAIN_DEGRADATIONS:
        folder = data_root / 'train' / degradation
        sources.append({'name': degradation, 'dataroot_gt': str(folder / 'gt.lmdb'),
                        'dataroot_lq': str(folder / 'lq.lmdb'), 'ratio': TRAIN_RATIOS[degradation]})
    return sources


def train_schedule(iters: int) -> dict[str, Any]:
    """The ``train`` section for NDR: Adam on both networks, cosine decay over ``iters``, ``alternate`` mode."""
    def adam() -> dict[str, Any]:  # a fresh dict each time: a shared one would be written as a YAML alias
        return {'type': 'Adam', 'lr': 1e-3, 'weight_decay': 0, 'betas': [0.9, 0.999]}

    return {
        'ema_decay': 0,
        'optim_g': adam(),
        'optim_deg': adam(),
        'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [iters], 'restart_weights': [1],
                      'eta_min': 1e-5},
        'total_iter': iters, 'warmup_iter': -1,
        'pixel_opt': dict(PIXEL_LOSS),
        'degradation_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
        'bidirectional': {'mode': 'alternate', 'degradation_every': 1},
    }


def train_options(name: str, data_root: Path, iters: int, seed: int, model: str = 'ndr') -> dict[str, Any]:
    """The training option file of ``model`` on the demo data under ``data_root``."""
    val = {'val' if i == 0 else f'val_{i}': paired_lmdb(test_set, data_root / 'test' / test_set)
           for i, test_set in enumerate(VAL_SETS)}
    opt = {
        'name': name, 'model_type': 'NDRModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': seed,
        'datasets': {
            'train': {'name': 'demo_train', 'type': 'MultiDegradationDataset', 'sources': train_sources(data_root),
                      'gt_size': 48, 'use_hflip': True, 'use_rot': True, 'num_worker_per_gpu': 0,
                      'batch_size_per_gpu': 8, 'dataset_enlarge_ratio': 1, 'prefetch_mode': None},
            **val,
        },
        'network_g': dict(TINY_NDRNET),
        'network_deg': dict(TINY_DEGRADATION_NET),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': train_schedule(iters),
        'val': {'val_freq': iters, 'save_img': False, 'metrics': dict(METRICS)},
        'logger': {'print_freq': max(iters // 10, 1), 'save_checkpoint_freq': iters, 'use_tb_logger': True,
                   'progress_bar': True, 'wandb': {'project': None}},
    }
    if model != 'ndr':  # a baseline: restoration loss only, no degradation network
        opt['network_g'] = network_options(model)
        del opt['network_deg'], opt['train']['optim_deg'], opt['train']['degradation_opt']
        opt['train']['bidirectional'] = {'mode': 'off'}
    return opt


def test_options(name: str, data_root: Path, weights: Path, model: str = 'ndr') -> dict[str, Any]:
    """The test option file: every test set, restored images saved (the report scores them)."""
    datasets = {f'test_{i}': paired_lmdb(test_set, data_root / 'test' / test_set)
                for i, test_set in enumerate(TEST_SETS, start=1)}
    return {
        'name': name, 'model_type': 'NDRModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': datasets, 'network_g': network_options(model),
        'path': {'pretrain_network_g': str(weights), 'strict_load_g': True, 'param_key_g': 'params'},
        'val': {'save_img': True, 'suffix': 'restored', 'pbar': True, 'metrics': dict(TEST_METRICS)},
    }


def write_yaml(opt: dict[str, Any], path: Path) -> Path:
    """Write an option file as a user would keep it (keys in the order built)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(opt, sort_keys=False), encoding='utf-8')
    return path
