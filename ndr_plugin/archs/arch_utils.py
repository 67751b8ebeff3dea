"""Input checks, padding and memory-layout queries shared by the networks."""
from __future__ import annotations

import torch
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
