"""Makes PyPI basicsr 1.4.2 work on today's torch, torchvision, numpy and Python without editing it.

Everything here is applied by :func:`apply`, which ``ndr_plugin/__init__`` calls before anything imports BasicSR, and
which the start-up hook (``ndr_plugin_hook``) installs in a lazy form for processes that import BasicSR directly.

What it fixes (see BasicSR issues #533/#663, #571, and the mmcv-derived distributed helpers):

* ``torchvision.transforms.functional_tensor`` was removed in torchvision 0.17, yet ``basicsr/data/degradations.py``
  imports it, so ``import basicsr`` fails. A finder placed *last* on ``sys.meta_path`` answers only when the real module
  is missing, and aliases it to ``torchvision.transforms._functional_tensor`` (:mod:`ndr_plugin_legacy`).
* ``distutils`` is gone from Python >= 3.12; ``basicsr/archs/arch_util.py`` imports ``distutils.version.LooseVersion``.
  The same finder serves setuptools' vendored copy when no real ``distutils`` is found.
* ``basicsr.utils.dist_util`` always initialises NCCL and divides by the CUDA device count, so CPU-only distributed
  training fails with ``ZeroDivisionError``; ``BaseModel.model_to_device`` passes CUDA ``device_ids`` to DDP. On hosts
  without CUDA both fall back to gloo and device-less DDP.
* ``torch.load`` defaults to ``weights_only=True`` since torch 2.6. The few plain classes BasicSR's training states
  hold are allowed under it (safe loading itself lives in :mod:`ndr_plugin.checkpoints`).
* BasicSR reads option files with PyYAML's full loader (a file can run code); its ``parse_options`` is given our
  safe loader (:mod:`ndr_plugin.options`).
* A misspelt ``type:`` gets a ``KeyError`` that lists the closest registered names.
* CPU resume (``basicsr.train.load_resume_state`` maps storages with ``.cuda()``) is handled by our entry points, which
  replace that function; see :mod:`ndr_plugin.train`.
"""
from __future__ import annotations

import os
from typing import Any

from ndr_plugin_legacy import install_legacy_module_finder

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


def _patch_option_loader() -> None:
    """BasicSR's ``parse_options`` (so its own ``train.py``/``test.py``) reads option files with our safe loader.

    ``parse_options`` calls ``ordered_yaml()`` each time it reads a file, so replacing that function in its module is
    enough; the dumper stays BasicSR's. See :mod:`ndr_plugin.options` for what is allowed and the opt-out.
    """
    from basicsr.utils import options as basicsr_options
    if getattr(basicsr_options, '_ndr_patched', False):
        return
    original_ordered_yaml = basicsr_options.ordered_yaml

    def ordered_yaml():
        from ndr_plugin.options import option_loader
        return option_loader(), original_ordered_yaml()[1]

    basicsr_options.ordered_yaml = ordered_yaml
    basicsr_options.ndr_original_ordered_yaml = original_ordered_yaml
    basicsr_options._ndr_patched = True


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
            from ndr_plugin.options import unknown_name_message
            raise KeyError(unknown_name_message(self._name, name, list(self._obj_map))) from None

    Registry.get = get
    Registry._ndr_patched = True


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
    _patch_option_loader()
    _patch_registry_errors()
    _applied = True
