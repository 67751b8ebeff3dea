"""Checkpoint files of NDRModel: BasicSR's own save and load methods, with atomic writes and safe loading.

BasicSR 1.4.2's ``BaseModel.save_network``, ``save_training_state`` and ``load_network`` reach ``torch.save`` and
``torch.load`` through the ``torch`` global of :mod:`basicsr.models.base_model`. :class:`SafeCheckpointIO` runs those
methods unchanged, with that global pointing, for the one call, to :class:`_TorchWithSafeIO`: torch itself except
that ``save`` is :func:`~ndr_plugin.checkpoints.atomic_torch_save` and ``load`` is
:func:`~ndr_plugin.checkpoints.torch_load`.
BasicSR keeps its file names, key layout and ``module.`` handling; what changes:

* an interrupted write never leaves a truncated file under the real name (``--auto_resume`` picks the newest one);
* a failed write raises at once, where BasicSR retries three times, logs and trains on without the checkpoint;
* nothing but tensors and plain containers is unpickled unless the user trusts the file (``NDR_TRUST_CHECKPOINTS=1``);
* a missing param key is one clear error naming the file, the keys it has and the option to set;
* a subclass adds its own entries to every training state with :meth:`SafeCheckpointIO.extra_training_state`.

The redirection swaps a module global, so it assumes one thread saves or loads through BaseModel at a time, as
BasicSR's training loop does; other uses of that global still reach torch.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import basicsr.models.base_model as basicsr_base_model
import torch
from torch import nn

from ndr_plugin.checkpoints import atomic_torch_save, torch_load


class _WriteFailed(BaseException):
    """Carries a failed write past BasicSR's ``except Exception`` retry loop; unwrapped in :func:`_basicsr_torch_io`."""


class _TorchWithSafeIO:
    """Stands in for the ``torch`` module inside :mod:`basicsr.models.base_model` during one save or load."""

    def __init__(self, extra: dict | None = None, param_key: str | None = None) -> None:
        self.extra = extra or {}
        self.param_key = param_key

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    def save(self, obj: dict, path: str) -> None:
        try:
            atomic_torch_save({**obj, **self.extra}, path)
        except Exception as err:
            raise _WriteFailed() from err

    def load(self, path: str, map_location: Any = None) -> Any:
        # BasicSR maps every storage to the CPU (its map_location is the identity); torch_load does the same.
        checkpoint = torch_load(path)
        key = self.param_key
        if key is not None and key not in checkpoint and 'params' not in checkpoint:
            raise KeyError(f'{path} has no {key!r} entry (it has {sorted(checkpoint)}); set '
                           'path.param_key_<net> to one of them, or ~ for a bare state dict.')
        return checkpoint


@contextmanager
def _basicsr_torch_io(stand_in: _TorchWithSafeIO) -> Iterator[None]:
    previous = basicsr_base_model.torch
    basicsr_base_model.torch = stand_in
    try:
        yield
    except _WriteFailed as failed:
        raise failed.__cause__ from None
    finally:
        basicsr_base_model.torch = previous


class SafeCheckpointIO:
    """Mixin placed before BasicSR's model class (``class M(SafeCheckpointIO, SRModel)``); see the module docstring."""

    def extra_training_state(self) -> dict:
        """Entries added to every ``<iter>.state`` file, read back by the subclass's ``resume_training``."""
        return {}

    def save_network(self, net: nn.Module | list, net_label: str, current_iter: int,
                     param_key: str | list = 'params') -> None:
        with _basicsr_torch_io(_TorchWithSafeIO()):
            super().save_network(net, net_label, current_iter, param_key)

    def save_training_state(self, epoch: int, current_iter: int) -> None:
        with _basicsr_torch_io(_TorchWithSafeIO(extra=self.extra_training_state())):
            super().save_training_state(epoch, current_iter)

    def load_network(self, net: nn.Module, load_path: str, strict: bool = True,
                     param_key: str | None = 'params') -> None:
        with _basicsr_torch_io(_TorchWithSafeIO(param_key=param_key)):
            super().load_network(net, load_path, strict, param_key)
