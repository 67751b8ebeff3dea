"""``MODEL_CARD.md`` of the shipped weights, written from the measured record that ``make_card`` builds.

Every number in the card comes from that record; the fixed sentences say what the record cannot (licences, commands).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ['TARGETS', 'target_rows', 'write_card']

# The targets this model was built against (issue tracker of this project), on the PromptIR/AirNet protocol:
# (test set, kind, value): 'at_least' an absolute PSNR, 'gain' dB above the degraded input.
TARGETS = (('CBSD68_sigma25', 'at_least', 29.0), ('Rain100L', 'gain', 2.0), ('SOTS_outdoor', 'gain', 2.0),
           ('Set5_x2', 'gain', 0.5))
PROTOCOL_NAMES = {'psnr_aio': 'PromptIR/AirNet protocol (float, RGB, no crop)',
                  'psnr': 'BasicSR standard (8-bit RGB, no crop)', 'psnr_ndr': "NDR's official test.py"}
COMMANDS = (
    'ndr-prepare package-photos --out datasets/compact/package_photos',
    'ndr-prepare clean-train --src CBSD432_minus_Rain100L --src datasets/compact/package_photos '
    '--out datasets/compact/clean',
    'OMP_NUM_THREADS=1 python -m ndr_plugin.train -opt options/ndr_compact.yml',
    'OMP_NUM_THREADS=1 python -m ndr_plugin.train -opt options/baselines/promptir_compact.yml',
    'python -m ndr_plugin.weights.make_card --ndr experiments/NDR_compact --promptir experiments/PromptIR_compact '
    '--data datasets/compact/clean/gt.lmdb --test-root TEST_ROOT --machine "..."',
)
LICENCES = (
    '- 365 photographs of BSDS500 (Arbelaez et al., TPAMI 2011; BSDS500 minus CBSD68 minus the 67 images whose scenes '
    'are Rain100L test backgrounds): the Berkeley Segmentation Dataset is offered for non-commercial research and '
    'educational use.',
    "- scikit-image's sample photographs (`skimage.data`): astronaut and hubble_deep_field (NASA, public domain), "
    'coffee (CC0, Rachel Michetti), immunohistochemistry (no known copyright restrictions), retina (Wikimedia, CC0), '
    'the stereo motorcycle pair (Middlebury 2014 stereo benchmark, Scharstein et al., GCPR 2014, offered for '
    'research).',
    "- matplotlib's `grace_hopper.jpg` (US Navy photograph, public domain).",
    '',
    'The weights are offered on the same terms as the most restrictive of these: **for research and educational use**.',
)


LIMITATIONS = (
    '- It is blind: it decides from the image what to remove. A bright, low-contrast photograph with no haze can get a '
    'haze correction (darker, more contrast); this was seen on a real noisy photograph of RNI15. Pass your own '
    'weights (`--weights`) for data unlike its training data.',
    '- Its rain is synthetic streaks and its haze comes from an estimated depth; real rain and haze differ.',
    '- One training run with one seed; the scores above carry that run-to-run uncertainty, which was not measured.',
)


def target_rows(scores: dict[str, dict[str, dict[str, float]]], protocol: str = 'psnr_aio') -> list[dict[str, Any]]:
    """Each target with the model's and the input's PSNR and whether it is met."""
    rows = []
    for name, kind, value in TARGETS:
        model, given = scores['ndr'][name][protocol], scores['input'][name][protocol]
        met = model >= value if kind == 'at_least' else model - given >= value
        goal = f'>= {value:.1f} dB' if kind == 'at_least' else f'>= input + {value:.1f} dB'
        rows.append({'set': name, 'goal': goal, 'model': model, 'input': given, 'met': met})
    return rows


def _score_table(scores: dict[str, dict[str, dict[str, float]]], images: dict[str, int], metric: str,
                 digits: int) -> list[str]:
    lines = ['| test set | images | degraded input | compact NDRNet (shipped) | gain | tiny PromptIR, same recipe | gain |',
             '|---|---|---|---|---|---|---|']
    for name in scores['input']:
        given, ndr, promptir = (scores[w][name][metric] for w in ('input', 'ndr', 'promptir'))
        lines.append(f'| {name} | {images[name]} | {given:.{digits}f} | {ndr:.{digits}f} | '
                     f'{ndr - given:+.{digits}f} | {promptir:.{digits}f} | {promptir - given:+.{digits}f} |')
    return lines


def _provenance(record: dict[str, Any]) -> list[str]:
    ndr, promptir = record['runs']['ndr'], record['runs']['promptir']
    net = ', '.join(f'{k}: {v}' for k, v in record['network_g'].items())
    return [
        '## How it was made', '',
        f"- Network: `{net}` ({record['parameters']:,} parameters). Option file: `options/ndr_compact.yml` "
        '(every setting labelled with its source there).',
        f"- Training: {record['iterations']:,} iterations, seed {record['seed']}, bf16 autocast with float32 master "
        f"weights, bidirectional mode `joint`; {ndr['training_seconds'] / 60:.0f} minutes of wall-clock on "
        f"{record['machine']}.",
        f"- Baseline: PromptIR ({promptir['parameters']:,} parameters), `options/baselines/promptir_compact.yml`: the "
        f"same data, synthesis, schedule, loss, precision and seed for the same {promptir['iterations']:,} updates "
        f"({promptir['training_seconds'] / 60:.0f} minutes, side by side with the NDRNet run).",
        f"- Stored as float16 ({record['bytes'] / 1e6:.1f} MB, loaded as float32); SHA-256 `{record['sha256']}`. "
        'Scored from this file; the PromptIR baseline from its float32 checkpoint.',
        '', 'Commands (TEST_ROOT: the folder of standard test sets, see `ndr_plugin/metrics/standard_sets.py`):', '',
        '```', *COMMANDS, '```', '',
    ]


def _data(record: dict[str, Any]) -> list[str]:
    data = record['data']
    return [
        '## Training data', '',
        f"{data['images']} clean photographs (sources: {', '.join(data['sources'])}), every file name with its SHA-256 "
        f"in `{data['manifest']}`. Noise (sigma uniform in [0, 55]), light rain streaks, haze and bicubic "
        'downsampling (x2/x3/x4) are synthesised on the fly on 64 px patches. No image of any test set below, and '
        "neither of the demo's held-out photographs (chelsea, rocket), is in the training data; `make_card` "
        'refuses training files that share a SHA-256 or a name with a test file.', '',
        '## Licences', '', *LICENCES, '',
    ]


def write_card(record: dict[str, Any], path: Path) -> Path:
    """Writes the Markdown model card for ``record`` (see ``make_card``) to ``path``."""
    scores = record['scores']
    protocol = record['target_protocol']
    lines = ['# Model card: compact NDRNet (`ndr_compact.pth`)', '',
             'The default model of `ndr-restore` and `Restorer` when no weights are given: one small network for '
             'noise, rain, haze and bicubic-downsampling blur, trained by this package on CPU. It is far smaller and '
             'far less trained than the paper\'s model (27.3M parameters, days on GPUs); use it to try the tools on '
             'your photographs, not to report NDR\'s numbers.', '',
             'This file is written by `python -m ndr_plugin.weights.make_card` from measurements; do not edit it.', '']
    lines += _provenance(record) + _data(record)
    scope = ('Every image of each test set' if record.get('max_images') is None else
             f"Only the first {record['max_images']} image(s) of each test set (a quick check, not a full scoring)")
    lines += ['## Scores', '',
              f'{scope}: CBSD68 with Gaussian noise of sigma 15/25/50 (seeded per image), Rain100L '
              'test (100 pairs), the SOTS-outdoor pairs available to us, Set5 x2/x3/x4 (MATLAB-bicubic LR brought back '
              'with bicubic; the input column is that bicubic image). Float32 inference, whole images.', '']
    for metric, digits in (('psnr_aio', 2), ('psnr', 2), ('psnr_ndr', 2), ('ssim_aio', 4)):
        title = PROTOCOL_NAMES.get(metric, 'SSIM, PromptIR/AirNet protocol')
        table = _score_table(scores, record['images_per_set'], metric, digits)
        lines += [f'### {metric}: {title}', '', *table, '']
    lines += ['## Targets', '', f'On `{protocol}`:', '',
              '| test set | goal | model | input | met |', '|---|---|---|---|---|']
    for row in target_rows(scores, protocol):
        lines.append(f"| {row['set']} | {row['goal']} | {row['model']:.2f} | {row['input']:.2f} | "
                     f"{'yes' if row['met'] else 'no'} |")
    below = [n for n in scores['input'] if scores['ndr'][n][protocol] < scores['input'][n][protocol]]
    lines += ['', f"Test sets below their input: {', '.join(below) if below else 'none'}.", '']
    lines += ['## Limitations', '', *LIMITATIONS, '']
    partial = path.with_name(f'.{path.name}.partial')
    partial.write_text('\n'.join(lines), encoding='utf-8')
    os.replace(partial, path)  # written whole or not at all
    return path
