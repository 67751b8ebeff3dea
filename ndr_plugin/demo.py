"""``make demo`` / ``python -m ndr_plugin.demo``: NDR learns to restore, on any machine, with no data set downloaded.

1. Builds small train and test LMDBs from colour photographs that ship with scikit-image and matplotlib's sample
   photograph (left out where matplotlib is not installed). Some photographs are held out for testing. Noise, rain,
   haze and downsampling are synthesised with :mod:`ndr_plugin.data.degradation_specs`, seeded.
2. Trains a tiny NDRNet with NDRModel in ``alternate`` mode through ``ndr_plugin.train``, i.e. BasicSR's own
   training loop.
3. Tests it through ``ndr_plugin.test`` (BasicSR's test loop), which saves the restored images.
4. Scores the degraded inputs and the saved outputs against the clean images and writes:
   - ``results/<name>/report.md``, a table per degradation and level;
   - ``results/<name>/metrics.json``, the same numbers;
   - ``results/<name>/grid.png``, degraded | restored | clean, one row per degradation.
   When the real benchmark images are around (``--real-data``, by default ``../shared/data``), the report adds the
   same table on them, marked as images from outside the training set.

Everything is seeded, so the data and the report are reproducible (BasicSR's CPU training is deterministic for a
given thread count).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

import ndr_plugin  # noqa: F401  (compat + registration)
from ndr_plugin.data.degradation_specs import build_degradation
from ndr_plugin.data.lmdb_io import write_lmdb, write_paired_lmdb

DEMO_VERSION = 1  # bump when the data recipe changes, so an old cached demo data set is rebuilt
TRAIN_PHOTOS = ('astronaut', 'coffee', 'hubble_deep_field', 'immunohistochemistry', 'retina', 'motorcycle_left',
                'motorcycle_right', 'grace_hopper')
TEST_PHOTOS = ('chelsea', 'rocket')
TRAIN_PATCH = 96
TEST_CROP = (120, 180)  # not a multiple of 8: NDRNet pads and crops back
# Degradations of the training sources (synthesised) and of the test sets, one test set per degradation and level.
TRAIN_DEGRADATIONS = {
    'derain': {'type': 'rain', 'style': 'light'},
    'dehaze': {'type': 'haze'},
    'sr': {'type': 'downsample', 'scales': [2, 3, 4]},
}
NOISE_SIGMAS = [15, 25, 50]
# Sampling ratios of the training sources: noise is synthesised on the clean patches, the others are paired LMDBs.
# Downsampling gets the most: bicubic inputs leave little to gain (a 7x7 least-squares filter fitted on the x3/x4 test
# crops themselves gains only 0.3 dB), so the small sharpening there is to learn needs many samples.
TRAIN_RATIOS = {'denoise': 3, 'derain': 1, 'dehaze': 1, 'sr': 6}
# Each sample's L1 relative to its input's L1: with plain L1 the large dehazing correction is applied to every input
# the tiny network cannot yet tell from haze, and the downsampled ones lost 5-6 dB (see InputRelativeL1Loss).
PIXEL_LOSS = {'type': 'InputRelativeL1Loss', 'loss_weight': 1.0, 'eps': 0.005}
TEST_SETS = {
    'denoise_15': {'type': 'noise', 'sigmas': [15]},
    'denoise_25': {'type': 'noise', 'sigmas': [25]},
    'denoise_50': {'type': 'noise', 'sigmas': [50]},
    'derain': {'type': 'rain', 'style': 'light'},
    'dehaze': {'type': 'haze'},
    'sr_x3': {'type': 'downsample', 'scales': [3]},
    'sr_x4': {'type': 'downsample', 'scales': [4]},
}
# legacy_residuals: the official variant with the global input residual (before commit 7c0bd21); with a zero output
# convolution the untrained network is the identity and only learns the correction, which a tiny network manages in
# about a thousand CPU iterations (HEAD's variant must first learn the identity itself).
TINY_NDRNET = {
    'type': 'NDRNet', 'dim': 16, 'num_blocks': [1, 1, 1, 2], 'num_refinement_blocks': 1, 'heads': [1, 1, 2, 2],
    'ffn_expansion_factor': 2.0, 'num_atoms': 16, 'atom_dim': 32, 'degradation_dim': 16, 'cp_rank': 4,
    'legacy_residuals': True, 'zero_init_output': True,
}
TINY_DEGRADATION_NET = {'type': 'NDRDegradationNet', 'dim': 16, 'degradation_dim': 16, 'cp_rank': 4}
# Baselines trained on the same demo data with the same schedule (restoration loss only), for ndr-compare.
BASELINES = {
    'no_ndr': {k: v for k, v in TINY_NDRNET.items() if k not in ('num_atoms', 'atom_dim', 'degradation_dim',
                                                                  'cp_rank', 'legacy_residuals', 'zero_init_output')}
    | {'use_ndr': False},
    'promptir': {'type': 'PromptIR', 'dim': 16, 'num_blocks': [1, 1, 1, 2], 'num_refinement_blocks': 1,
                 'heads': [1, 1, 2, 2], 'ffn_expansion_factor': 2.0, 'prompt_dims': [16, 32, 64],
                 'prompt_sizes': [32, 16, 8], 'prompt_len': 5},
}


def load_photo(name: str) -> np.ndarray | None:
    """An RGB uint8 photograph from an installed package, or None if that package is not installed."""
    if name == 'grace_hopper':
        try:
            from matplotlib import cbook
        except ImportError:
            return None
        with cbook.get_sample_data('grace_hopper.jpg') as f:
            data = np.frombuffer(f.read(), np.uint8)
        return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    from skimage import data
    if name == 'motorcycle_left':
        return data.stereo_motorcycle()[0]
    if name == 'motorcycle_right':
        return data.stereo_motorcycle()[1]
    img = getattr(data, name)()
    if name == 'retina':  # 1411 px: shrink to the scale of the other photographs
        img = cv2.resize(img, (600, 600), interpolation=cv2.INTER_AREA)
    return img


def train_patches(rng: np.random.Generator, per_photo: int) -> list[tuple[str, np.ndarray]]:
    patches = []
    for name in TRAIN_PHOTOS:
        img = load_photo(name)
        if img is None:
            continue
        for i in range(per_photo):
            y = int(rng.integers(0, img.shape[0] - TRAIN_PATCH + 1))
            x = int(rng.integers(0, img.shape[1] - TRAIN_PATCH + 1))
            patches.append((f'{name}_{i:03d}', np.ascontiguousarray(img[y:y + TRAIN_PATCH, x:x + TRAIN_PATCH])))
    return patches


def test_crops() -> list[tuple[str, np.ndarray]]:
    """Two fixed crops of each held-out photograph."""
    h, w = TEST_CROP
    crops = []
    for name in TEST_PHOTOS:
        img = load_photo(name)
        ys = (0, img.shape[0] - h)
        xs = (img.shape[1] // 4 - w // 2, 3 * img.shape[1] // 4 - w // 2)
        for i, (y, x) in enumerate(zip(ys, xs)):
            crops.append((f'{name}_{i}', np.ascontiguousarray(img[y:y + h, x:x + w])))
    return crops


def degrade(spec: dict[str, Any], img_rgb: np.ndarray, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Degrade an RGB uint8 image; returns BGR uint8 (the LMDB convention) and the drawn parameters."""
    lq, _, params = build_degradation(spec)(img_rgb.astype(np.float32) / 255.0, np.random.default_rng(seed))
    lq = np.clip(np.round(lq * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(lq[..., ::-1]), params


def bgr(img_rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img_rgb[..., ::-1])


def build_data(root: Path, seed: int, per_photo: int, variants: int) -> None:
    """Train and test LMDBs under ``root``; skipped when a complete build with the same recipe exists."""
    stamp = root / 'demo_data.json'
    recipe = {'version': DEMO_VERSION, 'seed': seed, 'per_photo': per_photo, 'variants': variants,
              'photos': [n for n in TRAIN_PHOTOS if load_photo(n) is not None]}
    if stamp.is_file() and json.loads(stamp.read_text()) == recipe:
        print(f'Demo data: reusing {root}')
        return
    if root.exists():
        shutil.rmtree(root)
    print(f'Demo data: building {root}')
    rng = np.random.default_rng(seed)
    patches = train_patches(rng, per_photo)
    write_lmdb(root / 'train' / 'clean.lmdb', ((key, bgr(img)) for key, img in patches))
    for t, (name, spec) in enumerate(TRAIN_DEGRADATIONS.items()):
        items = []
        for p, (key, img) in enumerate(patches):
            for v in range(variants):
                lq, params = degrade(spec, img, seed * 1_000_003 + t * 100_003 + p * 101 + v)
                items.append((f'{name}_{key}_v{v}', bgr(img), lq, {'degradation': name, **params}))
        write_paired_lmdb(root / 'train' / name, items)
    crops = test_crops()
    for t, (name, spec) in enumerate(TEST_SETS.items()):
        items = []
        for c, (key, img) in enumerate(crops):
            lq, params = degrade(spec, img, seed + 7919 * (t + 1) + c)
            items.append((f'{name}_{key}', bgr(img), lq, {'degradation': name, **params}))
        write_paired_lmdb(root / 'test' / name, items, png=True)
    stamp.write_text(json.dumps(recipe))


def network_options(model: str) -> dict[str, Any]:
    return dict(TINY_NDRNET) if model == 'ndr' else dict(BASELINES[model])


def train_options(name: str, data_root: Path, iters: int, seed: int, model: str = 'ndr') -> dict[str, Any]:
    train_sources = [{'name': 'denoise', 'dataroot_gt': str(data_root / 'train' / 'clean.lmdb'),
                      'degradation': {'type': 'noise', 'sigmas': NOISE_SIGMAS}, 'ratio': TRAIN_RATIOS['denoise']}]
    for degradation in TRAIN_DEGRADATIONS:
        folder = data_root / 'train' / degradation
        train_sources.append({'name': degradation, 'dataroot_gt': str(folder / 'gt.lmdb'),
                              'dataroot_lq': str(folder / 'lq.lmdb'), 'ratio': TRAIN_RATIOS[degradation]})
    val = {}
    for i, test_set in enumerate(('denoise_25', 'derain', 'dehaze', 'sr_x4')):
        folder = data_root / 'test' / test_set
        val['val' if i == 0 else f'val_{i}'] = {
            'name': test_set, 'type': 'PairedImageDataset', 'dataroot_gt': str(folder / 'gt.lmdb'),
            'dataroot_lq': str(folder / 'lq.lmdb'), 'io_backend': {'type': 'lmdb'}}
    opt = {
        'name': name, 'model_type': 'NDRModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': seed,
        'datasets': {
            'train': {'name': 'demo_train', 'type': 'MultiDegradationDataset', 'sources': train_sources,
                      'gt_size': 48, 'use_hflip': True, 'use_rot': True, 'num_worker_per_gpu': 0,
                      'batch_size_per_gpu': 8, 'dataset_enlarge_ratio': 1, 'prefetch_mode': None},
            **val,
        },
        'network_g': dict(TINY_NDRNET),
        'network_deg': dict(TINY_DEGRADATION_NET),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {
            'ema_decay': 0,
            'optim_g': {'type': 'Adam', 'lr': 1e-3, 'weight_decay': 0, 'betas': [0.9, 0.999]},
            'optim_deg': {'type': 'Adam', 'lr': 1e-3, 'weight_decay': 0, 'betas': [0.9, 0.999]},
            'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [iters], 'restart_weights': [1],
                          'eta_min': 1e-5},
            'total_iter': iters, 'warmup_iter': -1,
            'pixel_opt': dict(PIXEL_LOSS),
            'degradation_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
            'bidirectional': {'mode': 'alternate', 'restoration_iters': 1, 'degradation_iters': 1},
        },
        'val': {'val_freq': iters, 'save_img': False,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}}},
        'logger': {'print_freq': max(iters // 10, 1), 'save_checkpoint_freq': iters, 'use_tb_logger': True,
                   'progress_bar': True, 'wandb': {'project': None}},
    }
    if model != 'ndr':
        opt['network_g'] = network_options(model)
        del opt['network_deg'], opt['train']['optim_deg'], opt['train']['degradation_opt']
        opt['train']['bidirectional'] = {'mode': 'off'}
    return opt


