"""Scores the demo's test run and writes what a user looks at: ``report.md``, ``metrics.json`` and ``grid.png``.

PSNR and SSIM are BasicSR's own functions on 8-bit RGB images with no border crop, so the numbers match what BasicSR's
test loop logs for the same images.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ndr_plugin.demo.photos import TEST_SETS

REAL_KEY = 'real_images_outside_training_set'  # metrics.json key of the optional real-benchmark table
SHIPPED_KEY = 'shipped_model'  # metrics.json key: the same test sets restored by the shipped compact NDRNet


def score(img: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """BasicSR's standard PSNR and SSIM (8-bit, RGB, no border crop)."""
    from basicsr.metrics import calculate_psnr, calculate_ssim
    return (float(calculate_psnr(img, gt, crop_border=0)), float(calculate_ssim(img, gt, crop_border=0)))


def summarize(rows_in: list[tuple[float, float]], rows_out: list[tuple[float, float]]) -> dict[str, float]:
    """Mean (PSNR, SSIM) of the degraded inputs and of the outputs, in the metrics.json layout."""
    columns = (('input_psnr', 0, rows_in), ('output_psnr', 0, rows_out), ('input_ssim', 1, rows_in),
               ('output_ssim', 1, rows_out))
    mean = {name: float(np.mean([r[i] for r in rows])) for name, i, rows in columns}
    return {**mean, 'images': len(rows_in)}


