"""Memory-bounded inference by overlapping tiles (re-exported by :mod:`ndr_plugin.inference`).

Large photos do not fit a Restormer-style network in one pass (Restormer issues #29 and #104, PromptIR issue #2), so the
image is cut into ``tile_size`` squares that overlap by ``tile_overlap`` pixels, each square is restored on its own,
and the outputs are blended with a separable window:

* on a side that borders another tile, the weight is 0 over the outer quarter of the overlap, rises as a raised cosine
  (Hann ramp) over its middle half, and is 1 beyond; on a side at the image border it is 1 throughout;
* the tiles covering any pixel always have positive total weight, and the output is the weighted mean.

The zero margin discards each tile's border pixels, the ones most affected by the tile's own padding; a network whose
receptive field reaches less than ``tile_overlap / 4`` pixels is therefore reproduced exactly (to float rounding).

Layers that reduce over every pixel (NDRNet's and PromptIR's transposed attention, the CP gates of degradation
injection) would see only their tile. Before the pass that produces the output, ``statistics_passes`` passes over the
tiles add up those layers' statistics for the whole image (:mod:`ndr_plugin.archs.image_statistics`); the output pass
then gives every tile the image's statistics. One pass brings the demo model's tiled output from 59.4 to 65.5 dB of
the whole-image output at 4 MP (``benchmarks/results/tiling_demo.md``; 39.7 to 53.0 dB for the same demo trained with
plain L1); what remains comes from convolutions reaching past the overlap.

The image is first padded to the network's ``pad_multiple`` (NDRNet: 8) as a whole-image forward pads it, and the
tiles are cut from the padded image: every tile is a multiple of that size and sits on the same downsampled grids as
the whole image. Tile starts cover the padded image exactly (the last tile ends at the border, overlapping its
neighbour by more if needed), and the stride is rounded down to the multiple. When memory runs out, the tile size is
halved and the image tried again, down to ``min_tile_size``.
"""
from __future__ import annotations

import logging
import math

import torch
from torch import nn

from ndr_plugin.archs.arch_utils import pad_to_multiple
from ndr_plugin.archs.image_statistics import ImageStatistics, modules_with_image_statistics

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


