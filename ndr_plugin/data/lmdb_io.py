"""Reading and checking BasicSR LMDBs (written by :mod:`ndr_plugin.prepare.lmdb_writer` or by BasicSR itself).

Format: a folder ``<name>.lmdb`` holding ``data.mdb`` and ``lock.mdb``, PNG-encoded values under flat ASCII keys, and
``meta_info.txt`` with one line per record ``'{key}.png ({h},{w},{c}) {compress_level}'``; ours also carry
``manifest.json`` (see the writer).

Before an LMDB is mapped, :func:`check_data_file` compares the size of ``data.mdb`` with the size its own header says
is in use: LMDB maps the file into memory, and reading a page past the end of a truncated copy kills the process with
SIGBUS (no exception, no message).
"""
from __future__ import annotations

import os
import re
import struct
from collections import Counter
from pathlib import Path

import lmdb
import numpy as np

__all__ = [
    'read_meta_info', 'check_lmdb', 'check_data_file', 'open_reader', 'close_readers', 'LmdbFormatError',
    'MANIFEST_NAME'
]

MANIFEST_NAME = 'manifest.json'
_META_LINE = re.compile(r'^([A-Za-z0-9_-]+)\.png \((\d+),(\d+),(\d+)\) (\d+)$')
_CHECKED: dict[tuple[str, int, int], list[str]] = {}  # LMDBs already checked in this process, by file times


class LmdbFormatError(ValueError):
    """An LMDB folder that is incomplete or whose meta_info.txt does not match its records."""


# LMDB's on-disk header (lmdb.h / mdb.c, 64-bit little-endian builds as py-lmdb ships them): pages 0 and 1 each hold a
# meta record after the 16-byte page header; the newer one (higher txnid) is the current state.
_MDB_MAGIC = 0xBEEFC0DE
_META_PAGE_FLAG = 0x08  # P_META in the page header's mp_flags (offset 10)
_MAGIC_AT, _PAGE_SIZE_AT, _LAST_PAGE_AT = 16, 40, 136  # mm_magic, mm_dbs[FREE_DBI].md_pad (= page size), mm_last_pg
_MIN_PAGE, _MAX_PAGE = 512, 1 << 16


def _meta(header: bytes, offset: int) -> tuple[int, int, int] | None:
    """(page size, last page number, txnid) of the meta page at ``offset``, or None when it is not one."""
    if len(header) < offset + _LAST_PAGE_AT + 16:
        return None
    flags = struct.unpack_from('<H', header, offset + 10)[0]
    magic = struct.unpack_from('<I', header, offset + _MAGIC_AT)[0]
    page_size = struct.unpack_from('<I', header, offset + _PAGE_SIZE_AT)[0]
    last_page, txnid = struct.unpack_from('<QQ', header, offset + _LAST_PAGE_AT)
    if magic != _MDB_MAGIC or not flags & _META_PAGE_FLAG or not _MIN_PAGE <= page_size <= _MAX_PAGE:
        return None
    return page_size, last_page, txnid


def check_data_file(path: str | os.PathLike) -> None:
    """Refuses an LMDB folder whose ``data.mdb`` is shorter than the pages its header says are in use (a truncated
    copy or download), before anything maps it."""
    data = Path(path) / 'data.mdb'
    try:
        size = data.stat().st_size
        with open(data, 'rb') as f:
            header = f.read(2 * _MAX_PAGE)
    except OSError as err:
        raise LmdbFormatError(f'{data}: cannot be read ({err.strerror or err})') from None
    first = _meta(header, 0)
    if first is None:
        raise LmdbFormatError(f'{data}: not an LMDB data file (no valid LMDB header: magic 0xBEEFC0DE expected)')
    second = _meta(header, first[0])
    page_size, last_page, _ = max((m for m in (first, second) if m is not None), key=lambda m: m[2])
    needed = (last_page + 1) * page_size
    if size < needed:
        raise LmdbFormatError(f'{data}: truncated: {size} bytes, but its LMDB header says {last_page + 1} pages of '
                              f'{page_size} bytes ({needed} bytes) are in use (an incomplete copy?); copy it again '
                              'or rebuild it')


_READERS: dict[str, lmdb.Environment] = {}


