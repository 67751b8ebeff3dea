"""Restormer building blocks shared by the NDR networks.

After Restormer (Zamir et al., CVPR 2022, github.com/swz30/Restormer) as used by the official NDR-Restore code
(github.com/mdyao/NDR-Restore): channel layer norm, multi-Dconv head transposed attention (MDTA), gated-Dconv
feed-forward network (GDFN), the transformer block combining them, and pixel-(un)shuffle resizing.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from ndr_plugin.archs.arch_utils import PointwiseConv2d, is_channels_last, pointwise_conv

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
        if is_channels_last(x):  # the channels are contiguous: one fused kernel
            return F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias,
                                self.eps).permute(0, 3, 1, 2)
        var, mean = torch.var_mean(x, dim=1, keepdim=True, unbiased=False)
        normed = (x - mean) * torch.rsqrt(var + self.eps)
        return torch.addcmul(self.bias.view(-1, 1, 1), normed, self.weight.view(-1, 1, 1))


class MDTA(nn.Module):
    """Multi-Dconv head transposed attention: attention across channels, linear in the number of pixels.

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
        b, c, h, w = x.shape
        heads, head_dim = self.num_heads, c // self.num_heads
        qkv = self.qkv_dwconv(self.qkv(x))
        channels_last = is_channels_last(qkv)
        # (B, 3C, HW) view of either memory layout
        qkv = qkv.permute(0, 2, 3, 1).reshape(b, h * w, 3 * c).transpose(1, 2) if channels_last else \
            qkv.reshape(b, 3 * c, h * w)
        q, k, v = qkv.unflatten(1, (3, heads, head_dim)).unbind(1)
        if self.image_statistics is None:
            cosine = self._cosine_similarity(q, k)
        else:
            cosine = self.image_statistics.shared_cosine_similarity(self, q, k, h, w, self._cosine_similarity)
        attn = torch.softmax(cosine * self.temperature, dim=-1)  # (B, heads, hd, hd)
        # project_out(attn @ v) as one product: fold the 1x1 projection into the block-diagonal attention matrix.
        weight = self.project_out.weight.view(c, heads, head_dim)
        mixing = torch.einsum('ohi,bhij->bohj', weight, attn).reshape(b, c, c)
        values = v.reshape(b, c, h * w)
        if channels_last:  # (HW x C) @ (C x C) keeps the pixels-by-channels layout
            out = (values.transpose(1, 2) @ mixing.transpose(1, 2)).view(b, h, w, c).permute(0, 3, 1, 2)
        else:
            out = (mixing @ values).view(b, c, h, w)
        if self.project_out.bias is not None:
            out = out + self.project_out.bias.view(c, 1, 1)
        return out

    @staticmethod
    def _cosine_similarity(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Cosine similarity between the channels of q and k (B, heads, head_dim, HW), i.e. L2-normalised q @ k^T."""
        if q.dtype != torch.float32:
            # Reduced precision: normalise the operands first, as the official code does, to keep q @ k^T in range.
            return F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        # float32: divide the small (head_dim x head_dim) product by the norms instead of normalising the two large
        # (head_dim x HW) operands.
        q_norm = q.square().sum(-1).sqrt().clamp_min(1e-12)
        k_norm = k.square().sum(-1).sqrt().clamp_min(1e-12)
        return (q @ k.transpose(-2, -1)) / (q_norm.unsqueeze(-1) * k_norm.unsqueeze(-2))


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
        if is_channels_last(x):
            # Channel halves of a channels-last tensor are strided, which makes GELU several times slower; compute
            # the two halves as separate tensors with slices of the same weights instead.
            hidden = self.project_out.in_channels
            gate, value = self._half(x, slice(0, hidden)), self._half(x, slice(hidden, 2 * hidden))
        else:
            gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate).mul_(value))

    def _half(self, x: torch.Tensor, part: slice) -> torch.Tensor:
        project_bias = None if self.project_in.bias is None else self.project_in.bias[part]
        dwconv_bias = None if self.dwconv.bias is None else self.dwconv.bias[part]
        projected = pointwise_conv(x, self.project_in.weight[part], project_bias)
        return F.conv2d(projected, self.dwconv.weight[part], dwconv_bias, padding=1, groups=projected.shape[1])


class TransformerBlock(nn.Module):
    """Restormer transformer block: x + MDTA(LN(x)), then x + GDFN(LN(x)).

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In-place residual additions: fewer fresh activation buffers (each costs page faults on CPU); addition
        # needs neither operand for its gradient, so autograd is unaffected.
        x = self.attn(self.norm1(x)).add_(x)
        return self.ffn(self.norm2(x)).add_(x)


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
