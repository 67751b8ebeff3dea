"""Restoring photos from Python: load a checkpoint once, then ``restore(array) -> array``.

    >>> from ndr_plugin import Restorer
    >>> restorer = Restorer('net_g_latest.pth', opt='options/ndr_allinone.yml', tile=512)
    >>> clean = restorer.restore(photo)          # HWC uint8/uint16/float, RGB(A) or grayscale; same dtype and shape

Accepted checkpoints and where the network description comes from: :mod:`ndr_plugin.restore.loading`.

``precision`` picks the network's floating-point type (:mod:`ndr_plugin.restore.precision`): ``fp32`` by default, so
results do not depend on the machine; ``bf16``, ``fp16`` or ``auto`` (the fastest type the device runs natively) trade
a little accuracy for speed. ``half=True`` is the old switch (float16 on CUDA, bfloat16 elsewhere). Blending, clipping,
conversion and the statistics passes of tiling stay in float32.

Nothing wrong is returned silently: a network output with NaN/Inf raises :class:`NonFiniteOutputError` (a checkpoint
with NaN weights would otherwise give black images), float input outside [0, 1] is clipped with a warning.

Tiling (:func:`tiled_forward`, :class:`TileSettings`) lives in :mod:`ndr_plugin.restore.tiling` and is re-exported here.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ndr_plugin.restore.loading import load_network, load_network_g, resolve_device
from ndr_plugin.restore.precision import NAMES, resolve_precision
from ndr_plugin.restore.tiling import DEFAULT_OVERLAP, DEFAULT_PASSES, TileSettings, tiled_forward

__all__ = ['Restorer', 'TileSettings', 'NonFiniteOutputError', 'tiled_forward', 'load_network_g']

# BT.601 luma, as cv2.COLOR_RGB2GRAY, to turn the restored RGB of a grayscale input back into one channel.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
RENAMED_KEYWORDS = {'statistics_passes': 'tile_passes'}


class NonFiniteOutputError(RuntimeError):
    """The network produced NaN or Inf pixels (broken weights, an overflow in half precision, or such input)."""


def _check_float_range(color: np.ndarray) -> None:
    """NaN/Inf input is an error; values outside [0, 1] (e.g. an HDR float TIFF) are clipped, with a warning."""
    if not np.isfinite(color).all():
        raise ValueError('Restorer.restore: the input image contains NaN or Inf pixel values')
    low, high = float(color.min()), float(color.max())
    if low < 0 or high > 1:
        warnings.warn(f'float pixel values outside [0, 1] (min {low:.4g}, max {high:.4g}) are clipped to [0, 1]; '
                      'the network expects display-referred images in [0, 1]', stacklevel=4)


def _split_image(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, float]:
    """(RGB float32 HWC in [0, 1], alpha or None, scale of the integer dtype) from an RGB(A) / gray(+alpha) array."""
    if image.dtype == np.uint8:
        scale = 255.
    elif image.dtype == np.uint16:
        scale = 65535.
    elif np.issubdtype(image.dtype, np.floating):
        scale = 1.
    else:
        raise TypeError(f'Restorer.restore: expected a uint8, uint16 or float image, got dtype {image.dtype}')
    if image.ndim == 3 and image.shape[2] in (1, 2, 3, 4):
        has_alpha = image.shape[2] in (2, 4)  # gray+alpha or RGBA
        color, alpha = (image[..., :-1], image[..., -1:]) if has_alpha else (image, None)
    elif image.ndim == 2:
        color, alpha = image[..., None], None
    else:
        raise ValueError('Restorer.restore: expected an HxW, HxWx1, HxWx2 (gray+alpha), HxWx3 or HxWx4 array, '
                         f'got shape {image.shape}')
    if scale == 1.:
        _check_float_range(color)
    if color.shape[2] == 1:
        color = np.repeat(color, 3, axis=2)
    rgb = color.astype(np.float32)  # a copy: the caller's array is never modified
    rgb /= np.float32(scale)
    return np.clip(rgb, 0, 1, out=rgb), alpha, scale


def _join_image(rgb: np.ndarray, alpha: np.ndarray | None, like: np.ndarray, scale: float) -> np.ndarray:
    """Inverse of :func:`_split_image`: back to ``like``'s dtype and channel layout. Works in place on ``rgb``."""
    gray = like.ndim == 2 or like.shape[2] in (1, 2)
    color = rgb @ LUMA_WEIGHTS if gray else rgb
    np.clip(color, 0, 1, out=color)
    if scale != 1.:
        color *= np.float32(scale)
        np.round(color, out=color)
    color = np.ascontiguousarray(color.astype(like.dtype, copy=False))
    if like.ndim == 2:
        return color
    if gray:
        color = color[..., None]
    return np.concatenate([color, alpha], axis=2) if alpha is not None else color


def _tile_settings(tile: int | TileSettings | None, overlap: int | None, passes: int | None) -> TileSettings:
    if isinstance(tile, TileSettings):
        if overlap is not None or passes is not None:
            raise TypeError('Restorer: give the overlap and passes inside TileSettings, not also as tile_overlap / '
                            'tile_passes')
        return tile
    return TileSettings(tile, DEFAULT_OVERLAP if overlap is None else overlap,
                        DEFAULT_PASSES if passes is None else passes)


