"""Data pipeline speed: training patches per second from LMDB versus PNG folders, and preparation throughput.

Builds its inputs in a temporary folder from CBSD68 (``../shared/data/CBSD68`` next to the repository) or, when that is
absent, from ``skimage.data`` images, then measures (single process, as one DataLoader worker sees it):

1. small images (CBSD68-sized): BasicSR's ``PairedImageDataset`` over the prepared ``lq/gt.lmdb`` versus over the
   PNG folders written next to them (identical pixels), with the LMDB images stored at PNG compression level 1
   (BasicSR's default and ours) and at level 0 (``prepare.py --compress-level 0``: uncompressed, unfiltered);
2. large images (DIV2K-sized mosaics): ``MultiDegradationDataset`` with on-the-fly noise, reading the raw 2K PNG folder
   versus the ``sr-train`` LMDB of 480x480 sub-images;
3. preparation: ``denoise-test`` (sigma 15, 25, 50) images per second with 1 worker and with all cores, after the
   worker pool's one-off start-up, and ``sr-train`` sub-image cutting of the 2K images.

Writes ``benchmarks/results/data_speed.json`` and ``.md``. Run: ``python benchmarks/data_speed.py``.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ndr_plugin  # noqa: E402,F401
from basicsr.data import build_dataset  # noqa: E402
from basicsr.utils import set_random_seed  # noqa: E402

from ndr_plugin.prepare.kinds import prepare  # noqa: E402

SHARED = ROOT.parent / 'shared' / 'data' / 'CBSD68'
RESULTS = ROOT / 'benchmarks' / 'results'
PATCH = 128


def source_images() -> tuple[list[np.ndarray], str]:
    if SHARED.is_dir():
        return [cv2.imread(str(p)) for p in sorted(SHARED.glob('*.png'))], 'CBSD68 (68 images, 481x321)'
    import skimage.data
    names = ('astronaut', 'coffee', 'chelsea', 'rocket', 'immunohistochemistry', 'colorwheel', 'cat', 'retina')
    images = [cv2.cvtColor(getattr(skimage.data, n)(), cv2.COLOR_RGB2BGR) for n in names]
    return images, 'skimage.data (8 images)'


def patches_per_second(dataset, samples: int, repeats: int = 3) -> float:
    rates = []
    for repeat in range(repeats):
        set_random_seed(repeat)
        indices = np.random.default_rng(repeat).integers(len(dataset), size=samples)
        start = time.perf_counter()
        for index in indices:
            dataset[int(index)]
        rates.append(samples / (time.perf_counter() - start))
    return statistics.median(rates)


def paired_dataset(folder: Path, backend: str):
    if backend == 'lmdb':
        roots = {'dataroot_gt': str(folder / 'gt.lmdb'), 'dataroot_lq': str(folder / 'lq.lmdb')}
    else:
        roots = {'dataroot_gt': str(folder / 'gt'), 'dataroot_lq': str(folder / 'lq'), 'filename_tmpl': '{}'}
    return build_dataset({'name': backend, 'type': 'PairedImageDataset', 'phase': 'train', 'scale': 1,
                          'gt_size': PATCH, 'use_hflip': True, 'use_rot': True, 'io_backend': {'type': backend},
                          **roots})


def noise_dataset(root: Path, backend: str):
    return build_dataset({'name': backend, 'type': 'MultiDegradationDataset', 'phase': 'train', 'gt_size': PATCH,
                          'sources': [{'name': 'noise', 'dataroot_gt': str(root), 'io_backend': {'type': backend},
                                       'degradation': {'type': 'noise', 'sigmas': [15, 25, 50]}}]})


def mosaics(images: list[np.ndarray], count: int) -> list[np.ndarray]:
    """DIV2K-sized (about 2K x 1.3K) images tiled from the source images."""
    tile = cv2.resize(images[0], (481, 321)).shape
    out = []
    for k in range(count):
        picks = [cv2.resize(images[(k * 16 + i) % len(images)], (tile[1], tile[0])) for i in range(16)]
        rows = [np.hstack(picks[r * 4:(r + 1) * 4]) for r in range(4)]
        out.append(np.vstack(rows))
    return out


def main() -> None:
    warnings.simplefilter('ignore')
    images, what = source_images()
    cores = os.cpu_count() or 1
    load = round(os.getloadavg()[0], 1) if hasattr(os, 'getloadavg') else None
    results: dict = {'inputs': what, 'patch': PATCH, 'cpu_cores': cores, 'load_average_at_start': load,
                     'python': platform.python_version(), 'machine': platform.machine()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / 'src'
        src.mkdir()
        for i, img in enumerate(images):
            cv2.imwrite(str(src / f'{i:03d}.png'), img)

        # The worker processes come from a fresh interpreter (forkserver); its start-up is paid once per process.
        start = time.perf_counter()
        prepare('denoise-test', [src], tmp / 'warmup', sigmas=[5], workers=cores, progress=False)
        results['prepare_first_parallel_call_s'] = round(time.perf_counter() - start, 1)
        timings = {}
        for workers in sorted({1, cores}):
            start = time.perf_counter()
            prepare('denoise-test', [src], tmp / f'prep{workers}', sigmas=[15, 25, 50], workers=workers,
                    progress=False)
            timings[workers] = 3 * len(images) / (time.perf_counter() - start)
        results['prepare_denoise_test_images_per_s'] = {f'{w} worker(s)': round(r, 1) for w, r in timings.items()}

        prepare('denoise-test', [src], tmp / 'level0', sigmas=[25], workers=cores, compress_level=0, progress=False)
        folder, folder0 = tmp / f'prep{cores}' / 'sigma25', tmp / 'level0' / 'sigma25'
        samples = 300
        small = {'PNG folder': patches_per_second(paired_dataset(folder, 'disk'), samples),
                 'LMDB, level 1': patches_per_second(paired_dataset(folder, 'lmdb'), samples),
                 'LMDB, level 0': patches_per_second(paired_dataset(folder0, 'lmdb'), samples)}
        results['small_images_PairedImageDataset_patches_per_s'] = {k: round(v, 1) for k, v in small.items()}
        results['small_images_lmdb_speedup'] = {
            level: round(small[f'LMDB, {level}'] / small['PNG folder'], 2) for level in ('level 1', 'level 0')}
        results['lmdb_bytes_per_image'] = {
            'level 1': (folder / 'gt.lmdb' / 'data.mdb').stat().st_size // len(images),
            'level 0': (folder0 / 'gt.lmdb' / 'data.mdb').stat().st_size // len(images)}

        big_src = tmp / 'div2k_like'
        big_src.mkdir()
        for i, img in enumerate(mosaics(images, 6)):
            cv2.imwrite(str(big_src / f'{i:04d}.png'), img)
        start = time.perf_counter()
        prepare('sr-train', [big_src], tmp / 'sub', crop_size=480, crop_step=240, workers=cores, progress=False)
        results['prepare_subimages_source_images_per_s'] = round(6 / (time.perf_counter() - start), 2)
        big = {'raw 2K PNG folder': patches_per_second(noise_dataset(big_src, 'disk'), 60),
               '480px sub-image LMDB': patches_per_second(noise_dataset(tmp / 'sub' / 'gt.lmdb', 'lmdb'), 60)}
        results['large_images_MultiDegradationDataset_patches_per_s'] = {k: round(v, 1) for k, v in big.items()}
        results['large_images_lmdb_speedup'] = round(big['480px sub-image LMDB'] / big['raw 2K PNG folder'], 2)

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / 'data_speed.json').write_text(json.dumps(results, indent=2) + '\n')
    lines = ['# Data pipeline speed', '', f'Inputs: {results["inputs"]}; {PATCH}x{PATCH} patches; '
             f'{cores} CPU core(s), load average {load} at start; one process (what one DataLoader worker sees); '
             'median of 3 runs. All files are in the page cache, so small images compare PNG decoding plus '
             'file-system calls only (cold caches and network file systems were not measured). A load average above '
             'the core count means other processes shared the CPUs and the parallel figures are pessimistic.', '',
             '| measurement | value |', '|---|---|']
    for key, label in (('small_images_PairedImageDataset_patches_per_s', 'small images, patches/s'),
                       ('large_images_MultiDegradationDataset_patches_per_s', 'large images + noise, patches/s'),
                       ('prepare_denoise_test_images_per_s', 'prepare denoise-test, images/s')):
        for name, value in results[key].items():
            lines.append(f'| {label}: {name} | {value} |')
    for level, speedup in results['small_images_lmdb_speedup'].items():
        lines.append(f'| small images: LMDB ({level}) / PNG folder | {speedup}x |')
    for level, size in results['lmdb_bytes_per_image'].items():
        lines.append(f'| LMDB file size per image, {level} (KiB) | {size / 1024:.0f} |')
    lines += [f'| large images: sub-image LMDB / raw folder | {results["large_images_lmdb_speedup"]}x |',
              f'| prepare sr-train sub-images (2K sources), images/s | '
              f'{results["prepare_subimages_source_images_per_s"]} |',
              f'| prepare: first parallel call (68 images + one-off worker start-up), s | '
              f'{results["prepare_first_parallel_call_s"]} |', '']
    verdicts = ', '.join(f'{"met" if speedup >= 2 else "not met"} at {level} ({speedup}x)'
                         for level, speedup in results['small_images_lmdb_speedup'].items())
    lines += [f'Goal, small images from LMDB at least 2x faster than from PNG folders: {verdicts}. At level 1 both '
              'decode the same PNG bytes, so only the file-system calls differ on a warm cache.', '']
    (RESULTS / 'data_speed.md').write_text('\n'.join(lines))
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
