"""Memory-bounded inference by overlapping tiles (re-exported by :mod:`ndr_plugin.restore.restorer`).

Large photos do not fit a Restormer-style network in one pass (Restormer issues #29 and #104, PromptIR issue #2), so the
image is cut into squares of :attr:`TileSettings.size` pixels that overlap by :attr:`TileSettings.overlap`, each square
is restored on its own, and the outputs are blended with a separable window:

* on a side that borders another tile, the weight is 0 over the outer quarter of the overlap, rises as a raised cosine
  (Hann ramp) over its middle half, and is 1 beyond; on a side at the image border it is 1 throughout;
* the tiles covering any pixel always have positive total weight (checked for every layout before any forward), and
  the output is the weighted mean.

The zero margin discards each tile's border pixels, the ones most affected by the tile's own padding; a network whose
receptive field reaches less than ``overlap / 4`` pixels is therefore reproduced exactly (to float rounding).

Layers that reduce over every pixel (NDRNet's and PromptIR's transposed attention, the CP gates of degradation
injection) would see only their tile. Before the pass that produces the output, :attr:`TileSettings.passes` passes
over the tiles add up those layers' statistics for the whole image (:mod:`ndr_plugin.archs.image_statistics`); the
output pass then gives every tile the image's statistics. How close that brings the tiled output to the whole-image
one is measured by ``benchmarks/tiling.py`` (``benchmarks/results/tiling*.md``); what remains comes from convolutions
reaching past the overlap.

The image is first padded to the network's ``pad_multiple`` (NDRNet: 8) as a whole-image forward pads it, and the
tiles are cut from the padded image: every tile is a multiple of that size and sits on the same downsampled grids as
the whole image. Tile starts cover the padded image exactly (the last tile ends at the border, overlapping its
neighbour by more if needed), and the stride is rounded down to the multiple. A tile must therefore exceed the overlap
by at least one multiple (:meth:`TileSettings.size_for`): smaller tiles would leave pixels that no tile weights. When
memory runs out, the tile size is halved and the image tried again, down to ``min_tile_size``.

:class:`TileSettings` is the one place tile options are checked: ``ndr-restore --tile/--tile-overlap/--tile-passes``,
``Restorer(tile=, tile_overlap=, tile_passes=)`` and ``val.tile: {size, overlap, passes}`` all build one.
"""
from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass, field

import torch
from torch import nn

from ndr_plugin.archs.arch_utils import pad_to_multiple
from ndr_plugin.archs.image_statistics import ImageStatistics, modules_with_image_statistics

logger = logging.getLogger('basicsr')

DEFAULT_MIN_TILE_SIZE = 64
DEFAULT_OVERLAP = 32
DEFAULT_PASSES = 1
# How the three settings are spelled where they come from, so that errors name what the user wrote.
API_NAMES = ('tile', 'tile_overlap', 'tile_passes')


