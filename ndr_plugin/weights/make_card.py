"""Ship a trained compact NDRNet run as the package's default weights, and write its model card from measurements.

    python -m ndr_plugin.weights.make_card --ndr experiments/NDR_compact --promptir experiments/PromptIR_compact \\
        --data datasets/compact/clean/gt.lmdb --test-root ../shared/data --machine "2-core CPU, ..."

Takes each run's final weights (the run must have reached its ``train.total_iter``), stores the NDRNet's as float16
with its ``network_g`` in ``ndr_plugin/weights/ndr_compact.pth`` (written atomically), scores the shipped file, the
PromptIR baseline and the degraded inputs on every standard test set under all three metric protocols
(:mod:`ndr_plugin.metrics.standard_sets`), and writes ``ndr_compact_card.json``, ``ndr_compact_data.json`` and
``MODEL_CARD.md`` (:mod:`ndr_plugin.weights.card_text`). Nothing in the card is typed by hand: the scores, the
parameter count, the wall-clock (from the runs' BasicSR logs) and the data manifest (from the LMDB's manifest.json)
are read or measured here.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from ndr_plugin import weights as shipped
from ndr_plugin.checkpoints import atomic_torch_save, torch_load
from ndr_plugin.metrics.standard_sets import STANDARD_SETS, load_standard_sets, mean_scores, score_images
from ndr_plugin.options import load_option_file

__all__ = ['main', 'finished_run', 'training_seconds', 'half_checkpoint', 'score_model']

LOG_TIME = re.compile(r'^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),(\d{3}) ')
TARGET_PROTOCOL = 'psnr_aio'  # the protocol of the published all-in-one tables the targets quote


def _write_text(path: Path, text: str) -> None:
    """Writes ``text`` to a temporary file beside ``path``, then renames it: a reader never sees half a card."""
    partial = path.with_name(f'.{path.name}.partial')
    partial.write_text(text, encoding='utf-8')
    os.replace(partial, path)


def finished_run(experiment: Path) -> tuple[dict[str, Any], Path]:
    """(the run's option file as BasicSR saved it, its final ``net_g_<total_iter>.pth``); an unfinished run is an
    error, so a card never describes weights from the middle of a schedule."""
    option_files = sorted(experiment.glob('*.yml'))
    if len(option_files) != 1:
        raise ValueError(f'{experiment}: expected the one option file BasicSR copies into the run, found '
                         f'{[p.name for p in option_files]}')
    opt = load_option_file(option_files[0])
    total = int(opt['train']['total_iter'])
    final = experiment / 'models' / f'net_g_{total}.pth'
    if not final.is_file():
        raise ValueError(f'{experiment}: {final.name} is missing: the run has not reached train.total_iter = {total} '
                         '(rerun its training command to resume it)')
    return opt, final


def training_seconds(experiment: Path) -> float:
    """Wall-clock of training: per BasicSR log file (one per start or resume), from 'Start training' to its last
    line, summed."""
    total = 0.0
    for log in sorted(experiment.glob('train_*.log')):
        start = last = None
        for line in log.read_text(encoding='utf-8', errors='replace').splitlines():
            match = LOG_TIME.match(line)
            if not match:
                continue
            stamp = datetime.datetime.strptime(match.group(1), '%Y-%m-%d %H:%M:%S')
            stamp += datetime.timedelta(milliseconds=int(match.group(2)))
            if 'Start training' in line:
                start = stamp
            last = stamp
        if start is not None and last is not None:
            total += (last - start).total_seconds()
    if total <= 0:
        raise ValueError(f'{experiment}: no training time found in its train_*.log files')
    return total


def half_checkpoint(weights: Path, network_g: dict[str, Any], out: Path) -> None:
    """Stores ``weights``' ``params`` as float16 with ``network_options``, the layout the loaders read."""
    params = torch_load(str(weights))['params']
    bad = [k for k, v in params.items() if not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f'{weights}: non-finite values in {bad[:3]}')
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in params.items()}
    atomic_torch_save({'params': half, 'network_options': dict(network_g)}, str(out))


