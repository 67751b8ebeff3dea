"""CPU learning protocol: which training scheme learns fastest, scored on real benchmark images.

    python benchmarks/learning.py                 # 5 runs x 6 minutes, then scoring (under 45 minutes on 2 cores)
    python benchmarks/learning.py --minutes 1     # a quick look

Each run trains a tiny network with NDRModel for the same wall-clock budget, on the demo data (the photographs that
ship with scikit-image, with synthesised noise, rain, haze and downsampling; see ``ndr_plugin.demo``):

* ``ndr_alternate``: tiny NDRNet, bidirectional mode ``alternate`` (our reading of the paper);
* ``ndr_joint``: the same, mode ``joint`` (the official code's step);
* ``ndr_off``: the same network, restoration loss only (no degradation network);
* ``no_ndr``: the same backbone without NDR, query and injection (``use_ndr: false``; no global residual, which
  NDRNet has only in its ``legacy_residuals`` form);
* ``promptir``: a tiny PromptIR.

The networks are the demo's (``ndr_plugin.demo.TINY_NDRNET`` and ``BASELINES``).

The learning rate is constant, so the runs are comparable whatever number of iterations each manages. The trained
networks are then scored on real images from ``../shared/data`` (CBSD68 with sigma-25 noise, seeded per image; the
light-rain pairs; the SOTS-outdoor pairs; Set5 x2 with the MATLAB-bicubic LR upsampled back), under both metric
protocols. Writes ``benchmarks/results/learning.json`` and ``learning.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

import ndr_plugin  # noqa: F401
from basicsr.data import build_dataloader, build_dataset
from basicsr.models import build_model
from basicsr.utils.options import parse_options
from ndr_plugin import demo
from ndr_plugin.metrics.standard_sets import score_sets

RESULTS = Path(__file__).resolve().parent / 'results'
REPO = Path(__file__).resolve().parents[1]
METRICS = {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False},
           'ssim': {'type': 'calculate_ssim', 'crop_border': 0, 'test_y_channel': False},
           'psnr_aio': {'type': 'calculate_psnr_aio'}, 'ssim_aio': {'type': 'calculate_ssim_aio'}}


def run_options(run: str, data_root: Path, seed: int) -> dict:
    model = run if run in demo.BASELINES else 'ndr'
    opt = demo.train_options(f'learning_{run}', data_root, iters=10**6, seed=seed, model=model)
    opt['train']['scheduler'] = {'type': 'MultiStepLR', 'milestones': [10**7], 'gamma': 1.0}  # constant rate
    for key in [k for k in opt['datasets'] if k.startswith('val')]:
        del opt['datasets'][key]
    opt.pop('val')
    opt['logger'].update(print_freq=10**6, use_tb_logger=False, progress_bar=False)
    if run == 'ndr_joint':
        opt['train']['bidirectional'] = {'mode': 'joint'}
    elif run == 'ndr_off':
        opt['train']['bidirectional'] = {'mode': 'off'}
        del opt['network_deg'], opt['train']['optim_deg'], opt['train']['degradation_opt']
    return opt


def train_for(opt: dict, minutes: float, workdir: Path) -> tuple[torch.nn.Module, int]:
    """Train with BasicSR's data pipeline and NDRModel until the wall-clock budget is spent."""
    opt_path = workdir / f"{opt['name']}.yml"
    demo.write_yaml(opt, opt_path)
    argv = sys.argv
    sys.argv = [argv[0], '-opt', str(opt_path)]
    try:
        parsed, _ = parse_options(str(workdir), is_train=True)
    finally:
        sys.argv = argv
    train_set = build_dataset(parsed['datasets']['train'])
    loader = build_dataloader(train_set, parsed['datasets']['train'], num_gpu=0, dist=False, sampler=None,
                              seed=parsed['manual_seed'])
    model = build_model(parsed)
    iters, deadline = 0, time.time() + minutes * 60
    while time.time() < deadline:
        for batch in loader:
            iters += 1
            model.update_learning_rate(iters, warmup_iter=-1)
            model.feed_data(batch)
            model.optimize_parameters(iters)
            if time.time() >= deadline:
                break
    return model.get_bare_model(model.net_g).eval(), iters


def markdown(report: dict) -> str:
    sets = list(report['input'])
    lines = ['# CPU learning protocol', '',
             f"{report['environment']}. Each run: {report['minutes']} minutes of training on the demo data (tiny "
             'networks, constant learning rate), then scored on real benchmark images that were never trained on.',
             '']
    for protocol, (p, s) in (('BasicSR standard (8-bit, Gaussian SSIM)', ('psnr', 'ssim')),
                             ('PromptIR/AirNet (float, 7x7 uniform SSIM, crop x16)', ('psnr_aio', 'ssim_aio'))):
        lines += [f'## {protocol}', '', '| run | iterations | ' + ' | '.join(sets) + ' | average |',
                  '|---|---|' + '---|' * (len(sets) + 1)]
        for run, result in [('degraded input', {'iterations': '-', 'scores': report['input']})] + list(
                report['runs'].items()):
            cells = [f"{result['scores'][t][p]:.2f}/{result['scores'][t][s]:.4f}" for t in sets]
            avg_p = np.mean([result['scores'][t][p] for t in sets])
            avg_s = np.mean([result['scores'][t][s] for t in sets])
            lines.append(f"| {run} | {result['iterations']} | " + ' | '.join(cells) + f' | {avg_p:.2f}/{avg_s:.4f} |')
        lines.append('')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--minutes', type=float, default=6.0, help='training budget per run (default 6)')
    parser.add_argument('--runs', nargs='+', default=['ndr_alternate', 'ndr_joint', 'ndr_off', 'no_ndr', 'promptir'])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--real-data', metavar='DIR', default=str(REPO.parent / 'shared' / 'data'),
                        help='real benchmark pairs to score on, laid out as `python -m ndr_plugin.demo --help` lists '
                             '(default: shared/data beside this repository, our development set-up)')
    parser.add_argument('--workdir', default=str(REPO / 'benchmarks' / 'work'), help='data and experiment files')
    args = parser.parse_args(argv)
    real_root = Path(args.real_data)
    try:
        demo.check_real_root(real_root)
    except FileNotFoundError as err:
        print(f'learning.py: the real benchmark images are needed for scoring: {err}', file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    data_root = workdir / 'demo_data'
    demo.build_data(data_root, args.seed, per_photo=24, variants=2)
    sets = demo.real_pairs(real_root)
    report = {'minutes': args.minutes, 'threads': args.threads,
              'environment': f'torch {torch.__version__}, {platform.processor() or platform.machine()}, '
                             f'{os.cpu_count()} cores, {args.threads} threads',
              'test_sets': {name: len(pairs) for name, pairs in sets.items()},
              'input': score_sets(None, sets, METRICS), 'runs': {}}
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        for run in args.runs:
            print(f'[{run}] training for {args.minutes} minutes', flush=True)
            net, iters = train_for(run_options(run, data_root, args.seed), args.minutes, workdir)
            report['runs'][run] = {'iterations': iters, 'parameters': sum(p.numel() for p in net.parameters()),
                                   'scores': score_sets(net, sets, METRICS)}
            print(f'[{run}] {iters} iterations; ' + json.dumps(report['runs'][run]['scores']), flush=True)
    finally:
        os.chdir(cwd)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / 'learning.json').write_text(json.dumps(report, indent=2))
    (RESULTS / 'learning.md').write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == '__main__':
    sys.exit(main())
