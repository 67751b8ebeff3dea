"""``ndr-reproduce SETTING --data DIR``: one benchmark table from raw data, in one resumable command.

Stages, each skipped when its marker (``WORK/state/...done``) exists: check the raw folders, ``ndr-prepare`` each
dataset (also resumable inside), train (``torchrun`` when ``--gpus`` > 1; ``--auto_resume`` continues an
interrupted run), test, and write the comparison table (``ndr-compare``) beside the published numbers, with the
wall-clock and GPU-hours each stage used. ``--tiny`` runs the same chain with tiny networks and a few iterations on
CPU (a check of the data and the chain, not a result).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any

from ndr_plugin.reproduce import option_files
from ndr_plugin.reproduce.settings import MODELS, SETTINGS, PrepareStep, Setting, layout_help
from ndr_plugin.reproduce.stages import StageBook, StageError, run_command
from ndr_plugin.reproduce.table import write_report

__all__ = ['main', 'build_parser', 'Reproduction']

EPILOG = layout_help() + """

outputs under --work (default ./ndr-reproduce, ./ndr-reproduce-tiny with --tiny):
  datasets/   the prepared LMDBs          options/   the option files that were run
  experiments/, results/   BasicSR runs   logs/      the output of every training and test
  tables/<setting>.md      the table      state/     stage markers (delete one to redo that stage)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='ndr-reproduce', description=__doc__.split('\n\n')[1].replace('``', ''),
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    parser.add_argument('setting', choices=sorted(SETTINGS), help='which table')
    parser.add_argument('--data', required=True, help='folder of the raw datasets (layout below)')
    parser.add_argument('--model', choices=MODELS, default='ndr', help='model to train and test (default ndr)')
    parser.add_argument('--gpus', type=int, default=None, help='GPUs for training (default: 1 if CUDA is available, '
                        'else 0 = CPU); more than 1 trains with torchrun')
    parser.add_argument('--work', default=None, help='output folder (default ./ndr-reproduce)')
    parser.add_argument('--options', default=None, help='folder of the shipped option files (default: options/ '
                        'of this checkout)')
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1, help='ndr-prepare processes')
    parser.add_argument('--dry-run', action='store_true', help='print the command of every stage, run nothing')
    parser.add_argument('--tiny', action='store_true', help='tiny networks, a few iterations, CPU: checks the data '
                        'and the whole chain in minutes')
    return parser


def _prepare(step: PrepareStep, data: Path, work: Path, tiny: bool, workers: int) -> dict[str, Any]:
    """One ndr-prepare run; its split warnings (differences from the published splits) go into the marker."""
    from ndr_plugin.data.dataset_files import BadInputError
    from ndr_plugin.prepare.kinds import prepare
    options = dict(step.options)
    if tiny:
        options['subset'] = 'all'  # a miniature tree is not the standard list
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', UserWarning)
        try:
            results = prepare(step.kind, [data / s for s in step.sources], work / step.out, workers=workers,
                              progress=not tiny, **options)
        except (BadInputError, OSError, ValueError) as err:
            raise StageError(f'ndr-prepare {step.kind} ({", ".join(step.sources)}): {err}. Finished outputs are '
                             'kept; fix the data and rerun the same command.') from err
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    for message in messages:
        print(f'  warning: {message}', flush=True)
    return {'warnings': messages, 'records': sum(r.get('records') or 0 for r in results)}


