"""Restormer building blocks shared by the NDR networks.

After Restormer (Zamir et al., CVPR 2022, github.com/swz30/Restormer) as used by the official NDR-Restore code
(github.com/mdyao/NDR-Restore): channel layer norm, multi-Dconv head transposed attention (MDTA), gated-Dconv
feed-forward network (GDFN), the transformer block combining them, and pixel-(un)shuffle resizing. Steps that have
a faster equivalent (layer norm, cosine similarity, MDTA's output projection, GDFN's branches, 1x1 convs) go through
:mod:`ndr_plugin.archs.fast_paths`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from ndr_plugin.archs.fast_paths import (PointwiseConv2d, add_to_fresh, attend_and_project, channel_cosine_similarity,
                                         channel_layer_norm, gated_branches, multiply_fresh, query_key_value)
from ndr_plugin.archs.recompute import RecomputableBlock

if TYPE_CHECKING:
    from ndr_plugin.archs.image_statistics import ImageStatistics


class LayerNorm2d(nn.Module):
    """Layer normalisation over the channels of every pixel of a (B, C, H, W) tensor.

    Restormer's 'WithBias' variant: (x - mean) / sqrt(var + eps) * weight + bias, biased variance. Keeps the memory
    layout of its input.

    Args:
        num_channels (int): Channel number C.
        eps (float): Added to the variance. Default: 1e-5.
    """

    def __init__(self, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_layer_norm(x, self.weight, self.bias, self.eps)


class MDTA(nn.Module):
    """Multi-Dconv head transposed attention: attention across channels, linear in the number of pixels.

    q, k, v = dwconv3x3(conv1x1(x)) split into heads; out = conv1x1(softmax(temperature * cos(q, k)) @ v), where
    cos(q, k) is the cosine similarity of the channels of q and k over the pixels.

    Args:
        dim (int): Channel number.
        num_heads (int): Number of heads; ``dim`` must be divisible by it.
        bias (bool): Whether the convolutions have biases.
    """

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'MDTA: dim={dim} is not divisible by num_heads={num_heads}')
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = PointwiseConv2d(dim, dim * 3, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)
        self.image_statistics: ImageStatistics | None = None  # set during tiled inference

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        q, k, v = query_key_value(x, self.qkv, self.qkv_dwconv, self.num_heads)  # (B, heads, head_dim, HW) each
        attn = torch.softmax(self._cosine_similarity(q, k, h, w) * self.temperature, dim=-1)  # (B, heads, hd, hd)
        return attend_and_project(attn, v, self.project_out, h, w)

    def _cosine_similarity(self, q: torch.Tensor, k: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Over the input's pixels, or over the whole image's during tiled inference."""
        if self.image_statistics is None:
            return channel_cosine_similarity(q, k)
        return self.image_statistics.shared_cosine_similarity(self, q, k, h, w)


class GDFN(nn.Module):
    """Gated-Dconv feed-forward network: GELU(dwconv(a)) * dwconv(b) between two 1x1 projections.

    Args:
        dim (int): Channel number.
        ffn_expansion_factor (float): Hidden channels are ``int(dim * ffn_expansion_factor)``.
        bias (bool): Whether the convolutions have biases.
    """

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = PointwiseConv2d(dim, hidden * 2, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = PointwiseConv2d(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = gated_branches(x, self.project_in, self.dwconv)
        return self.project_out(multiply_fresh(F.gelu(gate), value))


class TransformerBlock(RecomputableBlock):
    """Restormer transformer block: x + MDTA(LN(x)), then x + GDFN(LN(x)).

    Recomputed in the backward when its network is built with ``checkpoint_blocks`` (:mod:`ndr_plugin.archs.recompute`).

    Args:
        dim (int): Channel number.
        num_heads (int): MDTA heads.
        ffn_expansion_factor (float): GDFN expansion.
        bias (bool): Whether the convolutions have biases.
    """

    def __init__(self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.attn = MDTA(dim, num_heads, bias)
        self.norm2 = LayerNorm2d(dim)
        self.ffn = GDFN(dim, ffn_expansion_factor, bias)

    def block_forward(self, x: torch.Tensor) -> torch.Tensor:
        x = add_to_fresh(self.attn(self.norm1(x)), x)
        return add_to_fresh(self.ffn(self.norm2(x)), x)


def transformer_stage(dim: int, num_blocks: int, num_heads: int, ffn_expansion_factor: float,
                      bias: bool) -> nn.Sequential:
    """``num_blocks`` transformer blocks in sequence."""
    return nn.Sequential(*[TransformerBlock(dim, num_heads, ffn_expansion_factor, bias) for _ in range(num_blocks)])


class Downsample(nn.Module):
    """Halves the resolution and doubles the channels: 3x3 conv to C/2, then pixel-unshuffle by 2.

    Args:
        num_channels (int): Input channel number C (even).
    """

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(num_channels, num_channels // 2, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(self.conv(x), 2)


class Upsample(nn.Module):
    """Doubles the resolution and halves the channels: 3x3 conv to 2C, then pixel-shuffle by 2.

    Args:
        num_channels (int): Input channel number C.
    """

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(num_channels, num_channels * 2, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), 2)
