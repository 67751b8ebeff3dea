"""Writes BasicSR-compatible LMDBs atomically and resumably (dataset preparation and the demo use it).

Format (identical to what BasicSR's ``basicsr.utils.lmdb_util`` writes, so ``PairedImageDataset`` with
``io_backend: {type: lmdb}`` reads our output): a folder ``<name>.lmdb`` holding ``data.mdb`` and ``lock.mdb``, values
PNG-encoded by OpenCV, keys flat ASCII without dots, and ``meta_info.txt`` with one line per record
``'{key}.png ({h},{w},{c}) {compress_level}'``. We add ``manifest.json``: where each record came from (file names and
SHA-256), its degradation label and parameters, the SHA-256 of the stored PNG bytes, and counts against the standard
splits.

Atomicity and resuming: everything is built in ``<first target>.partial/`` and moved into place only when complete, so
an interrupted run never leaves something that looks like a finished LMDB. A journal of committed tasks lets a rerun
skip finished work; it is written before each commit, and a task counts as done only when its keys are in the LMDB.
Commits happen at fixed task indices, so an uninterrupted run produces the same ``data.mdb`` bytes for the same input,
whatever the number of worker processes.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import lmdb
import numpy as np

from ndr_plugin.data.dataset_files import encode_png
from ndr_plugin.data.degradations import to_uint8
from ndr_plugin.data.lmdb_io import MANIFEST_NAME

__all__ = ['LmdbSetWriter', 'image_entry', 'write_lmdb', 'write_paired_lmdb']

MANIFEST_FORMAT = 'ndr_plugin-lmdb-manifest/1'
DEFAULT_MAP_SIZE = 1 << 40  # 1 TiB of address space; the file only grows as data is written (as in BasicSR)
_KEY = re.compile(r'^[A-Za-z0-9_-]+$')


def image_entry(img: np.ndarray, compress_level: int = 1) -> tuple[bytes, tuple[int, int, int]]:
    """PNG bytes and (h, w, c) of a uint8 or float [0, 1] image (HxW or HxWxC, BGR)."""
    img = to_uint8(np.asarray(img))
    if img.ndim not in (2, 3):
        raise ValueError(f'an image must be HxW or HxWxC, got shape {img.shape}')
    shape = (img.shape[0], img.shape[1], 1 if img.ndim == 2 else img.shape[2])
    return encode_png(img, compress_level), shape


class LmdbSetWriter:
    """Writes one or several LMDBs that share their keys (e.g. ``gt`` and ``lq``), optionally with PNG copies.

    Args:
        targets: role -> final LMDB folder (must end in ``.lmdb``), e.g. ``{'gt': out/'gt.lmdb', 'lq': out/'lq.lmdb'}``.
        png_dirs: role -> final folder for ``{key}.png`` copies of the same bytes (optional).
        header: JSON-serialisable description of the build (kind, options, seed); written into every manifest. A rerun
            with a different header restarts instead of resuming.
        batch: tasks per LMDB transaction.
        compress_level: PNG compression level recorded in meta_info.txt (BasicSR uses 1).
        map_size: LMDB address space; the file grows only as data is written.
        overwrite: replace existing targets instead of refusing (deleted first).
        replace: build anew next to existing targets and swap them in only at :meth:`finish`, so the old outputs stay
            usable until the new ones are complete (a rebuild after the sources changed).

    Use :meth:`put_task` for each task in input order (with its index), then :meth:`finish`. If every target already
    exists (built with the same header), :attr:`already_complete` is True and nothing needs writing; existing targets
    built differently raise ``FileExistsError`` unless ``overwrite``.
    """

    def __init__(self,
                 targets: Mapping[str, str | os.PathLike],
                 *,
                 png_dirs: Mapping[str, str | os.PathLike] | None = None,
                 header: dict[str, Any] | None = None,
                 batch: int = 200,
                 compress_level: int = 1,
                 map_size: int = DEFAULT_MAP_SIZE,
                 overwrite: bool = False,
                 replace: bool = False) -> None:
        self.targets = {role: Path(p) for role, p in targets.items()}
        self.png_dirs = {role: Path(p) for role, p in (png_dirs or {}).items()}
        for role, path in self.targets.items():
            if path.suffix != '.lmdb':
                raise ValueError(f"LMDB path for '{role}' must end with '.lmdb' (BasicSR requires it): {path}")
        self.header = json.loads(json.dumps(header or {}))
        self.batch = max(1, int(batch))
        self.compress_level = int(compress_level)
        self.map_size = int(map_size)
        first = next(iter(self.targets.values()))
        self.staging = first.with_name(first.name + '.partial')
        self.journal_path = self.staging / 'journal.jsonl'
        self.done: dict[str, dict[str, Any]] = {}  # task id -> journal entry
        self._pending: list[dict[str, Any]] = []
        self._keys: dict[str, str] = {}
        self._envs: dict[str, lmdb.Environment] = {}
        self._txns: dict[str, lmdb.Transaction] = {}
        self.already_complete = False
        self._finished_marker = False

        outputs = list(self.targets.values()) + list(self.png_dirs.values())
        existing = [p for p in outputs if p.exists()]
        if overwrite:
            for path in existing + ([self.staging] if self.staging.exists() else []):
                shutil.rmtree(path)
            existing = []
        if not self.staging.exists() and not replace:
            if existing and len(existing) == len(outputs):
                self._check_same_build(first)
                self.already_complete = True
                return
            if existing:
                raise FileExistsError(f'refusing to overwrite existing output(s) {[str(p) for p in existing]}; '
                                      'delete them or pass overwrite (--overwrite)')
        self._open()

    def _check_same_build(self, target: Path) -> None:
        manifest = target / MANIFEST_NAME
        try:
            previous = json.loads(manifest.read_text())
        except (OSError, ValueError):
            raise FileExistsError(f'{target} exists but has no readable {MANIFEST_NAME}; '
                                  'delete it or pass overwrite (--overwrite)') from None
        differs = sorted(k for k in self.header if previous.get(k) != self.header[k])
        if differs:
            now = [self.header[k] for k in differs]
            then = [previous.get(k) for k in differs]
            raise FileExistsError(f'{target} exists but was built with different {", ".join(differs)} '
                                  f'(now {now}, then {then}); delete it or pass overwrite (--overwrite)')

    # --- setup and resume -------------------------------------------------------------------------------------------
    def _open(self) -> None:
        resumed = self._read_journal() if self.staging.exists() else None
        if resumed is None and self.staging.exists():
            shutil.rmtree(self.staging)
        if self._finished_marker:  # interrupted while moving finished outputs into place: finish() completes it
            self.done = {e['task']: e for e in resumed}
            return
        self.staging.mkdir(parents=True, exist_ok=True)
        for role in self.targets:
            self._envs[role] = self._open_env(role)
            if role in self.png_dirs:
                (self.staging / f'{role}.png').mkdir(exist_ok=True)
        if resumed:
            stored = [self._stored_keys(role) for role in self.targets]
            for entry in resumed:
                keys = [r['key'] for r in entry['records']]
                if all(k in s for s in stored for k in keys):
                    self.done[entry['task']] = entry
                    self._keys.update({k: entry['task'] for k in keys})
        # Rewrite the journal so it lists exactly the committed tasks.
        tmp = self.journal_path.with_suffix('.tmp')
        with open(tmp, 'w') as f:
            f.write(json.dumps({'header': self.header}, sort_keys=True) + '\n')
            for entry in sorted(self.done.values(), key=lambda e: e['index']):
                f.write(json.dumps(entry, sort_keys=True) + '\n')
        os.replace(tmp, self.journal_path)
        self._txns = {role: env.begin(write=True) for role, env in self._envs.items()}

    def _open_env(self, role: str) -> lmdb.Environment:
        return lmdb.open(str(self.staging / f'{role}.lmdb'), map_size=self.map_size)

    def _read_journal(self) -> list[dict[str, Any]] | None:
        """Committed entries of a previous run with the same header, or None when it cannot be resumed."""
        if not self.journal_path.exists():
            return None
        entries = []
        with open(self.journal_path) as f:
            lines = f.read().splitlines()
        try:
            header = json.loads(lines[0])['header']
        except (IndexError, KeyError, ValueError):
            return None
        if header != self.header:
            warnings.warn(f'{self.staging} was started with different settings; restarting it', stacklevel=3)
            return None
        for line in lines[1:]:
            try:
                entry = json.loads(line)
            except ValueError:  # a line cut off by the interruption
                break
            if entry.get('finished'):
                self._finished_marker = True
            else:
                entries.append(entry)
        return entries

    def _stored_keys(self, role: str) -> set[str]:
        with self._envs[role].begin() as txn:
            return {k.decode('ascii') for k in txn.cursor().iternext(keys=True, values=False)}

    # --- writing ----------------------------------------------------------------------------------------------------
    def put_task(self,
                 index: int,
                 task_id: str,
                 records: Iterable[tuple[str, Mapping[str, tuple[bytes, tuple[int, int, int]]], dict[str, Any]]] = (),
                 skipped: dict[str, str] | None = None) -> None:
        """Stores one task's records: (key, {role: (png_bytes, shape)}, info) each; or marks the task skipped."""
        entry: dict[str, Any] = {'task': task_id, 'index': int(index), 'records': []}
        if skipped is not None:
            entry['skipped'] = skipped
        for key, images, info in records:
            if not _KEY.match(key):
                raise ValueError(f'invalid LMDB key {key!r} (task {task_id}): use ASCII letters, digits, _ and -')
            if key in self._keys and self._keys[key] != task_id:
                raise ValueError(f'duplicate LMDB key {key!r}: made by both {self._keys[key]} and {task_id}')
            if set(images) != set(self.targets):
                raise ValueError(f'record {key!r} has images for {sorted(images)}, expected {sorted(self.targets)}')
            self._keys[key] = task_id
            record = {'key': key, 'info': info, 'shape': {}, 'png_sha256': {}}
            for role, (data, shape) in images.items():
                self._txns[role].put(key.encode('ascii'), data)
                if role in self.png_dirs:
                    (self.staging / f'{role}.png' / f'{key}.png').write_bytes(data)
                record['shape'][role] = list(shape)
                record['png_sha256'][role] = hashlib.sha256(data).hexdigest()
            entry['records'].append(record)
        self._pending.append(entry)
        self.done[task_id] = entry
        if (int(index) + 1) % self.batch == 0:
            self.commit()

    def commit(self) -> None:
        if not self._pending:
            return
        with open(self.journal_path, 'a') as f:
            for entry in self._pending:
                f.write(json.dumps(entry, sort_keys=True) + '\n')
            f.flush()
            os.fsync(f.fileno())
        for role in self.targets:
            self._txns[role].commit()
            # LMDB reuses its page buffers within one environment, so unused page bytes depend on the history of
            # the process; reopening after every commit makes them the same for a fresh and a resumed run.
            self._envs[role].close()
            self._envs[role] = self._open_env(role)
            self._txns[role] = self._envs[role].begin(write=True)
        self._pending = []

    def discard(self) -> None:
        """Drops everything written so far, staging folder included (its inputs changed: it cannot be resumed)."""
        self.abort()
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.done, self._keys, self._finished_marker = {}, {}, False

    def abort(self) -> None:
        """Drops the uncommitted tasks and closes the LMDBs; the staging folder stays for a later resume."""
        for entry in self._pending:
            self.done.pop(entry['task'], None)
        self._pending = []
        for txn in self._txns.values():
            txn.abort()
        for env in self._envs.values():
            env.close()
        self._txns, self._envs = {}, {}

    def finish(self, summary: dict[str, Any] | None = None) -> dict[str, Path]:
        """Commits, writes meta_info.txt and manifest.json, and moves every output into place."""
        if self.already_complete:
            return dict(self.targets)
        self.commit()
        for txn in self._txns.values():
            txn.abort()
        for env in self._envs.values():
            env.close()
        self._txns, self._envs = {}, {}
        entries = sorted(self.done.values(), key=lambda e: e['index'])
        if not self._finished_marker:
            for role in self.targets:
                self._write_meta(role, entries, summary or {})
            self._remove_stale_pngs(entries)
            with open(self.journal_path, 'a') as f:
                f.write(json.dumps({'finished': True}) + '\n')
                f.flush()
                os.fsync(f.fileno())
        moves = [(self.staging / f'{r}.lmdb', p) for r, p in self.targets.items()]
        moves += [(self.staging / f'{r}.png', p) for r, p in self.png_dirs.items()]
        replaced = self.staging / 'replaced'  # outputs of an older build, deleted with the staging folder
        for src, dst in moves:
            if src.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                if dst.exists():
                    replaced.mkdir(exist_ok=True)
                    os.replace(dst, replaced / dst.name)
                os.replace(src, dst)
        shutil.rmtree(self.staging)
        return dict(self.targets)

    def _remove_stale_pngs(self, entries: list[dict[str, Any]]) -> None:
        # PNGs of tasks that were written but never committed before an interruption, and not redone since.
        wanted = {f"{rec['key']}.png" for entry in entries for rec in entry['records']}
        for role in self.png_dirs:
            for file in (self.staging / f'{role}.png').iterdir():
                if file.name not in wanted:
                    file.unlink()

    def _write_meta(self, role: str, entries: list[dict[str, Any]], summary: dict[str, Any]) -> None:
        folder = self.staging / f'{role}.lmdb'
        lines, records = [], []
        for entry in entries:
            for rec in entry['records']:
                h, w, c = rec['shape'][role]
                lines.append(f"{rec['key']}.png ({h},{w},{c}) {self.compress_level}\n")
                records.append({'key': rec['key'], 'shape': [h, w, c], 'png_sha256': rec['png_sha256'][role],
                                **rec['info']})
        (folder / 'meta_info.txt').write_text(''.join(lines))
        skipped = [e['skipped'] for e in entries if 'skipped' in e]
        manifest = {'format': MANIFEST_FORMAT, 'lmdb': role, 'num_records': len(records), **self.header,
                    'summary': {**summary, 'skipped': skipped}, 'records': records}
        (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True) + '\n')

    def __enter__(self) -> LmdbSetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._envs:
            self.abort()