class Reproduction:
    """The chain of one (setting, model) under one work folder."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.setting: Setting = SETTINGS[args.setting]
        if args.model not in self.setting.train_options:
            raise ValueError(f'--model {args.model}: no option file for the {args.setting} setting; available: '
                             f'{", ".join(self.setting.train_options)}')
        self.model, self.tiny, self.dry_run, self.workers = args.model, args.tiny, args.dry_run, args.workers
        self.data = Path(args.data).resolve()
        self.work = Path(args.work or ('ndr-reproduce-tiny' if args.tiny else 'ndr-reproduce')).resolve()
        self.options_dir = Path(args.options).resolve() if args.options else option_files.default_options_dir()
        self.gpus = self._gpus(args.gpus)
        self.book = StageBook(self.work / 'state', args.dry_run)

    def _gpus(self, requested: int | None) -> int:
        if requested is not None and requested < 0:
            raise ValueError(f'--gpus must be 0 or more, got {requested}')
        if requested is not None:
            return requested
        if self.tiny:
            return 0
        import torch
        return 1 if torch.cuda.is_available() else 0

    def run(self) -> Path | None:
        for step in self.setting.steps:
            # A prepared dataset whose raw folders are still there is checked again: ndr-prepare reuses it only if
            # its sources are unchanged (cheap) and rebuilds it otherwise.
            if not self.dry_run and all((self.data / s).is_dir() for s in step.sources):
                self.book.forget(f'prepare/{step.marker}')
        self.check_data()
        for step in self.setting.steps:
            sources = [arg for s in step.sources for arg in ('--src', str(self.data / s))]
            shown = shlex.join(['ndr-prepare', step.kind] + sources + ['--out', str(self.work / step.out)]
                               + step.cli_args() + self._prepare_extra())
            self.book.run(f'prepare/{step.marker}', shown,
                          lambda step=step: _prepare(step, self.data, self.work, self.tiny,
                                                     1 if self.tiny else self.workers))
        if not self.dry_run:
            self.check_same_data()
        trained = self.write_option_files()
        self.train(trained)
        self.test(trained)
        return self.table()

    def check_same_data(self) -> None:
        """Models, results and tables belong to the data they were made from: refuse them once that data changed."""
        digest = hashlib.sha256()
        for manifest in sorted((self.work / 'datasets').rglob('manifest.json')):
            digest.update(str(manifest.relative_to(self.work)).encode() + b'\0' + manifest.read_bytes())
        record = self.book.state_dir / 'datasets.sha256'
        made = [p for p in self.book.state_dir.rglob('*.done') if p.parent.name != 'prepare']
        if record.is_file() and record.read_text().strip() != digest.hexdigest() and made:
            raise StageError(f'the prepared data in {self.work / "datasets"} changed since the models and tables in '
                             f'{self.work} were made (its manifests differ). Use a new --work, or remove '
                             f'{self.work / "experiments"}, {self.work / "results"} and the markers in '
                             f'{self.book.state_dir} other than prepare/ to train again on the new data.')
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(digest.hexdigest() + '\n')

    def _prepare_extra(self) -> list[str]:
        return ['--subset', 'all', '--workers', '1', '--quiet'] if self.tiny else ['--workers', str(self.workers)]

    def check_data(self) -> None:
        """Every raw folder a not yet prepared dataset needs must exist; all missing ones are named at once."""
        missing = [self.data / s for step in self.setting.steps if not self.book.done(f'prepare/{step.marker}')
                   for s in step.sources if not (self.data / s).is_dir()]
        if missing and not self.dry_run:
            raise StageError(f'--data {self.data}: missing folder(s) for {self.setting.name}: '
                             f'{", ".join(str(m) for m in missing)} (expected layout: ndr-reproduce --help)')

    def _option_path(self, name: str) -> Path:
        return self.work / 'options' / f'{name}.yml'

    def write_option_files(self) -> dict[str, Any]:
        trained = option_files.training_options(self.options_dir, self.setting.train_options[self.model], self.work,
                                                self.tiny)
        tested = option_files.test_options(self.options_dir, self.setting.test_options, trained, self.work,
                                           self.tiny)
        if not self.tiny:  # 'auto' would take every visible GPU (DataParallel); the GPU-hours count --gpus
            trained['num_gpu'], tested['num_gpu'] = self.gpus, min(self.gpus, 1)
        if not self.dry_run:
            option_files.write_options(trained, self._option_path(trained['name']))
            option_files.write_options(tested, self._option_path(tested['name']))
        return trained

    def train(self, trained: dict[str, Any]) -> None:
        opt = str(self._option_path(trained['name']))
        if self.gpus > 1:
            command = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={self.gpus}',
                       '-m', 'ndr_plugin.train', '-opt', opt, '--launcher', 'pytorch', '--auto_resume']
            shown = shlex.join(['torchrun'] + command[3:])
        else:
            command = [sys.executable, '-m', 'ndr_plugin.train', '-opt', opt, '--auto_resume']
            shown = shlex.join(['ndr-train'] + command[3:])
        log = self.work / 'logs' / f'train_{trained["name"]}.log'
        self.book.run(f'{self.setting.name}/train_{self.model}', f'(in {self.work}) {shown}',
                      lambda: run_command('train', command, self.work, log), gpus=self.gpus)

    def test(self, trained: dict[str, Any]) -> None:
        opt = str(self._option_path(f'test_{trained["name"]}'))
        command = [sys.executable, '-m', 'ndr_plugin.test', '-opt', opt]
        log = self.work / 'logs' / f'test_{trained["name"]}.log'
        self.book.run(f'{self.setting.name}/test_{self.model}',
                      f'(in {self.work}) {shlex.join(["ndr-test"] + command[3:])}',
                      lambda: run_command('test', command, self.work, log) | {'results': f'test_{trained["name"]}'},
                      gpus=min(self.gpus, 1))

    def table(self) -> Path | None:
        """Rewritten whenever the set of tested models of this setting changed (``--model`` runs add rows)."""
        stage = f'{self.setting.name}/table'
        tested = {m: self.book.done(f'{self.setting.name}/test_{m}') for m in self.setting.train_options}
        tested = {m: done for m, done in tested.items() if done}
        if self.dry_run:
            print(f'[run] {stage}: ndr-compare {self.work}/results/test_<name> ... --protocol aio|basicsr '
                  f'--out {self.work}/tables/{self.setting.name}_<protocol>.md', flush=True)
            return None
        previous = self.book.done(stage)
        if previous is not None and previous['details'].get('models') != sorted(tested):
            self.book.forget(stage)
        out = self.work / 'tables' / f'{self.setting.name}.md'
        self.book.run(stage, f'ndr-compare ... -> {out}',
                      lambda: write_report(self.setting, self.work, self.book, tested, self.tiny) | {
                          'models': sorted(tested)})
        return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        reproduction = Reproduction(args)
        out = reproduction.run()
    except (StageError, ValueError, FileNotFoundError) as err:
        print(f'ndr-reproduce: error: {err}', file=sys.stderr)
        return 2
    if out is not None:
        print(f'Table: {out}')
    return 0
