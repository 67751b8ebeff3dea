"""Checkpoint files: loading that never runs code from the file, and saving that never leaves a truncated file.

``torch.load`` defaults to ``weights_only=True`` since torch 2.6; BasicSR's own checkpoints and training states load
under it (the few plain classes they hold are allowed by :mod:`ndr_plugin.compat`). :func:`torch_load` keeps that safe
default and unpickles arbitrary objects only when the user opts in with ``NDR_TRUST_CHECKPOINTS=1`` (or
``trusted=True``). Used by the model (saving and resuming), the restore API and the official-checkpoint converter.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any

TRUST_ENV = 'NDR_TRUST_CHECKPOINTS'


def trust_requested(trusted: bool | None = None) -> bool:
    if trusted is not None:
        return trusted
    return os.environ.get(TRUST_ENV, '').strip().lower() in ('1', 'true', 'yes')


class CheckpointError(ValueError):
    """A file that is not a complete PyTorch checkpoint (empty, truncated, or some other kind of file)."""


_ZIP_MAGIC = b'PK\x03\x04'  # torch.save's default format since torch 1.6
_PICKLE_PROTOCOL_2 = b'\x80'  # the legacy format starts with a pickled magic number


def check_checkpoint_file(path: str) -> None:
    """Raise :class:`CheckpointError` naming ``path`` when it cannot be a complete checkpoint (cheap: header only)."""
    import zipfile
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f'{path} is empty (0 bytes): not a checkpoint')
    with open(path, 'rb') as f:
        head = f.read(4)
    if head == _ZIP_MAGIC:
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f'{path} is truncated or damaged ({size} bytes; its zip directory is missing): '
                                  'save or copy it again')
    elif not head.startswith(_PICKLE_PROTOCOL_2):
        raise CheckpointError(f'{path} is not a PyTorch checkpoint (it starts with bytes {head!r})')


def torch_load(path: str, map_location: Any = 'cpu', trusted: bool | None = None) -> Any:
    """``torch.load`` that is safe by default.

    Tensors, plain containers and the few classes BasicSR training states hold are loaded with ``weights_only=True``.
    Arbitrary pickled objects (code execution) only with ``trusted=True`` or ``NDR_TRUST_CHECKPOINTS=1``. A file that
    is empty, truncated or not a checkpoint at all raises :class:`CheckpointError` naming it.
    """
    import pickle

    import torch
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Checkpoint not found: {path}')
    check_checkpoint_file(path)
    try:
        if trust_requested(trusted):
            return torch.load(path, map_location=map_location, weights_only=False)
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if 'weights_only' not in str(err) and 'Unsupported global' not in str(err):
            raise CheckpointError(f'{path} is damaged: {err}') from None
        raise pickle.UnpicklingError(
            f'{path} contains Python objects other than tensors and plain containers, so it was not loaded '
            f'(unpickling can run arbitrary code). If you trust this file, set {TRUST_ENV}=1 and retry.\n'
            f'Details: {err}') from None
    except (EOFError, RuntimeError) as err:
        raise CheckpointError(f'{path} is truncated or damaged: {err}') from None


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save`` to a temporary file in the target folder, flushed to disk, then renamed over ``path``.

    A process killed mid-write leaves at most a stray ``.tmp`` file, never a truncated checkpoint under the real
    name, so ``--auto_resume`` (which picks the newest ``*.state``) never picks a broken one.
    """
    import torch
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=folder, prefix=f'.{os.path.basename(path)}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
