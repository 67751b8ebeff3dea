"""Reading and writing photos for inference: any bit depth, grayscale or RGB(A), EXIF orientation applied.

Arrays are HWC (HW for grayscale, HWx2 for gray+alpha) in **RGB(A)** order and keep the file's dtype (uint8, uint16
or float32). OpenCV does the decoding (``IMREAD_UNCHANGED`` keeps 16 bits and alpha), but that flag ignores the EXIF
orientation that phones write into JPEGs, so the orientation tag is read with Pillow (metadata only, no second decode)
and applied here. Written files carry no EXIF: their pixels are already upright.

OpenCV also expands a gray+alpha PNG to BGRA and cannot write one back, so the PNG header's colour type is read here
and such images stay gray+alpha: read as HWx2, written by :func:`encode_gray_alpha_png`.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.tif', '.tiff', '.bmp', '.webp')
EXIF_ORIENTATION_TAG = 0x0112
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
PNG_GRAY_ALPHA = 4  # IHDR colour type of gray+alpha (PNG specification, section 11.2.2)
JPEG_QUALITY = 95
_EIGHT_BIT = (np.uint8, )
_TIFF = (np.uint8, np.uint16, np.float32)
# Pixel types each output format can hold (OpenCV would silently convert others to 8 bits).
DTYPES_BY_EXTENSION = {'.png': (np.uint8, np.uint16), '.tif': _TIFF, '.tiff': _TIFF, '.jpg': _EIGHT_BIT,
                       '.jpeg': _EIGHT_BIT, '.bmp': _EIGHT_BIT, '.webp': _EIGHT_BIT}


class ImageReadError(ValueError):
    """A file that is missing, not an image, or not decodable."""


class ImageWriteError(OSError):
    """An image that could not be encoded or written."""


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation tag (1-8) of an image file; 1 (upright) when absent or unreadable."""
    try:
        with Image.open(path) as img:
            value = img.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_exif_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turns stored pixels upright, as Pillow's ``ImageOps.exif_transpose`` does for EXIF tag values 1-8."""
    if orientation in (5, 6, 7, 8):
        img = np.swapaxes(img, 0, 1)  # transpose H and W; the flips below finish each rotation
    flip_rows = orientation in (3, 4, 7, 8)
    flip_cols = orientation in (2, 3, 6, 7)
    if flip_rows:
        img = img[::-1]
    if flip_cols:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


def is_gray_alpha_png(data: np.ndarray) -> bool:
    """Whether the bytes of a file are a PNG whose IHDR colour type is gray+alpha (the byte after the bit depth)."""
    return data.size > 25 and data[:8].tobytes() == PNG_SIGNATURE and int(data[25]) == PNG_GRAY_ALPHA


def encode_gray_alpha_png(img: np.ndarray) -> bytes:
    """An HxWx2 uint8/uint16 gray+alpha array as PNG bytes (no row filter, zlib level 6)."""
    height, width = img.shape[:2]
    depth = 16 if img.dtype == np.uint16 else 8
    samples = np.ascontiguousarray(img, dtype='>u2' if depth == 16 else np.uint8).view(np.uint8).reshape(height, -1)
    rows = np.concatenate([np.zeros((height, 1), np.uint8), samples], axis=1)  # filter type 0 before every row

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack('>I', len(payload)) + kind + payload + struct.pack('>I', zlib.crc32(kind + payload))

    header = struct.pack('>IIBBBBB', width, height, depth, PNG_GRAY_ALPHA, 0, 0, 0)
    return (PNG_SIGNATURE + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(rows.tobytes(), 6))
            + chunk(b'IEND', b''))


def read_image(path: str | Path) -> np.ndarray:
    """Reads an image as an RGB(A) / grayscale array in its own dtype, with the EXIF orientation applied.

    Raises:
        ImageReadError: the file is missing or cannot be decoded.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)  # cv2.imread cannot open non-ASCII paths on Windows
    except OSError as err:
        raise ImageReadError(f'{path}: cannot read file ({err.strerror or err})') from None
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise ImageReadError(f'{path}: not a decodable image (corrupt, truncated, or an unsupported format)')
    if img.dtype not in (np.uint8, np.uint16, np.float32):
        raise ImageReadError(f'{path}: unsupported pixel type {img.dtype} (expected 8-bit, 16-bit or float32)')
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[2] == 4 and is_gray_alpha_png(data):
        img = np.ascontiguousarray(img[..., [0, 3]])  # OpenCV replicated the gray into B, G and R
    elif img.ndim == 3:
        code = {3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGBA}.get(img.shape[2])
        if code is None:
            raise ImageReadError(f'{path}: {img.shape[2]} channels are not supported (expected 1, 3 or 4)')
        img = cv2.cvtColor(img, code)
    return apply_exif_orientation(img, exif_orientation(path))


def write_image(path: str | Path, img: np.ndarray) -> None:
    """Writes an RGB(A) / gray(+alpha) array; the format follows the extension (JPEG at quality 95).

    Raises:
        ImageWriteError: the format cannot hold this image (e.g. 16-bit JPEG) or the file cannot be written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    allowed = DTYPES_BY_EXTENSION.get(suffix)
    if allowed is None:
        raise ImageWriteError(f'{path}: unsupported output format {path.suffix!r} (use one of {IMAGE_EXTENSIONS})')
    if img.dtype not in allowed:
        raise ImageWriteError(f'{path}: {path.suffix} cannot hold {img.dtype} pixels (allowed: '
                              f'{", ".join(str(np.dtype(d)) for d in allowed)}); use .png or .tif')
    if img.ndim == 3 and img.shape[2] == 2:
        if suffix != '.png':
            raise ImageWriteError(f'{path}: gray+alpha images can only be written as .png')
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_gray_alpha_png(img))
        return
    if img.ndim == 3:
        code = {3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGRA}.get(img.shape[2])
        if code is None:
            raise ImageWriteError(f'{path}: cannot write an image with {img.shape[2]} channels')
        img = cv2.cvtColor(np.ascontiguousarray(img), code)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if suffix in ('.jpg', '.jpeg') else []
    try:
        ok, encoded = cv2.imencode(path.suffix, img, params)
    except cv2.error as err:
        raise ImageWriteError(f'{path}: cannot encode this image as {path.suffix} ({err.err})') from None
    if not ok:
        raise ImageWriteError(f'{path}: cannot encode this image as {path.suffix}')
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded.tofile(path)
