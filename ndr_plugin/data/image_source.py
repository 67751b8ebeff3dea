"""One image source of a dataset: an LMDB or a folder, clean only or paired, read through BasicSR's FileClient.

The FileClient (and with it every LMDB environment) is created on the first read, i.e. inside each DataLoader worker,
never in the process that built the dataset; this is what BasicSR's own datasets do and what LMDB requires.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from basicsr.utils import FileClient

from ndr_plugin.data.dataset_files import BadInputError, decode_image, list_images
from ndr_plugin.data.lmdb_io import LmdbFormatError, check_lmdb

__all__ = ['ImageSource']


class ImageSource:
    """Lists the records of a source and reads them as float32 BGR HWC images in [0, 1].

    Args:
        name: name used in error messages.
        dataroot_gt: LMDB folder (``*.lmdb``) or image folder of clean images.
        dataroot_lq: the degraded partner (same backend), or None for a clean-only source.
        io_backend: ``{'type': 'lmdb' | 'disk', ...}``; None picks lmdb for paths ending in ``.lmdb``, else disk.
        filename_tmpl: disk pairs: the LQ name is ``filename_tmpl.format(gt_stem) + gt_extension`` (BasicSR's rule).
    """

    def __init__(self,
                 name: str,
                 dataroot_gt: str,
                 dataroot_lq: str | None = None,
                 io_backend: dict[str, Any] | None = None,
                 filename_tmpl: str = '{}') -> None:
        self.name = name
        self.gt_root = str(dataroot_gt)
        self.lq_root = str(dataroot_lq) if dataroot_lq else None
        backend = dict(io_backend or {'type': 'lmdb' if self.gt_root.rstrip('/').endswith('.lmdb') else 'disk'})
        self.backend_type = backend.pop('type', None)
        if self.backend_type not in ('lmdb', 'disk'):
            raise ValueError(f"source '{name}': io_backend type must be 'lmdb' or 'disk', got {self.backend_type!r}")
        self.backend_kwargs = backend
        self.filename_tmpl = filename_tmpl
        self._client: FileClient | None = None
        roots = [('dataroot_gt', self.gt_root)] + ([('dataroot_lq', self.lq_root)] if self.lq_root else [])
        for option, root in roots:
            if not Path(root).exists():
                raise FileNotFoundError(f"source '{name}': {option} does not exist: {root}")
        self.items = self._list_lmdb() if self.backend_type == 'lmdb' else self._list_folder()
        if not self.items:
            raise ValueError(f"source '{name}': no images in {self.gt_root}")

    @property
    def paired(self) -> bool:
        return self.lq_root is not None

    def __len__(self) -> int:
        return len(self.items)

    def _list_lmdb(self) -> list[dict[str, str]]:
        try:
            gt_keys = check_lmdb(self.gt_root)
            lq_keys = check_lmdb(self.lq_root) if self.lq_root else gt_keys
        except LmdbFormatError as err:
            raise LmdbFormatError(f"source '{self.name}': {err}") from None
        if set(gt_keys) != set(lq_keys):
            only_gt = sorted(set(gt_keys) - set(lq_keys))[:5]
            only_lq = sorted(set(lq_keys) - set(gt_keys))[:5]
            raise ValueError(f"source '{self.name}': keys of {self.gt_root} and {self.lq_root} differ "
                             f'(only in gt: {only_gt}; only in lq: {only_lq})')
        return [{'gt': k, 'lq': k} for k in sorted(gt_keys)]

    def _list_folder(self) -> list[dict[str, str]]:
        gt_files = list_images(self.gt_root, recursive=False)
        if not self.lq_root:
            return [{'gt': str(p)} for p in gt_files]
        items = []
        for gt in gt_files:
            lq = Path(self.lq_root) / f'{self.filename_tmpl.format(gt.stem)}{gt.suffix}'
            if not lq.is_file():
                raise BadInputError(gt, f"source '{self.name}': missing pair partner {lq}")
            items.append({'gt': str(gt), 'lq': str(lq)})
        return items

    def _read(self, path: str, role: str) -> np.ndarray:
        if self._client is None:
            if self.backend_type == 'lmdb':
                roots, keys = [self.gt_root], ['gt']
                if self.lq_root:
                    roots, keys = [self.lq_root, self.gt_root], ['lq', 'gt']
                self._client = FileClient('lmdb', db_paths=roots, client_keys=keys, **self.backend_kwargs)
            else:
                self._client = FileClient('disk', **self.backend_kwargs)
        data = self._client.get(path, role)
        where = f'{self.gt_root if role == "gt" else self.lq_root}:{path}' if self.backend_type == 'lmdb' else path
        if data is None:
            raise KeyError(f"source '{self.name}': record {where} is missing")
        img, _ = decode_image(bytes(data), where)
        return img.astype(np.float32) / 255.0

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray | None, str, str]:
        """(gt, lq or None, gt_path, lq_path) of record ``index``; paths are LMDB keys or file paths."""
        item = self.items[index]
        gt = self._read(item['gt'], 'gt')
        if not self.paired:
            return gt, None, item['gt'], item['gt']
        lq = self._read(item['lq'], 'lq')
        if lq.shape != gt.shape:
            raise ValueError(f"source '{self.name}': LQ {item['lq']} is {lq.shape[1]}x{lq.shape[0]} but GT "
                             f"{item['gt']} is {gt.shape[1]}x{gt.shape[0]}; pairs must have the same size")
        return gt, lq, item['gt'], item['lq']