def _write_items(targets, png_dirs, items, n_images, compress_level, header, overwrite) -> dict[str, Path]:
    roles = list(targets)
    with LmdbSetWriter(targets, png_dirs=png_dirs, header=header, compress_level=compress_level,
                       overwrite=overwrite) as writer:
        if writer.already_complete:
            return dict(writer.targets)
        for index, item in enumerate(items):
            if len(item) not in (n_images + 1, n_images + 2):
                raise ValueError(f'each item must be (key, {", ".join(roles)}[, info]), got {len(item)} fields')
            key = item[0]
            if key in writer.done:
                continue
            info = item[n_images + 1] if len(item) == n_images + 2 else {}
            images = {role: image_entry(img, compress_level) for role, img in zip(roles, item[1:n_images + 1])}
            writer.put_task(index, key, [(key, images, info)])
        return writer.finish()


def write_lmdb(path: str | os.PathLike,
               items: Iterable[tuple],
               *,
               png_dir: str | os.PathLike | None = None,
               compress_level: int = 1,
               header: dict[str, Any] | None = None,
               overwrite: bool = False) -> Path:
    """Writes ``(key, image[, info])`` items into one BasicSR LMDB, atomically (see :class:`LmdbSetWriter`).

    Images are uint8 or float [0, 1] arrays, HxW or HxWxC in **BGR** order (OpenCV/BasicSR convention); ``info`` is a
    JSON-serialisable dict stored with the record in manifest.json (e.g. the degradation label and parameters).
    An output that is already complete is kept and returned as is (pass ``overwrite`` to rebuild it); an interrupted
    one is resumed, skipping keys already stored.
    """
    targets = {'img': Path(path)}
    png = {'img': Path(png_dir)} if png_dir else None
    return _write_items(targets, png, items, 1, compress_level, header, overwrite)['img']


def write_paired_lmdb(out_dir: str | os.PathLike,
                      items: Iterable[tuple],
                      *,
                      names: tuple[str, str] = ('gt', 'lq'),
                      png: bool = False,
                      compress_level: int = 1,
                      header: dict[str, Any] | None = None,
                      overwrite: bool = False) -> dict[str, Path]:
    """Writes ``(key, gt, lq[, info])`` items into ``out_dir/gt.lmdb`` and ``out_dir/lq.lmdb`` with the same keys.

    With ``png`` the same images also go to ``out_dir/gt/`` and ``out_dir/lq/`` as ``{key}.png``. Returns
    ``{'gt': path, 'lq': path}``. Images as in :func:`write_lmdb` (BGR).
    """
    out_dir = Path(out_dir)
    targets = {name: out_dir / f'{name}.lmdb' for name in names}
    png_dirs = {name: out_dir / name for name in names} if png else None
    return _write_items(targets, png_dirs, items, len(names), compress_level, header, overwrite)
