"""PSNR and SSIM as scored by the published all-in-one tables (AirNet, PromptIR, AdaIR, MoCE-IR lineage).

Protocol, as in PromptIR's ``utils/val_utils.py`` and its test loaders (github.com/va1shn9v/PromptIR):

* images are float in [0, 1], clipped, never rounded to 8 bits;
* both images are centre-cropped to a multiple of 16 (PromptIR's ``crop_img(base=16)``, e.g. 481x321 -> 480x320);
* PSNR: ``skimage.metrics.peak_signal_noise_ratio(gt, out, data_range=1)`` over all channels (RGB PSNR);
* SSIM: ``skimage.metrics.structural_similarity(gt, out, data_range=1, channel_axis=-1)``: 7x7 *uniform* window,
  sample covariance, mean over channels. ``channel_axis=-1`` is what ``multichannel=True`` meant in scikit-image 0.19,
  the version PromptIR pinned, so the numbers are the same on today's scikit-image.

BasicSR's own ``calculate_psnr`` / ``calculate_ssim`` (uint8 rounded, 11x11 Gaussian SSIM, optional Y channel and border
crop) stay available under their own names; see :mod:`ndr_plugin.metrics.evaluation` for how both kinds are fed.

Both functions carry ``wants_float = True``: :func:`ndr_plugin.metrics.evaluation.compute_metrics` then hands them the
network output as float instead of BasicSR's uint8 ``tensor2img`` result. Given uint8 or uint16 arrays they still work
(scaled to [0, 1]), but the 8-bit rounding has then already happened and the scores are not the table protocol.

Option-file use::

    val:
      metrics:
        psnr_aio: {type: calculate_psnr_aio}                    # crop_multiple: 16 by default
        ssim_aio: {type: calculate_ssim_aio, crop_multiple: 16}
"""
from __future__ import annotations

import numpy as np
from basicsr.utils.registry import METRIC_REGISTRY
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

AIO_CROP_MULTIPLE = 16


def crop_to_multiple(img: np.ndarray, multiple: int) -> np.ndarray:
    """Centre-crops the first two axes (H, W) to multiples of ``multiple``; the extra pixel goes to the bottom/right.

    Same offsets as PromptIR's ``crop_img``: the top/left crop is ``(size % multiple) // 2``.
    """
    if multiple < 1:
        raise ValueError(f'crop_multiple must be a positive integer, got {multiple}')
    h, w = img.shape[:2]
    if h < multiple or w < multiple:
        raise ValueError(f'Image of size {h}x{w} is smaller than crop_multiple={multiple}')
    top, left = (h % multiple) // 2, (w % multiple) // 2
    return img[top:top + h - h % multiple, left:left + w - w % multiple]


def to_unit_float(img: np.ndarray, name: str = 'img') -> np.ndarray:
    """uint8 / uint16 -> float32 in [0, 1]; float arrays are clipped to [0, 1] (kept float32 or float64)."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.
    if np.issubdtype(img.dtype, np.floating):
        return np.clip(img, 0, 1)
    raise TypeError(f'{name}: expected a uint8, uint16 or float image array, got dtype {img.dtype}')


def _prepare_pair(img: np.ndarray, img2: np.ndarray, crop_multiple: int) -> tuple[np.ndarray, np.ndarray]:
    img, img2 = np.asarray(img), np.asarray(img2)
    if img.shape != img2.shape:
        raise ValueError(f'Image shapes differ: img {img.shape}, img2 {img2.shape}')
    if img.ndim not in (2, 3):
        raise ValueError(f'Expected an HW or HWC image, got shape {img.shape}')
    img, img2 = to_unit_float(img, 'img'), to_unit_float(img2, 'img2')
    # Compare in one precision (skimage computes in the wider of the two otherwise).
    dtype = np.result_type(img.dtype, img2.dtype)
    img, img2 = img.astype(dtype, copy=False), img2.astype(dtype, copy=False)
    return crop_to_multiple(img, crop_multiple), crop_to_multiple(img2, crop_multiple)


@METRIC_REGISTRY.register()
def calculate_psnr_aio(img: np.ndarray, img2: np.ndarray, crop_multiple: int = AIO_CROP_MULTIPLE) -> float:
    """PSNR of the all-in-one tables: float [0, 1], RGB, peak 1, centre crop to ``crop_multiple``.

    Args:
        img (ndarray): Restored image, HWC or HW; float in [0, 1] (clipped), or uint8/uint16 (scaled).
        img2 (ndarray): Reference image, same shape.
        crop_multiple (int): Centre-crop both images to multiples of this size. Default: 16. Use 1 for no crop.

    Returns:
        float: PSNR in dB (``inf`` for identical images).
    """
    img, img2 = _prepare_pair(img, img2, crop_multiple)
    if np.array_equal(img, img2):
        return float('inf')
    return float(peak_signal_noise_ratio(img2, img, data_range=1))


@METRIC_REGISTRY.register()
def calculate_ssim_aio(img: np.ndarray, img2: np.ndarray, crop_multiple: int = AIO_CROP_MULTIPLE) -> float:
    """SSIM of the all-in-one tables: scikit-image, 7x7 uniform window, data_range 1, mean over channels.

    Args:
        img (ndarray): Restored image, HWC or HW; float in [0, 1] (clipped), or uint8/uint16 (scaled).
        img2 (ndarray): Reference image, same shape.
        crop_multiple (int): Centre-crop both images to multiples of this size. Default: 16. Use 1 for no crop.

    Returns:
        float: SSIM.
    """
    img, img2 = _prepare_pair(img, img2, crop_multiple)
    channel_axis = -1 if img.ndim == 3 else None
    return float(structural_similarity(img2, img, data_range=1, channel_axis=channel_axis))


calculate_psnr_aio.wants_float = True
calculate_ssim_aio.wants_float = True
