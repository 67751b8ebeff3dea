"""What ``--precision bf16`` costs and saves: forward time against float32, and the PSNR change on real images.

    python benchmarks/precision.py                   # paper-size NDRNet at 256 px, 5 interleaved repeats
    python benchmarks/precision.py --weights net_g.pth --opt train.yml --images 12

* Speed: the paper-size NDRNet (seeded random weights) at ``--size`` px, float32 against the network cast to bfloat16
  as ``Restorer(precision='bf16')`` runs it, calls interleaved (fp32, bf16, fp32, ...) after one warm-up each, median
  wall time. The 1-minute load average is recorded: on a shared machine only the ratio means something.
* Accuracy: a trained checkpoint (``--weights``/``--opt``; default: the shipped compact model, ``ndr_plugin/weights``)
  restores real images of ``../shared/data`` beside the repository (CBSD68 with Gaussian noise sigma 25, Rain100L
  rainy) in both precisions through :class:`~ndr_plugin.restore.restorer.Restorer`; PSNR against the clean image,
  uint8. Skipped, with a message, where the images are absent.

Writes ``benchmarks/results/precision.json`` and ``precision.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / 'benchmarks' / 'results'
DATA = REPO.parent / 'shared' / 'data'
sys.path.insert(0, str(REPO))

import ndr_plugin  # noqa: E402,F401  (compat before BasicSR)
from ndr_plugin.archs.ndr_arch import NDRNet  # noqa: E402
from ndr_plugin.restore.precision import cpu_has_native_bf16  # noqa: E402
from ndr_plugin.restore.restorer import Restorer  # noqa: E402


def forward_speed(size: int, repeats: int) -> dict:
    """Median wall ms of the paper-size NDRNet forward in float32 and in bfloat16, interleaved."""
    torch.manual_seed(0)
    fp32 = NDRNet().eval()
    bf16 = NDRNet().eval()
    bf16.load_state_dict(fp32.state_dict())
    bf16.to(torch.bfloat16)
    image = torch.rand(1, 3, size, size)
    calls = {'fp32': lambda: fp32(image), 'bf16': lambda: bf16(image.bfloat16())}
    times: dict[str, list[float]] = {name: [] for name in calls}
    loads = [os.getloadavg()[0]]
    with torch.inference_mode():
        outputs = {name: call().float() for name, call in calls.items()}  # warm-up
        for _ in range(repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                times[name].append(1e3 * (time.perf_counter() - start))
            loads.append(os.getloadavg()[0])
    ratios = [b / f for f, b in zip(times['fp32'], times['bf16'])]
    return {'size': size, 'repeats': repeats, 'threads': torch.get_num_threads(), 'native_bf16': cpu_has_native_bf16(),
            'fp32_ms': statistics.median(times['fp32']), 'bf16_ms': statistics.median(times['bf16']),
            'ratio_median': statistics.median(ratios), 'ratios': ratios, 'load_1min': [min(loads), max(loads)],
            'max_abs_diff': (outputs['bf16'] - outputs['fp32']).abs().max().item()}


def test_pairs(count: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, degraded RGB uint8, clean RGB uint8): CBSD68 + sigma-25 noise (seeded), Rain100L rainy."""
    rng = np.random.default_rng(0)
    pairs = []
    for path in sorted((DATA / 'CBSD68').glob('*.png'))[:count]:
        clean = cv2.imread(str(path))[..., ::-1]
        noisy = np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255).round().astype(np.uint8)
        pairs.append((f'noise25/{path.name}', noisy, clean))
    for path in sorted((DATA / 'Rain100L_test').glob('norain-*.png'))[:count]:
        rainy = DATA / 'Rain100L_test' / 'rainy' / path.name.replace('norain', 'rain')
        pairs.append((f'rain/{path.name}', cv2.imread(str(rainy))[..., ::-1], cv2.imread(str(path))[..., ::-1]))
    return pairs


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255 ** 2 / max(mse, 1e-10)))


