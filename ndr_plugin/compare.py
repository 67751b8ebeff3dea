"""``python -m ndr_plugin.compare RUN... [--protocol basicsr|aio]``: one comparison table for several runs.

Each RUN is a BasicSR experiment or results folder (``experiments/<name>`` after training, ``results/<name>`` after
testing), whichever model trained it: NDR, the ablation, PromptIR or a BasicSR zoo network. The table has, per test
set, PSNR/SSIM under the chosen metric protocol (read from the run's log), their average, and for the run's
``network_g``: parameters, MACs and latency per image (measured here, on the same input for every run).

The option file is found inside the run folder (BasicSR copies it there when training; ``ndr_plugin.test`` does so
when testing); ``RUN:OPTION.yml`` names it explicitly, e.g. for a run made by ``basicsr/test.py``.
"""
from __future__ import annotations

import argparse
import csv
import math
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ndr_plugin  # noqa: F401  (registration, so every network_g can be built)

# Metric function names per protocol, as they appear in option files' ``val.metrics.<name>.type``.
PROTOCOL_TYPES = {
    'basicsr': {'psnr': ('calculate_psnr',), 'ssim': ('calculate_ssim',)},
    'aio': {'psnr': ('calculate_psnr_aio',), 'ssim': ('calculate_ssim_aio',)},
    'ndr': {'psnr': ('calculate_psnr_ndr',), 'ssim': ('calculate_ssim_ndr',)},
}
_VALIDATION_BLOCK = re.compile(r'Validation (\S+)\n((?:\s+# [^\n]+\n?)+)')
_METRIC_LINE = re.compile(r'# (\S+): ([^\s]*)(\s|$)')
# BasicSR logs every metric as f'{value:.4f}': anything else was cut off (a log copied while it was written) or edited.
_LOGGED_VALUE = re.compile(r'-?\d+\.\d{4}|-?inf|nan')


@dataclass
class RunSummary:
    name: str
    folder: Path
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # dataset -> {'psnr': .., 'ssim': ..}
    params: int | None = None
    macs: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    unreadable: dict[str, dict[str, str]] = field(default_factory=dict)  # dataset -> {'psnr': 'truncated', ..}


def find_option_file(folder: Path) -> Path:
    candidates = sorted(folder.glob('*.yml')) + sorted(folder.glob('*.yaml'))
    if not candidates:
        raise FileNotFoundError(f'{folder}: no option file (*.yml) in the run folder; name it as {folder}:OPTION.yml')
    return candidates[0]


def _logged_value(token: str, ends_line: bool) -> float | str:
    """A metric's value as BasicSR wrote it, or why it cannot be read ('truncated' or 'malformed')."""
    if not ends_line:
        return 'truncated'
    if not _LOGGED_VALUE.fullmatch(token):
        return 'malformed'
    return float(token)


def parse_validation_log(folder: Path) -> dict[str, dict[str, float | str]]:
    """Metric values per dataset from the newest log in ``folder`` (the last validation of each dataset).

    A value that is not a complete BasicSR number is returned as 'truncated' or 'malformed', with a warning on stderr
    naming the log, so that a log cut mid-number never shows up as a result.
    """
    logs = sorted((p for p in folder.glob('*.log') if p.is_file()), key=lambda p: p.stat().st_mtime)
    if not logs:
        raise FileNotFoundError(f'{folder}: no BasicSR log file (*.log) found')
    text = logs[-1].read_text(encoding='utf-8', errors='replace')
    results: dict[str, dict[str, float | str]] = {}
    for match in _VALIDATION_BLOCK.finditer(text):
        dataset, body = match.group(1), match.group(2)
        values = {}
        for m in _METRIC_LINE.finditer(body):
            at_end_of_log = match.start(2) + m.end() >= len(text) and not m.group(3)
            values[m.group(1)] = _logged_value(m.group(2), not at_end_of_log)
            if isinstance(values[m.group(1)], str):
                print(f'ndr-compare: warning: {logs[-1]}: the {m.group(1)} value of {dataset} is '
                      f'{values[m.group(1)]} ({m.group(2)!r}); its cell says so', file=sys.stderr)
        results[dataset] = values
    if not results:
        raise ValueError(f'{logs[-1]}: no validation results in the log')
    return results


def metric_names_for_protocol(opt: dict[str, Any], protocol: str) -> dict[str, str]:
    """Map 'psnr'/'ssim' to the metric names this run logged under the protocol's metric functions."""
    wanted = PROTOCOL_TYPES[protocol]
    names = {}
    for name, metric in ((opt.get('val') or {}).get('metrics') or {}).items():
        for kind, types in wanted.items():
            if isinstance(metric, dict) and metric.get('type') in types:
                names.setdefault(kind, name)
    return names


