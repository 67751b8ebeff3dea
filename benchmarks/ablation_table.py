"""The variants of benchmarks/ablation.py and the statistics and table built from its saved results."""
from __future__ import annotations

import json
import math
import statistics
from typing import Any

from scipy.stats import t as student_t

# Each variant differs from ``full`` (options/ndr_allinone.yml's choices: alternate, query, one Adam state per
# objective) in exactly the one thing named; ``no_ndr`` is the reference every paired difference is taken from.
# ``extra`` variants run after every seed of the others (the study's budget may run out before them).
VARIANTS: dict[str, dict[str, Any]] = {
    'no_ndr': {'what': 'same backbone, no NDR path (use_ndr: false), restoration loss only',
               'change': {'mode': 'off'}},
    'full': {'what': 'NDR, DQ, CP injection; alternate, degradation loss reaches NDR + queries', 'change': {}},
    'alternate_encoder': {'what': 'degradation loss also reaches the encoder (degradation_updates: encoder)',
                          'change': {'degradation_updates': 'encoder'}},
    'joint': {'what': "one joint step (the official code's)", 'change': {'mode': 'joint'}},
    'no_bidirectional': {'what': "NDR path trained by the restoration loss only (mode: 'off')",
                         'change': {'mode': 'off'}},
    'no_dictionary': {'what': 'maps predicted from features, no atoms (ndr_dictionary: false)',
                      'change': {'ndr_dictionary': False}},
    'concat_injection': {'what': 'maps concatenated + 1x1 conv instead of CP gates (injection: concat)',
                         'change': {'injection': 'concat'}},
    'shared_adam': {'what': 'NDR/query parameters share one Adam state (shared_optimizer_state: true)',
                    'change': {'shared_optimizer_state': True}, 'extra': True},
}
PROTOCOLS = {'psnr_aio': 'PromptIR/AirNet (float)', 'psnr': 'BasicSR standard (uint8)', 'psnr_ndr': 'NDR official'}
MAIN = 'psnr_aio'


def interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): the two-sided 95% Student-t interval of the mean; low = high = mean for one value."""
    mean = statistics.mean(values)
    if len(values) < 2:
        return mean, mean, mean
    half = student_t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def _with_average(scores: dict[str, dict[str, float]], metric: str) -> dict[str, float]:
    row = {name: per_set[metric] for name, per_set in scores.items()}
    row['average'] = statistics.mean(row.values())
    return row


def summarize(saved: list[dict[str, Any]], inputs: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Per variant: seeds, parameters, updates, mean/std per set and protocol; paired differences from no_ndr."""
    settings = {json.dumps(r['settings'], sort_keys=True) for r in saved}
    if len(settings) > 1:
        raise ValueError('the saved results were made with different settings; rerun without --table-only so that '
                         'the stale ones are recomputed')
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for result in saved:
        runs.setdefault(result['variant'], {})[result['seed']] = result
    report: dict[str, Any] = {'settings': saved[0]['settings'], 'input': {m: _with_average(inputs, m)
                                                                          for m in PROTOCOLS}, 'variants': {}}
    reference = runs.get('no_ndr', {})
    for variant in [v for v in VARIANTS if v in runs]:
        by_seed = runs[variant]
        first = next(iter(by_seed.values()))
        entry = {'what': VARIANTS[variant]['what'], 'seeds': sorted(by_seed), 'parameters': first['parameters'],
                 'restoration_updates': first['restoration_updates'],
                 'degradation_updates': first['degradation_updates'],
                 'train_seconds': statistics.mean(r['train_seconds'] for r in by_seed.values()), 'psnr': {},
                 'paired_difference': {}}
        for metric in PROTOCOLS:
            rows = [_with_average(r['scores'], metric) for r in by_seed.values()]
            entry['psnr'][metric] = {k: (statistics.mean(r[k] for r in rows),
                                         statistics.stdev(r[k] for r in rows) if len(rows) > 1 else 0.0)
                                     for k in rows[0]}
        common = sorted(set(by_seed) & set(reference))
        for seed in common:
            if by_seed[seed]['data_digest'] != reference[seed]['data_digest']:
                raise ValueError(f'{variant} and no_ndr saw different training batches with seed {seed}: they '
                                 'cannot be paired')
        if variant != 'no_ndr' and common:
            for metric in PROTOCOLS:
                diffs = [{k: v - _with_average(reference[s]['scores'], metric)[k]
                          for k, v in _with_average(by_seed[s]['scores'], metric).items()} for s in common]
                entry['paired_difference'][metric] = {k: interval([d[k] for d in diffs]) for k in diffs[0]}
            entry['paired_seeds'] = common
        report['variants'][variant] = entry
    return report


def markdown(report: dict[str, Any]) -> str:
    settings = report['settings']
    sets = list(report['input'][MAIN])
    variants = report['variants']
    lines = ['# NDR ablation study (CPU scale)', '',
             f"Each run: the demo's tiny network and recipe, {settings['iters']} iterations (one restoration update "
             'each), trained on synthesised noise, rain, haze and downsampling of real photographs; scored on every '
             'pair of the test sets' + (f" (first {settings['max_images']} only)" if settings['max_images'] else '')
             + '. Written by `python benchmarks/ablation.py`; see its docstring for what is fixed per seed.', '',
             f'## PSNR (dB), {PROTOCOLS[MAIN]} protocol: mean ± std over seeds', '',
             '| variant | seeds | ' + ' | '.join(sets) + ' |', '|---|---|' + '---|' * len(sets)]
    lines.append('| degraded input | - | ' + ' | '.join(f"{report['input'][MAIN][s]:.2f}" for s in sets) + ' |')
    for name, entry in variants.items():
        cells = [f"{entry['psnr'][MAIN][s][0]:.2f} ± {entry['psnr'][MAIN][s][1]:.2f}" for s in sets]
        lines.append(f"| {name} | {len(entry['seeds'])} | " + ' | '.join(cells) + ' |')
    lines += ['', f'## Paired difference from no_ndr (dB, {PROTOCOLS[MAIN]}): mean [95% interval over seeds]', '',
              '| variant | pairs | ' + ' | '.join(sets) + ' |', '|---|---|' + '---|' * len(sets)]
    for name, entry in variants.items():
        if entry['paired_difference']:
            cells = [_interval_cell(entry['paired_difference'][MAIN][s]) for s in sets]
            lines.append(f"| {name} | {len(entry['paired_seeds'])} | " + ' | '.join(cells) + ' |')
    lines += ['', '## The variants', '', '| variant | what it changes | parameters | restoration / degradation '
              'updates | training s per run |', '|---|---|---|---|---|']
    for name, entry in variants.items():
        lines.append(f"| {name} | {entry['what']} | {entry['parameters']:,} | {entry['restoration_updates']} / "
                     f"{entry['degradation_updates']} | {entry['train_seconds']:.0f} |")
    lines += ['', 'Training seconds are wall-clock with the thread and job counts in ablation.json (jobs ran side by '
              'side). The other protocols (BasicSR standard, NDR official) are in ablation.json.', '']
    return '\n'.join(lines)


def _interval_cell(value: tuple[float, float, float]) -> str:
    mean, low, high = value
    return f'{mean:+.2f} [{low:+.2f}, {high:+.2f}]' if high > low else f'{mean:+.2f}'
