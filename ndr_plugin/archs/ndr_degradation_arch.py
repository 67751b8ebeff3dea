"""NDRDegradationNet: NDR-Degrad, the auxiliary network that degrades a clean image as the NDR maps describe.

Yao et al., "Neural Degradation Representation Learning for All-In-One Image Restoration", IEEE TIP 2024
(arXiv 2310.12848); official code github.com/mdyao/NDR-Restore (``DegradationNet`` in ``models/modules/NDR.py``).
The refinement is RCAN's residual group (Zhang et al., ECCV 2018) as BasicSR implements it.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from basicsr.archs.rcan_arch import ResidualGroup
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F

from ndr_plugin.archs.arch_utils import check_image, pad_to_multiple
from ndr_plugin.archs.fast_paths import PointwiseConv2d, preferred_layout
from ndr_plugin.archs.ndr_modules import DegradationInjection
from ndr_plugin.archs.recompute import RecomputableBlock, check_flag, set_block_recompute
from ndr_plugin.archs.restormer_blocks import Downsample, Upsample


class ResidualDoubleConv(RecomputableBlock):
    """x + ReLU(conv3x3(ReLU(conv3x3(x)))), convolutions with biases.

    Args:
        num_channels (int): Channel number.
    """

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)

    def block_forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.relu(self.conv2(F.relu(self.conv1(x), inplace=True)), inplace=True)


@ARCH_REGISTRY.register()
class NDRDegradationNet(nn.Module):
    """Residual double-conv U-Net mapping a clean image to its degraded version, steered by NDRNet's degradation maps.

    The skip features of levels 1-3 are modulated by degradation injection with the maps that
    ``NDRNet(lq, return_degradation=True)`` returns for the degraded input; a channel-attention residual group refines
    the decoder output, and the input is added back (global residual).

    Args:
        in_channels (int): Clean image channels. Default: 3.
        out_channels (int): Degraded image channels; must equal ``in_channels`` (global residual). Default: 3.
        dim (int): Channels at level 1; level i has dim * 2^(i-1). Default: 48.
        degradation_dim (int): Channels of the degradation maps (NDRNet's ``degradation_dim``). Default: 64.
        cp_rank (int): Rank of the low-rank CP gates. Default: 16.
        num_refinement_blocks (int): Residual channel-attention blocks in the refinement group. Default: 1.
        attention_reduction (int): Channel-attention squeeze factor. Default: 16.
        legacy_residuals (bool): Injection residuals of the official code before commit 7c0bd21 (CP gate x + x*T,
            injection f*x + g + x). Default: False.
        checkpoint_blocks (bool): Recompute the double-conv blocks in the backward instead of storing their
            activations (ours; :mod:`ndr_plugin.archs.recompute`). Default: False.
    """

    pad_multiple = 8

    def __init__(self, in_channels: int = 3, out_channels: int = 3, dim: int = 48, degradation_dim: int = 64,
                 cp_rank: int = 16, num_refinement_blocks: int = 1, attention_reduction: int = 16,
                 legacy_residuals: bool = False, checkpoint_blocks: bool = False) -> None:
        super().__init__()
        if in_channels != out_channels:
            raise ValueError('NDRDegradationNet adds its input to its output, so in_channels and out_channels must '
                             f'be equal, got {in_channels} and {out_channels}')
        if dim * 2 < attention_reduction:
            raise ValueError(f'NDRDegradationNet: attention_reduction={attention_reduction} leaves no channels at '
                             f'{dim * 2} refinement channels')
        self.in_channels = in_channels
        self.degradation_dim = degradation_dim
        dims = [dim, dim * 2, dim * 4, dim * 8]

        self.embed = nn.Conv2d(in_channels, dim, kernel_size=3, padding=1)
        # Encoder
        self.encoder1 = ResidualDoubleConv(dims[0])
        self.down1 = Downsample(dims[0])
        self.encoder2 = ResidualDoubleConv(dims[1])
        self.down2 = Downsample(dims[1])
        self.encoder3 = ResidualDoubleConv(dims[2])
        self.down3 = Downsample(dims[2])
        self.latent = ResidualDoubleConv(dims[3])
        # Degradation injection into the skips of levels 1-3
        self.degradation_injections = nn.ModuleList(
            DegradationInjection(c, degradation_dim, cp_rank, legacy_residuals) for c in dims[:3])
        # Decoder: concat [skip, upsampled], 1x1 reduce, double conv
        self.up3 = Upsample(dims[3])
        self.reduce3 = PointwiseConv2d(dims[3], dims[2], bias=False)
        self.decoder3 = ResidualDoubleConv(dims[2])
        self.up2 = Upsample(dims[2])
        self.reduce2 = PointwiseConv2d(dims[2], dims[1], bias=False)
        self.decoder2 = ResidualDoubleConv(dims[1])
        self.up1 = Upsample(dims[1])
        self.reduce1 = PointwiseConv2d(dims[1], dims[1], bias=False)
        self.decoder1 = ResidualDoubleConv(dims[1])
        # Refinement and output
        self.refinement = ResidualGroup(dims[1], num_refinement_blocks, squeeze_factor=attention_reduction)
        self.output = nn.Conv2d(dims[1], out_channels, kernel_size=3, padding=1)
        set_block_recompute(self, check_flag(checkpoint_blocks, 'NDRDegradationNet'))

    def _check_maps(self, maps: Sequence[torch.Tensor], padded: torch.Tensor) -> None:
        if not isinstance(maps, (list, tuple)) or len(maps) != 3:
            raise ValueError('NDRDegradationNet: maps must be the list of 3 degradation maps that '
                             'NDRNet(lq, return_degradation=True) returns')
        b, _, hp, wp = padded.shape
        for level, degradation_map in enumerate(maps):
            expected = (b, self.degradation_dim, hp >> level, wp >> level)
            if tuple(degradation_map.shape) != expected:
                raise ValueError(f'NDRDegradationNet: degradation map {level + 1} has shape '
                                 f'{tuple(degradation_map.shape)}, expected {expected} for a clean image of shape '
                                 f'{tuple(padded.shape)} after padding to a multiple of {self.pad_multiple}; the '
                                 'maps must come from the degraded image of the same size')

    def forward(self, clean: torch.Tensor, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """Synthesises the degraded version (B, out_channels, H, W) of ``clean`` (B, in_channels, H, W)."""
        check_image(clean, self.in_channels, 'NDRDegradationNet', 'clean')
        h, w = clean.shape[-2:]
        padded = preferred_layout(pad_to_multiple(clean, self.pad_multiple))
        self._check_maps(maps, padded)
        feature1 = self.encoder1(self.embed(padded))
        feature2 = self.encoder2(self.down1(feature1))
        feature3 = self.encoder3(self.down2(feature2))
        latent = self.latent(self.down3(feature3))
        skips = [inject(feature, degradation_map) for inject, feature, degradation_map
                 in zip(self.degradation_injections, (feature1, feature2, feature3), maps)]
        decoded = self.decoder3(self.reduce3(torch.cat([skips[2], self.up3(latent)], dim=1)))
        decoded = self.decoder2(self.reduce2(torch.cat([skips[1], self.up2(decoded)], dim=1)))
        decoded = self.decoder1(self.reduce1(torch.cat([skips[0], self.up1(decoded)], dim=1)))
        degraded = self.output(self.refinement(decoded)) + padded
        return degraded[..., :h, :w].contiguous()
