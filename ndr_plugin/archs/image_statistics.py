"""Image-level statistics for tiled inference.

Some layers reduce over every pixel of their input: MDTA's attention is the cosine similarity of channels over all
pixels, and the CP gates of degradation injection average the feature over the image, its rows and its columns. A tile
restored on its own therefore sees its own statistics, not the image's, and its output drifts from the whole-image
output wherever the tile's content differs from the image's (a tile of sky in a landscape).

Such layers hold an ``image_statistics`` attribute. While it is None (training, whole-image inference) they use their
input's own statistics. :func:`ndr_plugin.restore.tiling.tiled_forward` sets one :class:`ImageStatistics` on all of
them and runs the tiles in passes: a collecting pass adds up, layer by layer, each tile's sums over the pixels it owns
(the tiles' owned regions partition the padded image), and the next pass hands the finished sums of the whole image
back to every tile. Only sums over pixels are exchanged (a few numbers per channel, row or column), so memory stays
that of one tile. One collecting pass makes every layer's statistics those of the image as the first pass computed it;
the first layers are then exact and the error in later ones is second order.
"""
from __future__ import annotations

import torch
from torch import nn

from ndr_plugin.archs.fast_paths import channel_cosine_similarity

Region = tuple[int, int, int, int]  # (top, bottom, left, right), end-exclusive


