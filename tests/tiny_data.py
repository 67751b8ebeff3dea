"""Tiny paired LMDBs and option files built from skimage.data images, for end-to-end tests of the entry points."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

import ndr_plugin  # noqa: F401  (compat before BasicSR)
from basicsr.utils.lmdb_util import LmdbMaker

TINY_NDRNET = {
    'type': 'NDRNet', 'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1, 'heads': [1, 1, 1, 1],
    'ffn_expansion_factor': 2.0, 'num_atoms': 8, 'atom_dim': 16, 'degradation_dim': 8, 'cp_rank': 4,
}


def noisy_pairs(count: int, size: int, sigma: float, seed: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``count`` (key, gt, lq) BGR uint8 crops of skimage's astronaut and coffee photographs with Gaussian noise."""
    from skimage import data
    rng = np.random.default_rng(seed)
    sources = [data.astronaut(), data.coffee(), data.chelsea()]
    pairs = []
    for i in range(count):
        img = sources[i % len(sources)]
        y = int(rng.integers(0, img.shape[0] - size))
        x = int(rng.integers(0, img.shape[1] - size))
        gt = np.ascontiguousarray(img[y:y + size, x:x + size, ::-1])
        lq = np.clip(gt + rng.normal(0, sigma, gt.shape), 0, 255).round().astype(np.uint8)
        pairs.append((f'noise_{i:04d}', gt, lq))
    return pairs


def write_paired_lmdb(root: Path, name: str, pairs: list[tuple[str, np.ndarray, np.ndarray]]) -> tuple[str, str]:
    """Write ``root/name/{gt,lq}.lmdb`` with BasicSR's own LMDB writer; return (gt path, lq path)."""
    paths = []
    for part, index in (('gt', 1), ('lq', 2)):
        path = root / name / f'{part}.lmdb'
        paths.append(str(path))
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        maker = LmdbMaker(str(path), map_size=64 * 1024 * 1024)
        for item in pairs:
            img = item[index]
            ok, buf = cv2.imencode('.png', img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
            assert ok
            maker.put(buf.tobytes(), item[0], img.shape)
        maker.close()
    return paths[0], paths[1]


def tiny_train_options(root: Path, name: str, total_iter: int = 4, model_type: str = 'SRModel',
                       network_g: dict | None = None, extra: dict | None = None) -> Path:
    """A complete BasicSR training option file on tiny LMDBs; returns its path."""
    train_gt, train_lq = write_paired_lmdb(root, 'train', noisy_pairs(6, 40, 25, seed=0))
    val_gt, val_lq = write_paired_lmdb(root, 'val', noisy_pairs(2, 36, 25, seed=1))
    lmdb = {'type': 'lmdb'}
    opt = {
        'name': name, 'model_type': model_type, 'scale': 1, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {
            'train': {'name': 'tiny_train', 'type': 'PairedImageDataset', 'dataroot_gt': train_gt,
                      'dataroot_lq': train_lq, 'io_backend': lmdb, 'gt_size': 32, 'use_hflip': True,
                      'use_rot': True, 'num_worker_per_gpu': 0, 'batch_size_per_gpu': 2,
                      'dataset_enlarge_ratio': 1, 'prefetch_mode': None},
            'val': {'name': 'tiny_val', 'type': 'PairedImageDataset', 'dataroot_gt': val_gt, 'dataroot_lq': val_lq,
                    'io_backend': lmdb},
        },
        'network_g': dict(network_g or TINY_NDRNET),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {
            'ema_decay': 0.9,
            'optim_g': {'type': 'Adam', 'lr': 2e-4, 'weight_decay': 0, 'betas': [0.9, 0.99]},
            'scheduler': {'type': 'MultiStepLR', 'milestones': [2, 100], 'gamma': 0.5},
            'total_iter': total_iter, 'warmup_iter': -1,
            'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
        },
        'val': {'val_freq': 2, 'save_img': False,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': True, 'wandb': {'project': None}},
        'dist_params': {'backend': 'gloo', 'port': 29500},
    }
    for key, value in (extra or {}).items():
        opt[key] = value
    path = root / f'{name}.yml'
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


def tiny_test_options(root: Path, name: str, weights: str, network_g: dict | None = None) -> Path:
    val_gt, val_lq = write_paired_lmdb(root, 'test', noisy_pairs(2, 36, 25, seed=2))
    opt = {
        'name': name, 'model_type': 'SRModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {'test_1': {'name': 'tiny_test', 'type': 'PairedImageDataset', 'dataroot_gt': val_gt,
                                'dataroot_lq': val_lq, 'io_backend': {'type': 'lmdb'}}},
        'network_g': dict(network_g or TINY_NDRNET),
        'path': {'pretrain_network_g': weights, 'strict_load_g': True, 'param_key_g': 'params_ema'},
        'val': {'save_img': True, 'suffix': None,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}}},
    }
    path = root / f'{name}.yml'
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path
