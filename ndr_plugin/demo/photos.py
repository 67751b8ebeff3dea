"""The demo's data: photographs that ship with installed packages, degraded with our synthesizers, written as LMDBs.

Some photographs train, others are held out for testing. Noise, rain, haze and downsampling come from
:mod:`ndr_plugin.data.degradation_specs`, seeded per image, so a rebuild gives the same bytes. The choice of
photographs, patch and crop sizes and degradation levels is ours (a data set that a CPU trains on in minutes).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ndr_plugin.data.degradation_specs import build_degradation
from ndr_plugin.prepare.lmdb_writer import write_lmdb, write_paired_lmdb

DEMO_VERSION = 1  # bump when the data recipe changes, so an old cached demo data set is rebuilt
TRAIN_PHOTOS = ('astronaut', 'coffee', 'hubble_deep_field', 'immunohistochemistry', 'retina', 'motorcycle_left',
                'motorcycle_right', 'grace_hopper')
TEST_PHOTOS = ('chelsea', 'rocket')
TRAIN_PATCH = 96
TEST_CROP = (120, 180)  # not a multiple of 8: NDRNet pads and crops back
# Degradations of the paired training sources (noise is synthesised on the fly from the clean patches instead).
TRAIN_DEGRADATIONS = {
    'derain': {'type': 'rain', 'style': 'light'},
    'dehaze': {'type': 'haze'},
    'sr': {'type': 'downsample', 'scales': [2, 3, 4]},
}
NOISE_SIGMAS = [15, 25, 50]
# One test set per degradation and level.
TEST_SETS = {
    'denoise_15': {'type': 'noise', 'sigmas': [15]},
    'denoise_25': {'type': 'noise', 'sigmas': [25]},
    'denoise_50': {'type': 'noise', 'sigmas': [50]},
    'derain': {'type': 'rain', 'style': 'light'},
    'dehaze': {'type': 'haze'},
    'sr_x3': {'type': 'downsample', 'scales': [3]},
    'sr_x4': {'type': 'downsample', 'scales': [4]},
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
    """``per_photo`` random square patches of each installed training photograph, keyed ``<photo>_<index>``."""
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
    """RGB to BGR, contiguous: the LMDBs store OpenCV's channel order, as BasicSR reads them."""
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
    write_train_sets(root / 'train', train_patches(np.random.default_rng(seed), per_photo), seed, variants)
    _write_test_sets(root / 'test', seed)
    # Written last, so an interrupted build is never taken for a complete one.
    stamp.write_text(json.dumps(recipe))


def write_train_sets(train_root: Path, patches: list[tuple[str, np.ndarray]], seed: int, variants: int) -> None:
    """The clean RGB ``patches`` (noise is added while training) and one paired LMDB per other training degradation,
    each patch degraded ``variants`` times, seeded per (degradation, patch, variant)."""
    write_lmdb(train_root / 'clean.lmdb', ((key, bgr(img)) for key, img in patches))
    for t, (name, spec) in enumerate(TRAIN_DEGRADATIONS.items()):
        items = []
        for p, (key, img) in enumerate(patches):
            for v in range(variants):
                lq, params = degrade(spec, img, seed * 1_000_003 + t * 100_003 + p * 101 + v)
                items.append((f'{name}_{key}_v{v}', bgr(img), lq, {'degradation': name, **params}))
        write_paired_lmdb(train_root / name, items)


def _write_test_sets(test_root: Path, seed: int) -> None:
    """One paired LMDB per test set, with PNG copies that the report scores against."""
    crops = test_crops()
    for t, (name, spec) in enumerate(TEST_SETS.items()):
        items = []
        for c, (key, img) in enumerate(crops):
            lq, params = degrade(spec, img, seed + 7919 * (t + 1) + c)
            items.append((f'{name}_{key}', bgr(img), lq, {'degradation': name, **params}))
        write_paired_lmdb(test_root / name, items, png=True)