def open_reader(path: str | os.PathLike) -> lmdb.Environment:
    """The read-only handle of an LMDB in this process, opened on first use (e.g. inside a DataLoader worker).

    LMDB allows one handle per environment and process, and py-lmdb refuses to open in a forked child an environment
    its parent holds; so handles are shared within a process and all closed just before the process forks (they are
    reopened on the next read).
    """
    key = os.path.abspath(path)
    env = _READERS.get(key)
    if env is None:
        check_data_file(path)
        try:
            env = lmdb.open(key, readonly=True, lock=False, readahead=False)
        except lmdb.Error as err:
            raise LmdbFormatError(f'{path}: cannot be opened as an LMDB ({err})') from None
        _READERS[key] = env
    return env


def close_readers() -> None:
    for env in _READERS.values():
        env.close()
    _READERS.clear()


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(before=close_readers)


def read_meta_info(path: str | os.PathLike) -> list[tuple[str, tuple[int, int, int], int]]:
    """Parses ``meta_info.txt`` of an LMDB folder into (key, (h, w, c), compress_level); strict about the format."""
    meta = Path(path) / 'meta_info.txt'
    if not meta.is_file():
        raise LmdbFormatError(f'{path}: meta_info.txt is missing; is this an LMDB made by BasicSR or ndr_plugin?')
    out = []
    for number, line in enumerate(meta.read_text().splitlines(), 1):
        match = _META_LINE.match(line.strip())
        if not match:
            raise LmdbFormatError(f"{meta}, line {number}: expected '<key>.png (<h>,<w>,<c>) <level>', got {line!r}")
        key, h, w, c, level = match.groups()
        out.append((key, (int(h), int(w), int(c)), int(level)))
    return out


def check_lmdb(path: str | os.PathLike, *, deep: bool = False) -> list[str]:
    """Checks that an LMDB folder is complete and that meta_info.txt matches its records; returns the keys.

    With ``deep`` every value is also decoded and its shape compared with meta_info.txt.
    """
    path = Path(path)
    if path.name.endswith('.partial') or path.with_name(path.name + '.partial').exists():
        raise LmdbFormatError(f'{path}: an unfinished build (.partial) exists; rerun the preparation to complete it')
    if not path.is_dir():
        raise LmdbFormatError(f'{path}: LMDB folder does not exist')
    if path.suffix != '.lmdb':
        raise LmdbFormatError(f"{path}: BasicSR requires LMDB folder names ending in '.lmdb'")
    if not (path / 'data.mdb').is_file():
        raise LmdbFormatError(f'{path}: data.mdb is missing')
    check_data_file(path)
    meta = read_meta_info(path)
    keys = [m[0] for m in meta]
    duplicates = sorted(k for k, n in Counter(keys).items() if n > 1)
    if duplicates:
        raise LmdbFormatError(f'{path}: meta_info.txt lists key(s) more than once: {duplicates[:5]}')
    stamp = (str(path.resolve()), (path / 'data.mdb').stat().st_mtime_ns, (path / 'meta_info.txt').stat().st_mtime_ns)
    if not deep and _CHECKED.get(stamp) == keys:
        return keys
    shared = os.path.abspath(path) in _READERS
    try:
        env = open_reader(path) if shared else lmdb.open(str(path), readonly=True, lock=False, readahead=False)
    except lmdb.Error as err:
        if 'already open' in str(err):  # another reader in this process holds it (one handle per process)
            return keys
        raise LmdbFormatError(f'{path}: cannot be opened as an LMDB ({err})') from None
    try:
        with env.begin() as txn:
            stored = {k.decode('ascii', 'replace') for k in txn.cursor().iternext(keys=True, values=False)}
            missing = sorted(set(keys) - stored)
            extra = sorted(stored - set(keys))
            if missing or extra:
                raise LmdbFormatError(
                    f'{path}: meta_info.txt does not match the records: {len(keys)} listed, {len(stored)} stored; '
                    f'listed but not stored: {missing[:5]}{"..." if len(missing) > 5 else ""}; '
                    f'stored but not listed: {extra[:5]}{"..." if len(extra) > 5 else ""}')
            if deep:
                import cv2
                for key, shape, _ in meta:
                    img = cv2.imdecode(np.frombuffer(txn.get(key.encode('ascii')), np.uint8), cv2.IMREAD_UNCHANGED)
                    got = None if img is None else (img.shape[0], img.shape[1], 1 if img.ndim == 2 else img.shape[2])
                    if got != shape:
                        raise LmdbFormatError(f'{path}: record {key!r} decodes to shape {got}, meta_info says {shape}')
    finally:
        if not shared:  # leave no handle behind: BasicSR's own readers must be able to open it in this process
            env.close()
    _CHECKED[stamp] = list(keys)
    return keys
