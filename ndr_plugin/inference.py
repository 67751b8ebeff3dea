"""Restoring photos from Python: load a checkpoint once, then ``restore(array) -> array``.

    >>> from ndr_plugin import Restorer
    >>> restorer = Restorer('net_g_latest.pth', opt='options/train_ndr_aio3.yml', tile=512)
    >>> clean = restorer.restore(photo)          # HWC uint8/uint16/float, RGB(A) or grayscale; same dtype and shape

Checkpoints: BasicSR's ``{'params': ..., 'params_ema': ...}`` (``params_ema`` preferred), a bare state_dict, or an
official NDR-Restore checkpoint (converted on the fly to RGB by :mod:`ndr_plugin.convert_official`). The network comes
from, in order: ``opt`` (an option file path whose ``network_g`` is used, or a ``network_g`` dict); the checkpoint's
``network_options`` dict; the shape of an official checkpoint; the paper-size ``NDRNet``.

``network_options`` is what ``python -m ndr_plugin.convert_official`` stores next to ``params``.

``half=True`` runs the network in float16 on CUDA and bfloat16 on the CPU (float16 convolutions are slow or missing on
CPUs); blending, clipping and conversion stay in float32.

Tiling (:func:`tiled_forward`) lives in :mod:`ndr_plugin.tiling` and is re-exported here.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from ndr_plugin.compat import torch_load
from ndr_plugin.tiling import tiled_forward

__all__ = ['Restorer', 'tiled_forward', 'load_network_g']

PAPER_NETWORK_G = {'type': 'NDRNet'}
# BT.601 luma, as cv2.COLOR_RGB2GRAY, to turn the restored RGB of a grayscale input back into one channel.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _network_options(opt: str | Path | Mapping | None, checkpoint: Any) -> dict | None:
    """``network_g`` from ``opt`` (file or dict), else from the checkpoint; None when neither has one."""
    if opt is not None:
        source = str(opt) if isinstance(opt, (str, Path)) else 'the opt dict'
        if isinstance(opt, (str, Path)):
            from basicsr.utils.options import ordered_yaml
            with open(opt, encoding='utf-8') as f:
                opt = yaml.load(f, Loader=ordered_yaml()[0])
        if not isinstance(opt, Mapping):
            raise ValueError(f'{source}: expected a mapping of options, got {type(opt).__name__}')
        network_g = opt.get('network_g', opt if 'type' in opt else None)
        if not isinstance(network_g, Mapping) or 'type' not in network_g:
            raise ValueError(f"{source}: no 'network_g' with a 'type' (give an option file or a network_g dict)")
        return dict(network_g)
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get('network_options'), Mapping):
        return dict(checkpoint['network_options'])
    return None


def _state_dict(checkpoint: Any, path: str) -> tuple[dict, dict | None]:
    """(state_dict, network options implied by the file or None); unwraps params_ema/params, converts official files."""
    from ndr_plugin.convert_official import (convert_official_state_dict, is_official_state_dict,
                                             official_network_options, strip_module_prefix)
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f'{path}: expected a checkpoint dict, got {type(checkpoint).__name__}')
    state_dict = next((checkpoint[key] for key in ('params_ema', 'params') if isinstance(checkpoint.get(key), Mapping)),
                      checkpoint)
    if not state_dict or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path}: neither 'params_ema' nor 'params' found, and it is not a bare state_dict "
                         f'(top-level keys: {sorted(checkpoint)[:8]})')
    if is_official_state_dict(state_dict):
        net_g_options, _ = official_network_options(state_dict)
        converted, _ = convert_official_state_dict(state_dict, keep_bgr=False)
        return converted, {'type': 'NDRNet', **net_g_options}
    return strip_module_prefix(state_dict), None


def load_network_g(weights: str | Path, opt: str | Path | Mapping | None = None) -> nn.Module:
    """Builds the restoration network with BasicSR's ``build_network`` and loads ``weights`` strictly (eval mode)."""
    from basicsr.archs import build_network
    path = str(weights)
    checkpoint = torch_load(path)
    state_dict, implied = _state_dict(checkpoint, path)
    network_g = _network_options(opt, checkpoint) or implied or dict(PAPER_NETWORK_G)
    net = build_network(copy.deepcopy(network_g))
    try:
        net.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        hint = '' if opt is not None else ' (pass the option file it was trained with as opt / --opt)'
        raise ValueError(f'{path}: weights do not fit network_g {network_g}{hint}:\n{err}') from None
    return net.eval()


