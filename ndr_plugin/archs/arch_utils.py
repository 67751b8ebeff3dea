"""Input checks, padding, memory layout and 1x1 convolutions shared by the networks."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def check_image(x: torch.Tensor, channels: int, owner: str, name: str = 'input') -> None:
    """Raises a ValueError unless ``x`` is a (B, channels, H, W) floating-point tensor."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f'{owner}: {name} must be a torch.Tensor, got {type(x).__name__}')
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f'{owner}: {name} must have shape (B, {channels}, H, W), got {tuple(x.shape)}; '
                         f'set the in_channels option to the channel count of your images')
    if not x.is_floating_point():
        raise ValueError(f'{owner}: {name} must be a floating-point tensor, got {x.dtype}')


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pads the bottom and right of a (B, C, H, W) tensor so that H and W are multiples of ``multiple``.

    Reflect padding, as the official test code does; replicate padding where the image is too small to reflect
    (padding >= size).
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = 'reflect' if pad_h < h and pad_w < w else 'replicate'
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether the channels of a (B, C, H, W) tensor are its innermost (stride-1) axis."""
    return x.stride(1) == 1


def preferred_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the memory layout the networks run fastest in on its device: channels-last on CPU (oneDNN's
    depthwise and pointwise convolutions and the channel layer norm all favour it), unchanged elsewhere."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == 'cpu' else x


def pointwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """1x1 convolution. For channels-last float32 CPU tensors it calls oneDNN directly: PyTorch otherwise picks its
    generic kernel for single-threaded 1x1 convolutions, which is about half as fast here."""
    if x.device.type == 'cpu' and x.dtype == torch.float32 and is_channels_last(x) and \
            torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled:
        return torch.mkldnn_convolution(x, weight, bias, (0, 0), (1, 1), (1, 1), 1)
    return F.conv2d(x, weight, bias)


class PointwiseConv2d(nn.Conv2d):
    """``nn.Conv2d`` with a 1x1 kernel that runs through :func:`pointwise_conv` (same parameters and state_dict).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        bias (bool): Whether to add a bias. Default: True.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pointwise_conv(x, self.weight, self.bias)
