"""The NDR ablation study at CPU scale: every variant x several seeds, trained on real photographs, scored on the
standard test sets, with paired differences from the network without NDR.

    python benchmarks/ablation.py                 # 8 variants x 3 seeds (about 2 hours on 2 cores), then the table
    python benchmarks/ablation.py --quick         # 1 seed, 20 iterations, 4 images per test set: the machinery only
    python benchmarks/ablation.py --table-only    # rebuild the table from the saved results

Every (variant, seed) is one job whose result is saved as soon as it finishes (``--workdir``/results/); a rerun skips
finished jobs, recomputes a job whose saved settings differ from the current ones (never reuses it), and rebuilds the
table from whatever exists, so the study can run in parts. ``--jobs 2 --threads 1`` (the default) runs two jobs side
by side with one thread each, which on 2 cores gets more done than one job with two threads for networks this small.

What each run is (all of it ours; the paper's ablation settings and seeds are not known to us):

* the demo's tiny NDRNet (``ndr_plugin.demo.TINY_NDRNET``), its training recipe (Adam 1e-3, cosine decay, batch 8 of
  48 px, the input-relative L1 loss) and sampling ratios, for ``--iters`` iterations: one restoration update per
  iteration in every variant, so every variant gets the same restoration updates;
* data: ``--train-data`` (default: the 365 clean BSDS500 photographs that share no scene with CBSD68 or Rain100L
  test), ``--patches`` random 96 px patches per photograph, with noise synthesised on the fly and rain, haze and
  bicubic downsampling (x2-x4) synthesised once per patch by ``ndr_plugin.data.degradation_specs``;
* paired: a seed fixes the initialisation of every part the variants share (copied from one reference network built
  from the seed) and the data order, crops and synthesised degradations (every job records a digest of its batches;
  the table refuses to pair jobs whose digests differ);
* scored on every pair of the standard test sets (``ndr_plugin.metrics.standard_sets``): CBSD68 sigma 15/25/50 (all
  68), Rain100L test (all 100), the SOTS-outdoor pairs and Set5 x2/x4, under the three metric protocols.

Writes ``benchmarks/results/ablation.json`` and ``ablation.md``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'benchmarks'))
from ablation_table import VARIANTS, markdown, summarize  # noqa: E402

RESULTS = REPO / 'benchmarks' / 'results'
TEST_SETS = ('CBSD68_sigma15', 'CBSD68_sigma25', 'CBSD68_sigma50', 'Rain100L', 'SOTS_outdoor', 'Set5_x2', 'Set5_x4')
DATA_VERSION = 1  # bump when the training-data recipe changes: the cached LMDBs are then rebuilt


def variant_options(variant: str, data_root: Path, iters: int, seed: int) -> dict[str, Any]:
    """The demo's option file, changed in the one thing ``variant`` ablates."""
    from ndr_plugin import demo
    opt = demo.train_options(f'ablation_{variant}_seed{seed}', data_root, iters=iters, seed=seed,
                             model='no_ndr' if variant == 'no_ndr' else 'ndr')
    for key in [k for k in opt['datasets'] if k.startswith('val')]:
        del opt['datasets'][key]
    opt.pop('val')
    opt['logger'].update(print_freq=10**9, use_tb_logger=False, progress_bar=False)
    bidirectional = opt['train']['bidirectional']
    change = VARIANTS[variant]['change']
    if change.get('mode') == 'off':  # no degradation network (the baselines' options have none already)
        for section, key in ((opt, 'network_deg'), (opt['train'], 'optim_deg'), (opt['train'], 'degradation_opt')):
            section.pop(key, None)
    if change.get('mode', 'alternate') != 'alternate':  # the alternate-only keys would be refused
        opt['train']['bidirectional'] = {'mode': change['mode']}
    else:
        bidirectional.update({k: v for k, v in change.items()
                              if k in ('degradation_updates', 'shared_optimizer_state')})
    opt['network_g'].update({k: v for k, v in change.items() if k in ('ndr_dictionary', 'injection')})
    return opt


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _sync_shared_init(model: Any, seed: int, full_options: dict[str, Any]) -> None:
    """Copy, into every network of ``model``, each parameter it shares (by name and shape) with the full model's
    networks built from ``seed``: the variants then start from the same weights wherever they have the same parts."""
    from basicsr.archs import build_network
    pairs = [('net_g', 'network_g'), ('net_deg', 'network_deg')]
    for attribute, key in pairs:
        net = getattr(model, attribute, None)
        if net is None:
            continue
        torch.manual_seed(seed + (0 if key == 'network_g' else 1))
        reference = build_network(dict(full_options[key])).state_dict()
        own = model.get_bare_model(net).state_dict()
        shared = {k: v for k, v in reference.items() if k in own and own[k].shape == v.shape}
        model.get_bare_model(net).load_state_dict(shared, strict=False)