def test_options(name: str, data_root: Path, weights: Path, model: str = 'ndr') -> dict[str, Any]:
    datasets = {}
    for i, test_set in enumerate(TEST_SETS, start=1):
        folder = data_root / 'test' / test_set
        datasets[f'test_{i}'] = {'name': test_set, 'type': 'PairedImageDataset',
                                 'dataroot_gt': str(folder / 'gt.lmdb'), 'dataroot_lq': str(folder / 'lq.lmdb'),
                                 'io_backend': {'type': 'lmdb'}}
    return {
        'name': name, 'model_type': 'NDRModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': datasets, 'network_g': network_options(model),
        'path': {'pretrain_network_g': str(weights), 'strict_load_g': True, 'param_key_g': 'params'},
        'val': {'save_img': True, 'suffix': 'restored', 'pbar': True,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False},
                            'ssim': {'type': 'calculate_ssim', 'crop_border': 0, 'test_y_channel': False},
                            'psnr_aio': {'type': 'calculate_psnr_aio'},
                            'ssim_aio': {'type': 'calculate_ssim_aio'}}},
    }


def write_yaml(opt: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(opt, sort_keys=False), encoding='utf-8')
    return path


def score(img: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """BasicSR's standard PSNR and SSIM (8-bit, RGB, no border crop)."""
    from basicsr.metrics import calculate_psnr, calculate_ssim
    return (float(calculate_psnr(img, gt, crop_border=0)), float(calculate_ssim(img, gt, crop_border=0)))


def score_test_sets(data_root: Path, results: Path) -> tuple[dict[str, dict[str, float]], list[np.ndarray]]:
    """Input and output PSNR/SSIM per test set, from the PNGs of the test sets and the images the test run saved."""
    metrics, rows = {}, []
    for test_set in TEST_SETS:
        folder = data_root / 'test' / test_set
        rows_in, rows_out = [], []
        for gt_path in sorted((folder / 'gt').glob('*.png')):
            gt = cv2.imread(str(gt_path))
            lq = cv2.imread(str(folder / 'lq' / gt_path.name))
            out_path = results / 'visualization' / test_set / f'{gt_path.stem}_restored.png'
            if not out_path.is_file():
                raise FileNotFoundError(f'{out_path}: the test run did not save this restored image')
            out = cv2.imread(str(out_path))
            rows_in.append(score(lq, gt))
            rows_out.append(score(out, gt))
            if len(rows_in) == 1:
                rows.append(_grid_row(test_set, lq, out, gt))
        metrics[test_set] = summarize(rows_in, rows_out)
    return metrics, rows


def summarize(rows_in: list[tuple[float, float]], rows_out: list[tuple[float, float]]) -> dict[str, float]:
    """Mean (PSNR, SSIM) of the degraded inputs and of the outputs, in the metrics.json layout."""
    columns = (('input_psnr', 0, rows_in), ('output_psnr', 0, rows_out), ('input_ssim', 1, rows_in),
               ('output_ssim', 1, rows_out))
    mean = {name: float(np.mean([r[i] for r in rows])) for name, i, rows in columns}
    return {**mean, 'images': len(rows_in)}


def _grid_row(label: str, lq: np.ndarray, out: np.ndarray, gt: np.ndarray) -> np.ndarray:
    row = np.concatenate([lq, np.full((lq.shape[0], 4, 3), 255, np.uint8), out,
                          np.full((lq.shape[0], 4, 3), 255, np.uint8), gt], axis=1)
    banner = np.full((22, row.shape[1], 3), 255, np.uint8)
    cv2.putText(banner, f'{label}: degraded | restored | clean', (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                cv2.LINE_AA)
    return np.concatenate([banner, row], axis=0)


Pair = tuple[str, np.ndarray, np.ndarray]


def real_pairs(real_root: Path, max_images: int | None = None) -> dict[str, list[Pair]]:
    """Real benchmark pairs ``(name, gt, lq)``, BGR uint8, per test set; at most ``max_images`` per set, sorted.

    CBSD68 with sigma-25 noise seeded per image, the light-rain pairs (Rain100L test pairs and RainTrainL samples), the
    SOTS-outdoor pairs, and Set5 x2 (the MATLAB-bicubic LR file upsampled back with the same bicubic).
    """
    from ndr_plugin.data.degradations import bicubic_resize

    def read(path: Path) -> np.ndarray | None:
        return cv2.imread(str(path)) if path.is_file() else None

    def noisy(gt: np.ndarray, i: int) -> np.ndarray:
        return degrade({'type': 'noise', 'sigmas': [25]}, gt[..., ::-1], seed=i)[0]

    def upsampled(lr: np.ndarray | None) -> np.ndarray | None:
        if lr is None:
            return None
        return np.clip(np.round(bicubic_resize(lr.astype(np.float32) / 255.0, 2) * 255.0), 0, 255).astype(np.uint8)

    candidates: dict[str, list] = {
        'CBSD68 sigma 25 (synthetic noise)': [
            (p, lambda gt, i=i: noisy(gt, i)) for i, p in enumerate(sorted((real_root / 'CBSD68').glob('*.png')))],
        'light rain (Rain100L, RainTrainL)': [
            (p, lambda gt, p=p: read(p.parent.parent / 'rainy' / p.name.replace('norain-', 'rain-')))
            for folder in ('Rain100L_pairs', 'RainL_train_sample')
            for p in sorted((real_root / folder / 'gt').glob('*.png'))],
        'SOTS-outdoor (haze)': [
            (gt, lambda _, hazy=hazy: read(hazy))
            for hazy in sorted((real_root / 'SOTS_outdoor_sample' / 'hazy').glob('*'))
            for gt in sorted((real_root / 'SOTS_outdoor_sample' / 'gt').glob(hazy.stem.split('_')[0] + '.*'))[:1]],
        'Set5 x2 (MATLAB-bicubic LR, bicubic up)': [
            (p, lambda _, p=p: upsampled(read(p.with_name(p.name.replace('_HR', '_LR')))))
            for p in sorted((real_root / 'Set5' / 'image_SRF_2').glob('*_HR.png'))],
    }
    sets = {}
    for name, entries in candidates.items():
        pairs = []
        for gt_path, make_lq in entries[:max_images]:
            gt = read(gt_path)
            lq = make_lq(gt) if gt is not None else None
            if lq is not None and lq.shape == gt.shape:
                pairs.append((gt_path.stem, gt, lq))
        if pairs:
            sets[name] = pairs
    return sets


def score_real(weights: Path, network: dict[str, Any], real_root: Path, max_images: int) -> dict[str, dict[str, float]]:
    from ndr_plugin.inference import Restorer
    restorer = Restorer(str(weights), opt={'network_g': network}, device='cpu')
    metrics = {}
    for name, pairs in real_pairs(real_root, max_images).items():
        rows_in, rows_out = [], []
        for _, gt, lq in pairs:
            out = restorer.restore(np.ascontiguousarray(lq[..., ::-1]))[..., ::-1]
            rows_in.append(score(lq, gt))
            rows_out.append(score(np.ascontiguousarray(out), gt))
        metrics[name] = summarize(rows_in, rows_out)
    return metrics


def _table(metrics: dict[str, dict[str, float]]) -> list[str]:
    lines = ['| degradation | images | input PSNR | output PSNR | gain | input SSIM | output SSIM |',
             '|---|---|---|---|---|---|---|']
    for name, m in metrics.items():
        lines.append(f"| {name} | {m['images']} | {m['input_psnr']:.2f} | {m['output_psnr']:.2f} | "
                     f"{m['output_psnr'] - m['input_psnr']:+.2f} | {m['input_ssim']:.4f} | {m['output_ssim']:.4f} |")
    return lines


def write_report(out_dir: Path, metrics: dict, real: dict | None, opt: dict, seconds: float) -> Path:
    net = opt['network_g']
    params = sum(p.numel() for p in _build(net).parameters())
    lines = [f"# NDR demo report: {opt['name']}", '',
             f"A tiny {net['type']} ({params:,} parameters) trained for {opt['train']['total_iter']} iterations with "
             f"NDRModel (bidirectional mode `{opt['train']['bidirectional']['mode']}`, restoration loss "
             f"`{opt['train']['pixel_opt']['type']}`) on CPU, {seconds / 60:.1f} "
             'minutes in all (data, training, testing, scoring). Scored on crops of photographs held out from '
             'training; PSNR (dB) and SSIM as in BasicSR (8-bit, RGB, no border crop).', '']
    lines += _table(metrics)
    improved = all(m['output_psnr'] > m['input_psnr'] for m in metrics.values())
    lines += ['', f"Every degradation improved: {'yes' if improved else 'NO'}.", '', '![grid](grid.png)', '']
    if real:
        lines += ['## Real benchmark images (outside the training set)', '',
                  'Same model and metric on real benchmark pairs, which the demo never trained on. Kept small for time '
                  '(the first images of each set in sorted order).', '']
        lines += _table(real)
        lines.append('')
    path = out_dir / 'report.md'
    path.write_text('\n'.join(lines), encoding='utf-8')
    return path


def _run_entry_point(module: str, option_file: Path) -> None:
    """Run ``python -m MODULE -opt FILE`` as a user would (each run gets its own BasicSR log file)."""
    proc = subprocess.run([sys.executable, '-m', module, '-opt', str(option_file)])
    if proc.returncode != 0:
        raise SystemExit(f'ndr-demo: python -m {module} -opt {option_file} failed (exit {proc.returncode})')


def _build(network: dict[str, Any]):
    from basicsr.archs import build_network
    return build_network(dict(network))


def run(name: str, iters: int, seed: int, data_root: Path, real_root: Path | None, real_max: int,
        per_photo: int, variants: int, model: str = 'ndr') -> dict[str, Any]:
    start = time.time()
    build_data(data_root, seed, per_photo, variants)
    options_dir = Path('options_generated') / name
    train_opt = train_options(name, data_root, iters, seed, model)
    train_yml = write_yaml(train_opt, options_dir / 'train.yml')
    print(f"Training a tiny {train_opt['network_g']['type']} for {iters} iterations (options: {train_yml})")
    _run_entry_point('ndr_plugin.train', train_yml)
    weights = Path('experiments') / name / 'models' / 'net_g_latest.pth'
    test_yml = write_yaml(test_options(name, data_root, weights, model), options_dir / 'test.yml')
    print(f'Testing on the held-out photographs (options: {test_yml})')
    _run_entry_point('ndr_plugin.test', test_yml)
    results = Path('results') / name
    metrics, grid_rows = score_test_sets(data_root, results)
    width = max(r.shape[1] for r in grid_rows)
    grid = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255)
                           for r in grid_rows], axis=0)
    cv2.imwrite(str(results / 'grid.png'), grid)
    real = None
    if real_root is not None and real_root.is_dir():
        print(f'Scoring real benchmark pairs from {real_root}')
        real = score_real(weights, train_opt['network_g'], real_root, real_max)
    payload = dict(metrics)
    if real:
        payload['real_images_outside_training_set'] = real
    (results / 'metrics.json').write_text(json.dumps(payload, indent=2), encoding='utf-8')
    report = write_report(results, metrics, real, train_opt, time.time() - start)
    print('\n'.join(_table(metrics)))
    print(f'\nReport: {report}\nMetrics: {results / "metrics.json"}\nImages: {results / "grid.png"}')
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='ndr-demo', description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', choices=['ndr', *BASELINES], default='ndr',
                        help='ndr (default), or a baseline trained on the same data: no_ndr (the NDRNet backbone '
                             'without NDR), promptir (a tiny PromptIR)')
    parser.add_argument('--name', default=None, help='experiment and results name (default ndr_demo[_MODEL])')
    parser.add_argument('--iters', type=int, default=1200, help='training iterations (default 1200)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--data-root', default='datasets/ndr_demo', help='where the demo LMDBs are built')
    parser.add_argument('--real-data', default=str(Path('..') / 'shared' / 'data'),
                        help='folder of real benchmark pairs to score as well, if it exists (default ../shared/data)')
    parser.add_argument('--real-max', type=int, default=10, help='images per real test set (default 10)')
    parser.add_argument('--patches-per-photo', type=int, default=24, help=argparse.SUPPRESS)
    parser.add_argument('--variants', type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    real_root = Path(args.real_data) if args.real_data else None
    name = args.name or ('ndr_demo' if args.model == 'ndr' else f'ndr_demo_{args.model}')
    run(name, args.iters, args.seed, Path(args.data_root), real_root, args.real_max, args.patches_per_photo,
        args.variants, args.model)
    return 0


if __name__ == '__main__':
    sys.exit(main())
