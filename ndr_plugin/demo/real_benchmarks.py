"""Real benchmark pairs for the demo's optional second table: ``--real-data DIR``.

The demo never trains on these images; they show how the tiny model does on images from outside its training set.
DIR must hold these subfolders (the file names of the public releases):

  CBSD68/                     clean PNGs; Gaussian noise of sigma 25 is added, seeded per image
  Rain100L_pairs/gt/          light-rain pairs: gt/N.png with rainy/N.png
  Rain100L_pairs/rainy/
  RainL_train_sample/gt/      light-rain pairs in RainTrainL naming: gt/norain-N.png with rainy/rain-N.png
  RainL_train_sample/rainy/
  SOTS_outdoor_sample/gt/     RESIDE SOTS-outdoor pairs: gt/ID.png with hazy/ID_A_beta.jpg
  SOTS_outdoor_sample/hazy/
  Set5/image_SRF_2/           Set5 x2: img_00N_SRF_2_HR.png with its MATLAB-bicubic img_00N_SRF_2_LR.png,
                              which is upsampled back with the same bicubic

Only the first --real-max images of each set, in sorted order, are scored (for time). Pairs whose two images differ
in size are left out.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from ndr_plugin.demo.report import score, summarize
from ndr_plugin.metrics.standard_sets import bicubic_input, noisy_copy

Pair = tuple[str, np.ndarray, np.ndarray]  # (name, gt, lq), BGR uint8
# A ground-truth file and how to get its degraded input (from the ground truth or from a file beside it).
Candidate = tuple[Path, Callable[[np.ndarray], 'np.ndarray | None']]
# Each real test set and the subfolders of DIR it reads.
REAL_SETS: dict[str, tuple[str, ...]] = {
    'CBSD68 sigma 25 (synthetic noise)': ('CBSD68',),
    'light rain (Rain100L, RainTrainL)': ('Rain100L_pairs/gt', 'Rain100L_pairs/rainy', 'RainL_train_sample/gt',
                                          'RainL_train_sample/rainy'),
    'SOTS-outdoor (haze)': ('SOTS_outdoor_sample/gt', 'SOTS_outdoor_sample/hazy'),
    'Set5 x2 (MATLAB-bicubic LR, bicubic up)': ('Set5/image_SRF_2',),
}


def check_real_root(real_root: Path) -> None:
    """Raise FileNotFoundError naming every subfolder of :data:`REAL_SETS` that ``real_root`` lacks."""
    if not real_root.is_dir():
        raise FileNotFoundError(f'--real-data {real_root}: no such folder')
    missing = [sub for subs in REAL_SETS.values() for sub in subs if not (real_root / sub).is_dir()]
    if missing:
        raise FileNotFoundError(f"--real-data {real_root}: missing subfolder(s) {', '.join(missing)} (the expected "
                                'layout is listed by `python -m ndr_plugin.demo --help`)')


def _read(path: Path) -> np.ndarray | None:
    return cv2.imread(str(path)) if path.is_file() else None


def _read_lq(_gt: np.ndarray, path: Path) -> np.ndarray | None:
    return _read(path)


def _add_noise(gt: np.ndarray, seed: int) -> np.ndarray:
    return noisy_copy(gt, 25, seed)


def _upsampled_lr(_gt: np.ndarray, path: Path) -> np.ndarray | None:
    """The LR file brought back to HR size with the MATLAB-style bicubic that made it (cv2's bicubic differs)."""
    lr = _read(path)
    return None if lr is None else bicubic_input(lr, 2)


def _cbsd68(root: Path) -> list[Candidate]:
    return [(p, partial(_add_noise, seed=i)) for i, p in enumerate(sorted((root / 'CBSD68').glob('*.png')))]


def _light_rain(root: Path) -> list[Candidate]:
    return [(p, partial(_read_lq, path=p.parent.parent / 'rainy' / p.name.replace('norain-', 'rain-')))
            for folder in ('Rain100L_pairs', 'RainL_train_sample')
            for p in sorted((root / folder / 'gt').glob('*.png'))]


def _sots_outdoor(root: Path) -> list[Candidate]:
    folder = root / 'SOTS_outdoor_sample'
    return [(gt, partial(_read_lq, path=hazy))
            for hazy in sorted((folder / 'hazy').glob('*'))
            for gt in sorted((folder / 'gt').glob(hazy.stem.split('_')[0] + '.*'))[:1]]


def _set5_x2(root: Path) -> list[Candidate]:
    return [(p, partial(_upsampled_lr, path=p.with_name(p.name.replace('_HR', '_LR'))))
            for p in sorted((root / 'Set5' / 'image_SRF_2').glob('*_HR.png'))]


_LOADERS = dict(zip(REAL_SETS, (_cbsd68, _light_rain, _sots_outdoor, _set5_x2)))


def real_pairs(real_root: Path, max_images: int | None = None) -> dict[str, list[Pair]]:
    """Real benchmark pairs ``(name, gt, lq)``, BGR uint8, per test set; at most ``max_images`` per set, sorted."""
    check_real_root(real_root)
    sets = {}
    for name, loader in _LOADERS.items():
        pairs = []
        for gt_path, make_lq in loader(real_root)[:max_images]:
            gt = _read(gt_path)
            lq = make_lq(gt) if gt is not None else None
            if lq is not None and lq.shape == gt.shape:
                pairs.append((gt_path.stem, gt, lq))
        if not pairs:
            raise FileNotFoundError(f"--real-data {real_root}: no image pairs found in {', '.join(REAL_SETS[name])} "
                                    f'for {name}')
        sets[name] = pairs
    return sets


def score_real(weights: Path, network: dict[str, Any], real_root: Path, max_images: int) -> dict[str, dict[str, float]]:
    """Input and output PSNR/SSIM of the trained network on each real test set (metrics.json layout)."""
    from ndr_plugin.restore.restorer import Restorer
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