def run_job(variant: str, seed: int, iters: int, data_root: str, real_root: str, max_images: int | None,
            threads: int, workdir: str) -> dict[str, Any]:
    """Train one (variant, seed) and score it; runs in its own process."""
    torch.set_num_threads(threads)
    import ndr_plugin  # noqa: F401  (registers our classes with BasicSR)
    from basicsr.data import build_dataloader, build_dataset
    from basicsr.models import build_model
    from basicsr.utils.options import parse_options
    from ndr_plugin import demo
    from ndr_plugin.metrics.standard_sets import load_standard_sets, score_sets

    opt = variant_options(variant, Path(data_root), iters, seed)
    opt_path = demo.write_yaml(opt, Path(workdir) / 'options' / f"{opt['name']}.yml")
    argv, sys.argv = sys.argv, [sys.argv[0], '-opt', str(opt_path)]
    try:
        parsed, _ = parse_options(workdir, is_train=True)
    finally:
        sys.argv = argv
    model = build_model(parsed)
    _sync_shared_init(model, seed, variant_options('full', Path(data_root), iters, seed))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    train_set = build_dataset(parsed['datasets']['train'])
    loader = build_dataloader(train_set, parsed['datasets']['train'], num_gpu=0, dist=False, sampler=None, seed=seed)
    data_hash, done, start = hashlib.sha256(), 0, time.perf_counter()
    while done < iters:
        for batch in loader:
            done += 1
            data_hash.update(batch['gt'].numpy().tobytes())
            data_hash.update(batch['lq'].numpy().tobytes())
            model.update_learning_rate(done, warmup_iter=-1)
            model.feed_data(batch)
            model.optimize_parameters(done)
            if done >= iters:
                break
    train_seconds = time.perf_counter() - start
    net = model.get_bare_model(model.net_g).eval()
    start = time.perf_counter()
    scores = score_sets(net, load_standard_sets(Path(real_root), TEST_SETS, max_images))
    return {'variant': variant, 'seed': seed, 'iterations': iters,
            'restoration_updates': model.rest_update_count, 'degradation_updates': model.deg_update_count,
            'parameters': sum(p.numel() for p in net.parameters()),
            'train_seconds': round(train_seconds, 1), 'score_seconds': round(time.perf_counter() - start, 1),
            'data_digest': data_hash.hexdigest()[:16], 'scores': scores}


def build_training_data(root: Path, train_data: Path, patches: int, seed: int) -> dict[str, Any]:
    """The training LMDBs under ``root`` (rebuilt when the recipe or the photographs differ); returns the recipe."""
    import cv2
    from ndr_plugin.demo.photos import TRAIN_PATCH, write_train_sets
    photos = sorted(p for p in train_data.iterdir() if p.suffix.lower() in ('.jpg', '.jpeg', '.png'))
    if not photos:
        raise FileNotFoundError(f'--train-data {train_data}: no photographs (.jpg/.png) found')
    recipe = {'version': DATA_VERSION, 'seed': seed, 'patches': patches,
              'photos': _digest([(p.name, p.stat().st_size) for p in photos])}
    stamp = root / 'recipe.json'
    if stamp.is_file() and json.loads(stamp.read_text()) == recipe:
        return recipe
    rng = np.random.default_rng(seed)
    crops = []
    for path in photos:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None or min(img.shape[:2]) < TRAIN_PATCH:
            raise ValueError(f'--train-data: {path} is unreadable or smaller than {TRAIN_PATCH} px')
        rgb = np.ascontiguousarray(img[..., ::-1])
        for i in range(patches):
            y = int(rng.integers(0, rgb.shape[0] - TRAIN_PATCH + 1))
            x = int(rng.integers(0, rgb.shape[1] - TRAIN_PATCH + 1))
            crops.append((f'{path.stem}_{i:02d}', np.ascontiguousarray(rgb[y:y + TRAIN_PATCH, x:x + TRAIN_PATCH])))
    if stamp.exists():
        stamp.unlink()
    shutil.rmtree(root / 'train', ignore_errors=True)  # a stale build is rebuilt, never resumed with other patches
    write_train_sets(root / 'train', crops, seed, variants=1)
    stamp.write_text(json.dumps(recipe))  # last, so an interrupted build is never taken for a complete one
    return recipe


def _save(path: Path, result: dict[str, Any]) -> None:
    tmp = path.with_suffix('.tmp')
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)


