"""Stage bookkeeping of ``ndr-reproduce``: a marker file per finished stage (so a rerun skips it) and the wall-clock
each stage used, summed over interrupted attempts (so the reported cost includes the time lost to a crash)."""
from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ['StageError', 'StageBook']


class StageError(RuntimeError):
    """A stage failed; the message names it and says how to resume."""


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + '.partial')
    partial.write_text(json.dumps(data, indent=1, sort_keys=True), encoding='utf-8')
    partial.replace(path)


class StageBook:
    """Markers ``<state>/<stage>.done`` (JSON: seconds, gpus, details) and ``<stage>.spent`` for unfinished attempts."""

    def __init__(self, state_dir: Path, dry_run: bool) -> None:
        self.state_dir = state_dir
        self.dry_run = dry_run

    def _marker(self, stage: str) -> Path:
        return self.state_dir / f'{stage}.done'

    def done(self, stage: str) -> dict[str, Any] | None:
        marker = self._marker(stage)
        return json.loads(marker.read_text(encoding='utf-8')) if marker.is_file() else None

    def _spent(self, stage: str) -> float:
        spent = self.state_dir / f'{stage}.spent'
        return json.loads(spent.read_text(encoding='utf-8'))['seconds'] if spent.is_file() else 0.0

    def run(self, stage: str, shown: str, action: Callable[[], dict[str, Any] | None], gpus: int = 0) -> None:
        """Run ``action`` unless ``stage`` is done; ``shown`` is the command printed (and all ``--dry-run`` does)."""
        finished = self.done(stage)
        if finished is not None:
            print(f'[done] {stage} ({finished["seconds"] / 60:.1f} min)', flush=True)
            return
        print(f'[run] {stage}: {shown}', flush=True)
        if self.dry_run:
            return
        start, before, finished_ok = time.monotonic(), self._spent(stage), False
        try:
            details = action() or {}
            finished_ok = True
        finally:
            seconds = before + time.monotonic() - start
            if not finished_ok:
                _write_json(self.state_dir / f'{stage}.spent', {'seconds': seconds})
        _write_json(self._marker(stage), {'seconds': seconds, 'gpus': gpus, 'finished': time.time(),
                                          'details': details})
        (self.state_dir / f'{stage}.spent').unlink(missing_ok=True)

    def forget(self, stage: str) -> None:
        """Mark ``stage`` as to be redone (the table, when the set of tested models changed)."""
        self._marker(stage).unlink(missing_ok=True)


def run_command(stage: str, command: list[str], cwd: Path, log: Path) -> dict[str, Any]:
    """Run ``command`` in ``cwd``, its output to the terminal and to ``log``; a failure raises :class:`StageError`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, 'a', encoding='utf-8') as out:
        out.write(f'$ {shlex.join(command)}\n')
        out.flush()
        proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            print(line, end='', flush=True)
            out.write(line)
        status = proc.wait()
    if status != 0:
        raise StageError(f'stage {stage} failed (exit status {status}); its output is in {log}. Fix the cause and '
                         'rerun the same command: finished stages are skipped and training resumes from its last '
                         'saved state.')
    return {'command': command}
