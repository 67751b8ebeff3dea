"""Runs every benchmark and writes ``benchmarks/results/summary.md`` (one command: ``make benchmark``).

    python benchmarks/run_all.py            # full: arch speed, data speed, tiling, learning protocol, the
                                            # ablation study, tiling on the demo model (trained first if
                                            # needed) and the paper-size network on a 12 MP photo
    python benchmarks/run_all.py --quick    # reduced sizes and a 1-minute learning budget

Each benchmark writes its own ``results/<name>.json`` and ``results/<name>.md``; the summary concatenates the Markdown
tables. None of this is part of ``make test``: timings need a quiet machine.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / 'results'
# results name -> (script, full arguments, --quick arguments)
BENCHMARKS = {
    'arch_speed': ('arch_speed', ['--threads', '2'], ['--quick', '--threads', '2']),
    'data_speed': ('data_speed', [], []),
    'tiling': ('tiling', [], ['--quick']),
    'tiling_demo': ('tiling', ['--demo'], ['--demo', '--sizes', '1']),
    # The paper-size network on a whole photo (12 MP: about 40 minutes on 2 cores; --quick: 1 MP).
    'tiling_paper': ('tiling', ['--sizes', '12', '--whole-max-mp', '0', '--passes', '0', '--paper-full', '12',
                                '--label', 'tiling_paper'],
                     ['--sizes', '1', '--whole-max-mp', '0', '--passes', '0', '--paper-full', '1',
                      '--label', 'tiling_paper']),
    'learning': ('learning', [], ['--minutes', '1']),
    # The multi-seed ablation study (about 2 hours on 2 cores; resumable: finished jobs are kept).
    'ablation': ('ablation', [], ['--quick']),
    # Training steps: batch 2 with three repeats, batch 4 with two (about 15 and 20 minutes on 2 cores).
    'train_speed': ('train_speed', ['--batches', '2'], ['--quick']),
    'train_speed_batch4': ('train_speed', ['--batches', '4', '--repeats', '2', '--label', 'train_speed_batch4'],
                           ['--quick', '--label', 'train_speed_batch4']),
    'precision': ('precision', [], ['--size', '128', '--repeats', '1', '--images', '2']),
    'onnx_speed': ('onnx_speed', [], []),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='reduced runs of every benchmark')
    parser.add_argument('--only', nargs='+', choices=sorted(BENCHMARKS), help='run only these benchmarks')
    parser.add_argument('--summary-only', action='store_true', help='rewrite summary.md from the existing results')
    args = parser.parse_args(argv)
    failed = []
    for name, (script, full, quick) in BENCHMARKS.items():
        if args.summary_only or (args.only and name not in args.only):
            continue
        start = time.time()
        print(f'== {name}', flush=True)
        proc = subprocess.run([sys.executable, str(HERE / f'{script}.py'), *(quick if args.quick else full)])
        print(f'== {name}: exit {proc.returncode} after {time.time() - start:.0f} s', flush=True)
        if proc.returncode != 0:
            failed.append(name)
    parts = ['# Benchmark summary', '',
             'Each section is the Markdown output of one script in `benchmarks/`; the JSON files beside it hold the '
             'raw numbers. Rerun with `make benchmark`.', '']
    for name in BENCHMARKS:
        md = RESULTS / f'{name}.md'
        if md.is_file():
            text = md.read_text(encoding='utf-8').strip()
            # One heading level down, so each benchmark is a section of the summary.
            parts += ['\n'.join('#' + line if line.startswith('#') else line for line in text.splitlines()), '']
        else:
            parts += [f'## {name}', '', 'not run yet', '']
    (RESULTS / 'summary.md').write_text('\n'.join(parts), encoding='utf-8')
    print(f'Wrote {RESULTS / "summary.md"}')
    if failed:
        print(f'failed: {", ".join(failed)}', file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
