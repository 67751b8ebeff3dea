"""One image source of a dataset: an LMDB or a folder, clean only or paired.

LMDB environments are opened on the first read, i.e. inside each DataLoader worker, as BasicSR's FileClient does; they
are shared within a process and closed before it forks (see :func:`ndr_plugin.data.lmdb_io.open_reader`), which
py-lmdb 3 requires and BasicSR's FileClient does not do.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ndr_plugin.data.dataset_files import BadInputError, decode_image, list_images
from ndr_plugin.data.lmdb_io import LmdbFormatError, check_lmdb, open_reader

__all__ = ['ImageSource']


class ImageSource:
    """Lists the records of a source and reads them as float32 BGR HWC images in [0, 1].

    Args:
        name: name used in error messages.
        dataroot_gt: LMDB folder (``*.lmdb``) or image folder of clean images.
        dataroot_lq: the degraded partner (same backend), or None for a clean-only source.
        io_backend: ``{'type': 'lmdb' | 'disk'}``; None picks lmdb for paths ending in ``.lmdb``, else disk.
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
        if backend:
            raise ValueError(f"source '{name}': io_backend options {sorted(backend)} are not supported (only 'type')")
        self.filename_tmpl = filename_tmpl
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

    def key(self, index: int) -> str:
        """The name of record ``index`` that does not depend on where the data lies: its LMDB key, or its file name.

        Validation seeds its synthesised degradations with it, so a folder moved elsewhere gives the same bytes.
        """
        gt = self.items[index]['gt']
        return gt if self.backend_type == 'lmdb' else Path(gt).name

    def _read(self, path: str, role: str) -> np.ndarray:
        if self.backend_type == 'lmdb':
            root = self.gt_root if role == 'gt' else self.lq_root
            where = f'{root}:{path}'
            with open_reader(root).begin() as txn:
                data = txn.get(path.encode('ascii'))
            if data is None:
                raise KeyError(f"source '{self.name}': record {where} is missing")
        else:
            where = path
            data = Path(path).read_bytes()
        img, _ = decode_image(data, where)
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
