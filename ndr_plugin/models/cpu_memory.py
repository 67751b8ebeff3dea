"""``train.keep_freed_memory`` (ours): on the CPU, the training process keeps the memory it frees for reuse.

Why: PyTorch's CPU allocator caches nothing, and glibc's malloc serves every block above its mmap threshold (at most
32 MB on 64-bit systems) with fresh pages from the kernel and unmaps them when the block is freed. A training step
allocates and frees the same large activations and gradients every iteration, so each one is faulted in page by page
and zeroed by the kernel again in every step. With the paper-size networks at batch 2 and 4 of 128 px on a 2-core
machine this took 8% and 24% of our float32 step time, and 34% and 47% of the official step's
(``benchmarks/results/train_speed*.md``). On CUDA, PyTorch's caching allocator already keeps freed memory.

How: glibc's documented ``mallopt`` settings ``M_MMAP_MAX = 0`` (large blocks come from the heap, where freed blocks
are reused) and ``M_TRIM_THRESHOLD = -1`` (the heap is never trimmed back). The process then holds on to its peak
memory until it exits, which a training process reaches every step anyway. The same effect can be had from outside,
for any program, with the environment variables ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<large>`` or by preloading
jemalloc or tcmalloc (the remedy Intel's PyTorch CPU tuning guides give). With another C library, or on another
system, nothing is changed and the log says so.
"""
from __future__ import annotations

import ctypes
import platform
import sys
from typing import Any

import torch
from basicsr.utils import get_root_logger

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's malloc.h parameter numbers
_applied = False


def check_keep_freed_memory(value: Any) -> None:
    """Raise ValueError naming ``train.keep_freed_memory`` unless ``value`` is true, false or absent."""
    if value is not None and not isinstance(value, bool):
        raise ValueError(f'train.keep_freed_memory must be true or false, got {value!r}')


def keep_freed_memory() -> bool:
    """Tells glibc's malloc to keep freed memory in this process (see the module docstring); True where it did.

    Process-wide and irreversible; calling it again changes nothing.
    """
    global _applied
    if _applied:
        return True
    if sys.platform != 'linux' or platform.libc_ver()[0] != 'glibc':
        return False
    libc = ctypes.CDLL(None)
    _applied = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, -1))
    return _applied


def apply_keep_freed_memory(value: Any, device: torch.device) -> bool:
    """``train.keep_freed_memory`` for a model training on ``device`` (default: true); True where it took effect."""
    check_keep_freed_memory(value)
    if value is False or device.type != 'cpu':
        return False
    applied = keep_freed_memory()
    logger = get_root_logger()
    if applied:
        logger.info('train.keep_freed_memory: freed memory stays in the process for reuse (glibc malloc settings), '
                    'so the training steps do not fault large blocks in again each time.')
    else:
        logger.info(f'train.keep_freed_memory: not available with this C library ({sys.platform}, '
                    f'{platform.libc_ver()[0] or "unknown"}); the default allocator is used.')
    return applied
