"""Peak memory and time of tiled versus whole-image inference, and how much tiling changes the output.

    python benchmarks/tiling.py            # tiny NDRNet at 1, 4 and 12 MP + one paper-size 512x512 tile
    python benchmarks/tiling.py --quick    # 1 and 12 MP only
    python benchmarks/tiling.py --weights net_g.pth --opt options/x.yml   # a trained model instead of random weights
    python benchmarks/tiling.py --demo     # the demo's trained model at 1 and 4 MP (trains it first if needed)
    python benchmarks/tiling.py --sizes 12 --whole-max-mp 0 --passes 0 --paper-full 12 --label tiling_paper
                                           # measures the paper-size network on a whole 12 MP photo

Every configuration runs in its own child process through the public API (``Restorer.restore`` on a uint8 RGB photo,
as ``ndr-restore`` does), and its peak resident memory is the child's own ``ru_maxrss`` (``os.wait4``), so the numbers
include Python, PyTorch, the weights, the image buffers and the network's activations. A "baseline" child loads the
model without restoring anything.

Random weights use ``legacy_residuals: true`` (output = input + network), so outputs look like photos and the 8-bit
clipping does not hide differences. Tiled-vs-whole PSNR compares the two 8-bit outputs of the same model (peak 255).

The paper-size NDRNet takes about half a minute per 512x512 tile on a 2-core CPU, so by default it is measured on one
tile; its 12 MP peak is then *estimated* as that tile's peak plus the image buffers measured with the tiny model at
12 MP (tiled memory does not grow with the number of tiles). ``--paper-full 12`` measures it on the whole photo
instead (about 40 minutes a pass). Writes ``benchmarks/results/tiling.json`` and ``tiling.md`` (``tiling_demo.*`` with
``--demo``, ``--label`` to choose).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / 'results'
SIZES = {1: (1152, 864), 4: (2304, 1728), 12: (4000, 3000)}  # megapixels -> (width, height), 4:3
TINY = dict(type='NDRNet', dim=8, num_blocks=[1, 1, 1, 1], heads=[1, 1, 1, 1], num_refinement_blocks=1, num_atoms=8,
            atom_dim=16, degradation_dim=8, cp_rank=4, legacy_residuals=True)
PAPER = dict(type='NDRNet', legacy_residuals=True)
DEFAULT_PASSES = 1  # ndr-restore's and Restorer's default


def make_photo(width: int, height: int) -> np.ndarray:
    """A deterministic natural-looking uint8 RGB image of any size (scikit-image's astronaut, mirrored and resized)."""
    import cv2
    from skimage import data
    base = data.astronaut()
    base = np.concatenate([base, base[:, ::-1]], axis=1)
    return cv2.resize(base, (width, height), interpolation=cv2.INTER_CUBIC)


# ----------------------------------------------------------------------------------------------------------------------
# child process
# ----------------------------------------------------------------------------------------------------------------------
def worker(args: argparse.Namespace) -> None:
    import torch
    torch.set_num_threads(args.threads)
    from ndr_plugin.restore.restorer import Restorer
    restorer = Restorer(args.weights, opt=args.opt, tile=args.tile, tile_overlap=args.overlap,
                        tile_passes=args.passes[0])
    result = {'seconds': 0.}
    if args.width:
        photo = make_photo(args.width, args.height)
        start = time.perf_counter()
        restored = restorer.restore(photo)
        result['seconds'] = time.perf_counter() - start
        if args.save:
            np.save(args.save, restored)
    Path(args.result).write_text(json.dumps(result))


def run_child(script_args: list[str], threads: int) -> dict:
    """Runs this script as a worker; returns its result plus its own peak RSS (MiB)."""
    with tempfile.TemporaryDirectory() as folder:
        result_path, log_path = Path(folder) / 'result.json', Path(folder) / 'stderr.txt'
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        with open(log_path, 'w') as log:
            child = subprocess.Popen([sys.executable, __file__, '--worker', '--result', str(result_path),
                                      '--threads', str(threads), *script_args], stdout=log, stderr=log, env=env)
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise RuntimeError(f'worker {script_args} failed ({child.returncode}):\n{log_path.read_text()[-3000:]}')
        result = json.loads(result_path.read_text())
    result['peak_rss_mib'] = usage.ru_maxrss / 1024  # Linux reports KiB
    return result


def psnr_8bit(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255. ** 2 / mse)


def seam_ratio(a: np.ndarray, b: np.ndarray, tile: int, overlap: int) -> float:
    """Mean |tiled - whole| on the columns where tiles meet, over its mean elsewhere (1 = no seam signal)."""
    from ndr_plugin.archs.ndr_arch import NDRNet
    from ndr_plugin.restore.tiling import tile_starts, tile_stride
    difference = np.abs(a.astype(np.float64) - b.astype(np.float64)).mean(axis=(0, 2))
    starts = tile_starts(a.shape[1], min(tile, a.shape[1]), tile_stride(tile, overlap, NDRNet.pad_multiple))[1:]
    seams = sorted({s + offset for s in starts for offset in range(overlap)} & set(range(a.shape[1])))
    rest = np.setdiff1d(np.arange(a.shape[1]), seams)
    return float(difference[seams].mean() / max(difference[rest].mean(), 1e-12)) if seams else float('nan')


def measure(args: argparse.Namespace) -> dict:
    import torch

    import ndr_plugin  # noqa: F401  (registration)
    from basicsr.archs import build_network
    sizes = args.sizes or ([1, 12] if args.quick else [1, 4, 12])
    whole_sizes = [s for s in sizes if s <= args.whole_max_mp]
    records, comparisons = [], []
    with tempfile.TemporaryDirectory() as folder:
        checkpoints = {}
        if args.weights:
            checkpoints['trained'] = ['--weights', args.weights] + (['--opt', args.opt] if args.opt else [])
        else:
            for name, options in (('tiny', TINY), ('paper', PAPER)):
                torch.manual_seed(0)
                path = Path(folder) / f'{name}.pth'
                net = build_network(dict(options))
                torch.save({'params': net.state_dict(), 'network_options': options}, path)
                checkpoints[name] = ['--weights', str(path)]
        sweep_model = 'trained' if args.weights else 'tiny'

        def record(model: str, mode: str, megapixels: float, width: int, height: int, tile: int, save: str = '',
                   passes: int | None = None):
            extra = ['--width', str(width), '--height', str(height)] if width else []
            extra += ['--save', save] if save else []
            extra += ['--passes', str(passes)] if passes is not None else []
            result = run_child(checkpoints[model] + ['--tile', str(tile), '--overlap', str(args.overlap)] + extra,
                               args.threads)
            row = {'model': model, 'mode': mode, 'megapixels': megapixels, 'size': f'{width}x{height}',
                   'tile': tile or None, 'passes': passes, **result}
            print(json.dumps(row), flush=True)
            records.append(row)
            return row

        record(sweep_model, 'baseline', 0, 0, 0, 0)
        record(sweep_model, 'one tile', args.tile ** 2 / 1e6, args.tile, args.tile, 0)
        for megapixels in sizes:
            width, height = SIZES[megapixels]
            tiled_outs = {passes: Path(folder) / f'tiled_{megapixels}_{passes}.npy' for passes in args.passes}
            for passes, tiled_out in tiled_outs.items():
                record(sweep_model, 'tiled', megapixels, width, height, args.tile, str(tiled_out), passes)
            if megapixels in whole_sizes:
                whole_out = Path(folder) / f'whole_{megapixels}.npy'
                record(sweep_model, 'whole', megapixels, width, height, 0, str(whole_out))
                whole = np.load(whole_out)
                for passes, tiled_out in tiled_outs.items():
                    tiled = np.load(tiled_out)
                    comparisons.append({'model': sweep_model, 'megapixels': megapixels, 'tile': args.tile,
                                        'overlap': args.overlap, 'passes': passes, 'psnr_db': psnr_8bit(tiled, whole),
                                        'max_abs_diff_8bit': int(np.abs(tiled.astype(int) - whole).max()),
                                        'seam_ratio': seam_ratio(tiled, whole, args.tile, args.overlap)})
                    print(json.dumps(comparisons[-1]), flush=True)
                whole_out.unlink()
            for tiled_out in tiled_outs.values():
                tiled_out.unlink()
        if not args.weights and not args.skip_paper:
            record('paper', 'baseline', 0, 0, 0, 0)
            record('paper', 'one tile', args.tile ** 2 / 1e6, args.tile, args.tile, 0)
            for megapixels in args.paper_full:
                width, height = SIZES[megapixels]
                record('paper', 'tiled', megapixels, width, height, args.tile, passes=min(args.passes))
    return {'records': records, 'comparisons': comparisons}


def estimates(records: list[dict], overlap: int, passes: int) -> list[dict]:
    """Paper-size tiled 12 MP, from its one-tile run plus the tiny model's 12 MP image buffers; ``passes``
    statistics passes add one forward per tile each."""
    def find(model, mode, megapixels=None):
        return next((r for r in records if r['model'] == model and r['mode'] == mode
                     and (megapixels is None or r['megapixels'] == megapixels)), None)
    from ndr_plugin.archs.ndr_arch import NDRNet
    from ndr_plugin.restore.tiling import tile_starts, tile_stride
    paper_tile, tiny_tile = find('paper', 'one tile'), find('tiny', 'one tile')
    out = []
    for megapixels, (width, height) in SIZES.items():
        tiny_tiled = find('tiny', 'tiled', megapixels)  # memory does not depend on the statistics passes
        if not (paper_tile and tiny_tile and tiny_tiled):
            continue
        tile = int(paper_tile['size'].split('x')[0])
        stride = tile_stride(tile, overlap, NDRNet.pad_multiple)
        tiles = len(tile_starts(width, tile, stride)) * len(tile_starts(height, tile, stride))
        out.append({'model': 'paper', 'megapixels': megapixels, 'tiles': tiles, 'passes': passes,
                    'peak_rss_mib': paper_tile['peak_rss_mib'] + tiny_tiled['peak_rss_mib'] - tiny_tile['peak_rss_mib'],
                    'seconds': tiles * (1 + passes) * paper_tile['seconds']})
    return out


def write_report(report: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f'{report["label"]}.json').write_text(json.dumps(report, indent=2))
    env = report['environment']
    weights = report.get('weights', 'random')
    title = 'Tiled vs whole-image inference' + ('' if weights == 'random' else ': a trained model')
    lines = [f'# {title}', '',
             f'{env["cpu"]}, {env["cores"]} cores (load average {env["load_average_start_end"][0]} at the start, '
             f'{env["load_average_start_end"][1]} at the end), {env["threads"]} thread(s) per run, '
             f'torch {env["torch"]}, {env["date"]}. '
             f'Tile {report["tile"]}, overlap {report["overlap"]}. Weights: {weights}; '
             'peak = peak resident memory of the whole process (Python, PyTorch, weights, buffers, activations).', '',
             'Statistics passes: passes over the tiles that first gather image-level statistics (attention and CP-gate '
             'means), so that every tile uses the whole image\'s; 0 = each tile its own.', '',
             '| model | mode | image | tile | statistics passes | time (s) | s / MP | peak RSS (MiB) |',
             '|---|---|---|---|---|---|---|---|']
    for r in report['records']:
        per_mp = f'{r["seconds"] / r["megapixels"]:.1f}' if r['megapixels'] else ''
        passes = '-' if r.get('passes') is None else r['passes']
        lines.append(f'| {r["model"]} | {r["mode"]} | {r["size"]} | {r["tile"] or "-"} | {passes} | '
                     f'{r["seconds"]:.1f} | {per_mp} | {r["peak_rss_mib"]:.0f} |')
    if report['comparisons']:
        lines += ['', '## Tiled vs whole output (8-bit)', '',
                  '| model | image (MP) | tile / overlap | statistics passes | PSNR (dB) | max abs diff | seam ratio |',
                  '|---|---|---|---|---|---|---|']
        for c in report['comparisons']:
            lines.append(f'| {c["model"]} | {c["megapixels"]} | {c["tile"]} / {c["overlap"]} | {c["passes"]} | '
                         f'{c["psnr_db"]:.2f} | {c["max_abs_diff_8bit"]} | {c["seam_ratio"]:.2f} |')
        default = [c for c in report['comparisons'] if c['passes'] == DEFAULT_PASSES] or report['comparisons']
        worst = min(c['psnr_db'] for c in default)
        lines += ['', 'Seam ratio: mean difference on the columns where tiles overlap over the mean elsewhere.', '',
                  f'Goal, tiled and whole outputs agree to at least 40 dB (with the default {DEFAULT_PASSES} '
                  f'statistics pass): {"met" if worst >= 40 else "not met"} (lowest {worst:.2f} dB).']
    if report['estimates']:
        lines += ['', '## Paper-size NDRNet, estimated from one tile', '',
                  '| image (MP) | tiles | statistics passes | est. time (s) | est. peak RSS (MiB) |',
                  '|---|---|---|---|---|']
        for e in report['estimates']:
            lines.append(f'| {e["megapixels"]} | {e["tiles"]} | {e["passes"]} | {e["seconds"]:.0f} | '
                         f'{e["peak_rss_mib"]:.0f} |')
        lines += ['', 'Estimate: peak = paper-size one-tile peak + (tiny tiled peak at that size - tiny one-tile '
                  'peak), i.e. the image buffers, which do not depend on the network; time = tiles x (1 + '
                  'statistics passes) x one-tile time.']
    (RESULTS / f'{report["label"]}.md').write_text('\n'.join(lines) + '\n')


def shown_path(path: str) -> str:
    """A path as the report shows it: relative to the repository when inside it."""
    resolved = Path(path).resolve()
    root = RESULTS.parents[1]
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else resolved.name


def demo_model() -> tuple[str, str]:
    """Weights and option file of the demo model, trained in ``benchmarks/work`` the first time."""
    work = RESULTS.parent / 'work'
    weights = work / 'experiments' / 'ndr_demo' / 'models' / 'net_g_latest.pth'
    options = work / 'options_generated' / 'ndr_demo' / 'train.yml'
    if not (weights.is_file() and options.is_file()):
        work.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, '-m', 'ndr_plugin.demo'], cwd=work, check=True)
    return str(weights), str(options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='1 and 12 MP only')
    parser.add_argument('--tile', type=int, default=512)
    parser.add_argument('--overlap', type=int, default=32)
    parser.add_argument('--passes', type=int, nargs='+', default=[0, DEFAULT_PASSES],
                        help=f'statistics passes of the tiled runs (default: 0 {DEFAULT_PASSES})')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--whole-max-mp', type=float, default=4, help='largest image also run whole (default 4)')
    parser.add_argument('--skip-paper', action='store_true', help='skip the paper-size one-tile measurement')
    parser.add_argument('--paper-full', type=int, nargs='+', default=[], choices=sorted(SIZES),
                        help='also restore these sizes (megapixels) with the paper-size network, tiled, with the '
                             'fewest --passes; 12 MP takes about 40 minutes per pass on 2 cores')
    parser.add_argument('--weights', default='', help='a trained checkpoint instead of random weights')
    parser.add_argument('--opt', default=None, help='option file of --weights')
    parser.add_argument('--demo', action='store_true',
                        help='use the demo model (benchmarks/work/experiments/ndr_demo), training it first with '
                             '`python -m ndr_plugin.demo` if its weights are not there; sizes 1 and 4 MP')
    parser.add_argument('--sizes', type=int, nargs='+', choices=sorted(SIZES), help='megapixels to run')
    parser.add_argument('--label', default=None, help='results file name (default tiling, or tiling_demo)')
    parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--result', help=argparse.SUPPRESS)
    parser.add_argument('--width', type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument('--height', type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument('--save', default='', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    import torch
    if args.demo:
        args.weights, args.opt = demo_model()
        args.sizes = args.sizes or [1, 4]
    label = args.label or ('tiling_demo' if args.demo else 'tiling')
    load_before = os.getloadavg()[0]
    measured = measure(args)
    report = {'environment': {'cpu': platform.processor() or platform.machine(), 'cores': os.cpu_count(),
                              'threads': args.threads, 'torch': torch.__version__, 'date': time.strftime('%Y-%m-%d'),
                              'load_average_start_end': [round(load_before, 2), round(os.getloadavg()[0], 2)]},
              'label': label, 'weights': shown_path(args.weights) if args.weights else 'random',
              'tile': args.tile, 'overlap': args.overlap, **measured,
              'estimates': estimates(measured['records'], args.overlap, max(args.passes))}
    write_report(report)
    print(f'wrote {RESULTS / f"{label}.json"} and {RESULTS / f"{label}.md"}')


if __name__ == '__main__':
    main()
