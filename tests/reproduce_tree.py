"""A miniature raw data tree in the layout ``ndr-reproduce aio3`` expects (the AirNet/PromptIR ``data/`` tree), made
of small crops of skimage photographs with simple synthetic degradations."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import skimage.data

PHOTOS = (skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea())


def crop(index: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """A BGR crop of a skimage photograph, different for every index."""
    img = PHOTOS[index % len(PHOTOS)]
    y, x = 20 + 9 * index, 30 + 13 * index
    return np.ascontiguousarray(img[y:y + size[0], x:x + size[1], ::-1])


def _write(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def _rain(img: np.ndarray) -> np.ndarray:
    out = img.copy()
    out[:, ::7] = np.maximum(out[:, ::7], 200)
    return out


def _haze(img: np.ndarray) -> np.ndarray:
    return (0.6 * img + 0.4 * 230).astype(np.uint8)


def aio3_tree(root: Path, count: int = 3) -> Path:
    """``root/{Train/{Denoise,Derain,Dehaze}, test/{CBSD68,Rain100L,SOTS/outdoor}}`` with ``count`` images each."""
    for i in range(count):
        _write(root / 'Train' / 'Denoise' / 'BSD400' / f'{100 + i}.png', crop(i))
        gt = crop(i + 3)
        _write(root / 'Train' / 'Derain' / 'gt' / f'norain-{i + 1}.png', gt)
        _write(root / 'Train' / 'Derain' / 'rainy' / f'rain-{i + 1}.png', _rain(gt))
        gt = crop(i + 6)
        _write(root / 'Train' / 'Dehaze' / 'original' / f'{i + 1:04d}.png', gt)
        _write(root / 'Train' / 'Dehaze' / 'synthetic' / 'part1' / f'{i + 1:04d}_0.8_0.2.png', _haze(gt))
        _write(root / 'test' / 'CBSD68' / f'{i:04d}.png', crop(i + 9))
        gt = crop(i + 12)
        _write(root / 'test' / 'Rain100L' / 'gt' / f'norain-{i + 1}.png', gt)
        _write(root / 'test' / 'Rain100L' / 'rainy' / f'rain-{i + 1}.png', _rain(gt))
        gt = crop(i + 15)
        _write(root / 'test' / 'SOTS' / 'outdoor' / 'gt' / f'{i + 1:04d}.png', gt)
        _write(root / 'test' / 'SOTS' / 'outdoor' / 'hazy' / f'{i + 1:04d}_0.8_0.2.png', _haze(gt))
    return root
