"""The clean photographs that ship with scikit-image and matplotlib, written as PNG files for ``clean-train``.

These are the demo's training photographs (:data:`ndr_plugin.demo.photos.TRAIN_PHOTOS`); the demo's held-out
photographs (``chelsea``, ``rocket``) are never written, so a model trained on this folder can be shown on them.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2

from ndr_plugin.demo.photos import TRAIN_PHOTOS, load_photo

__all__ = ['write_package_photos']


def write_package_photos(out: str | os.PathLike) -> list[Path]:
    """Writes ``OUT/<name>.png`` for every training photograph whose package is installed; returns the files.

    Each file is written to a temporary name and renamed, so an interrupted run never leaves a truncated PNG. A
    photograph whose package is missing is skipped with a message (matplotlib's ``grace_hopper`` is optional).
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in TRAIN_PHOTOS:
        img = load_photo(name)
        if img is None:
            print(f'package-photos: {name} skipped (its package is not installed)')
            continue
        path = folder / f'{name}.png'
        partial = folder / f'.{name}.png.partial'
        ok, data = cv2.imencode('.png', cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeError(f'package-photos: OpenCV could not encode {name} as PNG')
        partial.write_bytes(data.tobytes())
        os.replace(partial, path)
        written.append(path)
    return written
