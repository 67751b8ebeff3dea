"""The modules that make NDR-Restore: the neural degradation representation (NDR), the degradation query (DQ) and
the degradation injection (DI) with its low-rank CP gate.

Yao et al., "Neural Degradation Representation Learning for All-In-One Image Restoration", IEEE TIP 2024
(arXiv 2310.12848); official code github.com/mdyao/NDR-Restore. Sizes the official code hard-codes (32 atoms of
128 dimensions, 64-channel degradation maps, CP rank 16) are arguments here, with those values as defaults.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ndr_plugin.archs.fast_paths import PointwiseConv2d, add_to_fresh, multiply_fresh, query_atoms, rank_sum
from ndr_plugin.archs.image_statistics import spatial_means

if TYPE_CHECKING:
    from ndr_plugin.archs.image_statistics import ImageStatistics


class NeuralDegradationRepresentation(nn.Module):
    """The NDR: a learnable dictionary of degradation atoms, shared by every degradation query.

    A parameter holder without ``forward``: the networks hand ``atoms`` to the queries. Being a module of its own
    keeps the NDR a named part of the network (state_dict key ``ndr.atoms``, its own parameter group).

    Args:
        num_atoms (int): Number of atoms. Default: 32.
        atom_dim (int): Length of each atom. Default: 128.
    """

    def __init__(self, num_atoms: int = 32, atom_dim: int = 128) -> None:
        super().__init__()
        self.atoms = nn.Parameter(torch.randn(num_atoms, atom_dim))


class DegradationQuery(nn.Module):
    """DQ: every pixel of an encoder feature queries the NDR atoms; the answer is a degradation map.

    feature -> 3x3 conv to ``degradation_dim`` -> 1x1 conv to a per-pixel query of ``atom_dim`` values ->
    softmax over atoms of temperature * (query . atom) -> weighted sum of the atoms -> two 1x1 projections.
    The atoms serve as both keys and values; the logits are neither normalised nor scaled by 1/sqrt(d).

    Args:
        in_channels (int): Channels of the encoder feature.
        degradation_dim (int): Channels of the degradation map. Default: 64.
        atom_dim (int): Length of the NDR atoms. Default: 128.
        use_dictionary (bool): False is our "no dictionary" ablation: the per-pixel query itself goes through the
            two projections, no atom is attended to (no temperature, no atom weights). Default: True.
    """

    def __init__(self, in_channels: int, degradation_dim: int = 64, atom_dim: int = 128,
                 use_dictionary: bool = True) -> None:
        super().__init__()
        self.use_dictionary = use_dictionary
        self.mapping = nn.Conv2d(in_channels, degradation_dim, kernel_size=3, padding=1, bias=False)
        self.to_query = PointwiseConv2d(degradation_dim, atom_dim)
        if use_dictionary:
            self.temperature = nn.Parameter(torch.ones(1))
        self.project_atoms = PointwiseConv2d(atom_dim, degradation_dim)
        self.project_out = PointwiseConv2d(degradation_dim, degradation_dim)

    def forward(self, feature: torch.Tensor, atoms: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the degradation map (B, degradation_dim, H, W) and the atom weights (B, num_atoms, H, W), or None
        without the dictionary."""
        query = self.to_query(self.mapping(feature))
        if not self.use_dictionary:
            return self.project_out(self.project_atoms(query)), None
        represented, atom_weights = query_atoms(query, atoms, self.temperature)
        return self.project_out(self.project_atoms(represented)), atom_weights


class LowRankCPGate(nn.Module):
    """Multiplies a feature by a rank-R CP tensor: gate[c, y, x] = mean_r a_r[c] * b_r[y] * c_r[x].

    The channel, height and width factors come from 1x1 convs (with sigmoids) on the feature averaged over the
    other axes, so the gate lies in (0, 1) and adapts to each image.

    Args:
        channels (int): Channels of the feature.
        rank (int): CP rank R. Default: 16.
        residual (bool): Return x + x * gate (official code before commit 7c0bd21) instead of x * gate.
    """

    def __init__(self, channels: int, rank: int = 16, residual: bool = False) -> None:
        super().__init__()
        self.rank = rank
        self.residual = residual
        self.channel = nn.Conv2d(channels, rank * channels, kernel_size=1)
        self.height = nn.Conv2d(channels, rank, kernel_size=1)
        self.width = nn.Conv2d(channels, rank, kernel_size=1)
        self.image_statistics: ImageStatistics | None = None  # set during tiled inference

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The gate (B, C, H, W) for x, from its means over the input's pixels (or the whole image's when tiled)."""
        b, c = x.shape[:2]
        if self.image_statistics is None:
            mean, row_means, col_means = spatial_means(x)
        else:
            mean, row_means, col_means = self.image_statistics.shared_spatial_means(self, x)
        channel = torch.sigmoid(self.channel(mean)).view(b, self.rank, c)
        height = torch.sigmoid(self.height(row_means))  # (B, R, H, 1)
        width = torch.sigmoid(self.width(col_means))  # (B, R, 1, W)
        spatial = height * width / self.rank  # (B, R, H, W)
        return rank_sum(channel, spatial, like=x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gated = multiply_fresh(self.gate(x), x)
        return add_to_fresh(gated, x) if self.residual else gated


class DegradationInjection(nn.Module):
    """DI: modulates a feature with a degradation map, out = f * CP(feature) + g.

    f and g are per-pixel scale and shift maps computed from the CP-gated degradation map; the official code applies
    one shared CP gate to the map for both (it calls the same module twice on the same input).

    Args:
        channels (int): Channels of the feature to modulate.
        degradation_dim (int): Channels of the degradation map. Default: 64.
        cp_rank (int): Rank of the CP gates. Default: 16.
        legacy_residuals (bool): Residual connections of the official code before commit 7c0bd21: the CP gates
            return x + x * gate and the output adds the input feature. Default: False.
    """

    def __init__(self, channels: int, degradation_dim: int = 64, cp_rank: int = 16,
                 legacy_residuals: bool = False) -> None:
        super().__init__()
        self.legacy_residuals = legacy_residuals
        self.feature_gate = LowRankCPGate(channels, cp_rank, residual=legacy_residuals)
        self.map_conv = PointwiseConv2d(degradation_dim, degradation_dim)
        self.map_gate = LowRankCPGate(degradation_dim, cp_rank, residual=legacy_residuals)
        self.scale = PointwiseConv2d(degradation_dim, channels)
        self.shift = PointwiseConv2d(degradation_dim, channels)

    def forward(self, feature: torch.Tensor, degradation_map: torch.Tensor) -> torch.Tensor:
        modulation = self.map_gate(self.map_conv(degradation_map))
        out = torch.addcmul(self.shift(modulation), self.scale(modulation), self.feature_gate(feature))
        return out + feature if self.legacy_residuals else out


class ConcatInjection(nn.Module):
    """Our "no CP injection" ablation of DI: the degradation map is concatenated to the feature and fused by a 1x1
    conv (out = W [feature, map]), where DI modulates the CP-gated feature with scale and shift maps.

    Args:
        channels (int): Channels of the feature.
        degradation_dim (int): Channels of the degradation map. Default: 64.
        residual (bool): Add the input feature to the output, as DI does with ``legacy_residuals``. Default: False.
    """

    def __init__(self, channels: int, degradation_dim: int = 64, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        self.fuse = PointwiseConv2d(channels + degradation_dim, channels)

    def forward(self, feature: torch.Tensor, degradation_map: torch.Tensor) -> torch.Tensor:
        out = self.fuse(torch.cat([feature, degradation_map], dim=1))
        return out + feature if self.residual else out