def accuracy(weights: Path | None, opt: Path | None, count: int) -> dict:
    """Mean PSNR per degradation in fp32 and bf16, and the largest per-image change."""
    restorers = {name: Restorer(weights, opt=opt, precision=name, tile=0) for name in ('fp32', 'bf16')}
    rows = []
    for name, degraded, clean in test_pairs(count):
        scores = {p: psnr(r.restore(degraded), clean) for p, r in restorers.items()}
        rows.append({'image': name, **scores, 'change_db': scores['bf16'] - scores['fp32']})
    groups = sorted({row['image'].split('/')[0] for row in rows})
    summary = {g: {p: statistics.mean(r[p] for r in rows if r['image'].startswith(g)) for p in ('fp32', 'bf16')}
               for g in groups}
    shipped = 'the shipped compact NDRNet (ndr_plugin/weights/ndr_compact.pth, see MODEL_CARD.md there)'
    return {'weights': str(weights) if weights else 'ndr_plugin/weights/ndr_compact.pth',
            'network': restorers['fp32'].network_source if weights else shipped, 'per_group': summary,
            'max_abs_change_db': max(abs(r['change_db']) for r in rows), 'images': rows}


def markdown(report: dict) -> str:
    s = report['speed']
    lines = ['# Inference precision: bfloat16 against float32', '',
             f'Paper-size NDRNet forward at {s["size"]} px, {s["threads"]} thread(s), CPU with native bfloat16 '
             f'(AVX-512 BF16 / AMX): {"yes" if s["native_bf16"] else "no"}; {s["repeats"]} interleaved repeats; '
             f'1-minute load average {s["load_1min"][0]:.1f}-{s["load_1min"][1]:.1f} (a shared machine: the ratio is '
             'the result, absolute times are indicative).', '',
             '| precision | median wall ms | bf16 / fp32 (median of per-repeat ratios) |', '|---|---:|---:|',
             f'| fp32 | {s["fp32_ms"]:.0f} | |', f'| bf16 | {s["bf16_ms"]:.0f} | {s["ratio_median"]:.2f} |', '',
             f'Max abs output difference bf16 vs fp32 (random weights): {s["max_abs_diff"]:.2e}.']
    acc = report.get('accuracy')
    if acc:
        lines += ['', f'## PSNR change on real images ({acc["network"]})', '', f'Weights: `{acc["weights"]}`.', '',
                  '| images | count | PSNR fp32 dB | PSNR bf16 dB | change dB |', '|---|---:|---:|---:|---:|']
        for group, scores in acc['per_group'].items():
            count = sum(1 for r in acc['images'] if r['image'].startswith(group))
            lines.append(f'| {group} | {count} | {scores["fp32"]:.3f} | {scores["bf16"]:.3f} | '
                         f'{scores["bf16"] - scores["fp32"]:+.3f} |')
        lines += ['', f'Largest change on a single image: {acc["max_abs_change_db"]:.3f} dB.']
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--size', type=int, default=256)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--weights', type=Path, default=None, help='checkpoint (default: the shipped compact model)')
    parser.add_argument('--opt', type=Path, default=None, help='option file of --weights (default: the one saved '
                        'with the run)')
    parser.add_argument('--images', type=int, default=12, help='images per degradation')
    parser.add_argument('--skip-speed', action='store_true')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = {'speed': forward_speed(args.size, args.repeats) if not args.skip_speed else None}
    if report['speed']:
        print(json.dumps({k: v for k, v in report['speed'].items() if k != 'ratios'}), flush=True)
    if args.weights is not None and not args.weights.is_file():
        parser.error(f'--weights {args.weights}: no such file')
    if DATA.is_dir():
        report['accuracy'] = accuracy(args.weights, args.opt, args.images)
    else:
        print(f'skipping the PSNR part: the real test images ({DATA}) are missing', file=sys.stderr)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / 'precision.json').write_text(json.dumps(report, indent=1) + '\n', encoding='utf-8')
    if report['speed']:
        (RESULTS / 'precision.md').write_text(markdown(report), encoding='utf-8')
        print(markdown(report))
    return 0


if __name__ == '__main__':
    sys.exit(main())
