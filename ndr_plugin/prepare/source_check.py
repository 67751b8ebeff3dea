"""Did the sources change since an output (or an interrupted build) was made from them?

A rerun must never reuse records made from files that were since added, removed or edited, nor keep a file out that
``--skip-bad`` left out and that was fixed since. Every record of a manifest (and of a build journal) names its source
files with their SHA-256, and skipped files carry theirs too; we compare those with the files found now.

Hashing every source again on each rerun is slow for large sets (RESIDE OTS), so the stat stamp and SHA-256 of each
source are cached in ``source_stats.json`` next to the first output's manifest: a file whose size, modification time,
inode and status-change time all match the cache is not read again (the status-change time moves on any write, even
one that restores the modification time afterwards). The cache only saves time: deleting it is safe, and it is not
part of the manifest, which stays byte-identical for identical inputs.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ndr_plugin.data.lmdb_io import MANIFEST_NAME
from ndr_plugin.prepare.sources import Task

__all__ = [
    'SourceChanges', 'SourceHasher', 'changes_since_manifest', 'changes_since_journal', 'file_sha256', 'stamp_sources',
    'recorded_shas'
]

STATS_NAME = 'source_stats.json'
_LISTED = 5  # files named per category in a message


def file_sha256(path: str | os.PathLike) -> str | None:
    """SHA-256 of a file's bytes, or None when it cannot be read (a skipped file may be unreadable)."""
    digest = hashlib.sha256()
    try:
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _stamp(path: str) -> list[int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns]


class SourceHasher:
    """SHA-256 of source files, read again only when their stat stamp differs from the cache."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / STATS_NAME
        try:
            self.stats: dict[str, list[Any]] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.stats = {}

    def __call__(self, path: str) -> str | None:
        stamp = _stamp(path)
        cached = self.stats.get(path)
        if stamp is not None and cached and cached[:-1] == stamp:
            return cached[-1]
        sha = file_sha256(path)
        if stamp is not None and sha is not None:
            self.stats[path] = [*stamp, sha]
        return sha

    def remember(self, stamps: dict[str, list[int] | None], shas: dict[str, str | None]) -> None:
        """Caches shas of files as they were stamped *before* they were read (a later edit then shows)."""
        for path, sha in shas.items():
            if stamps.get(path) is not None and sha is not None:
                self.stats[path] = [*stamps[path], sha]

    def save(self, folder: Path | None = None) -> None:
        path = (folder / STATS_NAME) if folder else self.path
        if not path.parent.is_dir():
            return
        tmp = path.with_suffix('.tmp')
        try:
            tmp.write_text(json.dumps(self.stats, sort_keys=True))
            os.replace(tmp, path)
        except OSError:  # e.g. a read-only copy: the cache only saves time, the next run hashes again
            pass


@dataclass
class SourceChanges:
    """Source files added, removed or edited (or skipped ones fixed) since the previous build."""
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def describe(self) -> str:
        parts = []
        for what, files in (('added', self.added), ('removed', self.removed), ('changed', self.changed)):
            if files:
                more = f' and {len(files) - _LISTED} more' if len(files) > _LISTED else ''
                parts.append(f'{len(files)} {what}: {", ".join(files[:_LISTED])}{more}')
        return '; '.join(parts)


def stamp_sources(tasks: Iterable[Task]) -> dict[str, list[int] | None]:
    """The stat stamp of every source file, taken before a build reads them."""
    return {path: _stamp(path) for task in tasks for path in task.files.values()}


def recorded_shas(tasks: Iterable[Task], entries: Iterable[dict[str, Any]]) -> dict[str, str | None]:
    """Source path -> SHA-256 as the build recorded it (records' sources and skipped files)."""
    by_name = {(role, task.names[role]): path for task in tasks for role, path in task.files.items()}
    shas = {}
    for entry in entries:
        for record in entry['records']:
            for role, source in record['info'].get('source', {}).items():
                if (role, source['file']) in by_name:
                    shas[by_name[(role, source['file'])]] = source['sha256']
        if 'skipped' in entry:
            shas[entry['skipped']['file']] = entry['skipped'].get('sha256')
    return shas


def _compare(previous: dict[tuple[str, str], str], skipped: dict[str, str | None], tasks: list[Task],
             hasher: SourceHasher, complete: bool) -> SourceChanges:
    current = {(role, task.names[role]): path for task in tasks for role, path in task.files.items()}
    paths = set(current.values())
    changes = SourceChanges()
    changes.changed = sorted({path for key, path in current.items() if key in previous
                              and hasher(path) != previous[key]}
                             | {path for path, sha in skipped.items() if path in paths and hasher(path) != sha})
    changes.removed = sorted({key[1] for key in previous if key not in current}
                             | {path for path in skipped if path not in paths})
    if complete:  # an unfinished build simply has not reached the new files yet
        changes.added = sorted({path for key, path in current.items() if key not in previous and path not in skipped})
    return changes


def changes_since_manifest(target: Path, tasks: list[Task]) -> tuple[SourceChanges, SourceHasher]:
    """Compares the sources of a finished output (its manifest.json) with the tasks found now."""
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    previous = {(role, source['file']): source['sha256'] for record in manifest.get('records', [])
                for role, source in record.get('source', {}).items()}
    skipped = {e['file']: e.get('sha256') for e in manifest.get('summary', {}).get('skipped', [])}
    hasher = SourceHasher(target)
    return _compare(previous, skipped, tasks, hasher, complete=True), hasher


def changes_since_journal(entries: Iterable[dict[str, Any]], tasks: list[Task], hasher: SourceHasher) -> SourceChanges:
    """Compares the tasks an interrupted build already committed with their sources now (edited, removed or fixed
    files)."""
    previous, skipped = {}, {}
    for entry in entries:
        for record in entry['records']:
            for role, source in record['info'].get('source', {}).items():
                previous[(role, source['file'])] = source['sha256']
        if 'skipped' in entry:
            skipped[entry['skipped']['file']] = entry['skipped'].get('sha256')
    return _compare(previous, skipped, tasks, hasher, complete=False)