@dataclass(frozen=True)
class TileSettings:
    """Tiled inference settings, checked once here.

    Args:
        size (int | None): Tile side in pixels; 0 or None: the whole image in one forward. Default: 0.
        overlap (int): Overlap of neighbouring tiles in pixels; smaller than ``size``. Default: 32.
        passes (int): Passes over the tiles that gather image-level statistics before the output pass; 0: every tile
            uses its own. Default: 1.
        names (tuple[str, str, str]): How the caller spells size, overlap and passes (``--tile``, ``val.tile.size``,
            ...), used in error messages only. Default: the :class:`~ndr_plugin.restore.restorer.Restorer` keywords.
    """

    size: int = 0
    overlap: int = DEFAULT_OVERLAP
    passes: int = DEFAULT_PASSES
    names: tuple[str, str, str] = field(default=API_NAMES, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.size is None:
            object.__setattr__(self, 'size', 0)
        for value, name in zip((self.size, self.overlap, self.passes), self.names):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f'{name} must be a non-negative integer, got {value!r}')
        if self.size and self.overlap >= self.size:
            raise ValueError(f'{self.names[0]} {self.size} is too small for {self.names[1]} {self.overlap}: a tile '
                             "must exceed the overlap by the network's size multiple (NDRNet: 8); use a larger "
                             f'{self.names[0]}, a smaller {self.names[1]}, or {self.names[0]} 0 for the whole image')

    @property
    def whole_image(self) -> bool:
        return self.size == 0

    def smallest_size(self, multiple: int) -> int:
        """The smallest tile that still overlaps by ``overlap`` with a stride of at least one ``multiple``."""
        return -(-(self.overlap + multiple) // multiple) * multiple

    def size_for(self, multiple: int) -> int:
        """The tile size for a network that needs multiples of ``multiple``: ``size`` rounded down to it.

        Raises:
            ValueError: the rounded tile minus the overlap is less than one multiple. The stride would then be
                rounded up to the whole tile, and the blend window's zero margins would leave pixels with no weight.
        """
        size = self.size - self.size % multiple
        if size - self.overlap < multiple:
            raise ValueError(f'{self.names[0]} {self.size} is too small for {self.names[1]} {self.overlap}: tiles are '
                             f'multiples of {multiple} px for this network and must exceed the overlap by one '
                             'multiple, '
                             f'so use {self.names[0]} >= {self.smallest_size(multiple)}, a smaller {self.names[1]}, '
                             f'or {self.names[0]} 0 for the whole image')
        return size



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
    """Distance between tile starts: the tile minus its overlap, rounded down to ``multiple`` (at least one multiple
    for settings accepted by :meth:`TileSettings.size_for`)."""
    return (tile_size - tile_overlap) // multiple * multiple


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


def check_coverage(starts: list[int], size: int, length: int, overlap: int) -> None:
    """Raises when some pixel of an axis gets no weight from any tile (the blend would divide 0 by 0)."""
    total = sum(torch.nn.functional.pad(axis_window(start, size, length, overlap, torch.device('cpu')),
                                        (start, length - start - size)) for start in starts)
    if not bool((total > 0).all()):
        raise RuntimeError(f'tile layout {starts} (tile {size}, overlap {overlap}, length {length}) leaves pixels '
                           'with zero blend weight')


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


def _tiled_forward_once(net: nn.Module, x: torch.Tensor, tile_size: int, overlap: int, multiple: int,
                        statistics_passes: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    # Tiles are cut from the image padded as a whole-image forward pads it, so every tile is a multiple of the
    # network's size and lies on the same downsampled grids as the whole image.
    padded = pad_to_multiple(x, multiple)
    height, width = padded.shape[-2:]
    tile_h, tile_w = min(tile_size, height), min(tile_size, width)
    stride = tile_stride(tile_size, overlap, multiple)
    rows, cols = tile_starts(height, tile_h, stride), tile_starts(width, tile_w, stride)
    check_coverage(rows, tile_h, height, overlap)
    check_coverage(cols, tile_w, width, overlap)
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


def tiled_forward(net: nn.Module, x: torch.Tensor, tile: TileSettings | None,
                  min_tile_size: int = DEFAULT_MIN_TILE_SIZE) -> torch.Tensor:
    """Runs a same-size image-to-image network on overlapping tiles and blends the outputs.

    Args:
        net (nn.Module): Network mapping (B, C, H, W) to (B, C_out, H, W). Its ``pad_multiple`` attribute, if any, is
            the size multiple it needs (tile sizes are rounded down to it; remainders are reflect-padded).
        x (Tensor): Input batch (B, C, H, W).
        tile (TileSettings | None): None or size 0: one whole-image forward, no memory fallback. A tile at least as
            large as the image also runs whole, but falls back to tiles if memory runs out.
        min_tile_size (int): Smallest tile the out-of-memory fallback tries before giving up. Default: 64.

    Returns:
        Tensor: (B, C_out, H, W), in ``x``'s dtype. Gradients are not tracked.
    """
    if tile is None or tile.whole_image:
        return net(x)
    multiple = getattr(net, 'pad_multiple', 1)
    tile_size = tile.size_for(multiple)
    smallest = max(min_tile_size, tile.smallest_size(multiple))
    while True:
        with torch.no_grad():
            try:
                return _tiled_forward_once(net, x, tile_size, tile.overlap, multiple, tile.passes)
            except (RuntimeError, MemoryError) as err:
                if not is_out_of_memory(err) or (tile_size // 2) // multiple * multiple < smallest:
                    raise
                failed_message = str(err).splitlines()[0]
        # Retried outside the except block, so the failed attempt's tensors (held by the traceback) are freed first.
        if x.is_cuda:
            torch.cuda.empty_cache()
        tile_size = (tile_size // 2) // multiple * multiple
        logger.warning(f'Out of memory ({failed_message}); retrying with tile size {tile_size}.')
