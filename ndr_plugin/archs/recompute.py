"""Activation checkpointing (ours): blocks that recompute their activations in the backward instead of storing them.

A training step keeps every intermediate tensor of the forward until the backward has used it; in the transformer
blocks (layer norms, the 2.66x-wide GDFN, the attention's q/k/v) those tensors are most of the step's memory. With
``checkpoint_blocks: true`` (a ``network_g`` / ``network_deg`` option of NDRNet, NDRDegradationNet and PromptIR) each
block keeps only its input and runs its forward a second time during the backward (``torch.utils.checkpoint``,
non-reentrant), trading about one more forward of compute for the memory. Gradients are those of the plain forward;
inference (no gradient) never recomputes.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class RecomputableBlock(nn.Module):
    """A block whose :meth:`block_forward` is recomputed in the backward while ``recompute`` is True."""

    recompute = False

    def block_forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.recompute and torch.is_grad_enabled():
            return checkpoint(self.block_forward, *inputs, use_reentrant=False)
        return self.block_forward(*inputs)


def set_block_recompute(net: nn.Module, enabled: bool) -> int:
    """Turns recomputation of every :class:`RecomputableBlock` of ``net`` on or off; returns how many there are."""
    blocks = [module for module in net.modules() if isinstance(module, RecomputableBlock)]
    for block in blocks:
        block.recompute = bool(enabled)
    return len(blocks)


def check_flag(value: object, owner: str) -> bool:
    """The ``checkpoint_blocks`` option, which must be a boolean (a YAML typo such as 'yes ' is an error)."""
    if not isinstance(value, bool):
        raise ValueError(f'{owner}: checkpoint_blocks must be true or false, got {value!r}')
    return value

