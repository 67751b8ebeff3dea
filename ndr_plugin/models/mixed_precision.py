"""Mixed-precision training for NDRModel (``train.amp``; ours, the official code trains in float32).

* ``train.amp: bf16``: forward and losses under ``torch.autocast`` in bfloat16 (CPU and CUDA). bfloat16 has float32's
  range, so no loss scaling is needed.
* ``train.amp: fp16``: meant for CUDA (on the CPU it runs, slowly, with a warning: for checks only); autocast in
  float16 with a ``GradScaler``: the loss is scaled up before the backward so small gradients survive float16, the
  gradients are unscaled before the clip, and an overflow (a non-finite gradient from a finite loss) skips the step
  and halves the scale. Such overflows are the scaler's normal search for
  its scale, so they are not counted by the non-finite guard (``train.max_nonfinite_steps``) until the scale is below
  1, where the gradient overflows even unscaled. The scaler's state is saved in the training state, so a resumed run
  continues with the same scale.
* ``train.amp: false`` (or absent): float32.

Weights, optimizer states and EMA stay float32 (autocast casts per operation), and validation runs in float32.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
from basicsr.utils import get_root_logger

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def check_amp_value(value: Any) -> None:
    """Raise ValueError naming ``train.amp`` unless ``value`` is bf16, fp16, false or absent (device-independent)."""
    if not (value is None or value is False or value == 'false' or value in AMP_DTYPES):
        raise ValueError(f'train.amp must be bf16, fp16 or false, got {value!r}')


def parse_amp(value: Any, device: torch.device) -> torch.dtype | None:
    """``train.amp`` -> the autocast dtype, or None for float32; one clear error for anything else."""
    check_amp_value(value)
    if value is None or value is False or value == 'false':
        return None
    if value == 'fp16' and device.type != 'cuda':
        get_root_logger().warning(f'train.amp: fp16 on {device.type} runs float16 kernels that are slow there (fine '
                                  'for checks); use train.amp: bf16 for speed.')
    if value == 'bf16' and device.type == 'cuda' and not torch.cuda.is_bf16_supported():
        raise ValueError(f'train.amp: bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; use fp16')
    return AMP_DTYPES[value]


class MixedPrecision:
    """Autocast, loss scaling and the overflow rule of one NDRModel (see the module docstring).

    Args:
        value: The ``train.amp`` option.
        device (torch.device): The training device.
    """

    def __init__(self, value: Any, device: torch.device) -> None:
        self.device = device
        self.dtype = parse_amp(value, device)
        self.name = {None: 'false', torch.bfloat16: 'bf16', torch.float16: 'fp16'}[self.dtype]
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    @property
    def scaling(self) -> bool:
        return self.scaler.is_enabled()

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaling else loss).backward()

    def unscale(self, optimizers: list[torch.optim.Optimizer]) -> None:
        """Brings the gradients back to their true size before they are clipped or measured."""
        if self.scaling:
            for optimizer in optimizers:
                self.scaler.unscale_(optimizer)

    def step(self, optimizers: list[torch.optim.Optimizer]) -> None:
        for optimizer in optimizers:
            if self.scaling:
                self.scaler.step(optimizer)
            else:
                optimizer.step()
        if self.scaling:
            self.scaler.update()

    def skip(self, loss: torch.Tensor) -> bool:
        """Records a skipped step; True when it is a loss-scale overflow the non-finite guard should not count."""
        if not self.scaling:
            return False
        self.scaler.update()  # halves the scale after an overflow
        return bool(torch.isfinite(loss)) and self.scaler.get_scale() >= 1

    def state_dict(self) -> dict:
        return {'amp': self.name, 'scaler': self.scaler.state_dict() if self.scaling else None}

    def load_state_dict(self, state: dict) -> None:
        """Restores the loss scale of a saved fp16 run (weights and optimizer states are float32 in every mode, so
        a run may also resume under another ``train.amp``; an fp16 run then starts a fresh scale)."""
        if self.scaling and state.get('scaler'):
            self.scaler.load_state_dict(state['scaler'])
