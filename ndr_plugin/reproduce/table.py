"""The report of one reproduction: ``ndr-compare``'s tables under both metric protocols, the published numbers beside
them, how the data differed from the published splits, and the wall-clock and GPU-hours every stage used."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ndr_plugin.reproduce.published import published_markdown
from ndr_plugin.reproduce.settings import Setting
from ndr_plugin.reproduce.stages import StageBook, StageError

__all__ = ['write_report']


def _compare(runs: list[str], protocol: str, out: Path, tiny: bool) -> str:
    from ndr_plugin import compare
    argv = runs + ['--protocol', protocol, '--out', str(out)]
    argv += ['--size', '64', '--repeats', '1', '--device', 'cpu'] if tiny else []
    if compare.main(argv) != 0:
        raise StageError(f'ndr-compare {" ".join(argv)} failed (see above); rerun the same command')
    return out.read_text(encoding='utf-8')


def _hours(seconds: float) -> str:
    return f'{seconds / 3600:.2f}'


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f'{minutes // 60}:{minutes % 60:02d}:{secs:02d}'


def _cost_lines(setting: Setting, book: StageBook, tested: dict[str, dict[str, Any]]) -> list[str]:
    prepared = [book.done(f'prepare/{step.marker}') for step in setting.steps]
    prepare_s = sum(done['seconds'] for done in prepared if done)
    lines = ['| model | train wall-clock (h:mm:ss) | GPUs | train GPU-hours | test wall-clock | test GPU-hours |',
             '|---|---|---|---|---|---|']
    for model, test in tested.items():
        train = book.done(f'{setting.name}/train_{model}') or {'seconds': 0.0, 'gpus': 0}
        lines.append(f'| {model} | {_clock(train["seconds"])} | {train["gpus"] or "CPU"} | '
                     f'{_hours(train["seconds"] * train["gpus"])} | {_clock(test["seconds"])} | '
                     f'{_hours(test["seconds"] * test["gpus"])} |')
    lines += ['', f'Data preparation (shared by the models, CPU): {_clock(prepare_s)} wall-clock. Times include '
              'interrupted attempts.']
    return lines


def _data_lines(setting: Setting, book: StageBook) -> list[str]:
    notes = [f'- {", ".join(step.sources)}: {message}' for step in setting.steps
             for message in ((book.done(f'prepare/{step.marker}') or {}).get('details') or {}).get('warnings', [])]
    return notes or ['- none: every dataset matched its published split.']


def write_report(setting: Setting, work: Path, book: StageBook, tested: dict[str, dict[str, Any]],
                 tiny: bool) -> dict[str, Any]:
    """Write ``WORK/tables/<setting>.md`` (and one Markdown + CSV table per protocol beside it)."""
    if not tested:
        raise StageError(f'no tested model for {setting.name} yet')
    tables = work / 'tables'
    runs = [str(work / 'results' / done['details']['results']) for done in tested.values()]
    parts = [f'# {setting.title}', '']
    if tiny:
        parts += ['**--tiny run: tiny networks and a few CPU iterations. These numbers only show that the chain '
                  'works; they are not results.**', '']
    from ndr_plugin.compare import PROTOCOL_TYPES
    for protocol in sorted(PROTOCOL_TYPES):  # aio (the published tables' protocol) first
        parts += [f'## This reproduction, {protocol} protocol', '',
                  _compare(runs, protocol, tables / f'{setting.name}_{protocol}.md', tiny)]
    parts += ['## Published', '', published_markdown(setting.name), '## Data differences from the published splits',
              ''] + _data_lines(setting, book)
    parts += ['', '## Cost', ''] + _cost_lines(setting, book, tested)
    out = tables / f'{setting.name}.md'
    out.write_text('\n'.join(parts) + '\n', encoding='utf-8')
    return {'table': str(out)}
