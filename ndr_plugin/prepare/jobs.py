"""Running one output set (a *job*): tasks through the worker pool into :class:`LmdbSetWriter`, in input order.

Writing in input order at fixed commit points makes the bytes independent of the number of workers and lets an
interrupted run resume. A finished output is reused only when its sources are unchanged (see
:mod:`ndr_plugin.prepare.source_check`); otherwise it is rebuilt next to the old one and swapped in when complete.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ndr_plugin.data.dataset_files import BadInputError
from ndr_plugin.prepare import standard_splits
from ndr_plugin.prepare.lmdb_writer import LmdbSetWriter
from ndr_plugin.prepare.processing import ProcessSpec, process_task, start_pool
from ndr_plugin.prepare.source_check import (SourceHasher, changes_since_journal, changes_since_manifest,
                                             file_sha256, recorded_shas, stamp_sources)
from ndr_plugin.prepare.sources import Task

__all__ = ['Job', 'make_job', 'run_job', 'BadInputsError', 'check_problems']


@dataclass
class Job:
    """One output set: its LMDBs (and PNG folders), tasks, processing, and the split report for the manifest."""
    name: str
    targets: dict[str, Path]
    png_dirs: dict[str, Path]
    tasks: list[Task]
    spec: ProcessSpec
    header: dict[str, Any]
    report: standard_splits.SplitReport | None = None
    problems: list[BadInputError] = field(default_factory=list)

    @property
    def first_target(self) -> Path:
        return next(iter(self.targets.values()))


def make_job(name: str, folder: Path, roles: tuple[str, ...], png: bool, tasks: list[Task], spec: ProcessSpec,
             header: dict[str, Any], report: standard_splits.SplitReport | None) -> Job:
    """A job writing ``folder/{role}.lmdb`` for each role (and ``folder/{role}/`` PNG copies with ``png``)."""
    targets = {role: folder / f'{role}.lmdb' for role in roles}
    png_dirs = {role: folder / role for role in roles} if png else {}
    return Job(name, targets, png_dirs, tasks, spec, header, report)


class BadInputsError(BadInputError):
    """Several bad inputs found while listing the sources; the message names every one (up to 20)."""

    def __init__(self, problems: list[BadInputError]) -> None:
        super().__init__(problems[0].path, problems[0].reason)
        self.problems = problems

    def __reduce__(self):
        return type(self), (self.problems, )

    def __str__(self) -> str:
        listed = '\n  '.join(str(p) for p in self.problems[:20])
        more = f'\n  ... and {len(self.problems) - 20} more' if len(self.problems) > 20 else ''
        return f'{len(self.problems)} bad inputs (use --skip-bad to leave them out):\n  {listed}{more}'


def check_problems(problems: list[BadInputError], skip_bad: bool) -> None:
    if problems and not skip_bad:
        raise problems[0] if len(problems) == 1 else BadInputsError(problems)


def _open_writer(job: Job, overwrite: bool) -> tuple[LmdbSetWriter | None, SourceHasher]:
    """The writer of a job, or None when a finished output built from the same sources exists.

    Changed sources are announced with ``warnings.warn`` (naming the files): a finished output is then rebuilt next
    to the old one, an interrupted build restarted.
    """
    writer = LmdbSetWriter(job.targets, png_dirs=job.png_dirs, header=job.header,
                           compress_level=job.spec.compress_level, overwrite=overwrite)
    if writer.already_complete:
        changes, hasher = changes_since_manifest(job.first_target, job.tasks)
        if not changes:
            return None, hasher
        warnings.warn(f'{job.name}: the sources changed since {job.first_target} was built ({changes.describe()}); '
                      'rebuilding it (the old output stays until the new one is complete)', stacklevel=4)
        return _replacing_writer(job), hasher
    hasher = SourceHasher(job.first_target) if job.first_target.is_dir() else SourceHasher(writer.staging)
    changes = changes_since_journal(writer.done.values(), job.tasks, hasher)
    if changes:
        warnings.warn(f'{job.name}: the sources changed since the interrupted build in {writer.staging} started '
                      f'({changes.describe()}); starting it again', stacklevel=4)
        writer.discard()
        writer = _replacing_writer(job)
    return writer, hasher


def _replacing_writer(job: Job) -> LmdbSetWriter:
    return LmdbSetWriter(job.targets, png_dirs=job.png_dirs, header=job.header,
                         compress_level=job.spec.compress_level, replace=True)


def _write(job: Job, writer: LmdbSetWriter, pool, workers: int, skip_bad: bool, progress: bool) -> None:
    todo = [(i, t) for i, t in enumerate(job.tasks) if t.task_id not in writer.done]
    work = partial(process_task, spec=job.spec)
    chunk = max(1, min(8, len(todo) // (4 * workers)))
    pending = [t for _, t in todo]
    results = pool.imap(work, pending, chunksize=chunk) if pool else map(work, pending)
    bar = tqdm(total=len(job.tasks), initial=len(job.tasks) - len(todo), desc=job.name, unit='img',
               disable=not progress)
    for (index, task), result in zip(todo, results):
        if isinstance(result, BadInputError):
            if not skip_bad:
                raise result
            # The hash tells a later run whether the file was fixed since.
            skipped = {'file': result.path, 'reason': result.reason, 'sha256': file_sha256(result.path)}
            writer.put_task(index, task.task_id, skipped=skipped)
        else:
            writer.put_task(index, task.task_id, result)
        bar.update(1)
    bar.close()


def run_job(job: Job, workers: int, skip_bad: bool, overwrite: bool, progress: bool) -> dict[str, Any]:
    """Builds (or resumes, or finds complete) one output set; returns its summary for the command line."""
    summary: dict[str, Any] = {'bad_inputs': [{'file': p.path, 'reason': p.reason} for p in job.problems]}
    if job.report is not None:
        summary['standard_split'] = job.report.as_dict()
    targets = {k: str(v) for k, v in job.targets.items()}
    stamps = stamp_sources(job.tasks)  # before any file is read: an edit during the build shows next time
    # The worker pool is started before any LMDB is opened, so no child process inherits an open environment.
    pool = start_pool(min(workers, len(job.tasks))) if workers > 1 and len(job.tasks) > 1 else None
    try:
        writer, hasher = _open_writer(job, overwrite)
        if writer is None:
            hasher.save()
            return {'job': job.name, 'status': 'already complete', 'targets': targets}
        with writer:
            _write(job, writer, pool, workers, skip_bad, progress)
            writer.finish(summary)
    finally:
        if pool:
            pool.terminate()
            pool.join()
    hasher.remember(stamps, recorded_shas(job.tasks, writer.done.values()))
    hasher.save(job.first_target)
    records = sum(len(e['records']) for e in writer.done.values())
    skipped_all = [e['skipped'] for e in writer.done.values() if 'skipped' in e] + summary['bad_inputs']
    return {'job': job.name, 'status': 'written', 'records': records, 'skipped': skipped_all, 'targets': targets}
