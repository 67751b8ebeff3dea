"""PSNR and SSIM as NDR-Restore's official test code computes them (github.com/mdyao/NDR-Restore ``test.py``).

The third protocol next to BasicSR's (uint8, rounded) and the all-in-one tables' (:mod:`.aio_metric`):

* output and ground truth clipped to [0, 1], float, never rounded to 8 bits, no crop (the network pads the input to a
  multiple of 8 and the output is cropped back, so the whole image is scored);
* PSNR: ``10 * log10(1 / MSE)`` over all channels (RGB PSNR, peak 1);
* SSIM: 11x11 Gaussian window (sigma 1.5) on the images scaled to [0, 255], constants (0.01 * 255)^2 and
  (0.03 * 255)^2, computed per channel and averaged. The window is applied to the valid region only (a 5-pixel margin
  is not scored), as the SSIM of the mmsr/EDVR utilities that the official code's framework is forked from does; that
  the official ``util.calculate_ssim`` does exactly this is our reading, not checked line by line.

What the official test code also does and these functions cannot: it scores only the first 10 hazy and the first 10
noisy images (``data/Dataset_test.py``) and draws the test noise (float, unseeded) on the fly. Restricting a test set
to those images is the data's job (a test LMDB with those keys).

Option-file use::

    val:
      metrics:
        psnr_ndr: {type: calculate_psnr_ndr}
        ssim_ndr: {type: calculate_ssim_ndr}
"""
from __future__ import annotations

import cv2
import numpy as np
from basicsr.utils.registry import METRIC_REGISTRY

from ndr_plugin.metrics.aio_metric import to_unit_float

SSIM_WINDOW, SSIM_SIGMA = 11, 1.5


def _prepare_pair(img: np.ndarray, img2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    img, img2 = np.asarray(img), np.asarray(img2)
    if img.shape != img2.shape:
        raise ValueError(f'Image shapes differ: img {img.shape}, img2 {img2.shape}')
    if img.ndim not in (2, 3):
        raise ValueError(f'Expected an HW or HWC image, got shape {img.shape}')
    if min(img.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f'Image of size {img.shape[0]}x{img.shape[1]} is smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} '
                         'SSIM window')
    return to_unit_float(img, 'img').astype(np.float64), to_unit_float(img2, 'img2').astype(np.float64)


def _ssim_channel(img: np.ndarray, img2: np.ndarray) -> float:
    """Gaussian-window SSIM of one channel in [0, 255], valid region only."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    kernel = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA)
    window = np.outer(kernel, kernel.transpose())
    margin = SSIM_WINDOW // 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.filter2D(x, -1, window)[margin:-margin, margin:-margin]

    mu1, mu2 = blur(img), blur(img2)
    sigma1 = blur(img * img) - mu1 ** 2
    sigma2 = blur(img2 * img2) - mu2 ** 2
    sigma12 = blur(img * img2) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * sigma12 + c2)) / ((mu1 ** 2 + mu2 ** 2 + c1) * (sigma1 + sigma2 + c2))
    return float(ssim_map.mean())


@METRIC_REGISTRY.register()
def calculate_psnr_ndr(img: np.ndarray, img2: np.ndarray) -> float:
    """PSNR of NDR-Restore's test code: float [0, 1] (clipped), all channels, peak 1, whole image.

    Args:
        img (ndarray): Restored image, HWC or HW; float in [0, 1] (clipped), or uint8/uint16 (scaled).
        img2 (ndarray): Reference image, same shape.

    Returns:
        float: PSNR in dB (``inf`` for identical images).
    """
    img, img2 = _prepare_pair(img, img2)
    mse = float(np.mean((img - img2) ** 2))
    return float('inf') if mse == 0 else 10 * np.log10(1. / mse)


@METRIC_REGISTRY.register()
def calculate_ssim_ndr(img: np.ndarray, img2: np.ndarray) -> float:
    """SSIM of NDR-Restore's test code: 11x11 Gaussian window on [0, 255] floats, per channel, averaged.

    Args:
        img (ndarray): Restored image, HWC or HW; float in [0, 1] (clipped), or uint8/uint16 (scaled).
        img2 (ndarray): Reference image, same shape.

    Returns:
        float: SSIM.
    """
    img, img2 = _prepare_pair(img, img2)
    img, img2 = img * 255., img2 * 255.
    if img.ndim == 2:
        return _ssim_channel(img, img2)
    return float(np.mean([_ssim_channel(img[..., c], img2[..., c]) for c in range(img.shape[2])]))


calculate_psnr_ndr.wants_float = True
calculate_ssim_ndr.wants_float = True