def tile_stride(tile_size: int, tile_overlap: int, multiple: int = 1) -> int:
    """Distance between tile starts: the tile minus its overlap (clamped to half the tile), rounded down to
    ``multiple``."""
    overlap = min(tile_overlap, tile_size // 2)
    return max((tile_size - overlap) // multiple * multiple, multiple)


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


def owned_spans(starts: list[int], tile: int, length: int, multiple: int) -> list[tuple[int, int]]:
    """Splits [0, length) among tiles starting at ``starts``: each tile owns up to the middle of its overlap with the
    next one (rounded down to ``multiple``, so the split falls on a cell of every downsampled feature grid)."""
    bounds = [0] + [max(nxt, (nxt + start + tile) // 2 // multiple * multiple)
                    for start, nxt in zip(starts, starts[1:])] + [length]
    return list(zip(bounds, bounds[1:]))


def _tiled_forward_once(net: nn.Module, x: torch.Tensor, tile_size: int, tile_overlap: int, multiple: int,
                        statistics_passes: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    # Tiles are cut from the image padded as a whole-image forward pads it, so every tile is a multiple of the
    # network's size and lies on the same downsampled grids as the whole image.
    padded = pad_to_multiple(x, multiple)
    height, width = padded.shape[-2:]
    tile_h, tile_w = min(tile_size, height), min(tile_size, width)
    overlap = min(tile_overlap, tile_size // 2)
    stride = tile_stride(tile_size, tile_overlap, multiple)
    rows, cols = tile_starts(height, tile_h, stride), tile_starts(width, tile_w, stride)
    tiles = [(top, left, row_span, col_span)
             for top, row_span in zip(rows, owned_spans(rows, tile_h, height, multiple))
             for left, col_span in zip(cols, owned_spans(cols, tile_w, width, multiple))]
    layers = modules_with_image_statistics(net) if len(tiles) > 1 and statistics_passes > 0 else []
    statistics = ImageStatistics(height, width) if layers else None

    def forward(top: int, left: int, row_span: tuple[int, int], col_span: tuple[int, int]) -> torch.Tensor:
        if statistics is not None:
            statistics.set_tile((top, top + tile_h, left, left + tile_w), (*row_span, *col_span))
        return net(padded[..., top:top + tile_h, left:left + tile_w])

    for layer in layers:
        layer.image_statistics = statistics
    try:
        if statistics is not None:
            for _ in range(statistics_passes):
                statistics.start_pass(collect=True)
                for tile in tiles:
                    forward(*tile)
                statistics.finish_pass()
            statistics.start_pass(collect=False)
        output, weight = None, None
        for tile in tiles:
            top, left = tile[:2]
            tile_out = forward(*tile)
            if tile_out.shape[-2:] != (tile_h, tile_w):
                raise ValueError(f'tiled_forward needs a network whose output has the input size; a {tile_h}x{tile_w} '
                                 f'tile gave {tuple(tile_out.shape[-2:])}')
            if output is None:
                output = x.new_zeros((x.size(0), tile_out.size(1), height, width), dtype=torch.float32)
                weight = x.new_zeros((1, 1, height, width), dtype=torch.float32)
            tile_weight = (axis_window(top, tile_h, height, overlap, x.device)[:, None]
                           * axis_window(left, tile_w, width, overlap, x.device)[None, :])
            output[..., top:top + tile_h, left:left + tile_w] += tile_out.float() * tile_weight
            weight[..., top:top + tile_h, left:left + tile_w] += tile_weight
    finally:
        for layer in layers:
            layer.image_statistics = None
    return output.div_(weight)[..., :h, :w].to(x.dtype)


def tiled_forward(net: nn.Module, x: torch.Tensor, tile_size: int | None, tile_overlap: int = 32,
                  min_tile_size: int = DEFAULT_MIN_TILE_SIZE, statistics_passes: int = 1) -> torch.Tensor:
    """Runs a same-size image-to-image network on overlapping tiles and blends the outputs.

    Args:
        net (nn.Module): Network mapping (B, C, H, W) to (B, C_out, H, W). Its ``pad_multiple`` attribute, if any, is
            the size multiple it needs (tile sizes are rounded down to it; remainders are reflect-padded).
        x (Tensor): Input batch (B, C, H, W).
        tile_size (int | None): Tile side in pixels. None: one whole-image forward, no memory fallback. A tile at
            least as large as the image also runs whole, but falls back to tiles if memory runs out.
        tile_overlap (int): Overlap between neighbouring tiles in pixels (clamped to half the tile). Default: 32.
        min_tile_size (int): Smallest tile the out-of-memory fallback tries before giving up. Default: 64.
        statistics_passes (int): Passes over the tiles that gather image-level statistics for the layers that reduce
            over all pixels (:mod:`ndr_plugin.archs.image_statistics`) before the pass that produces the output; each
            costs one more forward per tile. 0: every tile uses its own statistics. Default: 1.

    Returns:
        Tensor: (B, C_out, H, W), in ``x``'s dtype. Gradients are not tracked.
    """
    if tile_size is None:
        return net(x)
    if tile_size <= 0 or tile_overlap < 0:
        raise ValueError(f'tile_size must be positive and tile_overlap non-negative, got {tile_size}, {tile_overlap}')
    if statistics_passes < 0:
        raise ValueError(f'statistics_passes must be non-negative, got {statistics_passes}')
    multiple = getattr(net, 'pad_multiple', 1)
    tile_size = max(tile_size - tile_size % multiple, multiple)
    while True:
        with torch.no_grad():
            try:
                return _tiled_forward_once(net, x, tile_size, tile_overlap, multiple, statistics_passes)
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