def measure_network(network_opt: dict[str, Any], size: int, repeats: int, devices: list[str]) -> tuple[int, float,
                                                                                                      dict[str, float]]:
    """Parameters, MACs and median latency (ms) of ``network_opt`` on one ``size`` x ``size`` RGB image."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from basicsr.archs import build_network
    net = build_network(dict(network_opt)).eval()
    params = sum(p.numel() for p in net.parameters())
    channels = network_opt.get('in_channels', network_opt.get('num_in_ch', network_opt.get('inp_channels', 3)))
    x = torch.rand(1, channels, size, size)
    with torch.no_grad():  # FlopCounterMode does not work under inference_mode
        counter = FlopCounterMode(display=False)
        with counter:
            net(x)
        macs = counter.get_total_flops() / 2
    latency = {}
    for device in devices:
        net_d, x_d = net.to(device), x.to(device)
        times = []
        with torch.inference_mode():
            net_d(x_d)
            for _ in range(repeats):
                _synchronize(device)
                start = time.perf_counter()
                net_d(x_d)
                _synchronize(device)
                times.append((time.perf_counter() - start) * 1000)
        latency[device] = statistics.median(times)
    return params, macs, latency


def _synchronize(device: str) -> None:
    import torch
    if device.startswith('cuda'):
        torch.cuda.synchronize(device)
    elif device == 'mps':
        torch.mps.synchronize()


def summarize_run(spec: str, protocol: str, size: int, repeats: int, devices: list[str]) -> RunSummary:
    from ndr_plugin.options import load_option_file
    folder_text, _, opt_text = spec.partition(':')
    folder = Path(folder_text)
    if not folder.is_dir():
        raise FileNotFoundError(f'{folder}: run folder not found')
    opt_path = Path(opt_text) if opt_text else find_option_file(folder)
    opt = load_option_file(str(opt_path))
    names = metric_names_for_protocol(opt, protocol)
    if not names:
        raise ValueError(f'{opt_path}: no metric of the {protocol!r} protocol in val.metrics '
                         f'(types {sorted(t for ts in PROTOCOL_TYPES[protocol].values() for t in ts)})')
    logged = parse_validation_log(folder)
    summary = RunSummary(name=opt.get('name', folder.name), folder=folder)
    for dataset, values in logged.items():
        if dataset == 'average':
            continue
        found = {kind: values[name] for kind, name in names.items() if name in values}
        summary.metrics[dataset] = {kind: v for kind, v in found.items() if not isinstance(v, str)}
        summary.unreadable[dataset] = {kind: v for kind, v in found.items() if isinstance(v, str)}
    if 'network_g' in opt:
        summary.params, summary.macs, summary.latency_ms = measure_network(opt['network_g'], size, repeats, devices)
    return summary


def _fmt(value: float | None, digits: int) -> str:
    """'-' for not measured; a NaN that was measured stays visible as 'nan'."""
    if value is None:
        return '-'
    return 'nan' if isinstance(value, float) and math.isnan(value) else f'{value:.{digits}f}'


def build_table(runs: list[RunSummary], size: int) -> tuple[list[str], list[list[str]]]:
    # Columns in the order the runs validated them (their option files' order, e.g. the 11 CDD-11 combinations).
    datasets = list(dict.fromkeys(d for run in runs for d in run.metrics))
    devices = sorted({d for run in runs for d in run.latency_ms})
    header = ['run'] + [f'{d} PSNR/SSIM' for d in datasets] + ['average PSNR/SSIM', 'params (M)',
                                                                f'GMACs @{size}px']
    header += [f'{d} ms/img @{size}px' for d in devices]
    rows = []
    for run in runs:
        row = [run.name]
        psnrs, ssims = [], []
        for d in datasets:
            values, unreadable = run.metrics.get(d, {}), run.unreadable.get(d, {})
            psnr = unreadable.get('psnr') or _fmt(values.get('psnr'), 2)
            ssim = unreadable.get('ssim') or _fmt(values.get('ssim'), 4)
            row.append(f'{psnr}/{ssim}')
            if 'psnr' in values:
                psnrs.append(values['psnr'])
            if 'ssim' in values:
                ssims.append(values['ssim'])
        complete = len(psnrs) == len(datasets)
        avg_psnr = statistics.mean(psnrs) if psnrs and complete else None
        avg_ssim = statistics.mean(ssims) if ssims and len(ssims) == len(datasets) else None
        row.append(f'{_fmt(avg_psnr, 2)}/{_fmt(avg_ssim, 4)}')
        row.append(_fmt(run.params / 1e6 if run.params else None, 3))
        row.append(_fmt(run.macs / 1e9 if run.macs else None, 2))
        row += [_fmt(run.latency_ms.get(d), 1) for d in devices]
        rows.append(row)
    return header, rows


def to_markdown(header: list[str], rows: list[list[str]], protocol: str) -> str:
    lines = [f'Metric protocol: {protocol} (see README, "Metric protocols"). An average is shown only when a run has '
             'every test set.', '', '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='ndr-compare', description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('runs', nargs='+', metavar='RUN', help='experiment/results folder, optionally RUN:OPTION.yml')
    parser.add_argument('--protocol', choices=sorted(PROTOCOL_TYPES), default='basicsr',
                        help='basicsr: 8-bit, Gaussian SSIM; aio: PromptIR/AirNet float protocol')
    parser.add_argument('--out', default='comparison.md', help='Markdown table to write (default: comparison.md)')
    parser.add_argument('--csv', default=None, help='CSV file to write (default: the --out path with .csv)')
    parser.add_argument('--size', type=int, default=256, help='image size for MACs and latency (default 256)')
    parser.add_argument('--repeats', type=int, default=3, help='timed runs per network (median reported)')
    parser.add_argument('--device', action='append', default=None,
                        help='where to time the networks, as PyTorch spells it (cpu, cuda, cuda:1, mps); repeat for '
                             'several (default: cpu, plus cuda if available)')
    args = parser.parse_args(argv)
    import torch
    from ndr_plugin.restore.loading import resolve_device
    try:
        devices = [str(resolve_device(d)) for d in args.device] if args.device else \
            ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    except ValueError as err:
        parser.error(f'--device: {err}')
    try:
        runs = [summarize_run(spec, args.protocol, args.size, args.repeats, devices) for spec in args.runs]
    except (OSError, ValueError) as err:
        print(f'ndr-compare: error: {err}', file=sys.stderr)
        return 2
    header, rows = build_table(runs, args.size)
    markdown = to_markdown(header, rows, args.protocol)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown, encoding='utf-8')
    csv_path = Path(args.csv) if args.csv else out.with_suffix('.csv')
    with open(csv_path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    print(markdown)
    print(f'Wrote {out} and {csv_path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