def pending_jobs(results: Path, variants: list[str], seeds: list[int], settings: dict[str, Any]) -> list[tuple]:
    """(variant, seed) pairs without a saved result made with ``settings``; every seed of the main variants first."""
    todo = []
    for extra in (False, True):
        for seed in seeds:
            for variant in variants:
                if VARIANTS[variant].get('extra', False) != extra:
                    continue
                path = results / f'{variant}_seed{seed}.json'
                if path.is_file():
                    saved = json.loads(path.read_text())
                    if saved.get('settings') == settings:
                        continue
                    print(f'{path.name}: made with other settings; it will be recomputed', flush=True)
                todo.append((variant, seed))
    return todo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--variants', nargs='+', choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--iters', type=int, default=400, help='training iterations per run (default 400)')
    parser.add_argument('--patches', type=int, default=4, help='96 px patches per training photograph (default 4)')
    parser.add_argument('--max-images', type=int, default=None, help='score only the first N pairs of each set')
    parser.add_argument('--quick', action='store_true', help='1 seed, 20 iterations, 4 images per set, own folder')
    parser.add_argument('--table-only', action='store_true', help='rebuild the table from the saved results')
    parser.add_argument('--jobs', type=int, default=2, help='jobs run side by side (default 2)')
    parser.add_argument('--threads', type=int, default=1, help='torch threads per job (default 1)')
    data = REPO.parent / 'shared' / 'data'
    parser.add_argument('--real-data', type=Path, default=data, help='the standard test sets (default: shared/data '
                        'beside this repository, our development set-up; layout: ndr_plugin.metrics.standard_sets)')
    parser.add_argument('--train-data', type=Path, default=data / 'CBSD432_minus_Rain100L')
    parser.add_argument('--workdir', type=Path, default=REPO / 'benchmarks' / 'work' / 'ablation')
    parser.add_argument('--out', type=Path, default=None, help='where the JSON and Markdown go (default: '
                        'benchmarks/results, or the work folder with --quick)')
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.iters, args.patches, args.max_images = args.seeds[:1], 20, 1, 4
        args.workdir = args.workdir.with_name(args.workdir.name + '_quick')
    out = args.out or (args.workdir if args.quick else RESULTS)
    for folder, what in ((args.real_data, '--real-data'), (args.train_data, '--train-data')):
        if not folder.is_dir():
            print(f'ablation.py: {what} {folder} does not exist (the study needs real photographs)', file=sys.stderr)
            return 2
    workdir = args.workdir.resolve()
    results = workdir / 'results'
    results.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    if not args.table_only:
        recipe = build_training_data(workdir / 'data', args.train_data, args.patches, seed=0)
        settings = {'iters': args.iters, 'data': recipe, 'max_images': args.max_images, 'test_sets': list(TEST_SETS)}
        todo = pending_jobs(results, args.variants, args.seeds, settings)
        print(f'{len(todo)} job(s) to run', flush=True)
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context('spawn')) as pool:
            futures = {pool.submit(run_job, v, s, args.iters, str(workdir / 'data'), str(args.real_data),
                                   args.max_images, args.threads, str(workdir)): (v, s) for v, s in todo}
            for future in as_completed(futures):
                variant, seed = futures[future]
                try:
                    result = {**future.result(), 'settings': settings, 'threads': args.threads, 'jobs': args.jobs}
                except Exception as err:  # one failed job must not lose the others; reported, exit status 1
                    failed.append(f'{variant} seed {seed}: {type(err).__name__}: {err}')
                    print(f'ablation.py: {failed[-1]}', file=sys.stderr, flush=True)
                    continue
                _save(results / f'{variant}_seed{seed}.json', result)
                print(f'{variant} seed {seed}: {result["train_seconds"]} s training, {result["score_seconds"]} s '
                      'scoring', flush=True)
    saved = [json.loads(p.read_text()) for p in sorted(results.glob('*.json'))]
    if not saved:
        print(f'ablation.py: no saved results in {results}', file=sys.stderr)
        return 2
    from ndr_plugin.metrics.standard_sets import load_standard_sets, score_sets
    inputs = score_sets(None, load_standard_sets(args.real_data, TEST_SETS, saved[0]['settings']['max_images']))
    try:
        report = summarize(saved, inputs)
    except ValueError as err:  # results that cannot be put in one table: say why, write nothing
        print(f'ablation.py: {err}', file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    (out / 'ablation.json').write_text(json.dumps(report, indent=1))
    (out / 'ablation.md').write_text(markdown(report))
    print(markdown(report))
    if failed:
        print('ablation.py: failed jobs (rerun to retry them):\n  ' + '\n  '.join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
