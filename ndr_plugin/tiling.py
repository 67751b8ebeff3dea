"""Memory-bounded inference by overlapping tiles (re-exported by :mod:`ndr_plugin.inference`).

Large photos do not fit a Restormer-style network in one pass (Restormer issues #29 and #104, PromptIR issue #2), so the
image is cut into ``tile_size`` squares that overlap by ``tile_overlap`` pixels, each square is restored on its own,
and the outputs are blended with a separable window:

* on a side that borders another tile, the weight is 0 over the outer quarter of the overlap, rises as a raised cosine
  (Hann ramp) over its middle half, and is 1 beyond; on a side at the image border it is 1 throughout;
* the tiles covering any pixel always have positive total weight, and the output is the weighted mean.

The zero margin discards each tile's border pixels, the ones most affected by the tile's own padding; a network whose
receptive field reaches less than ``tile_overlap / 4`` pixels is therefore reproduced exactly (to float rounding).
NDRNet's attention is global over each tile, so its tiled output differs slightly from the whole-image output
(see ``benchmarks/results/tiling.md``).

Tile starts cover the image exactly (the last tile ends at the border, overlapping its neighbour by more if needed);
tile sizes are rounded down to the network's ``pad_multiple`` (NDRNet: 8) and smaller remainders are reflect-padded to
it. When memory runs out, the tile size is halved and the image tried again, down to ``min_tile_size``.
"""
from __future__ import annotations

import logging
import math

import torch
from torch import nn

from ndr_plugin.archs.arch_utils import pad_to_multiple

logger = logging.getLogger('basicsr')

DEFAULT_MIN_TILE_SIZE = 64


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation failure on the GPU (``torch.OutOfMemoryError``) or the CPU."""
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    message = str(err)
    return isinstance(err, RuntimeError) and ('out of memory' in message or "can't allocate memory" in message)


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` every ``stride`` pixels; the last tile ends exactly at ``length``."""
    if length <= tile:
        return [0]
    return list(range(0, length - tile, stride)) + [length - tile]


def blend_ramp(overlap: int, device: torch.device) -> torch.Tensor:
    """Weights over one side's overlap, from the tile border inwards: 0 on the outer quarter, a Hann ramp, then 1."""
    margin = overlap // 4
    ramp_len = overlap - 2 * margin
    position = (torch.arange(ramp_len, device=device, dtype=torch.float64) + 0.5) / ramp_len
    ramp = 0.5 - 0.5 * torch.cos(math.pi * position)
    return torch.cat([torch.zeros(margin, device=device, dtype=torch.float64), ramp,
                      torch.ones(margin, device=device, dtype=torch.float64)]).float()


def axis_window(start: int, size: int, length: int, overlap: int, device: torch.device) -> torch.Tensor:
    """1-D window of one tile along one axis; ramps only on sides that border another tile."""
    window = torch.ones(size, device=device)
    if overlap > 0:
        ramp = blend_ramp(overlap, device)
        if start > 0:
            window[:overlap] = torch.minimum(window[:overlap], ramp)
        if start + size < length:
            window[size - overlap:] = torch.minimum(window[size - overlap:], ramp.flip(0))
    return window


def forward_padded(net: nn.Module, x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Runs ``net`` on ``x`` reflect-padded (right, bottom) to a multiple of ``multiple``, cropped back."""
    h, w = x.shape[-2:]
    if h % multiple == 0 and w % multiple == 0:
        return net(x)
    return net(pad_to_multiple(x, multiple))[..., :h, :w]


def _tiled_forward_once(net: nn.Module, x: torch.Tensor, tile_size: int, tile_overlap: int, multiple: int
                        ) -> torch.Tensor:
    h, w = x.shape[-2:]
    tile_h, tile_w = min(tile_size, h), min(tile_size, w)
    overlap = min(tile_overlap, tile_size // 2)
    stride = tile_size - overlap
    output, weight = None, None
    for top in tile_starts(h, tile_h, stride):
        for left in tile_starts(w, tile_w, stride):
            tile_out = forward_padded(net, x[..., top:top + tile_h, left:left + tile_w], multiple)
            if tile_out.shape[-2:] != (tile_h, tile_w):
                raise ValueError(f'tiled_forward needs a network whose output has the input size; a {tile_h}x{tile_w} '
                                 f'tile gave {tuple(tile_out.shape[-2:])}')
            if output is None:
                output = x.new_zeros((x.size(0), tile_out.size(1), h, w), dtype=torch.float32)
                weight = x.new_zeros((1, 1, h, w), dtype=torch.float32)
            tile_weight = (axis_window(top, tile_h, h, overlap, x.device)[:, None]
                           * axis_window(left, tile_w, w, overlap, x.device)[None, :])
            output[..., top:top + tile_h, left:left + tile_w] += tile_out.float() * tile_weight
            weight[..., top:top + tile_h, left:left + tile_w] += tile_weight
    return output.div_(weight).to(x.dtype)


def tiled_forward(net: nn.Module, x: torch.Tensor, tile_size: int | None, tile_overlap: int = 32,
                  min_tile_size: int = DEFAULT_MIN_TILE_SIZE) -> torch.Tensor:
    """Runs a same-size image-to-image network on overlapping tiles and blends the outputs.

    Args:
        net (nn.Module): Network mapping (B, C, H, W) to (B, C_out, H, W). Its ``pad_multiple`` attribute, if any, is
            the size multiple it needs (tile sizes are rounded down to it; remainders are reflect-padded).
        x (Tensor): Input batch (B, C, H, W).
        tile_size (int | None): Tile side in pixels. None: one whole-image forward, no memory fallback. A tile at
            least as large as the image also runs whole, but falls back to tiles if memory runs out.
        tile_overlap (int): Overlap between neighbouring tiles in pixels (clamped to half the tile). Default: 32.
        min_tile_size (int): Smallest tile the out-of-memory fallback tries before giving up. Default: 64.

    Returns:
        Tensor: (B, C_out, H, W), in ``x``'s dtype. Gradients are not tracked.
    """
    if tile_size is None:
        return net(x)
    if tile_size <= 0 or tile_overlap < 0:
        raise ValueError(f'tile_size must be positive and tile_overlap non-negative, got {tile_size}, {tile_overlap}')
    multiple = getattr(net, 'pad_multiple', 1)
    tile_size = max(tile_size - tile_size % multiple, multiple)
    while True:
        with torch.no_grad():
            try:
                return _tiled_forward_once(net, x, tile_size, tile_overlap, multiple)
            except (RuntimeError, MemoryError) as err:
                if not is_out_of_memory(err) or tile_size // 2 < max(min_tile_size, multiple):
                    raise
                failed_message = str(err).splitlines()[0]
        # Retried outside the except block, so the failed attempt's tensors (held by the traceback) are freed first.
        if x.is_cuda:
            torch.cuda.empty_cache()
        tile_size //= 2
        tile_size -= tile_size % multiple
        logger.warning(f'Out of memory ({failed_message}); retrying with tile size {tile_size}.')
