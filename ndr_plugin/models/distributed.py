"""Synchronisation across DDP processes that DDP does not do by itself for NDRModel's steps.

DDP averages the gradients of the parameters used through its own ``forward``. The alternate mode's degradation phase
reaches NDRNet's NDR and query path through ``query_degradation``, outside that ``forward``, so their gradients are
averaged here; and the non-finite guard must skip an update on every process or on none.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.distributed as dist
from torch import nn


def parameters_with_grad(params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    return [p for p in params if p.grad is not None]


def average_gradients(params: Sequence[nn.Parameter]) -> None:
    """All-reduces (averages) the gradients of ``params`` over the process group, in one flat buffer (one message
    instead of one per parameter). A no-op outside distributed training."""
    if not (dist.is_available() and dist.is_initialized()) or not params:
        return
    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def any_rank_true(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` is true on any process (every process gets the same answer)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)
