"""The standard all-in-one test sets, read from the folders their public releases ship as, and scored in memory.

Used by studies and model cards that score a network on every set without building LMDBs first. ``ROOT`` holds:

  CBSD68/*.png                       clean; Gaussian noise of sigma 15, 25 and 50 is added here, drawn per image from
                                     (sigma, position in sorted order), rounded to uint8 (our synthesizer, seeded)
  Rain100L_test/norain-NNN.png       Rain100L test as PReNet distributes it: clean images on top, rainy ones in
  Rain100L_test/rainy/rain-NNN.png   rainy/ (100 pairs)
  SOTS_outdoor_sample/hazy/ID_A_beta.jpg with SOTS_outdoor_sample/gt/ID.png    RESIDE SOTS-outdoor pairs
  Set5/image_SRF_{2,3,4}/img_00N_SRF_s_{HR,LR}.png   Set5 HR with its MATLAB-bicubic LR, brought back to HR size with
                                     the same MATLAB-compatible bicubic (the usual "bicubic input" of the SR rows)

Every pair is BGR uint8 ``(name, gt, lq)``; pairs whose two images differ in size are an error, not skipped.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np
import torch

from ndr_plugin.data.degradation_specs import build_degradation
from ndr_plugin.data.degradations import bicubic_resize
from ndr_plugin.metrics.evaluation import compute_metrics

__all__ = ['STANDARD_SETS', 'PROTOCOL_METRICS', 'load_standard_sets', 'score_images', 'mean_scores', 'score_sets',
           'noisy_copy', 'bicubic_input']

Pair = tuple[str, np.ndarray, np.ndarray]
# Each set's name and the subfolder of ROOT it needs.
STANDARD_SETS: dict[str, str] = {
    'CBSD68_sigma15': 'CBSD68', 'CBSD68_sigma25': 'CBSD68', 'CBSD68_sigma50': 'CBSD68',
    'Rain100L': 'Rain100L_test', 'SOTS_outdoor': 'SOTS_outdoor_sample',
    'Set5_x2': 'Set5/image_SRF_2', 'Set5_x3': 'Set5/image_SRF_3', 'Set5_x4': 'Set5/image_SRF_4',
}
# The three metric protocols (README, "Metric protocols"): BasicSR's standard, PromptIR/AirNet's, NDR's official test.
PROTOCOL_METRICS = {
    'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False},
    'ssim': {'type': 'calculate_ssim', 'crop_border': 0, 'test_y_channel': False},
    'psnr_aio': {'type': 'calculate_psnr_aio'}, 'ssim_aio': {'type': 'calculate_ssim_aio'},
    'psnr_ndr': {'type': 'calculate_psnr_ndr'}, 'ssim_ndr': {'type': 'calculate_ssim_ndr'},
}


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f'cannot read image {path}')
    return img


def noisy_copy(gt_bgr: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """``gt`` with Gaussian noise of ``sigma`` (0-255 scale) from our synthesizer, rounded and clipped to uint8."""
    rgb = gt_bgr[..., ::-1].astype(np.float32) / 255.0
    lq, _, _ = build_degradation({'type': 'noise', 'sigmas': [sigma]})(rgb, np.random.default_rng(seed))
    return np.ascontiguousarray(np.clip(np.round(lq * 255.0), 0, 255).astype(np.uint8)[..., ::-1])


def bicubic_input(lr_bgr: np.ndarray, scale: int) -> np.ndarray:
    """An LR image brought back up by ``scale`` with the MATLAB-compatible bicubic, rounded to uint8."""
    up = bicubic_resize(lr_bgr.astype(np.float32) / 255.0, scale)
    return np.clip(np.round(up * 255.0), 0, 255).astype(np.uint8)


def _cbsd68(root: Path, sigma: int) -> Iterable[tuple[str, Callable[[], tuple[np.ndarray, np.ndarray]]]]:
    for index, path in enumerate(sorted((root / 'CBSD68').glob('*.png'))):
        def load(path: Path = path, index: int = index) -> tuple[np.ndarray, np.ndarray]:
            gt = _read(path)
            return gt, noisy_copy(gt, sigma, seed=sigma * 1000 + index)
        yield path.stem, load


def _rain100l(root: Path) -> Iterable[tuple[str, Callable[[], tuple[np.ndarray, np.ndarray]]]]:
    folder = root / 'Rain100L_test'
    for path in sorted(folder.glob('norain-*.png')):
        rainy = folder / 'rainy' / path.name.replace('norain-', 'rain-')
        yield path.stem, lambda path=path, rainy=rainy: (_read(path), _read(rainy))


def _sots(root: Path) -> Iterable[tuple[str, Callable[[], tuple[np.ndarray, np.ndarray]]]]:
    folder = root / 'SOTS_outdoor_sample'
    for hazy in sorted((folder / 'hazy').glob('*')):
        matches = sorted((folder / 'gt').glob(hazy.stem.split('_')[0] + '.*'))
        if not matches:
            raise FileNotFoundError(f'{hazy}: no clear image {hazy.stem.split("_")[0]}.* in {folder / "gt"}')
        yield hazy.stem, lambda gt=matches[0], hazy=hazy: (_read(gt), _read(hazy))


def _set5(root: Path, scale: int) -> Iterable[tuple[str, Callable[[], tuple[np.ndarray, np.ndarray]]]]:
    for path in sorted((root / 'Set5' / f'image_SRF_{scale}').glob('*_HR.png')):
        lr = path.with_name(path.name.replace('_HR', '_LR'))
        yield path.stem, lambda path=path, lr=lr: (_read(path), bicubic_input(_read(lr), scale))


_LISTERS: dict[str, Callable[[Path], Iterable]] = {
    'CBSD68_sigma15': lambda r: _cbsd68(r, 15), 'CBSD68_sigma25': lambda r: _cbsd68(r, 25),
    'CBSD68_sigma50': lambda r: _cbsd68(r, 50), 'Rain100L': _rain100l, 'SOTS_outdoor': _sots,
    'Set5_x2': lambda r: _set5(r, 2), 'Set5_x3': lambda r: _set5(r, 3), 'Set5_x4': lambda r: _set5(r, 4),
}


def load_standard_sets(root: Path, names: Iterable[str] = tuple(STANDARD_SETS),
                       max_images: int | None = None) -> dict[str, list[Pair]]:
    """The pairs of each named set under ``root`` (the first ``max_images`` in sorted order, if given)."""
    root = Path(root)
    sets = {}
    for name in names:
        if name not in STANDARD_SETS:
            raise ValueError(f'unknown test set {name!r}; choose from {", ".join(STANDARD_SETS)}')
        folder = root / STANDARD_SETS[name]
        if not folder.is_dir():
            raise FileNotFoundError(f'test set {name}: folder {folder} does not exist (layout: see '
                                    'ndr_plugin.metrics.standard_sets)')
        pairs = []
        for stem, load in list(_LISTERS[name](root))[:max_images]:
            gt, lq = load()
            if gt.shape != lq.shape:
                raise ValueError(f'test set {name}, {stem}: degraded image {lq.shape} and clean image {gt.shape} '
                                 'differ in size')
            pairs.append((stem, gt, lq))
        if not pairs:
            raise FileNotFoundError(f'test set {name}: no image pairs in {folder}')
        sets[name] = pairs
    return sets


def _tensor(img_bgr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img_bgr[..., ::-1])).permute(2, 0, 1)[None].float() / 255.0


def score_images(restore: Callable[[torch.Tensor], torch.Tensor] | None, sets: dict[str, list[Pair]],
                 metrics: dict[str, dict] = PROTOCOL_METRICS) -> dict[str, dict[str, dict[str, float]]]:
    """Every metric of every image: ``{set: {stem: {metric: value}}}``; ``restore=None`` scores the degraded inputs.

    Raises:
        FloatingPointError: a network output is not finite (named by set and image).
    """
    scores: dict[str, dict[str, dict[str, float]]] = {}
    with torch.inference_mode():
        for name, pairs in sets.items():
            scores[name] = {}
            for stem, gt, lq in pairs:
                x = _tensor(lq)
                out = x if restore is None else restore(x)
                if not torch.isfinite(out).all():
                    raise FloatingPointError(f'test set {name}, {stem}: the network output is not finite')
                scores[name][stem] = {k: float(v) for k, v in
                                      compute_metrics(out.clamp(0, 1), _tensor(gt), metrics).items()}
    return scores


def mean_scores(per_image: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """The mean of every metric per set, from :func:`score_images`' result."""
    return {name: {k: float(np.mean([row[k] for row in rows.values()])) for k in next(iter(rows.values()))}
            for name, rows in per_image.items()}


def score_sets(restore: Callable[[torch.Tensor], torch.Tensor] | None, sets: dict[str, list[Pair]],
               metrics: dict[str, dict] = PROTOCOL_METRICS) -> dict[str, dict[str, float]]:
    """Mean of every metric per set; ``restore=None`` scores the degraded inputs. Non-finite outputs are an error."""
    return mean_scores(score_images(restore, sets, metrics))
