"""Reading source images the same way everywhere, with clear errors, and turning file names into LMDB keys.

Conversions applied to every source image (so training and test data are always 8-bit, 3-channel BGR like the images
BasicSR reads):

* grayscale (1 channel, or gray + alpha) -> the gray value copied into B, G and R;
* RGBA / BGRA -> the alpha channel is dropped (what ``cv2.IMREAD_COLOR`` does), without compositing;
* 16-bit -> 8-bit by rounding ``value / 257`` (65535 -> 255 exactly; OpenCV's own conversion truncates ``value >> 8``);
* anything else (float TIFF, 2-channel colour, more than 4 channels) is refused.

Corrupt, truncated or empty files raise :class:`BadInputError` naming the file.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    'BadInputError', 'IMAGE_EXTENSIONS', 'decode_image', 'read_image', 'encode_png', 'list_images', 'make_key',
    'sanitize_name', 'check_ascii'
]

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')


class BadInputError(ValueError):
    """A source file (or pair) that cannot be used; ``path`` names it and ``reason`` says why."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f'{path}: {reason}')
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):  # keep both fields when the error crosses a process boundary
        return type(self), (self.path, self.reason)


def _looks_truncated(data: bytes) -> bool:
    # Some decoders return a partial image for a cut-off file; the end markers of PNG and JPEG tell us.
    if data.startswith(b'\x89PNG'):
        return b'IEND' not in data[-64:]
    if data.startswith(b'\xff\xd8'):
        return data.rfind(b'\xff\xd9') < 2
    return False


def decode_image(data: bytes, name: str | os.PathLike) -> tuple[np.ndarray, str | None]:
    """Decodes image bytes into uint8 HxWx3 BGR; returns the image and a note on any conversion applied (or None)."""
    if not data:
        raise BadInputError(name, 'file is empty')
    if _looks_truncated(data):
        raise BadInputError(name, 'file is truncated (the end-of-image marker is missing)')
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise BadInputError(name, 'cannot be decoded as an image (corrupt, truncated or unsupported format)')
    notes = []
    if img.dtype == np.uint16:
        img = np.round(img.astype(np.float64) / 257.0).astype(np.uint8)
        notes.append('16-bit to 8-bit (rounded value/257)')
    elif img.dtype != np.uint8:
        raise BadInputError(name, f'unsupported pixel type {img.dtype}; use 8- or 16-bit images')
    channels = 1 if img.ndim == 2 else img.shape[2]
    if channels == 2:  # gray + alpha
        img = img[..., 0]
        notes.append('alpha dropped')
        channels = 1
    if channels == 1:
        img = np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2)
        notes.append('grayscale copied to 3 channels')
    elif channels == 4:
        img = np.ascontiguousarray(img[..., :3])
        notes.append('alpha dropped')
    elif channels != 3:
        raise BadInputError(name, f'unsupported number of channels: {channels}')
    return img, '; '.join(notes) or None


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, str | None, str]:
    """Reads and decodes a file; returns (uint8 BGR image, conversion note or None, sha256 of the file bytes)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInputError(path, 'file does not exist') from None
    except OSError as err:
        raise BadInputError(path, f'cannot be read ({err.strerror or err})') from None
    img, note = decode_image(data, path)
    return img, note, hashlib.sha256(data).hexdigest()


def encode_png(img: np.ndarray, compress_level: int = 1) -> bytes:
    """PNG bytes as BasicSR's LMDB tools store them (OpenCV encoder, compression level 1 by default).

    Level 0 stores the pixels uncompressed and also switches PNG's row filters off: filters only help compression,
    and undoing them is most of the decoding time of an uncompressed PNG (decoding is then several times faster than
    at level 1, for about 1.75x the bytes on natural images). The result is a standard PNG either way.
    """
    if not 0 <= int(compress_level) <= 9:
        raise ValueError(f'PNG compression level must be 0 to 9, got {compress_level}')
    params = [cv2.IMWRITE_PNG_COMPRESSION, int(compress_level)]
    if int(compress_level) == 0 and hasattr(cv2, 'IMWRITE_PNG_FILTER'):  # OpenCV >= 4.11
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
    ok, buf = cv2.imencode('.png', img, params)
    if not ok:
        raise ValueError(f'PNG encoding failed for an image of shape {img.shape} and dtype {img.dtype}')
    return buf.tobytes()


def check_ascii(path: str | os.PathLike, name: str) -> None:
    if not name.isascii():
        raise BadInputError(path, 'file name is not ASCII; LMDB keys must be ASCII, please rename the file')


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` (hidden files skipped), sorted by relative path so the order is portable."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f'folder does not exist: {folder}')
    if not folder.is_dir():
        raise NotADirectoryError(f'not a folder: {folder}')
    pattern = '**/*' if recursive else '*'
    files = [p for p in folder.glob(pattern)
             if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith('.')]
    if not files:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) found in folder {folder}')
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


_UNSAFE = re.compile(r'[^A-Za-z0-9_-]')


def sanitize_name(name: str) -> str:
    """A file stem as a key part: dots become ``p`` (``0.8`` -> ``0p8``) and other unsafe characters ``_``."""
    return _UNSAFE.sub('_', name.replace('.', 'p'))


def make_key(prefix: str, stem: str) -> str:
    """Flat ASCII LMDB key ``{prefix}_{stem}``: no dots (BasicSR cuts keys at the first dot), no slashes or spaces.

    Purely numeric stems are zero-padded to 4 digits (``rain_0012``) so keys sort like the images.
    """
    if not stem.isascii():
        raise ValueError(f'name {stem!r} is not ASCII')
    part = stem.zfill(4) if stem.isdigit() else sanitize_name(stem)
    return f'{prefix}_{part}' if prefix else part
