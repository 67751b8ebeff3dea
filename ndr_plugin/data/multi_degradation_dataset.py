"""Training set that mixes several degradation sources with fixed sampling ratios (the all-in-one recipe)."""
from __future__ import annotations

import bisect
import random
from typing import Any

import numpy as np
from basicsr.data.transforms import augment, paired_random_crop
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from ndr_plugin.data.degradation_specs import Degradation, build_degradation
from ndr_plugin.data.degradations import item_rng
from ndr_plugin.data.image_source import ImageSource

__all__ = ['MultiDegradationDataset']

_SOURCE_KEYS = {'name', 'dataroot_gt', 'dataroot_lq', 'degradation', 'ratio', 'label', 'io_backend', 'filename_tmpl'}


class _Source:
    """A named :class:`ImageSource` with its degradation, label and ratio."""

    def __init__(self, spec: dict[str, Any], default_backend: dict[str, Any] | None) -> None:
        if not isinstance(spec, dict):
            raise ValueError(f'each entry of sources must be a dict, got {spec!r}')
        name = spec.get('name')
        if not name or not isinstance(name, str):
            raise ValueError(f"every source needs a 'name', got {spec!r}")
        unknown = sorted(set(spec) - _SOURCE_KEYS)
        if unknown:
            raise ValueError(f"source '{name}': unknown option(s) {unknown}; allowed: {sorted(_SOURCE_KEYS)}")
        if not spec.get('dataroot_gt'):
            raise ValueError(f"source '{name}': 'dataroot_gt' is required")
        self.name = name
        self.images = ImageSource(name, spec['dataroot_gt'], spec.get('dataroot_lq'),
                                  spec.get('io_backend', default_backend), spec.get('filename_tmpl', '{}'))
        try:
            self.degradation: Degradation | None = (build_degradation(spec['degradation'])
                                                    if spec.get('degradation') else None)
        except ValueError as err:
            raise ValueError(f"source '{name}': {err}") from None
        if self.degradation is None and not self.images.paired:
            raise ValueError(f"source '{name}' has neither 'dataroot_lq' (paired data) nor 'degradation' "
                             '(synthesis on the fly): give one of them')
        if 'label' in spec and not self.images.paired:
            raise ValueError(f"source '{name}': 'label' is for paired sources; synthesised labels come from "
                             "'degradation'")
        self.label = str(spec.get('label', name))
        ratio = spec.get('ratio', 1)
        if not isinstance(ratio, int) or isinstance(ratio, bool) or ratio < 1:
            raise ValueError(f"source '{name}': ratio must be an integer >= 1 (times each image is used per epoch), "
                             f'got {ratio!r}')
        self.ratio = ratio

    def __len__(self) -> int:
        return len(self.images) * self.ratio

    @property
    def labels(self) -> list[str]:
        if self.degradation is None:
            return [self.label]
        if self.images.paired:
            return [f'{self.label}+{label}' for label in self.degradation.labels]
        return self.degradation.labels