def _split_image(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, float]:
    """(RGB float32 HWC in [0, 1], alpha or None, scale of the integer dtype) from an RGB(A) / grayscale array."""
    if image.dtype == np.uint8:
        scale = 255.
    elif image.dtype == np.uint16:
        scale = 65535.
    elif np.issubdtype(image.dtype, np.floating):
        scale = 1.
    else:
        raise TypeError(f'Restorer.restore: expected a uint8, uint16 or float image, got dtype {image.dtype}')
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        color, alpha = image[..., :3], (image[..., 3:] if image.shape[2] == 4 else None)
    elif image.ndim == 2:
        color, alpha = image[..., None], None
    else:
        raise ValueError(f'Restorer.restore: expected an HxW, HxWx1, HxWx3 or HxWx4 array, got shape {image.shape}')
    if color.shape[2] == 1:
        color = np.repeat(color, 3, axis=2)
    rgb = color.astype(np.float32)  # a copy: the caller's array is never modified
    rgb /= np.float32(scale)
    return np.clip(rgb, 0, 1, out=rgb), alpha, scale


def _join_image(rgb: np.ndarray, alpha: np.ndarray | None, like: np.ndarray, scale: float) -> np.ndarray:
    """Inverse of :func:`_split_image`: back to ``like``'s dtype and channel layout. Works in place on ``rgb``."""
    gray = like.ndim == 2 or like.shape[2] == 1
    color = rgb @ LUMA_WEIGHTS if gray else rgb
    np.clip(color, 0, 1, out=color)
    if scale != 1.:
        color *= np.float32(scale)
        np.round(color, out=color)
    color = np.ascontiguousarray(color.astype(like.dtype, copy=False))
    if like.ndim == 2:
        return color
    if gray:
        return color[..., None]
    return np.concatenate([color, alpha], axis=2) if alpha is not None else color


class Restorer:
    """A loaded restoration network that restores numpy images.

    Args:
        weights (str | Path): Checkpoint file (see the module docstring for the accepted formats).
        opt (str | Path | Mapping | None): Option file or dict whose ``network_g`` describes the network; None: use
            the checkpoint's ``network_options``, an official checkpoint's shape, or the paper-size NDRNet.
        device (str | torch.device): 'cpu', 'cuda', 'cuda:1', ... Default: 'cpu'.
        tile (int | None): Tile size for :func:`tiled_forward`; None restores the whole image at once. Default: None.
        tile_overlap (int): Overlap between tiles in pixels. Default: 32.
        statistics_passes (int): Passes that gather image-level statistics before the tiles are restored, so tiles
            see the whole image's attention and means (see :func:`tiled_forward`); 0 is faster but less faithful to
            the whole-image output. Default: 1.
        half (bool): float16 on CUDA, bfloat16 on CPU. Default: False.
    """

    def __init__(self, weights: str | Path, opt: str | Path | Mapping | None = None,
                 device: str | torch.device = 'cpu', tile: int | None = None, tile_overlap: int = 32,
                 half: bool = False, statistics_passes: int = 1) -> None:
        self.device = torch.device(device)
        if self.device.type == 'cuda' and not torch.cuda.is_available():
            raise ValueError(f"device '{device}' requested but CUDA is not available; use device='cpu'")
        if tile is not None and tile <= 0:
            raise ValueError(f'tile must be a positive number of pixels or None, got {tile}')
        if statistics_passes < 0:
            raise ValueError(f'statistics_passes must be non-negative, got {statistics_passes}')
        self.tile, self.tile_overlap, self.statistics_passes = tile, tile_overlap, statistics_passes
        self.dtype = (torch.float16 if self.device.type == 'cuda' else torch.bfloat16) if half else torch.float32
        self.net = load_network_g(weights, opt).to(self.device, self.dtype)
        self._reference_signatures: dict[str, np.ndarray] | None = None

    def _to_tensor(self, rgb: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].to(self.device, self.dtype)

    @torch.inference_mode()
    def restore_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> restored float32 (B, 3, H, W), clipped to [0, 1]."""
        output = tiled_forward(self.net, x.to(self.device, self.dtype), self.tile, self.tile_overlap,
                               statistics_passes=self.statistics_passes)
        return output.float().clamp_(0, 1)

    def restore(self, image: np.ndarray) -> np.ndarray:
        """Restores an HWC RGB(A) or HW grayscale array (uint8, uint16 or float in [0, 1]).

        Returns an array of the same dtype and shape: grayscale stays grayscale (replicated to RGB for the network,
        BT.601 luma afterwards), alpha is passed through untouched, float output is clipped to [0, 1].
        """
        image = np.asarray(image)
        rgb, alpha, scale = _split_image(image)
        x = self._to_tensor(rgb)
        del rgb  # large photos: keep only one full-size float copy alive at a time
        restored = self.restore_tensor(x)[0].permute(1, 2, 0).cpu().numpy()
        del x
        return _join_image(restored, alpha, image, scale)

    def explain(self, image: np.ndarray) -> dict[str, Any]:
        """Which NDR atoms the image uses and the nearest reference degradation (see :mod:`ndr_plugin.explain`)."""
        from ndr_plugin.explain import atom_usage, describe_usage, reference_signatures
        rgb, _, _ = _split_image(np.asarray(image))
        if self._reference_signatures is None:
            self._reference_signatures = reference_signatures(self.net, self.device, self.dtype)
        usage = atom_usage(self.net, self._to_tensor(rgb), self.tile)
        return describe_usage(usage, self._reference_signatures)