class ImageStatistics:
    """Per-layer sums over the pixels of one (padded) image, gathered tile by tile.

    Args:
        height (int): Height of the padded image the tiles are cut from.
        width (int): Width of the padded image.
    """

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width
        self.collecting = False
        self.tile: Region | None = None  # tile in image pixels
        self.owned: Region | None = None  # the part of the image this tile's sums stand for
        self.usable = True  # False once a layer's grid does not divide the tile (then every layer keeps its own)
        self._gathering: dict[tuple[nn.Module, str], torch.Tensor] = {}
        self._image: dict[tuple[nn.Module, str], torch.Tensor] = {}

    def start_pass(self, collect: bool) -> None:
        """Begins a pass over the tiles; with ``collect`` the pass gathers fresh sums (used from the next pass)."""
        self.collecting = collect
        self._gathering = {}

    def finish_pass(self) -> None:
        if self.collecting:
            self._image = self._gathering
        self._gathering = {}

    def set_tile(self, tile: Region, owned: Region) -> None:
        self.tile, self.owned = tile, owned

    # ------------------------------------------------------------------------------------------------------------------
    # Geometry
    # ------------------------------------------------------------------------------------------------------------------
    def _grid(self, h: int, w: int) -> tuple[int, int] | None:
        """Pixels per feature cell (sy, sx) of a tile feature of size h x w, or None when it does not divide evenly."""
        top, bottom, left, right = self.tile
        tile_h, tile_w = bottom - top, right - left
        if tile_h % h or tile_w % w:
            return None
        sy, sx = tile_h // h, tile_w // w
        if any(v % s for v, s in ((top, sy), (self.owned[0], sy), (self.owned[1], sy), (self.height, sy),
                                  (left, sx), (self.owned[2], sx), (self.owned[3], sx), (self.width, sx))):
            return None
        return sy, sx

    def _locate(self, h: int, w: int) -> tuple[tuple[int, int], Region] | None:
        """(scale, owned region in the tile's feature cells) for a tile feature of size h x w."""
        grid = self._grid(h, w) if self.usable else None
        if grid is None:
            self.usable = False
            return None
        sy, sx = grid
        top, _, left, _ = self.tile
        o_top, o_bottom, o_left, o_right = self.owned
        return grid, ((o_top - top) // sy, (o_bottom - top) // sy, (o_left - left) // sx, (o_right - left) // sx)

    def _add(self, module: nn.Module, name: str, value: torch.Tensor, index: tuple | None = None,
             size: tuple[int, ...] | None = None) -> None:
        """Adds ``value`` to a gathered sum; with ``index``, into that slice of a zero-initialised sum of ``size``."""
        key = (module, name)
        value = value.float()
        if index is None:
            self._gathering[key] = value + self._gathering[key] if key in self._gathering else value
            return
        if key not in self._gathering:
            self._gathering[key] = value.new_zeros(size)
        self._gathering[key][index] += value

    def _finished(self, module: nn.Module, *names: str) -> list[torch.Tensor] | None:
        if not self.usable or any((module, name) not in self._image for name in names):
            return None
        return [self._image[(module, name)] for name in names]

    # ------------------------------------------------------------------------------------------------------------------
    # The statistics of the layers
    # ------------------------------------------------------------------------------------------------------------------
    def shared_cosine_similarity(self, module: nn.Module, q: torch.Tensor, k: torch.Tensor, h: int,
                                 w: int) -> torch.Tensor:
        """MDTA's channel cosine similarity over the image's pixels, for q and k of shape (B, heads, head_dim, h*w).

        Over the tile's own pixels in the first pass, or when the geometry does not allow sharing.
        """
        located = self._locate(h, w)
        if located is None:
            return channel_cosine_similarity(q, k)
        if self.collecting:
            _, (y0, y1, x0, x1) = located
            q_owned = q.unflatten(-1, (h, w))[..., y0:y1, x0:x1].flatten(-2).float()
            k_owned = k.unflatten(-1, (h, w))[..., y0:y1, x0:x1].flatten(-2).float()
            self._add(module, 'qk', q_owned @ k_owned.transpose(-2, -1))
            self._add(module, 'qq', q_owned.square().sum(-1))
            self._add(module, 'kk', k_owned.square().sum(-1))
        finished = self._finished(module, 'qk', 'qq', 'kk')
        if finished is None:
            return channel_cosine_similarity(q, k)
        qk, qq, kk = finished
        norms = qq.sqrt().clamp_min(1e-12).unsqueeze(-1) * kk.sqrt().clamp_min(1e-12).unsqueeze(-2)
        return (qk / norms).to(q.dtype)

    def shared_spatial_means(self, module: nn.Module, x: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Means of x (B, C, h, w) over the image, over each of its rows and over each of its columns, restricted to
        the tile's rows and columns: shapes (B, C, 1, 1), (B, C, h, 1) and (B, C, 1, w)."""
        h, w = x.shape[-2:]
        located = self._locate(h, w)
        if located is None:
            return spatial_means(x)
        (sy, sx), (y0, y1, x0, x1) = located
        rows, cols = self.height // sy, self.width // sx
        row0, col0 = self.tile[0] // sy, self.tile[2] // sx
        if self.collecting:
            owned = x[..., y0:y1, x0:x1].float()
            b, c = x.shape[:2]
            self._add(module, 'sum', owned.sum((2, 3)))
            self._add(module, 'row_sums', owned.sum(3), (Ellipsis, slice(row0 + y0, row0 + y1)), (b, c, rows))
            self._add(module, 'col_sums', owned.sum(2), (Ellipsis, slice(col0 + x0, col0 + x1)), (b, c, cols))
        finished = self._finished(module, 'sum', 'row_sums', 'col_sums')
        if finished is None:
            return spatial_means(x)
        total, row_sums, col_sums = finished
        return ((total / (rows * cols))[..., None, None].to(x.dtype),
                (row_sums[..., row0:row0 + h] / cols)[..., None].to(x.dtype),
                (col_sums[..., col0:col0 + w] / rows)[..., None, :].to(x.dtype))


def spatial_means(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Means of x (B, C, H, W) over all its pixels, over each row and over each column (keepdim)."""
    return x.mean((2, 3), keepdim=True), x.mean(3, keepdim=True), x.mean(2, keepdim=True)


def modules_with_image_statistics(net: nn.Module) -> list[nn.Module]:
    """The modules of ``net`` that can use image-level statistics (they define an ``image_statistics`` attribute)."""
    return [module for module in net.modules() if hasattr(module, 'image_statistics')]