@DATASET_REGISTRY.register()
class MultiDegradationDataset(data.Dataset):
    """Mixes paired and synthesised sources into one training set, as AirNet/PromptIR/NDR train all-in-one models.

    Each source is an LMDB (``*.lmdb``, as written by ``datasets_prep/prepare.py``) or an image folder, and is either
    *paired* (``dataroot_lq`` + ``dataroot_gt``) or *clean* with a ``degradation`` synthesised on the fly (see
    :mod:`ndr_plugin.data.degradation_specs` for the spec; a list composes several). ``ratio`` is how many times each
    of the source's images appears per epoch (PromptIR's recipe for AIO-3: noise 3, rain 120, haze 1), so a source
    is drawn with probability ``len(source) * ratio / len(dataset)``.

    Options (``datasets.train`` of a BasicSR option file)::

        type: MultiDegradationDataset
        sources:                       # required, one dict per source
          - name: denoise              # required, unique; used in errors
            dataroot_gt: datasets/aio3/denoise_train/gt.lmdb
            degradation: {type: noise, sigmas: [15, 25, 50]}   # clean source: synthesise the LQ
            ratio: 3                   # integer >= 1, default 1
          - name: derain
            dataroot_gt: datasets/aio3/derain_train/gt.lmdb
            dataroot_lq: datasets/aio3/derain_train/lq.lmdb    # paired source
            label: derain              # degradation name of a paired source (default: its name)
            ratio: 120
          - {name: dehaze, dataroot_gt: ..., dataroot_lq: ..., ratio: 1}
        io_backend: {type: lmdb}       # default of every source (per-source 'io_backend' wins); omitted: lmdb for
                                       # paths ending in .lmdb, disk otherwise
        gt_size: 128                   # training patch size (required when phase is train)
        use_hflip: true                # BasicSR's augment: horizontal flip
        use_rot: true                  # BasicSR's augment: vertical flip + transpose
        seed: 0                        # other phases only: synthesis seed (see below)

    A paired source may also have a ``degradation``: it is applied to the LQ on top (label ``derain+denoise_25``).
    Folder pairs follow BasicSR's rule: LQ name = ``filename_tmpl.format(gt_stem) + gt_extension`` (default ``{}``).

    Each sample: ``lq``, ``gt`` (RGB CHW float tensors in [0, 1]), ``lq_path``, ``gt_path`` (LMDB keys or file
    paths), ``degradation`` (e.g. ``denoise_25``, ``derain``, ``sr_x2``) and ``label`` (its index in
    :attr:`degradation_names`, the sorted list of every name the sources can produce).

    Training crops a ``gt_size`` patch at a uniform offset in [0, h - gt_size] inclusive (BasicSR's
    ``paired_random_crop``; the official NDR/PromptIR crop never reaches the last row and column), synthesises the
    degradation on the patch, then flips/rotates with BasicSR's ``augment``. Other phases return whole images.

    Randomness: crops, flips and rotations use Python's ``random``, as BasicSR's datasets do; synthesis uses a
    ``numpy.random.Generator`` seeded per sample with ``random.getrandbits(64)``. BasicSR seeds ``random`` from
    ``manual_seed`` in the main process and per DataLoader worker (seed + worker id + rank offset), so samples are
    reproducible for a given seed, number of workers and number of GPUs. Use ``persistent_workers: true`` to keep the
    worker streams running across epochs (otherwise each epoch restarts them, with a fresh shuffle of the indices).
    In other phases (validation) each image is degraded with ``item_rng(seed, source name, key)``, so it is the same
    at every evaluation. LMDBs are opened lazily in each worker.
    """

    def __init__(self, opt: dict[str, Any]) -> None:
        super().__init__()
        self.opt = opt
        self.phase = opt.get('phase', 'train')
        specs = opt.get('sources')
        if not isinstance(specs, list) or not specs:
            raise ValueError("MultiDegradationDataset needs 'sources': a non-empty list of source dicts")
        self.sources = [_Source(spec, opt.get('io_backend')) for spec in specs]
        names = [s.name for s in self.sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f'source names must be unique, repeated: {duplicates}')
        self.gt_size = opt.get('gt_size')
        if self.phase == 'train' and (not isinstance(self.gt_size, int) or self.gt_size < 1):
            raise ValueError(f"MultiDegradationDataset: 'gt_size' must be a positive integer, got {self.gt_size!r}")
        self.use_hflip = opt.get('use_hflip', True)
        self.use_rot = opt.get('use_rot', True)
        self.seed = int(opt.get('seed', 0))
        self.degradation_names = sorted({label for s in self.sources for label in s.labels})
        self._label_index = {name: i for i, name in enumerate(self.degradation_names)}
        self._ends = list(np.cumsum([len(s) for s in self.sources]))

    def __len__(self) -> int:
        return int(self._ends[-1])

    def _find(self, index: int) -> tuple[_Source, int]:
        if not 0 <= index < len(self):
            raise IndexError(f'index {index} out of range for {len(self)} samples')
        position = bisect.bisect_right(self._ends, index)
        source = self.sources[position]
        start = self._ends[position - 1] if position else 0
        return source, (index - start) % len(source.images)  # each image repeated `ratio` times

    def locate(self, index: int) -> tuple[str, int]:
        """(source name, image index within the source) of a dataset index."""
        source, item = self._find(index)
        return source.name, item

    def __getitem__(self, index: int) -> dict[str, Any]:
        source, item = self._find(index)
        gt, lq, gt_path, lq_path = source.images.read(item)

        if self.phase == 'train':
            height, width = gt.shape[:2]
            if height < self.gt_size or width < self.gt_size:
                raise ValueError(f"source '{source.name}': image {gt_path} is {width}x{height}, smaller than "
                                 f'gt_size {self.gt_size}; remove it or lower gt_size')
            gt, lq = paired_random_crop(gt, gt if lq is None else lq, self.gt_size, 1, gt_path)
        degradation = source.label
        if source.degradation is not None:
            if self.phase == 'train':
                rng = np.random.default_rng(random.getrandbits(64))
            else:  # validation: the same degraded image every time it is evaluated
                rng = item_rng(self.seed, source.name, source.images.key(item))
            lq, synthesised, _ = source.degradation(gt if not source.images.paired else lq, rng)
            degradation = f'{source.label}+{synthesised}' if source.images.paired else synthesised
        if self.phase == 'train':
            # augment flips in place with OpenCV, which needs OpenCV-compatible (not transposed) memory layouts
            gt, lq = augment([gt, np.ascontiguousarray(lq)], self.use_hflip, self.use_rot)
        gt, lq = img2tensor([gt, lq], bgr2rgb=True, float32=True)
        return {'lq': lq, 'gt': gt, 'lq_path': lq_path, 'gt_path': gt_path, 'degradation': degradation,
                'label': self._label_index[degradation]}
