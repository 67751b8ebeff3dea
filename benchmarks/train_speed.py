"""Time and peak memory of one full training iteration: NDRModel (alternate, joint, off) against the official step.

    python benchmarks/train_speed.py               # every case, batch 2 and 4 at 128 px, 3 interleaved repeats
    python benchmarks/train_speed.py --quick       # batch 2 at 64 px, one repeat: a check that it runs
    python benchmarks/train_speed.py --cases official joint --batches 2 --repeats 2

A training iteration here is what BasicSR's loop does per batch with the data already in memory: forward, losses,
backward, gradient clip, optimizer step (see ``train_steps.py`` for both recipes). Every measurement runs in a fresh
process (so one case's allocator state and peak cannot leak into the next) and reports

* the median time of ``--steps`` iterations after ``--warmup`` iterations (the first allocates Adam's state);
* the peak resident memory growth: ``ru_maxrss`` after the iterations minus ``ru_maxrss`` once the model and batch
  exist (forward activations, gradients, Adam state, allocator caching);

and the cases are interleaved repeat by repeat (official, joint, ..., official, joint, ...), so a change of machine
load hits every case alike; the table gives each case's time relative to the official step of the same repeat. The
1-minute load average is recorded with every measurement: timings on a loaded machine are only good as ratios.

Writes ``benchmarks/results/train_speed.json`` and ``train_speed.md`` (``--label`` changes the name).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / 'results'
# case -> (recipe, network size, extra network options, extra train options): 'official' is the official step, the
# others NDRModel's modes; 'ckpt' recomputes the blocks in the backward (checkpoint_blocks), 'bf16' is train.amp: bf16.
# NDRModel keeps freed memory for reuse on the CPU by default (train.keep_freed_memory); 'system' turns that off, and
# 'official keep' applies the same allocator setting to the official step, for a comparison of the computation alone.
CASES = {
    'official': ('official', 'paper', {}, {}),
    'official keep': ('official', 'paper', {}, {'keep_freed_memory': True}),
    'joint': ('joint', 'paper', {}, {}),
    'joint system': ('joint', 'paper', {}, {'keep_freed_memory': False}),
    'alternate': ('alternate', 'paper', {}, {}),
    'off': ('off', 'paper', {}, {}),
    'joint ckpt': ('joint', 'paper', {'checkpoint_blocks': True}, {}),
    'joint bf16': ('joint', 'paper', {}, {'amp': 'bf16'}),
    'demo joint': ('joint', 'demo', {}, {}),
}
DEFAULT_CASES = list(CASES)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def run_worker(case: str, batch: int, size: int, steps: int, warmup: int, threads: int) -> dict:
    """One measurement in this process (called with ``--worker``): median step time and peak RSS growth."""
    import torch
    import train_steps
    from ndr_plugin.models.cpu_memory import keep_freed_memory

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    recipe, net_size, network, train = CASES[case]
    if recipe == 'official':
        if train.get('keep_freed_memory'):
            keep_freed_memory()
        step = train_steps.official_step(train_steps.official_model(net_size))
    else:
        step, _ = train_steps.ours_step(recipe, net_size, train=train, network=network)
    lq, gt = train_steps.make_batch(batch, size)
    base = _maxrss_mb()
    for _ in range(warmup):
        step(lq, gt)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step(lq, gt)
        times.append(time.perf_counter() - start)
    return {'case': case, 'batch': batch, 'size': size, 'times_s': times, 'median_s': statistics.median(times),
            'peak_growth_mb': _maxrss_mb() - base, 'threads': threads}


def measure(case: str, batch: int, args: argparse.Namespace) -> dict:
    """Runs one measurement in a fresh interpreter and returns its result with the load average around it."""
    load_before = os.getloadavg()[0]
    cmd = [sys.executable, __file__, '--worker', case, '--batches', str(batch), '--size', str(args.size),
           '--steps', str(args.steps), '--warmup', str(args.warmup), '--threads', str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
    if proc.returncode != 0:
        raise RuntimeError(f'{case} batch {batch} failed:\n{proc.stderr[-3000:]}')
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result['load_1min'] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return result


def relative_to(results: list[dict], reference: str = 'official') -> dict[tuple[str, int], list[float]]:
    """(case, batch) -> time / ``reference`` time of the same repeat, one value per repeat that has both."""
    ref_times = {(r['repeat'], r['batch']): r['median_s'] for r in results if r['case'] == reference}
    ratios: dict[tuple[str, int], list[float]] = {}
    for r in results:
        ref = ref_times.get((r['repeat'], r['batch']))
        if ref and CASES[r['case']][1] == 'paper':
            ratios.setdefault((r['case'], r['batch']), []).append(r['median_s'] / ref)
    return ratios


def markdown(report: dict) -> str:
    results = report['results']
    ratios, keep_ratios = relative_to(results), relative_to(results, 'official keep')
    loads = [value for r in results for value in r['load_1min']]
    lines = [f'# Training step: time and memory ({report["label"]})', '',
             f'{report["machine"]}; torch {report["torch"]}, {report["threads"]} threads; {report["size"]} px '
             f'crops; median of {report["steps"]} steps after {report["warmup"]} warm-up, fresh process per '
             f'measurement, {report["repeats"]} interleaved repeat(s). 1-minute load average during the run: '
             f'{min(loads):.2f} to {max(loads):.2f} (timings on a loaded machine are only good as ratios).', '',
             '| case | batch | step s (median over repeats) | x official (per repeat) | x official keep (per repeat) '
             '| peak RSS growth MB |', '|---|---:|---:|---:|---:|---:|']
    keys = sorted({(r['case'], r['batch']) for r in results}, key=lambda k: (k[1], list(CASES).index(k[0])))
    for case, batch in keys:
        rows = [r for r in results if (r['case'], r['batch']) == (case, batch)]
        ratio_texts = [', '.join(f'{x:.2f}' for x in found) if (found := table.get((case, batch))) else '-'
                       for table in (ratios, keep_ratios)]
        lines.append(f'| {case} | {batch} | {statistics.median(r["median_s"] for r in rows):.2f} | '
                     f'{ratio_texts[0]} | {ratio_texts[1]} | {statistics.median(r["peak_growth_mb"] for r in rows):.0f} |')
    lines += ['', 'official = the official recipe on the literal reference network (tests/official_reference.py), '
              'with the system allocator as the official code runs; official keep = the same with the allocator '
              'setting NDRModel uses on the CPU (train.keep_freed_memory, ndr_plugin/models/cpu_memory.py), the '
              'comparison of the computation alone; joint / alternate / off = NDRModel modes on NDRNet + '
              'NDRDegradationNet of the same size (keep_freed_memory on, the default); system = '
              'train.keep_freed_memory: false; ckpt = '
              'checkpoint_blocks: true on both networks; bf16 = train.amp: bf16; demo = the demo network '
              '(ndr_plugin/demo/options.py). Adam, L1 losses, gradient clip 10 everywhere.']
    return '\n'.join(lines) + '\n'


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='batch 2 at 64 px, 1 warm-up + 1 step, one repeat')
    parser.add_argument('--cases', nargs='+', choices=list(CASES), default=DEFAULT_CASES)
    parser.add_argument('--batches', nargs='+', type=int, default=[2, 4])
    parser.add_argument('--size', type=int, default=128)
    parser.add_argument('--steps', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--label', default='train_speed')
    parser.add_argument('--worker', choices=list(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.size, args.steps, args.warmup, args.repeats = [2], 64, 1, 1, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args.worker, args.batches[0], args.size, args.steps, args.warmup, args.threads)))
        return 0
    import torch
    results = []
    for repeat in range(args.repeats):
        for batch in args.batches:
            for case in args.cases:
                result = measure(case, batch, args) | {'repeat': repeat}
                print(f'{case:>10} batch {batch} repeat {repeat}: {result["median_s"]:.2f} s, '
                      f'{result["peak_growth_mb"]:.0f} MB, load {result["load_1min"]}', flush=True)
                results.append(result)
    report = {'label': args.label, 'machine': f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs',
              'torch': torch.__version__, 'threads': args.threads, 'size': args.size, 'steps': args.steps,
              'warmup': args.warmup, 'repeats': args.repeats, 'results': results}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f'{args.label}.json').write_text(json.dumps(report, indent=2), encoding='utf-8')
    (RESULTS / f'{args.label}.md').write_text(markdown(report), encoding='utf-8')
    print(markdown(report))
    return 0


if __name__ == '__main__':
    sys.exit(main())
