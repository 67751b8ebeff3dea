"""onnxruntime (CPU) against our PyTorch forward: one 256 x 256 image, the same threads, the same random weights.

    python benchmarks/onnx_speed.py [--threads 2] [--repeats 5] [--exporter torchscript]

For the demo-sized NDRNet (``ndr_plugin.demo.options.TINY_NDRNET``) and the paper-size NDRNet, a random-weight
checkpoint is exported with ``ndr_plugin.export`` (float32) and both backends run the same input, interleaved (torch,
onnxruntime, torch, ...) so that machine load hits both alike; reported: the median wall time of ``--repeats`` runs
after one warm-up each, and the max abs difference of the outputs. PyTorch runs with its CPU fast paths (as
``ndr-restore``), onnxruntime with ``intra_op_num_threads = --threads`` and its default graph optimisations. The
exporter defaults to torchscript here because the dynamo exporter takes minutes on the paper-size network; both
exporters write the same operators for these networks.

Writes ``benchmarks/results/onnx_speed.json`` and ``onnx_speed.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / 'benchmarks' / 'results'
sys.path.insert(0, str(REPO))

import ndr_plugin  # noqa: E402,F401  (compat before BasicSR)
from ndr_plugin.archs.ndr_arch import NDRNet  # noqa: E402
from ndr_plugin.demo.options import TINY_NDRNET  # noqa: E402
from ndr_plugin.export import export_onnx  # noqa: E402

SIZE = 256
# zero_init_output would make the untrained demo network the identity, and the output comparison empty.
NETWORKS = {'NDRNet (demo size)': {k: v for k, v in TINY_NDRNET.items() if k not in ('type', 'zero_init_output')},
            'NDRNet (paper)': {}}


def _session(path: Path, threads: int):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def measure(name: str, options: dict, folder: Path, threads: int, repeats: int, exporter: str) -> dict:
    torch.manual_seed(0)
    net = NDRNet(**options).eval()
    weights = folder / 'net.pth'
    torch.save({'params': net.state_dict(), 'network_options': {'type': 'NDRNet', **options}}, weights)
    report = export_onnx(weights, folder / 'net.onnx', exporter=exporter, verify=False)
    session = _session(folder / 'net.onnx', threads)
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    feed = {session.get_inputs()[0].name: x.numpy()}
    with torch.inference_mode():
        expected = net(x)
        got = torch.from_numpy(session.run(None, feed)[0])  # also the warm-ups
        net(x)
        times = {'torch': [], 'onnxruntime': []}
        for _ in range(repeats):
            times['torch'].append(_timed(lambda: net(x)))
            times['onnxruntime'].append(_timed(lambda: session.run(None, feed)))
    medians = {backend: statistics.median(values) for backend, values in times.items()}
    return {'network': name, 'options': options, 'export_seconds': round(report.seconds, 1),
            'median_s': {k: round(v, 4) for k, v in medians.items()},
            'runs_s': {k: [round(t, 4) for t in v] for k, v in times.items()},
            'onnxruntime_speedup': round(medians['torch'] / medians['onnxruntime'], 2),
            'max_abs_difference': (got - expected).abs().max().item()}


def write_markdown(results: dict, path: Path) -> None:
    lines = ['# onnxruntime vs PyTorch, CPU', '',
             f"{SIZE}x{SIZE} px, batch 1, {results['threads']} threads, median of {results['repeats']} interleaved "
             f"runs after a warm-up; torch {results['torch']}, onnxruntime {results['onnxruntime']}, "
             f"{results['exporter']} exporter. Load average before / after: {results['load_before']} / "
             f"{results['load_after']} on {results['cpus']} CPUs (shared machine: compare the two columns, not "
             'runs).', '',
             '| network | PyTorch (s) | onnxruntime (s) | speed-up | max abs diff | export (s) |',
             '|---|---:|---:|---:|---:|---:|']
    for row in results['rows']:
        lines.append(f"| {row['network']} | {row['median_s']['torch']:.3f} | {row['median_s']['onnxruntime']:.3f} "
                     f"| {row['onnxruntime_speedup']:.2f}x | {row['max_abs_difference']:.1e} | "
                     f"{row['export_seconds']:.1f} |")
    path.write_text('\n'.join(lines) + '\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--exporter', choices=('dynamo', 'torchscript'), default='torchscript')
    args = parser.parse_args()
    import onnxruntime
    torch.set_num_threads(args.threads)
    results = {'threads': args.threads, 'repeats': args.repeats, 'exporter': args.exporter,
               'torch': torch.__version__, 'onnxruntime': onnxruntime.__version__, 'cpus': os.cpu_count(),
               'platform': platform.platform(), 'load_before': round(os.getloadavg()[0], 2), 'rows': []}
    with tempfile.TemporaryDirectory() as folder:
        for name, options in NETWORKS.items():
            results['rows'].append(measure(name, options, Path(folder), args.threads, args.repeats, args.exporter))
            print(json.dumps(results['rows'][-1]))
    results['load_after'] = round(os.getloadavg()[0], 2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / 'onnx_speed.json').write_text(json.dumps(results, indent=2) + '\n')
    write_markdown(results, RESULTS / 'onnx_speed.md')
    print((RESULTS / 'onnx_speed.md').read_text())


if __name__ == '__main__':
    main()