def score_model(weights: str | None, opt: dict[str, Any] | None, test_root: str, threads: int,
                max_images: int | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Per-image scores of a checkpoint (``weights=None``: the degraded inputs) on every standard set, float32."""
    torch.set_num_threads(threads)
    import ndr_plugin  # noqa: F401  (registers our networks in a fresh worker process)
    from ndr_plugin.restore.restorer import Restorer
    sets = load_standard_sets(Path(test_root), tuple(STANDARD_SETS), max_images)
    if weights is None:
        return score_images(None, sets)
    restorer = Restorer(weights, opt=opt, precision='fp32')
    return score_images(restorer.restore_tensor, sets)


def data_manifest(lmdb: Path) -> dict[str, Any]:
    """File name and SHA-256 of every training image, from the manifest ``ndr-prepare`` wrote with the LMDB."""
    manifest_path = lmdb / 'manifest.json'
    if not manifest_path.is_file():
        raise ValueError(f'{manifest_path} is missing: --data must be the gt.lmdb that ndr-prepare clean-train wrote')
    manifest = json.loads(manifest_path.read_text(encoding='utf-8'))
    images = [{'key': r['key'], 'file': r['source']['gt']['file'], 'sha256': r['source']['gt']['sha256'],
               'shape': r['shape']} for r in manifest['records']]
    return {'kind': manifest['kind'], 'sources': manifest['sources'], 'images': images}


def _check_disjoint(data: dict[str, Any], test_root: Path) -> None:
    """Refuses training data that shares a file with a test set, by SHA-256 or by name stem (CBSD68 keeps the
    BSDS500 image numbers, so a BSDS500 photograph in CBSD68 has the same stem in either format)."""
    test_files = [p for folder in sorted(set(STANDARD_SETS.values())) for p in sorted((test_root / folder).rglob('*'))
                  if p.is_file()]
    digests = {shipped.file_sha256(p) for p in test_files}
    stems = {p.stem for p in test_files}
    shared = [img['file'] for img in data['images'] if img['sha256'] in digests or Path(img['file']).stem in stems]
    if shared:
        raise ValueError(f'training images that are also test images: {shared[:5]}')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='python -m ndr_plugin.weights.make_card', description=__doc__.split('\n\n')[0])
    parser.add_argument('--ndr', type=Path, required=True, help='the compact NDRNet run (experiments/NDR_compact)')
    parser.add_argument('--promptir', type=Path, required=True, help='the PromptIR baseline run, same recipe')
    parser.add_argument('--data', type=Path, required=True, help='the training gt.lmdb (its manifest.json is read)')
    parser.add_argument('--test-root', type=Path, required=True, help='folder with the standard test sets')
    parser.add_argument('--machine', required=True, help='where the runs trained, for the card (e.g. "2-core CPU")')
    parser.add_argument('--out', type=Path, default=shipped.HERE, help='where the weights and card go')
    parser.add_argument('--threads', type=int, default=1, help='threads per scoring process (two run at once)')
    parser.add_argument('--max-images', type=int, default=None,
                        help='only the first N images of each test set, for a quick check (the card says so)')
    return parser


def main(argv: list[str] | None = None) -> int:
    from ndr_plugin.weights.card_text import write_card
    args = build_parser().parse_args(argv)
    ndr_opt, ndr_final = finished_run(args.ndr)
    promptir_opt, promptir_final = finished_run(args.promptir)
    data = data_manifest(args.data)
    _check_disjoint(data, args.test_root)
    weights_path = args.out / shipped.SHIPPED_WEIGHTS.name
    half_checkpoint(ndr_final, ndr_opt['network_g'], weights_path)
    print(f'Scoring {weights_path} and {promptir_final} on {", ".join(STANDARD_SETS)}')
    with ProcessPoolExecutor(2, mp_context=get_context('spawn')) as pool:
        ndr_job = pool.submit(score_model, str(weights_path), None, str(args.test_root), args.threads,
                              args.max_images)
        promptir_job = pool.submit(score_model, str(promptir_final), dict(promptir_opt), str(args.test_root),
                                   args.threads, args.max_images)
        inputs = score_model(None, None, str(args.test_root), args.threads, args.max_images)
        per_image = {'input': inputs, 'ndr': ndr_job.result(), 'promptir': promptir_job.result()}
    runs = {'ndr': (args.ndr, ndr_opt), 'promptir': (args.promptir, promptir_opt)}
    record = {
        'sha256': shipped.file_sha256(weights_path), 'bytes': weights_path.stat().st_size,
        'iterations': int(ndr_opt['train']['total_iter']), 'seed': ndr_opt['manual_seed'],
        'parameters': sum(p.numel() for p in torch_network(ndr_opt['network_g']).parameters()),
        'network_g': dict(ndr_opt['network_g']), 'machine': args.machine,
        'runs': {name: {'experiment': path.name, 'option_name': opt['name'],
                        'training_seconds': round(training_seconds(path)), 'iterations': int(opt['train']['total_iter']),
                        'parameters': sum(p.numel() for p in torch_network(opt['network_g']).parameters())}
                 for name, (path, opt) in runs.items()},
        'data': {'kind': data['kind'], 'sources': data['sources'], 'images': len(data['images']),
                 'manifest': shipped.DATA_MANIFEST.name},
        'target_protocol': TARGET_PROTOCOL,
        'max_images': args.max_images,
        'images_per_set': {name: len(rows) for name, rows in per_image['input'].items()},
        'scores': {who: mean_scores(scores) for who, scores in per_image.items()},
        'per_image': {'ndr': per_image['ndr']},
    }
    _write_text(args.out / shipped.DATA_MANIFEST.name, json.dumps(data, indent=1))
    _write_text(args.out / shipped.CARD_JSON.name, json.dumps(record, indent=1))
    write_card(record, args.out / shipped.MODEL_CARD.name)
    print(f'Wrote {weights_path}, {shipped.CARD_JSON.name}, {shipped.DATA_MANIFEST.name}, {shipped.MODEL_CARD.name}')
    return 0


def torch_network(network_g: dict[str, Any]) -> torch.nn.Module:
    """The network ``network_g`` describes (BasicSR's ``build_network``), for counting parameters."""
    import ndr_plugin  # noqa: F401
    from basicsr.archs import build_network
    return build_network(dict(network_g))


if __name__ == '__main__':
    raise SystemExit(main())
