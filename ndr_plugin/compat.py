"""Makes PyPI basicsr 1.4.2 work on today's torch, torchvision, numpy and Python without editing it.

Everything here is applied by :func:`apply`, which ``ndr_plugin/__init__`` calls before anything imports BasicSR, and
which the start-up hook (``ndr_plugin_hook``) installs in a lazy form for processes that import BasicSR directly.

What it fixes (see BasicSR issues #533/#663, #571, and the mmcv-derived distributed helpers):

* ``torchvision.transforms.functional_tensor`` was removed in torchvision 0.17, yet ``basicsr/data/degradations.py``
  imports it, so ``import basicsr`` fails. A finder placed *last* on ``sys.meta_path`` answers only when the real module
  is missing, and aliases it to ``torchvision.transforms._functional_tensor``.
* ``distutils`` is gone from Python >= 3.12; ``basicsr/archs/arch_util.py`` imports ``distutils.version.LooseVersion``.
  The same finder serves setuptools' vendored copy when no real ``distutils`` is found.
* ``basicsr.utils.dist_util`` always initialises NCCL and divides by the CUDA device count, so CPU-only distributed
  training fails with ``ZeroDivisionError``; ``BaseModel.model_to_device`` passes CUDA ``device_ids`` to DDP. On hosts
  without CUDA both fall back to gloo and device-less DDP.
* ``torch.load`` defaults to ``weights_only=True`` since torch 2.6. BasicSR's own checkpoints and training states load
  under it; :func:`torch_load` keeps that safe default and unpickles arbitrary objects only when the user opts in with
  ``NDR_TRUST_CHECKPOINTS=1`` (or ``trusted=True``).
* A misspelt ``type:`` gets a ``KeyError`` that lists the closest registered names.
* CPU resume (``basicsr.train.load_resume_state`` maps storages with ``.cuda()``) is handled by our entry points, which
  replace that function; see :mod:`ndr_plugin.train`.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any

from ndr_plugin_hook import install_legacy_module_finder

TRUST_ENV = 'NDR_TRUST_CHECKPOINTS'


def _cuda_available() -> bool:
    import torch
    return torch.cuda.is_available() and torch.cuda.device_count() > 0


def _init_dist_pytorch(backend: str = 'nccl', **kwargs: Any) -> None:
    """BasicSR's ``_init_dist_pytorch`` that also runs on CPU-only hosts (gloo, no ``set_device``)."""
    import torch
    import torch.distributed as dist
    if _cuda_available():
        local_rank = int(os.environ.get('LOCAL_RANK', os.environ['RANK']))
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    else:
        backend = 'gloo'
    dist.init_process_group(backend=backend, **kwargs)


def _init_dist_slurm_cpu(backend: str = 'nccl', port: int | None = None) -> None:
    """Slurm initialisation on CPU-only hosts (BasicSR's own divides by the GPU count): the same environment, gloo."""
    import subprocess
    proc_id = int(os.environ['SLURM_PROCID'])
    ntasks = int(os.environ['SLURM_NTASKS'])
    node_list = os.environ['SLURM_NODELIST']
    local_procs = int(os.environ.get('SLURM_NTASKS_PER_NODE', '1').split('(')[0] or 1)
    os.environ['MASTER_PORT'] = str(port) if port is not None else os.environ.get('MASTER_PORT', '29500')
    os.environ.setdefault('MASTER_ADDR', subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1'))
    os.environ['WORLD_SIZE'] = str(ntasks)
    os.environ['RANK'] = str(proc_id)
    os.environ['LOCAL_RANK'] = str(int(os.environ.get('SLURM_LOCALID', proc_id % max(local_procs, 1))))
    _init_dist_pytorch(backend)


def _patch_distributed() -> None:
    from basicsr.models.base_model import BaseModel
    from basicsr.utils import dist_util
    if getattr(dist_util, '_ndr_patched', False):
        return
    dist_util._init_dist_pytorch = _init_dist_pytorch
    original_init_dist_slurm = dist_util._init_dist_slurm

    def init_dist_slurm(backend: str = 'nccl', port: int | None = None) -> None:
        init = original_init_dist_slurm if _cuda_available() else _init_dist_slurm_cpu
        init(backend, port)

    dist_util._init_dist_slurm = init_dist_slurm
    original_model_to_device = BaseModel.model_to_device

    def model_to_device(self, net):
        if self.opt.get('dist') and not _cuda_available():
            from torch.nn.parallel import DistributedDataParallel
            net = net.to(self.device)
            return DistributedDataParallel(net, find_unused_parameters=self.opt.get('find_unused_parameters', False))
        return original_model_to_device(self, net)

    BaseModel.model_to_device = model_to_device
    dist_util._ndr_patched = True


def _patch_registry_errors() -> None:
    """A typo in an option file's ``type:`` names the closest registered names, whichever script builds it."""
    from basicsr.utils.registry import Registry
    if getattr(Registry, '_ndr_patched', False):
        return
    original_get = Registry.get

    def get(self, name, suffix='basicsr'):
        try:
            return original_get(self, name, suffix)
        except KeyError:
            from ndr_plugin.option_check import unknown_name_message
            raise KeyError(unknown_name_message(self._name, name, list(self._obj_map))) from None

    Registry.get = get
    Registry._ndr_patched = True


def trust_requested(trusted: bool | None = None) -> bool:
    if trusted is not None:
        return trusted
    return os.environ.get(TRUST_ENV, '').strip().lower() in ('1', 'true', 'yes')


def torch_load(path: str, map_location: Any = 'cpu', trusted: bool | None = None) -> Any:
    """``torch.load`` that is safe by default.

    Tensors, plain containers and the few classes BasicSR training states hold are loaded with ``weights_only=True``.
    Arbitrary pickled objects (code execution) only with ``trusted=True`` or ``NDR_TRUST_CHECKPOINTS=1``.
    """
    import pickle

    import torch
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Checkpoint not found: {path}')
    if trust_requested(trusted):
        return torch.load(path, map_location=map_location, weights_only=False)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise pickle.UnpicklingError(
            f'{path} contains Python objects other than tensors and plain containers, so it was not loaded '
            f'(unpickling can run arbitrary code). If you trust this file, set {TRUST_ENV}=1 and retry.\n'
            f'Details: {err}') from None


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


def _register_safe_globals() -> None:
    """Classes BasicSR and our training states contain, allowed under ``weights_only=True``."""
    import collections

    import torch
    torch.serialization.add_safe_globals([collections.Counter, collections.OrderedDict, collections.defaultdict])


_applied = False


def apply() -> None:
    """Apply every workaround. Idempotent; must run before the first ``import basicsr``."""
    global _applied
    if _applied:
        return
    install_legacy_module_finder()
    _register_safe_globals()
    _patch_distributed()
    _patch_registry_errors()
    _applied = True
