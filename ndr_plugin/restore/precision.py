"""Which floating-point type inference runs in: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (ours).

``Restorer``, testing, validation and export default to ``fp32``, so reported numbers do not depend on the machine that
computed them. ``ndr-restore`` defaults to ``auto``, the fastest type the device runs natively:

* CPU: ``bf16`` when the CPU has bfloat16 instructions (AVX-512 BF16 or AMX; the ``avx512_bf16`` / ``amx_bf16`` flags
  of /proc/cpuinfo), where bfloat16 matrix products and convolutions run about twice as fast as float32; ``fp32`` on
  other CPUs, which emulate bfloat16 slower than float32. ``fp16`` is refused on the CPU (slow or missing kernels).
* CUDA: ``bf16`` on GPUs that support it (Ampere and later: no overflow, unlike float16), else ``fp16``.
* MPS: ``fp16``.

``half`` (``--half``) keeps its old meaning: float16 on CUDA, bfloat16 elsewhere.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
NAMES = {dtype: name for name, dtype in DTYPES.items()}
CPU_BF16_FLAGS = ('avx512_bf16', 'amx_bf16')


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (flags read from /proc/cpuinfo; False where it is missing)."""
    try:
        text = Path('/proc/cpuinfo').read_text(encoding='utf-8', errors='replace')
    except OSError:
        return False
    flags = {flag for line in text.splitlines() if line.startswith('flags') for flag in line.split(':', 1)[1].split()}
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def _cuda_supports_bf16(device: torch.device) -> bool:
    return torch.cuda.get_device_capability(device)[0] >= 8


def auto_precision(device: torch.device) -> str:
    """The precision ``auto`` picks on ``device`` (see the module docstring)."""
    if device.type == 'cuda':
        return 'bf16' if _cuda_supports_bf16(device) else 'fp16'
    if device.type == 'mps':
        return 'fp16'
    return 'bf16' if device.type == 'cpu' and cpu_has_native_bf16() else 'fp32'


def resolve_precision(precision: str, device: torch.device, half: bool = False,
                      option: str = 'precision') -> torch.dtype:
    """The dtype for ``precision`` on ``device``; ``half=True`` is the old switch and excludes a non-fp32 precision.

    Raises:
        ValueError: unknown precision, ``half`` with another precision, or a type the device cannot run.
    """
    if precision not in PRECISIONS:
        raise ValueError(f'{option} must be one of {PRECISIONS}, got {precision!r}')
    if half:
        if precision != 'fp32':
            raise ValueError(f'give either half (--half) or {option} {precision}, not both')
        precision = 'fp16' if device.type == 'cuda' else 'bf16'
    if precision == 'auto':
        precision = auto_precision(device)
    if precision == 'fp16' and device.type == 'cpu':
        raise ValueError(f'{option} fp16 is not available on the CPU (float16 convolutions there are slow or missing); '
                         'use bf16 or fp32')
    if precision == 'bf16' and device.type == 'cuda' and not _cuda_supports_bf16(device):
        raise ValueError(f'{option} bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; use fp16 or '
                         'fp32')
    return DTYPES[precision]
