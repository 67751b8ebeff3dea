"""``python -m ndr_plugin.ablation_study {write,summarize}``: the multi-seed ablation study of options/ablations/.

One run per (ablation, seed), each a normal BasicSR training run, so the study can be spread over machines:

* ``write`` writes one option file per ablation and seed (``<name>_seed<k>``, ``manual_seed: k``), optionally with
  a shorter ``total_iter`` (the scheduler milestones and checkpoint/validation periods scaled with it), and prints the
  training commands;
* ``summarize`` reads every finished run's last validation (``experiments/<name>_seed<k>``) and writes, per ablation
  and test set, the mean and the sample standard deviation over seeds under one metric protocol.

The ablations, seeds and iteration budget are ours: neither the paper's ablation settings nor its seeds are known.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml

from ndr_plugin.compare import PROTOCOL_TYPES, metric_names_for_protocol, parse_validation_log
from ndr_plugin.options import load_option_file

ABLATIONS = Path(__file__).resolve().parents[1] / 'options' / 'ablations'
_SEED_SUFFIX = re.compile(r'^(.+)_seed(\d+)$')


def seeded_options(path: Path, seed: int, total_iter: int | None) -> dict[str, Any]:
    """The options of ablation ``path`` for one seed; ``total_iter`` shortens the run, the schedule scaled with it."""
    # Plain dicts (the loader's are ordered ones) so that yaml.safe_dump can write them; the ndr_plugin tag is not
    # needed by ndr_plugin.train, which registers everything itself.
    opt = json.loads(json.dumps({k: v for k, v in load_option_file(str(path)).items() if k != 'ndr_plugin'}))
    opt['name'] = f"{opt['name']}_seed{seed}"
    opt['manual_seed'] = seed
    if total_iter is not None:
        if total_iter < 1:
            raise ValueError(f'--total-iter must be a positive integer, got {total_iter}')
        ratio = total_iter / opt['train']['total_iter']
        opt['train']['total_iter'] = total_iter
        scheduler = opt['train']['scheduler']
        if 'milestones' in scheduler:
            scheduler['milestones'] = [max(1, round(m * ratio)) for m in scheduler['milestones']]
        for section, key in (('val', 'val_freq'), ('logger', 'save_checkpoint_freq')):
            opt[section][key] = max(1, round(float(opt[section][key]) * ratio))
    return opt


def write_study(variants: list[Path], seeds: list[int], total_iter: int | None, out: Path) -> list[Path]:
    """Writes the option files; returns their paths (one per variant and seed)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in variants:
        for seed in seeds:
            opt = seeded_options(path, seed, total_iter)
            target = out / f"{opt['name']}.yml"
            target.write_text(yaml.safe_dump(opt, sort_keys=False), encoding='utf-8')
            written.append(target)
    return written


def summarize(experiments: Path, protocol: str) -> dict[str, dict[str, tuple[float, float, int]]]:
    """ablation -> test set -> (mean PSNR, sample std of PSNR (0 for one seed), seeds), from finished runs."""
    psnrs: dict[str, dict[str, list[float]]] = {}
    for folder in sorted(p for p in experiments.iterdir() if p.is_dir()):
        match = _SEED_SUFFIX.match(folder.name)
        options = sorted(folder.glob('*.yml'))
        if not match or not options:
            continue
        names = metric_names_for_protocol(load_option_file(str(options[0])), protocol)
        if 'psnr' not in names:
            raise ValueError(f'{folder}: its option file has no {protocol} PSNR metric')
        for dataset, values in parse_validation_log(folder).items():
            value = values.get(names['psnr'])
            if isinstance(value, float):
                psnrs.setdefault(match.group(1), {}).setdefault(dataset, []).append(value)
    return {variant: {d: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v))
                      for d, v in per_set.items()}
            for variant, per_set in psnrs.items()}


def to_markdown(summary: dict[str, dict[str, tuple[float, float, int]]], protocol: str) -> str:
    datasets = sorted({d for per_set in summary.values() for d in per_set})
    lines = [f'PSNR (dB), mean ± sample std over seeds (n), metric protocol {protocol}.', '',
             '| ablation | ' + ' | '.join(datasets) + ' |', '|' + '---|' * (len(datasets) + 1)]
    for variant, per_set in sorted(summary.items()):
        cells = [f'{per_set[d][0]:.2f} ± {per_set[d][1]:.2f} ({per_set[d][2]})' if d in per_set else '-'
                 for d in datasets]
        lines.append(f'| {variant} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='ndr-ablation-study', description=__doc__.split('\n\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    write = commands.add_parser('write', help='write one option file per ablation and seed')
    write.add_argument('--variants', nargs='+', type=Path, default=sorted(ABLATIONS.glob('*.yml')))
    write.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    write.add_argument('--total-iter', type=int, default=None, help='shorter runs; the schedule is scaled with it')
    write.add_argument('--out', type=Path, default=Path('study_options'))
    summary = commands.add_parser('summarize', help='mean and std over seeds of the finished runs')
    summary.add_argument('--experiments', type=Path, default=Path('experiments'))
    summary.add_argument('--protocol', choices=sorted(PROTOCOL_TYPES), default='aio')
    summary.add_argument('--out', type=Path, default=Path('ablation_study.md'))
    args = parser.parse_args(argv)
    try:
        if args.command == 'write':
            for path in write_study(args.variants, args.seeds, args.total_iter, args.out):
                print(f'python -m ndr_plugin.train -opt {path}')
            return 0
        markdown = to_markdown(summarize(args.experiments, args.protocol), args.protocol)
    except (OSError, ValueError, KeyError) as err:
        print(f'ndr-ablation-study: error: {err}', file=sys.stderr)
        return 2
    args.out.write_text(markdown, encoding='utf-8')
    print(markdown)
    return 0


if __name__ == '__main__':
    sys.exit(main())