def _reject_removed_keywords(keywords: dict[str, Any]) -> None:
    for key in keywords:
        if key in RENAMED_KEYWORDS:
            raise TypeError(f'Restorer: the keyword {key!r} is now {RENAMED_KEYWORDS[key]!r}')
        raise TypeError(f'Restorer() got an unexpected keyword argument {key!r}')


class Restorer:
    """A loaded restoration network that restores numpy images.

    Args:
        weights (str | Path | None): Checkpoint file (formats: :mod:`ndr_plugin.restore.loading`); None: the compact
            NDRNet that ships with the package (:mod:`ndr_plugin.weights`, model card beside it). Default: None.
        opt (str | Path | Mapping | None): Option file or dict whose ``network_g`` describes the network; None: the
            checkpoint's ``network_options``, an official checkpoint's shape, the option file saved with the run, or
            the paper-size NDRNet. :attr:`network_source` says which was used.
        device (str | torch.device): As PyTorch spells it: 'cpu', 'cuda', 'cuda:1', 'mps'. Default: 'cpu'.
        tile (int | TileSettings | None): Tile size in pixels; 0 or None restores the whole image at once; or a
            :class:`TileSettings` with all three settings. Default: None.
        tile_overlap (int | None): Overlap between tiles in pixels. Default: 32.
        tile_passes (int | None): Passes that gather image-level statistics before the tiles are restored, so tiles
            see the whole image's attention and means (see :mod:`ndr_plugin.restore.tiling`); 0 is faster but less
            faithful to the whole-image output. Default: 1.
        precision (str): 'fp32', 'bf16', 'fp16' or 'auto' (:mod:`ndr_plugin.restore.precision`). Default: 'fp32'.
        half (bool): The old switch: float16 on CUDA, bfloat16 elsewhere; only with precision 'fp32'. Default: False.
    """

    def __init__(self, weights: str | Path | None = None, opt: str | Path | Mapping | None = None,
                 device: str | torch.device = 'cpu', tile: int | TileSettings | None = None,
                 tile_overlap: int | None = None, tile_passes: int | None = None, half: bool = False,
                 precision: str = 'fp32', **removed: Any) -> None:
        _reject_removed_keywords(removed)
        self.tile = _tile_settings(tile, tile_overlap, tile_passes)
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device, half)
        self.precision = NAMES[self.dtype]
        if weights is None:
            from ndr_plugin.weights import shipped_description, shipped_weights
            weights = shipped_weights()
            net, _ = load_network(weights, opt)
            self.network_source = shipped_description()
        else:
            net, self.network_source = load_network(weights, opt)
        self.weights = Path(weights)
        if not self.tile.whole_image:
            self.tile.size_for(getattr(net, 'pad_multiple', 1))  # a tile too small for this network: fail now
        self.net = net.to(self.device, self.dtype)
        self._reference_signatures: dict[str, np.ndarray] | None = None

    def _to_tensor(self, rgb: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].to(self.device, self.dtype)

    @torch.inference_mode()
    def restore_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> restored float32 (B, 3, H, W), clipped to [0, 1].

        Raises:
            NonFiniteOutputError: the network output has NaN or Inf pixels.
        """
        output = tiled_forward(self.net, x.to(self.device, self.dtype), self.tile)
        if not bool(torch.isfinite(output).all()):
            hint = (f'; {self.precision} may overflow: try precision fp32 (--precision fp32)'
                    if self.dtype != torch.float32 else '')
            raise NonFiniteOutputError(f'the network output contains NaN/Inf: the checkpoint or input produced '
                                       f'NaN/Inf (weights: {self.weights}){hint}')
        return output.float().clamp_(0, 1)

    def restore(self, image: np.ndarray) -> np.ndarray:
        """Restores an HWC RGB(A), HW grayscale or HWx2 gray+alpha array (uint8, uint16 or float in [0, 1]).

        Returns an array of the same dtype and shape: grayscale stays grayscale (replicated to RGB for the network,
        BT.601 luma afterwards), alpha is passed through untouched, float output is clipped to [0, 1]. Float input
        outside [0, 1] is clipped with a ``UserWarning``; NaN/Inf input raises ``ValueError``.
        """
        image = np.asarray(image)
        rgb, alpha, scale = _split_image(image)
        x = self._to_tensor(rgb)
        del rgb  # large photos: keep only one full-size float copy alive at a time
        restored = self.restore_tensor(x)[0].permute(1, 2, 0).cpu().numpy()
        del x
        return _join_image(restored, alpha, image, scale)

    def explain(self, image: np.ndarray) -> dict[str, Any]:
        """Which NDR atoms the image uses and the nearest reference degradation (:mod:`ndr_plugin.restore.explain`)."""
        from ndr_plugin.restore.explain import atom_usage, describe_usage, reference_signatures
        if not getattr(self.net, 'ndr_dictionary', False):
            raise ValueError(f'{type(self.net).__name__} has no NDR dictionary (use_ndr: false or ndr_dictionary: '
                             'false), so there are no atoms to explain')
        rgb, _, _ = _split_image(np.asarray(image))
        if self._reference_signatures is None:
            self._reference_signatures = reference_signatures(self.net, self.device, self.dtype)
        usage = atom_usage(self.net, self._to_tensor(rgb), self.tile.size or None)
        return describe_usage(usage, self._reference_signatures)