def _test_pairs(data_root: Path, test_set: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(stem, degraded, clean) BGR images of one demo test set, from its PNG folders."""
    folder = data_root / 'test' / test_set
    return [(gt_path.stem, cv2.imread(str(folder / 'lq' / gt_path.name)), cv2.imread(str(gt_path)))
            for gt_path in sorted((folder / 'gt').glob('*.png'))]


def score_test_sets(data_root: Path, results: Path) -> tuple[dict[str, dict[str, float]], dict[str, list[np.ndarray]]]:
    """Input and output PSNR/SSIM per test set, from the PNGs of the test sets and the images the test run saved;
    also the first image's (degraded, restored, clean) per test set, for the grid."""
    metrics, firsts = {}, {}
    for test_set in TEST_SETS:
        rows_in, rows_out = [], []
        for stem, lq, gt in _test_pairs(data_root, test_set):
            out_path = results / 'visualization' / test_set / f'{stem}_restored.png'
            if not out_path.is_file():
                raise FileNotFoundError(f'{out_path}: the test run did not save this restored image')
            out = cv2.imread(str(out_path))
            rows_in.append(score(lq, gt))
            rows_out.append(score(out, gt))
            firsts.setdefault(test_set, [lq, out, gt])
        metrics[test_set] = summarize(rows_in, rows_out)
    return metrics, firsts


def score_shipped(data_root: Path, results: Path) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """The same test sets restored by the shipped compact NDRNet (float32, whole images), saved under
    ``results/shipped_model/``; returns the metrics and each set's first restored image."""
    from ndr_plugin.restore.restorer import Restorer
    restorer = Restorer()
    print(f'Restoring the held-out photographs with {restorer.network_source}')
    metrics, firsts = {}, {}
    for test_set in TEST_SETS:
        rows_in, rows_out = [], []
        (results / 'shipped_model' / test_set).mkdir(parents=True, exist_ok=True)
        for stem, lq, gt in _test_pairs(data_root, test_set):
            out = np.ascontiguousarray(restorer.restore(np.ascontiguousarray(lq[..., ::-1]))[..., ::-1])
            cv2.imwrite(str(results / 'shipped_model' / test_set / f'{stem}.png'), out)
            rows_in.append(score(lq, gt))
            rows_out.append(score(out, gt))
            firsts.setdefault(test_set, out)
        metrics[test_set] = summarize(rows_in, rows_out)
    return metrics, firsts


def grid_row(label: str, images: list[np.ndarray], columns: str) -> np.ndarray:
    """Images side by side under a one-line banner naming the test set and the columns."""
    gap = np.full((images[0].shape[0], 4, 3), 255, np.uint8)
    parts = [images[0]]
    for img in images[1:]:
        parts += [gap, img]
    row = np.concatenate(parts, axis=1)
    banner = np.full((22, row.shape[1], 3), 255, np.uint8)
    cv2.putText(banner, f'{label}: {columns}', (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([banner, row], axis=0)


def grid_rows(firsts: dict[str, list[np.ndarray]], shipped: dict[str, np.ndarray] | None) -> list[np.ndarray]:
    """One grid row per test set: degraded | trained here | shipped model (when given) | clean."""
    if shipped is None:
        return [grid_row(name, imgs, 'degraded | trained here | clean') for name, imgs in firsts.items()]
    return [grid_row(name, [lq, out, shipped[name], gt], 'degraded | trained here | shipped model | clean')
            for name, (lq, out, gt) in firsts.items()]


def write_grid(rows: list[np.ndarray], path: Path) -> Path:
    """Stack the grid rows, padded with white to the widest, into one picture."""
    width = max(r.shape[1] for r in rows)
    grid = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows],
                          axis=0)
    cv2.imwrite(str(path), grid)
    return path


def table(metrics: dict[str, dict[str, float]]) -> list[str]:
    """A Markdown table, one row per test set, as the report and the console show it."""
    lines = ['| degradation | images | input PSNR | output PSNR | gain | input SSIM | output SSIM |',
             '|---|---|---|---|---|---|---|']
    for name, m in metrics.items():
        lines.append(f"| {name} | {m['images']} | {m['input_psnr']:.2f} | {m['output_psnr']:.2f} | "
                     f"{m['output_psnr'] - m['input_psnr']:+.2f} | {m['input_ssim']:.4f} | {m['output_ssim']:.4f} |")
    return lines


def write_metrics(out_dir: Path, metrics: dict, real: dict | None, shipped: dict | None = None) -> Path:
    """``metrics.json``: the demo test sets, the shipped model's scores on them under :data:`SHIPPED_KEY`, and the
    real-benchmark table under :data:`REAL_KEY` when scored."""
    payload = dict(metrics)
    if shipped:
        payload[SHIPPED_KEY] = shipped
    if real:
        payload[REAL_KEY] = real
    path = out_dir / 'metrics.json'
    path.write_text(json.dumps(payload, indent=2), encoding='utf-8')
    return path


def _real_section(real: dict | None) -> list[str]:
    if not real:
        return ['## Real benchmark images', '',
                'Not scored in this run. To add the same table on real benchmark pairs that the demo never trains '
                'on, pass `--real-data DIR`; `python -m ndr_plugin.demo --help` lists the subfolders DIR must hold.',
                '']
    return ['## Real benchmark images (outside the training set)', '',
            'Same model and metric on real benchmark pairs, which the demo never trained on. Kept small for time '
            '(the first images of each set in sorted order).', '', *table(real), '']


def _shipped_section(shipped: dict | None, description: str | None) -> list[str]:
    if not shipped:
        return []
    return ['## The same photographs restored by the shipped model', '',
            f'Restored by {description}. Its training photographs exclude these; it is what `ndr-restore` uses when '
            'no weights are given. Column "shipped model" of the grid.', '', *table(shipped), '']


def write_report(out_dir: Path, metrics: dict, real: dict | None, opt: dict[str, Any], seconds: float,
                 shipped: dict | None = None, shipped_description: str | None = None) -> Path:
    """``report.md``: what was trained, the table on the held-out photographs, the grid, the real-benchmark table."""
    from basicsr.archs import build_network
    net = opt['network_g']
    params = sum(p.numel() for p in build_network(dict(net)).parameters())
    lines = [f"# NDR demo report: {opt['name']}", '',
             f"A tiny {net['type']} ({params:,} parameters) trained for {opt['train']['total_iter']} iterations with "
             f"NDRModel (bidirectional mode `{opt['train']['bidirectional']['mode']}`, restoration loss "
             f"`{opt['train']['pixel_opt']['type']}`) on CPU, {seconds / 60:.1f} "
             'minutes in all (data, training, testing, scoring). Scored on crops of photographs held out from '
             'training; PSNR (dB) and SSIM as in BasicSR (8-bit, RGB, no border crop).', '']
    lines += table(metrics)
    improved = all(m['output_psnr'] > m['input_psnr'] for m in metrics.values())
    lines += ['', f"Every degradation improved: {'yes' if improved else 'NO'}.", '', '![grid](grid.png)', '']
    lines += _shipped_section(shipped, shipped_description)
    lines += _real_section(real)
    path = out_dir / 'report.md'
    path.write_text('\n'.join(lines), encoding='utf-8')
    return path
