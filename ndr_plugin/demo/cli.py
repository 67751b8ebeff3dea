"""NDR learns to restore, on any machine, with no data set downloaded (``make demo``, ``python -m ndr_plugin.demo``).

The command line runs each step as a user would: it builds the data, writes the option files, trains and tests with
``python -m ndr_plugin.train`` and ``python -m ndr_plugin.test`` (BasicSR's own loops, each with its own log file),
then scores and writes the report.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ndr_plugin.demo import real_benchmarks
from ndr_plugin.demo.options import BASELINES, test_options, train_options, write_yaml
from ndr_plugin.demo.photos import build_data
from ndr_plugin.demo.report import (grid_rows, score_shipped, score_test_sets, table, write_grid, write_metrics,
                                    write_report)


def _run_entry_point(module: str, option_file: Path) -> None:
    """Run ``python -m MODULE -opt FILE`` as a user would (each run gets its own BasicSR log file)."""
    proc = subprocess.run([sys.executable, '-m', module, '-opt', str(option_file)])
    if proc.returncode != 0:
        raise SystemExit(f'ndr-demo: python -m {module} -opt {option_file} failed (exit {proc.returncode})')


def _train_and_test(name: str, data_root: Path, iters: int, seed: int, model: str,
                    amp: str | bool = False) -> tuple[dict[str, Any], Path]:
    """Train, then test on the held-out photographs; returns the training options and the trained weights."""
    options_dir = Path('options_generated') / name
    train_opt = train_options(name, data_root, iters, seed, model)
    if amp:
        train_opt['train']['amp'] = amp
    train_yml = write_yaml(train_opt, options_dir / 'train.yml')
    print(f"Training a tiny {train_opt['network_g']['type']} for {iters} iterations (options: {train_yml})")
    _run_entry_point('ndr_plugin.train', train_yml)
    weights = Path('experiments') / name / 'models' / 'net_g_latest.pth'
    test_yml = write_yaml(test_options(name, data_root, weights, model), options_dir / 'test.yml')
    print(f'Testing on the held-out photographs (options: {test_yml})')
    _run_entry_point('ndr_plugin.test', test_yml)
    return train_opt, weights


def run(name: str, iters: int, seed: int, data_root: Path, real_root: Path | None, real_max: int,
        per_photo: int, variants: int, model: str = 'ndr', amp: str | bool = False,
        show_shipped: bool = True) -> dict[str, Any]:
    """The whole demo in the current folder; returns the metrics of the held-out test sets.

    ``show_shipped``: also restore the held-out photographs with the shipped compact NDRNet (grid column, report
    table), next to the network trained here.

    ``real_root``: a folder laid out as :mod:`ndr_plugin.demo.real_benchmarks` describes, or None to skip that table.
    """
    start = time.time()
    build_data(data_root, seed, per_photo, variants)
    train_opt, weights = _train_and_test(name, data_root, iters, seed, model, amp)
    results = Path('results') / name
    metrics, firsts = score_test_sets(data_root, results)
    shipped, shipped_firsts, description = None, None, None
    if show_shipped:
        from ndr_plugin.weights import shipped_description
        shipped, shipped_firsts = score_shipped(data_root, results)
        description = shipped_description()
    grid = write_grid(grid_rows(firsts, shipped_firsts), results / 'grid.png')
    real = None
    if real_root is not None:
        print(f'Scoring real benchmark pairs from {real_root}')
        real = real_benchmarks.score_real(weights, train_opt['network_g'], real_root, real_max)
    metrics_file = write_metrics(results, metrics, real, shipped)
    report = write_report(results, metrics, real, train_opt, time.time() - start, shipped, description)
    print('\n'.join(table(metrics)))
    if shipped:
        print('\nThe same photographs restored by the shipped compact NDRNet (what ndr-restore uses by default):')
        print('\n'.join(table(shipped)))
    print(f'\nReport: {report}\nMetrics: {metrics_file}\nImages: {grid}')
    return metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='ndr-demo', description=__doc__.split('\n\n')[0],
                                     epilog=real_benchmarks.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', choices=['ndr', *BASELINES], default='ndr',
                        help='ndr (default), or a baseline trained on the same data: no_ndr (the NDRNet backbone '
                             'without NDR), promptir (a tiny PromptIR)')
    parser.add_argument('--name', default=None, help='experiment and results name (default ndr_demo[_MODEL])')
    parser.add_argument('--iters', type=int, default=600, help='training iterations (default 600)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--amp', choices=['bf16', 'fp16'], default=None,
                        help='train in mixed precision (train.amp); testing stays float32 (default: float32 training)')
    parser.add_argument('--data-root', default='datasets/ndr_demo', help='where the demo LMDBs are built')
    parser.add_argument('--no-shipped', action='store_true',
                        help='leave out the shipped compact NDRNet (by default the held-out photographs are also '
                             'restored by it, next to the network trained here)')
    parser.add_argument('--real-data', metavar='DIR', default=None,
                        help='also score the trained model on the real benchmark pairs in DIR (its subfolders are '
                             'listed below); without it the report has no real-benchmark table')
    parser.add_argument('--real-max', type=int, default=10, help='images per real test set (default 10)')
    parser.add_argument('--patches-per-photo', type=int, default=24, help=argparse.SUPPRESS)
    parser.add_argument('--variants', type=int, default=2, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    real_root = None
    if args.real_data is not None:
        if not args.real_data:
            parser.error('--real-data: empty folder name (leave the option out to skip the real-benchmark table)')
        real_root = Path(args.real_data)
        try:  # before the minutes of training, not after
            real_benchmarks.check_real_root(real_root)
        except FileNotFoundError as err:
            parser.error(str(err))
    name = args.name or ('ndr_demo' if args.model == 'ndr' else f'ndr_demo_{args.model}')
    run(name, args.iters, args.seed, Path(args.data_root), real_root, args.real_max, args.patches_per_photo,
        args.variants, args.model, args.amp or False, not args.no_shipped)
    return 0
