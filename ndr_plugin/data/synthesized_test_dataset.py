"""Test/validation set that degrades clean images on the fly with one fixed realisation per image."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from ndr_plugin.data.degradation_specs import build_degradation
from ndr_plugin.data.degradations import item_rng
from ndr_plugin.data.image_source import ImageSource

__all__ = ['SynthesizedTestDataset']


@DATASET_REGISTRY.register()
class SynthesizedTestDataset(data.Dataset):
    """Clean images (LMDB or folder) degraded on the fly, reproducibly: image ``key`` always gets the generator
    ``item_rng(seed, key)`` (key: LMDB key or file stem), whatever the order, the subset or the process.

    Use it for protocols that cannot be stored as 8-bit PNG, e.g. NDR's float noise (clip to [0, 1], no
    quantisation). Pre-synthesised test LMDBs from ``datasets_prep/prepare.py`` read with BasicSR's
    ``PairedImageDataset`` stay the reproducible default.

    Options::

        type: SynthesizedTestDataset
        dataroot_gt: datasets/test/cbsd68_clean     # LMDB or image folder
        degradation: {type: noise, sigmas: [25]}    # spec of ndr_plugin.data.degradation_specs (list = composed)
        seed: 0                                     # default 0
        crop_multiple: 16                           # optional: centre-crop to a multiple (AirNet/PromptIR protocol)
        io_backend: {type: disk}                    # optional: inferred from the path

    Samples carry ``lq``, ``gt``, ``lq_path``, ``gt_path``, ``degradation`` and ``label`` like
    :class:`MultiDegradationDataset` (``lq_path`` is the clean image's key or path, so results are saved by its name).
    """

    def __init__(self, opt: dict[str, Any]) -> None:
        super().__init__()
        self.opt = opt
        if not opt.get('dataroot_gt'):
            raise ValueError("SynthesizedTestDataset: 'dataroot_gt' is required")
        if not opt.get('degradation'):
            raise ValueError("SynthesizedTestDataset: 'degradation' is required, e.g. {type: noise, sigmas: [25]}")
        self.images = ImageSource(opt.get('name', 'test'), opt['dataroot_gt'], None, opt.get('io_backend'))
        self.degradation = build_degradation(opt['degradation'])
        self.seed = int(opt.get('seed', 0))
        self.crop_multiple = opt.get('crop_multiple')
        self.degradation_names = sorted(self.degradation.labels)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        gt, _, gt_path, _ = self.images.read(index)
        if self.crop_multiple:
            height, width = gt.shape[:2]
            dh, dw = height % self.crop_multiple, width % self.crop_multiple
            gt = gt[dh // 2:height - dh + dh // 2, dw // 2:width - dw + dw // 2]
        key = gt_path if self.images.backend_type == 'lmdb' else Path(gt_path).stem
        lq, label, _ = self.degradation(gt, item_rng(self.seed, key))
        gt, lq = img2tensor([np.ascontiguousarray(gt), lq], bgr2rgb=True, float32=True)
        return {'lq': lq, 'gt': gt, 'lq_path': gt_path, 'gt_path': gt_path, 'degradation': label,
                'label': self.degradation_names.index(label)}
