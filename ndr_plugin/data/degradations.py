"""Seeded synthesis of the degradations of all-in-one restoration: noise, rain, haze, low light and bicubic
downsampling (motion blur: :mod:`ndr_plugin.data.motion_blur`).

Images are ``float32`` HWC arrays in [0, 1] (BasicSR's convention; ``uint8`` input is accepted and scaled). Every
function is a pure function of its inputs: randomness comes only from the ``numpy.random.Generator`` passed in, so the
same generator state gives the same bytes. :func:`item_rng` derives a generator from a seed and an item's name, which is
how the prepared test sets get one fixed realisation per image whatever the file order.

Benchmark facts behind the defaults (see the protocol notes in the project documentation):

* Gaussian noise: sigma on the 0-255 scale. AirNet/PromptIR clip to [0, 255] and *truncate* to uint8; NDR's official
  code adds float noise and clips to [0, 1] without quantisation; DnCNN/Restormer neither clip nor quantise.
* Rain100L/H: rain only brightens, adds the same value to R, G and B, and clips at 255. Rain100L-like images brighten
  about a quarter of the pixels (mean residual about 5 levels); Rain100H brightens 52-96 % (mean 28-57 levels).
* RESIDE haze: I = J t + A (1 - t), t = exp(-beta d), with a scalar A. OTS/SOTS-outdoor use A in [0.8, 1] and beta in
  [0.04, 0.2]; inverting real SOTS pairs gives a normalised depth of roughly 2-4, hence the default depth range.
* SR: MATLAB ``imresize(x, 1/s, 'bicubic')`` (antialiased cubic kernel, a = -0.5) on the mod-cropped HR image, saved as
  uint8. BasicSR's ``imresize`` port (whose weights we use) reproduces the published Set5 LR files to about 56 dB;
  OpenCV's INTER_CUBIC does not (no antialiasing) and must not be used for downscaling.

* Low light: darkening ``y = beta (alpha x) ** gamma`` as in the low-light simulation of MBLLEN (Lv et al., BMVC 2018)
  and its large-scale follow-up (Lv et al., IJCV 2021), which draw alpha in [0.9, 1], beta in [0.5, 1] and gamma in
  [1.5, 5] (paper, from memory; unconfirmed; LLNet, Lore et al. 2017, darkens with gamma in about [2, 5]), then
  signal-dependent Poisson-Gaussian noise with variance ``shot * y + read``, the shot/read levels drawn as in Brooks et
  al., "Unprocessing Images for Learned Raw Denoising", CVPR 2019 (google-research ``unprocessing/unprocess.py``
  ``random_noise_levels``: log shot uniform in [log 1e-4, log 0.012], log read = 2.18 log shot + 1.20 + N(0, 0.26)).
  Ours: that raw-space noise model is applied to the darkened sRGB image (no unprocessing), the same darkening to
  every channel.
* Motion blur: see :mod:`ndr_plugin.data.motion_blur` (random camera-shake trajectories, Boracchi & Foi 2012).

Synthetic rain, haze, low light and blur made here are "synthetic, not official": the official streak layers were
hand-rendered, the official depth maps came from a depth network, LOL and GoPro are real captures, so no parameter set
reproduces the benchmark images.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
from basicsr.utils.matlab_functions import calculate_weights_indices

__all__ = [
    'item_rng', 'as_float', 'to_uint8', 'add_gaussian_noise', 'rain_layer', 'add_rain', 'estimate_depth', 'add_haze',
    'darken', 'lowlight_noise_levels', 'add_lowlight', 'bicubic_resize', 'bicubic_degrade', 'lr_image', 'RAIN_STYLES'
]


# ----------------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------------
def item_rng(seed: int, *parts: int | float | str) -> np.random.Generator:
    """A generator determined by ``seed`` and any number of ints/floats/strings (e.g. sigma and a file name).

    Strings are hashed with SHA-256, so the result does not depend on Python's per-process ``hash`` randomisation.
    """
    words = [int(seed)]
    for part in parts:
        if isinstance(part, str):
            words.append(int.from_bytes(hashlib.sha256(part.encode('utf-8')).digest()[:8], 'little'))
        elif isinstance(part, float) and not part.is_integer():
            words.append(int.from_bytes(hashlib.sha256(repr(part).encode()).digest()[:8], 'little'))
        else:
            words.append(int(part))
    return np.random.default_rng(np.random.SeedSequence(words))


def as_float(img: np.ndarray) -> np.ndarray:
    """``uint8`` -> float32 in [0, 1]; float input is returned as float32."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f'expected a uint8 or float image, got dtype {img.dtype}')
    return img.astype(np.float32, copy=False)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8 by clipping and rounding (how BasicSR's ``tensor2img`` saves images)."""
    if img.dtype == np.uint8:
        return img
    return np.clip(np.round(img.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------------------
# Gaussian noise
# ----------------------------------------------------------------------------------------------------------------------
def add_gaussian_noise(img: np.ndarray,
                       sigma: float,
                       rng: np.random.Generator | np.random.RandomState,
                       *,
                       clip: bool = True,
                       quantize: str | None = None) -> np.ndarray:
    """Additive white Gaussian noise, i.i.d. per pixel and channel, sigma on the 0-255 scale.

    Args:
        img: clean image, uint8 or float in [0, 1].
        sigma: standard deviation on the 0-255 scale (15, 25, 50 in the benchmarks).
        rng: source of the noise (a legacy ``RandomState`` draws what ``np.random.randn`` would).
        clip: clip to [0, 1] (every all-in-one protocol does; DnCNN/Restormer test scripts do not).
        quantize: ``None`` keeps float values (NDR, BasicSR), ``'round'`` rounds to the 8-bit grid (a saved PNG),
            ``'truncate'`` truncates to it like AirNet/PromptIR's ``uint8`` cast. Quantisation implies clipping.

    Returns:
        float32 image in [0, 1] (on the k/255 grid when quantised).
    """
    if quantize not in (None, 'round', 'truncate'):
        raise ValueError(f"quantize must be None, 'round' or 'truncate', got {quantize!r}")
    if sigma < 0:
        raise ValueError(f'sigma must be >= 0, got {sigma}')
    # Work on the 0-255 scale so uint8 input and the truncation of AirNet/PromptIR are exact.
    base = img.astype(np.float64) if img.dtype == np.uint8 else as_float(img).astype(np.float64) * 255.0
    noisy = base + float(sigma) * rng.standard_normal(img.shape)
    if clip or quantize:
        noisy = np.clip(noisy, 0.0, 255.0)
    if quantize == 'round':
        noisy = np.round(noisy)
    elif quantize == 'truncate':
        noisy = np.floor(noisy)
    return (noisy / 255.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------------
# Rain streaks (Rain100L / Rain100H style)
# ----------------------------------------------------------------------------------------------------------------------
def _streak_kernel(length: int, angle: float, width: int) -> np.ndarray:
    """A line of ``length`` px and ``width`` px, tilted ``angle`` degrees from vertical, peak 1, lightly antialiased."""
    size = int(length) + 2 * int(width) + 3
    size += 1 - size % 2
    kernel = np.zeros((size, size), np.float32)
    centre = size // 2
    dx = 0.5 * (length - 1) * math.sin(math.radians(angle))
    dy = 0.5 * (length - 1) * math.cos(math.radians(angle))
    shift = 4  # sub-pixel precision of cv2.line: coordinates in 1/16 px
    p0 = (round((centre - dx) * 16), round((centre - dy) * 16))
    p1 = (round((centre + dx) * 16), round((centre + dy) * 16))
    cv2.line(kernel, p0, p1, 1.0, thickness=max(1, int(width)), lineType=cv2.LINE_AA, shift=shift)
    kernel = cv2.GaussianBlur(kernel, (0, 0), 0.6)
    return kernel / max(float(kernel.max()), 1e-8)


def rain_layer(height: int,
               width_px: int,
               rng: np.random.Generator,
               *,
               density: float = 0.004,
               length: int = 25,
               angle: float | Sequence[float] = 0.0,
               width: int = 1,
               intensity: float = 0.6) -> np.ndarray:
    """Streak layer S (H x W, float32, >= 0): sparse random seeds smeared by a motion-blur line kernel.

    Args:
        height, width_px: layer size.
        rng: source of the seeds.
        density: fraction of pixels that start a streak.
        length: streak length in pixels (10-40 looks like Rain100L/H).
        angle: tilt from vertical in degrees; a sequence gives one streak field per angle (Rain100H has five
            directions).
        width: streak width in pixels.
        intensity: peak brightness of a streak on the [0, 1] scale; overlapping streaks add up.
    """
    angles = [float(angle)] if np.isscalar(angle) else [float(a) for a in angle]
    layer = np.zeros((height, width_px), np.float32)
    for current in angles:
        seeds = (rng.random((height, width_px)) < density / len(angles)).astype(np.float32)
        seeds *= rng.uniform(0.5, 1.0, (height, width_px)).astype(np.float32)
        layer += cv2.filter2D(seeds, -1, _streak_kernel(length, current, width), borderType=cv2.BORDER_REFLECT)
    return np.maximum(layer, 0.0) * float(intensity)


def add_rain(img: np.ndarray, rng: np.random.Generator, **streak_params: Any) -> np.ndarray:
    """O = clip(B + S): the same streak value S is added to every channel, then clipped at 1, as in Rain100L/H.

    ``streak_params`` are the keyword arguments of :func:`rain_layer` (density, length, angle, width, intensity).
    """
    clean = as_float(img)
    layer = rain_layer(clean.shape[0], clean.shape[1], rng, **streak_params)
    rainy = clean + (layer[..., None] if clean.ndim == 3 else layer)
    return np.clip(rainy, 0.0, 1.0).astype(np.float32)


# Parameter ranges that give Rain100L-like and Rain100H-like statistics (uniform draws; lists are [low, high]).
RAIN_STYLES: dict[str, dict[str, Any]] = {
    'light': {'density': [0.004, 0.008], 'length': [10, 25], 'angle': [-15.0, 15.0], 'width': 1,
              'intensity': [0.15, 0.3], 'directions': 1},
    'heavy': {'density': [0.01, 0.025], 'length': [15, 30], 'angle': [-30.0, 30.0], 'width': [1, 2],
              'intensity': [0.15, 0.3], 'directions': [1, 5]},
}


# ----------------------------------------------------------------------------------------------------------------------
# Haze (RESIDE atmospheric scattering model)
# ----------------------------------------------------------------------------------------------------------------------
def estimate_depth(img: np.ndarray, method: str = 'blend') -> np.ndarray:
    """A relative depth map in [0, 1] (1 = far) from a clean image, for synthetic haze when no depth map exists.

    Heuristics (crude proxies, not a depth estimator):

    * ``'vertical'``: depth falls linearly from the top row (far, 1) to the bottom row (near, 0): the usual outdoor
      layout of sky above ground.
    * ``'dark_channel'``: the dark channel (per-pixel minimum over channels, 15 px minimum filter) smoothed with a wide
      Gaussian: bright, colourless regions such as sky count as far, saturated or dark regions as near.
    * ``'blend'``: the mean of the two, rescaled to [0, 1].
    """
    clean = as_float(img)
    height, width = clean.shape[:2]
    vertical = np.repeat(np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None], width, axis=1)
    if method == 'vertical':
        return vertical
    if method not in ('dark_channel', 'blend'):
        raise ValueError(f"depth method must be 'vertical', 'dark_channel' or 'blend', got {method!r}")
    dark = clean.min(axis=2) if clean.ndim == 3 else clean
    dark = cv2.erode(dark, np.ones((15, 15), np.uint8), borderType=cv2.BORDER_REFLECT)
    dark = cv2.GaussianBlur(dark, (0, 0), max(height, width) / 20.0, borderType=cv2.BORDER_REFLECT)
    dark = (dark - dark.min()) / max(float(dark.max() - dark.min()), 1e-6)
    depth = dark if method == 'dark_channel' else 0.5 * (vertical + dark)
    return ((depth - depth.min()) / max(float(depth.max() - depth.min()), 1e-6)).astype(np.float32)


def add_haze(img: np.ndarray,
             atmospheric_light: float,
             beta: float,
             depth: np.ndarray | None = None,
             *,
             depth_range: tuple[float, float] = (2.0, 4.0),
             depth_method: str = 'blend') -> np.ndarray:
    """I = J t + A (1 - t) with t = exp(-beta d) and one scalar A for all channels (RESIDE).

    Args:
        img: clear image J.
        atmospheric_light: A (RESIDE outdoor: 0.8-1.0; indoor: 0.7-1.0).
        beta: scattering coefficient (RESIDE outdoor: 0.04-0.2; indoor: 0.6-1.8).
        depth: depth map d (H x W) in the units beta expects, used as given. For a disparity map pass
            ``1 / disparity``. ``None`` estimates a relative depth with :func:`estimate_depth` and maps it linearly to
            ``depth_range``.
        depth_range: (near, far) of the estimated depth; (2, 4) matches what inverting SOTS-outdoor pairs gives.
        depth_method: heuristic of :func:`estimate_depth`.
    """
    clear = as_float(img)
    if depth is None:
        near, far = depth_range
        depth = near + (far - near) * estimate_depth(clear, depth_method)
    depth = np.asarray(depth, np.float32)
    if depth.shape != clear.shape[:2]:
        raise ValueError(f'depth map shape {depth.shape} does not match the image {clear.shape[:2]}')
    transmission = np.exp(-float(beta) * depth)
    if clear.ndim == 3:
        transmission = transmission[..., None]
    hazy = clear * transmission + float(atmospheric_light) * (1.0 - transmission)
    return np.clip(hazy, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------------
# Low light (gamma/exposure darkening + Poisson-Gaussian sensor noise)
# ----------------------------------------------------------------------------------------------------------------------
def darken(img: np.ndarray, alpha: float, beta: float, gamma: float) -> np.ndarray:
    """``beta * (alpha * x) ** gamma``: gamma compresses the shadows, beta lowers the exposure (MBLLEN's model)."""
    clear = np.clip(as_float(img).astype(np.float64), 0.0, 1.0)
    return (float(beta) * np.power(float(alpha) * clear, float(gamma))).astype(np.float32)


def lowlight_noise_levels(rng: np.random.Generator,
                          shot_range: tuple[float, float] = (1e-4, 0.012)) -> tuple[float, float]:
    """(shot, read) noise levels: log-uniform shot level and the log-log linear read level of Brooks et al. 2019."""
    low, high = (float(v) for v in shot_range)
    if not 0 < low <= high:
        raise ValueError(f'shot noise range must be 0 < low <= high, got {shot_range!r}')
    log_shot = float(rng.uniform(math.log(low), math.log(high)))
    return math.exp(log_shot), math.exp(2.18 * log_shot + 1.20 + float(rng.normal(0.0, 0.26)))


def add_lowlight(img: np.ndarray,
                 alpha: float,
                 beta: float,
                 gamma: float,
                 shot_noise: float = 0.0,
                 read_noise: float = 0.0,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """A dark, noisy capture of a well-exposed image: :func:`darken`, then noise of variance ``shot * y + read``.

    The noise is signal-dependent (brighter pixels are noisier in absolute terms), as photon shot noise plus sensor
    read noise are; ``shot_noise = read_noise = 0`` gives the noiseless darkening. Returns float32 in [0, 1].
    """
    if shot_noise < 0 or read_noise < 0:
        raise ValueError(f'noise levels must be >= 0, got shot {shot_noise}, read {read_noise}')
    dark = darken(img, alpha, beta, gamma).astype(np.float64)
    if shot_noise or read_noise:
        if rng is None:
            raise ValueError('add_lowlight needs an rng when a noise level is above 0')
        dark = dark + np.sqrt(dark * float(shot_noise) + float(read_noise)) * rng.standard_normal(dark.shape)
    return np.clip(dark, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------------
# Bicubic downsampling (MATLAB imresize)
# ----------------------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=128)
def _resize_matrix(in_length: int, scale: float) -> np.ndarray:
    """Dense (out x in) matrix of MATLAB's antialiased bicubic resize along one axis, symmetric padding folded in.

    The weights and indices come from BasicSR's MATLAB port (``calculate_weights_indices``); applying them as one
    matrix product instead of BasicSR's per-row loop is what makes on-the-fly downsampling of training patches fast.
    """
    out_length = math.ceil(in_length * scale)
    weights, indices, pad_start, _ = calculate_weights_indices(in_length, out_length, scale, 'cubic', 4, True)
    matrix = np.zeros((out_length, in_length), np.float64)
    for row, (w_row, i_row) in enumerate(zip(weights.double().numpy(), indices.long().numpy())):
        for weight, padded in zip(w_row, i_row):
            source = int(padded) - pad_start
            if source < 0:  # mirrored copy before the first row
                source = -source - 1
            elif source >= in_length:  # mirrored copy after the last row
                source = 2 * in_length - source - 1
            matrix[row, source] += weight
    return matrix


def bicubic_resize(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB-compatible ``imresize(img, scale, 'bicubic')`` with antialiasing; float32, unrounded.

    Same kernel, weights and symmetric padding as BasicSR's ``basicsr.utils.matlab_functions.imresize`` (whose
    weights it uses), computed in float64. Checked against the MATLAB-made Set5 LR files: about 56 dB PSNR after
    rounding (see the tests).
    """
    src = as_float(img).astype(np.float64)
    rows = _resize_matrix(src.shape[0], float(scale))
    cols = _resize_matrix(src.shape[1], float(scale))
    out = np.tensordot(rows, src, axes=(1, 0))  # (out_h, w[, c])
    out = np.moveaxis(np.tensordot(cols, out, axes=(1, 1)), 0, 1)  # (out_h, out_w[, c])
    return np.ascontiguousarray(out, dtype=np.float32)


def bicubic_degrade(img: np.ndarray, scale: int, *, quantize: bool = True) -> np.ndarray:
    """Bicubic x``scale`` downsampling followed by bicubic upsampling back to the input size.

    The SR input of the all-in-one setting: the network sees a blurry image of the original size. With ``quantize``
    the low-resolution image is rounded to 8 bits (as benchmark LR files are) and so is the result.
    Sizes that are not a multiple of ``scale`` are padded symmetrically at the bottom/right and cropped back, so any
    patch works; benchmark sets are mod-cropped first (``basicsr.data.transforms.mod_crop``) so no padding happens.
    """
    scale = int(scale)
    if scale < 2:
        raise ValueError(f'scale must be an integer >= 2, got {scale}')
    clear = as_float(img)
    height, width = clear.shape[:2]
    pad_h, pad_w = -height % scale, -width % scale
    if pad_h or pad_w:
        pad = ((0, pad_h), (0, pad_w)) + ((0, 0), ) * (clear.ndim - 2)
        clear = np.pad(clear, pad, mode='symmetric')
    low = bicubic_resize(clear, 1.0 / scale)
    if quantize:
        low = to_uint8(low).astype(np.float32) / 255.0
    restored = np.ascontiguousarray(bicubic_resize(low, scale)[:height, :width])
    if quantize:
        return to_uint8(restored).astype(np.float32) / 255.0
    return np.clip(restored, 0.0, 1.0)


def lr_image(img: np.ndarray, scale: int) -> np.ndarray:
    """The 8-bit bicubic LR image of a mod-cropped HR image (what MATLAB's script saves as ``LRbicx{s}``)."""
    height, width = img.shape[:2]
    if height % scale or width % scale:
        raise ValueError(f'image of size {height}x{width} is not a multiple of scale {scale}; mod-crop it first')
    return to_uint8(bicubic_resize(img, 1.0 / scale))
