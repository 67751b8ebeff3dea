"""Dataset preparation: turn the standard source folders into BasicSR LMDBs (and PNG folders for test sets).

One function, :func:`prepare`, behind ``datasets_prep/prepare.py``. Each KIND becomes one or more *jobs* (one output
set, e.g. ``sigma15/``), each job a list of tasks processed in parallel and written in input order by
:class:`~ndr_plugin.data.lmdb_io.LmdbSetWriter`, so the bytes do not depend on the number of workers and an interrupted
run resumes where it stopped.

=============  ========================================================================================================
KIND           what it writes
=============  ========================================================================================================
denoise-train  clean BSD400 + WED images -> ``OUT/gt.lmdb`` (noise is added on the fly during training)
denoise-test   CBSD68 -> ``OUT/sigma{S}/{gt,lq}.lmdb`` + ``{gt,lq}/`` PNGs, noise drawn per image from (seed, key)
derain-train   Rain100L training pairs -> ``OUT/{gt,lq}.lmdb``
derain-test    Rain100L / Rain100H test pairs -> ``OUT/{gt,lq}.lmdb`` + PNGs
dehaze-train   RESIDE OTS hazy/clear pairs -> ``OUT/{gt,lq}.lmdb``
dehaze-test    SOTS-outdoor pairs -> ``OUT/{gt,lq}.lmdb`` + PNGs
sr-train       DIV2K / Flickr2K HR -> ``OUT/gt.lmdb`` (bicubic downsampling on the fly during training)
sr-test        Set5 / Set14 / BSD100 / Urban100 HR -> ``OUT/x{S}/{gt,lq,lr}.lmdb`` + PNGs; gt mod-cropped to S, lq the
               MATLAB-bicubic x1/S then xS image (same size as gt), lr the x1/S image itself
=============  ========================================================================================================
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import os
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ndr_plugin.data import standard_splits
from ndr_plugin.data.degradation_specs import build_degradation
from ndr_plugin.data.degradations import add_gaussian_noise, bicubic_degrade, item_rng, lr_image, to_uint8
from ndr_plugin.data.dataset_files import BadInputError, read_image
from ndr_plugin.data.lmdb_io import LmdbSetWriter, image_entry
from ndr_plugin.data.prepare_sources import Task, clean_tasks, haze_pair_tasks, rain_pair_tasks
from ndr_plugin.version import __version__

__all__ = ['KINDS', 'prepare', 'ProcessSpec', 'process_task', 'subimage_boxes']

KINDS = {
    'denoise-train': 'BSD400 + WED clean images -> OUT/gt.lmdb (noise added on the fly in training)',
    'denoise-test': 'CBSD68 -> OUT/sigma{S}/{gt,lq}.lmdb + PNG folders (noise fixed per image by --seed)',
    'derain-train': 'Rain100L training pairs (rainy/rain-N.png, gt/norain-N.png) -> OUT/{gt,lq}.lmdb',
    'derain-test': 'Rain100L or Rain100H test pairs -> OUT/{gt,lq}.lmdb + PNG folders',
    'dehaze-train': 'RESIDE OTS (synthetic/partK/ID_A_beta.jpg, original/ID.jpg) -> OUT/{gt,lq}.lmdb',
    'dehaze-test': 'SOTS-outdoor (hazy/ID_A_beta.jpg, gt/ID.png) -> OUT/{gt,lq}.lmdb + PNG folders',
    'sr-train': 'DIV2K / Flickr2K HR images -> OUT/gt.lmdb (bicubic downsampling on the fly in training)',
    'sr-test': 'Set5 / Set14 / BSD100 / Urban100 HR -> OUT/x{S}/{gt,lq,lr}.lmdb + PNG folders',
}


@dataclass
class ProcessSpec:
    """What to do with every task of a job (picklable, sent to the worker processes)."""
    roles: tuple[str, ...]
    seed: int = 0
    synth: dict[str, Any] | None = None  # degradation spec that makes 'lq' from 'gt'
    scale: int | None = None  # SR test: mod-crop, then lq (down + up) and lr
    crop_multiple: int | None = None  # centre crop to a multiple (AirNet/PromptIR crop_img)
    subimage: tuple[int, int, int] | None = None  # (size, step, thresh) sub-image cropping
    compress_level: int = 1


def subimage_boxes(height: int, width: int, size: int, step: int, thresh: int) -> list[tuple[int, int]]:
    """Top-left corners of ``size`` crops every ``step`` px, plus a last crop flush with the border when more than
    ``thresh`` px would be left over (the rule of BasicSR's ``extract_subimages.py``)."""

    def starts(length: int) -> list[int]:
        values = list(range(0, length - size + 1, step))
        if length - (values[-1] + size) > thresh:
            values.append(length - size)
        return values

    return [(y, x) for y in starts(height) for x in starts(width)]


def _centre_crop(img: np.ndarray, multiple: int) -> np.ndarray:
    height, width = img.shape[:2]
    dh, dw = height % multiple, width % multiple
    return img[dh // 2:height - dh + dh // 2, dw // 2:width - dw + dw // 2]


def _sequential_noise(gt: np.ndarray, task: Task, spec: ProcessSpec) -> tuple[np.ndarray, str, dict[str, Any]]:
    """AirNet/PromptIR's test noise: ``np.random.randn`` of one stream seeded once, drawn on the RGB image."""
    stream = np.random.RandomState()
    stream.set_state(task.rng_state)
    sigma = spec.synth['sigmas'][0]
    noisy = add_gaussian_noise(gt[..., ::-1], sigma, stream, quantize=spec.synth['quantize'])[..., ::-1]
    params = {'type': 'noise', 'sigma': sigma, 'clip': True, 'quantize': spec.synth['quantize'],
              'seeding': 'sequential', 'seed': spec.seed}
    return to_uint8(noisy), f'denoise_{sigma:g}', params


def _stream_states(tasks: list[Task], sigmas: list[float], seed: int, crop_multiple: int | None) -> list[list[Any]]:
    """Per sigma and image, the state of one ``RandomState(seed)`` stream before that image's noise is drawn: the
    images in sorted order for the first sigma, then again for the next (AirNet/PromptIR draw in that order)."""
    shapes = []
    for task in tasks:
        try:
            img = read_image(task.files['gt'])[0]
        except BadInputError:
            shapes.append(None)  # reported (or skipped) when the task itself runs
            continue
        shapes.append(_centre_crop(img, crop_multiple).shape if crop_multiple else img.shape)
    stream = np.random.RandomState(seed)
    states = []
    for _ in sigmas:
        per_image = []
        for shape in shapes:
            per_image.append(stream.get_state())
            if shape is not None:
                stream.standard_normal(shape)
        states.append(per_image)
    return states


def process_task(task: Task, spec: ProcessSpec) -> list[tuple] | BadInputError:
    """Reads, checks, degrades, crops and PNG-encodes one task. Returns its records, or the problem found."""
    try:
        images, info = {}, {'source': {}, 'degradation': task.info.get('degradation'), 'params': {}}
        notes = {}
        for role, path in task.files.items():
            images[role], notes[role], sha = read_image(path)
            info['source'][role] = {'file': task.names[role], 'sha256': sha}
        if 'lq' in images and images['lq'].shape != images['gt'].shape:
            (lh, lw), (gh, gw) = images['lq'].shape[:2], images['gt'].shape[:2]
            raise BadInputError(task.files['lq'], f"size {lw}x{lh} differs from its clean partner {task.files['gt']} "
                                f'({gw}x{gh})')
        info['params'].update({k: v for k, v in task.info.items() if k != 'degradation'})
        if any(notes.values()):
            info['conversion'] = {role: note for role, note in notes.items() if note}
        if spec.crop_multiple:
            images = {role: _centre_crop(img, spec.crop_multiple) for role, img in images.items()}
        if spec.scale:
            gt = images['gt'][:images['gt'].shape[0] // spec.scale * spec.scale,
                              :images['gt'].shape[1] // spec.scale * spec.scale]
            images = {'gt': gt, 'lq': to_uint8(bicubic_degrade(gt, spec.scale)), 'lr': lr_image(gt, spec.scale)}
            info['degradation'] = f'sr_x{spec.scale}'
            info['params'] = {'scale': spec.scale, 'method': 'MATLAB bicubic x1/s then xs, 8-bit'}
        if spec.synth and task.rng_state is not None:
            images['lq'], info['degradation'], info['params'] = _sequential_noise(images['gt'], task, spec)
        elif spec.synth:
            degraded, label, params = build_degradation(spec.synth)(images['gt'], item_rng(spec.seed, task.task_id))
            images['lq'] = to_uint8(degraded)
            info['degradation'], info['params'] = label, {**params, 'seed': spec.seed}
        records = []
        if spec.subimage:
            size, step, thresh = spec.subimage
            height, width = images['gt'].shape[:2]
            if height < size or width < size:
                raise BadInputError(task.files['gt'], f'{width}x{height} is smaller than the crop size {size}')
            for index, (y, x) in enumerate(subimage_boxes(height, width, size, step, thresh)):
                crops = {role: img[y:y + size, x:x + size] for role, img in images.items()}
                entries = {role: image_entry(crops[role], spec.compress_level) for role in spec.roles}
                records.append((f'{task.task_id}_s{index:03d}', entries, {**info, 'crop': [y, x, size, size]}))
        else:
            entries = {role: image_entry(images[role], spec.compress_level) for role in spec.roles}
            records.append((task.task_id, entries, info))
        return records
    except BadInputError as err:
        return err


def _init_worker() -> None:
    import cv2
    import torch
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _start_pool(workers: int) -> multiprocessing.pool.Pool:
    """Worker processes started from a clean interpreter (forkserver, else spawn), never forked from this one:
    a fork inherits OpenCV's and OpenMP's thread-pool locks in whatever state they are, and the children can hang."""
    if 'forkserver' in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context('forkserver')
        context.set_forkserver_preload([__name__])  # import torch/BasicSR once in the server, not in every worker
    else:
        context = multiprocessing.get_context('spawn')
    return context.Pool(workers, initializer=_init_worker)


@dataclass
class Job:
    """One output set: its LMDBs (and PNG folders), tasks, processing, and the split report for the manifest."""
    name: str
    targets: dict[str, Path]
    png_dirs: dict[str, Path]
    tasks: list[Task]
    spec: ProcessSpec
    header: dict[str, Any]
    report: standard_splits.SplitReport | None = None
    problems: list[BadInputError] = field(default_factory=list)


def _run_job(job: Job, workers: int, skip_bad: bool, overwrite: bool, progress: bool) -> dict[str, Any]:
    summary: dict[str, Any] = {'bad_inputs': [{'file': p.path, 'reason': p.reason} for p in job.problems]}
    if job.report is not None:
        summary['standard_split'] = job.report.as_dict()
    # The worker pool is started before any LMDB is opened, so no child process inherits an open environment.
    pool = _start_pool(min(workers, len(job.tasks))) if workers > 1 and len(job.tasks) > 1 else None
    try:
        writer = LmdbSetWriter(job.targets, png_dirs=job.png_dirs, header=job.header,
                               compress_level=job.spec.compress_level, overwrite=overwrite)
        if writer.already_complete:
            return {'job': job.name, 'status': 'already complete',
                    'targets': {k: str(v) for k, v in job.targets.items()}}
        todo = [(i, t) for i, t in enumerate(job.tasks) if t.task_id not in writer.done]
        work = partial(process_task, spec=job.spec)
        chunk = max(1, min(8, len(todo) // (4 * workers)))
        with writer:
            pending = [t for _, t in todo]
            results = pool.imap(work, pending, chunksize=chunk) if pool else map(work, pending)
            bar = tqdm(total=len(job.tasks), initial=len(job.tasks) - len(todo), desc=job.name, unit='img',
                       disable=not progress)
            for (index, task), result in zip(todo, results):
                if isinstance(result, BadInputError):
                    if not skip_bad:
                        raise result
                    writer.put_task(index, task.task_id, skipped={'file': result.path, 'reason': result.reason})
                else:
                    writer.put_task(index, task.task_id, result)
                bar.update(1)
            bar.close()
            writer.finish(summary)
    finally:
        if pool:
            pool.terminate()
            pool.join()
    records = sum(len(e['records']) for e in writer.done.values())
    skipped_all = [e['skipped'] for e in writer.done.values() if 'skipped' in e] + summary['bad_inputs']
    return {'job': job.name, 'status': 'written', 'records': records, 'skipped': skipped_all,
            'targets': {k: str(v) for k, v in job.targets.items()}}


class BadInputsError(BadInputError):
    """Several bad inputs found while listing the sources; the message names every one (up to 20)."""

    def __init__(self, problems: list[BadInputError]) -> None:
        super().__init__(problems[0].path, problems[0].reason)
        self.problems = problems

    def __reduce__(self):
        return type(self), (self.problems, )

    def __str__(self) -> str:
        listed = '\n  '.join(str(p) for p in self.problems[:20])
        more = f'\n  ... and {len(self.problems) - 20} more' if len(self.problems) > 20 else ''
        return f'{len(self.problems)} bad inputs (use --skip-bad to leave them out):\n  {listed}{more}'


def _check_problems(problems: list[BadInputError], skip_bad: bool) -> None:
    if problems and not skip_bad:
        raise problems[0] if len(problems) == 1 else BadInputsError(problems)


def _filter_standard(task_name: str, tasks: list[Task], subset: str, role: str) -> tuple[list[Task], Any]:
    report = standard_splits.compare(task_name, [t.names[role] for t in tasks])
    if subset == 'all':
        return tasks, report
    listed = {standard_splits.normalize_stem(task_name, e) for e in standard_splits.load_split(task_name)}
    kept = [t for t in tasks if standard_splits.normalize_stem(task_name, t.names[role]) in listed]
    if tasks and not kept:
        raise ValueError(f'{task_name}: none of the {len(tasks)} images is in the standard list '
                         f'({standard_splits.TRAIN_SPLITS[task_name][0]}); pass --subset all to use them anyway')
    return kept, report


def prepare(kind: str,
            sources: list[str | os.PathLike] | None,
            out: str | os.PathLike,
            *,
            sigmas: list[float] | None = None,
            scales: list[int] | None = None,
            seed: int = 0,
            workers: int | None = None,
            skip_bad: bool = False,
            subset: str = 'standard',
            quantize: str = 'round',
            seeding: str = 'per-image',
            crop_multiple: int | None = None,
            crop_size: int | None = None,
            crop_step: int | None = None,
            crop_thresh: int = 0,
            lq_dir: str | os.PathLike | None = None,
            gt_dir: str | os.PathLike | None = None,
            compress_level: int = 1,
            overwrite: bool = False,
            progress: bool = True) -> list[dict[str, Any]]:
    """Builds the LMDBs of one KIND (see :data:`KINDS`); returns one summary dict per output set.

    Standard-split differences are reported with ``warnings.warn`` and recorded in each manifest.json.

    denoise-test ``seeding``: ``'per-image'`` (default) draws each image's noise from ``item_rng(seed, key)``, so it
    does not depend on which other files are present; ``'sequential'`` draws ``np.random.randn`` from one
    ``RandomState(seed)`` over the sorted images, sigma after sigma, on the RGB image after ``crop_multiple``, which is
    AirNet/PromptIR's procedure (they list files in ``os.listdir`` order; we sort).
    """
    if kind not in KINDS:
        raise ValueError(f'unknown kind {kind!r}; choose from {", ".join(KINDS)}')
    if seeding not in ('per-image', 'sequential'):
        raise ValueError(f"seeding must be 'per-image' or 'sequential', got {seeding!r}")
    task_name, split = kind.rsplit('-', 1)
    sources = [Path(s) for s in (sources or [])]
    if not sources and not (lq_dir and gt_dir):
        raise ValueError(f'{kind}: give at least one source folder')
    if task_name in ('derain', 'dehaze') and len(sources) > 1:
        raise ValueError(f'{kind}: give one source folder (or --lq-dir and --gt-dir)')
    out = Path(out)
    workers = workers or os.cpu_count() or 1
    if split == 'train' and crop_size:
        subimage = (int(crop_size), int(crop_step or crop_size // 2), int(crop_thresh))
    elif crop_size:
        raise ValueError('sub-image cropping (crop_size) is for training kinds only')
    else:
        subimage = None
    test = split == 'test'
    # Only what changes the output: a rerun with the same settings resumes or finds the job complete.
    settings = {'seed': seed if kind == 'denoise-test' else None,
                'subset': subset if split == 'train' and task_name != 'sr' else None,
                'crop_multiple': crop_multiple if test else None, 'subimage': subimage,
                'compress_level': compress_level}
    base_header = {'kind': kind, 'generator': f'ndr_plugin {__version__}', 'sources': [s.name for s in sources]}

    if task_name in ('denoise', 'sr'):
        tasks, problems = clean_tasks(sources, 'denoise' if task_name == 'denoise' else 'sr')
    elif task_name == 'derain':
        tasks, problems = rain_pair_tasks(sources[0] if sources else None, lq_dir, gt_dir)
    else:
        tasks, problems = haze_pair_tasks(sources[0] if sources else None, lq_dir, gt_dir)
    _check_problems(problems, skip_bad)
    for task in tasks:
        if task_name in ('derain', 'dehaze'):
            task.info['degradation'] = task_name

    report = None
    if split == 'train' and task_name in standard_splits.TRAIN_SPLITS:
        tasks, report = _filter_standard(task_name, tasks, subset, 'lq' if task_name != 'denoise' else 'gt')
    elif test and task_name in standard_splits.TEST_SIZES:
        reference, expected = standard_splits.TEST_SIZES[task_name]
        report = standard_splits.compare_count(reference, expected, len(tasks))
    elif test and sources and sources[0].name.lower() in standard_splits.SR_TEST_SIZES:
        report = standard_splits.compare_count(sources[0].name, standard_splits.SR_TEST_SIZES[sources[0].name.lower()],
                                               len(tasks))
    if report is not None and report.message(kind):
        warnings.warn(report.message(kind), stacklevel=2)

    jobs = []
    if kind == 'denoise-test':
        sigmas = [float(s) for s in sigmas or [15, 25, 50]]
        states = (_stream_states(tasks, sigmas, seed, crop_multiple) if seeding == 'sequential'
                  else [[None] * len(tasks)] * len(sigmas))
        for sigma, sigma_states in zip(sigmas, states):
            tag = f'{sigma:g}'.replace('.', 'p')
            synth = {'type': 'noise', 'sigmas': [sigma], 'clip': True, 'quantize': quantize}
            spec = ProcessSpec(('gt', 'lq'), seed, synth, crop_multiple=crop_multiple, compress_level=compress_level)
            sigma_tasks = [Task(t.task_id.replace('denoise_', f'noise{tag}_', 1), t.files, t.names, rng_state=state)
                           for t, state in zip(tasks, sigma_states)]
            noise_settings = {**synth, 'seeding': seeding, 'sigma_order': sigmas if seeding == 'sequential' else None}
            jobs.append(_job(f'sigma{tag}', out / f'sigma{tag}', ('gt', 'lq'), True, sigma_tasks, spec,
                             {**base_header, 'settings': {**settings, 'noise': noise_settings}}, report))
    elif kind == 'sr-test':
        for scale in scales or [2, 3, 4]:
            spec = ProcessSpec(('gt', 'lq', 'lr'), seed, scale=int(scale), crop_multiple=crop_multiple,
                               compress_level=compress_level)
            scale_tasks = [Task(t.task_id.replace('sr_', f'srx{scale}_', 1), t.files, t.names) for t in tasks]
            jobs.append(_job(f'x{scale}', out / f'x{scale}', ('gt', 'lq', 'lr'), True, scale_tasks, spec,
                             {**base_header, 'settings': {**settings, 'scale': int(scale)}}, report))
    else:
        roles = ('gt', 'lq') if task_name in ('derain', 'dehaze') else ('gt', )
        spec = ProcessSpec(roles, seed, crop_multiple=crop_multiple if test else None, subimage=subimage,
                           compress_level=compress_level)
        jobs.append(_job(kind, out, roles, test, tasks, spec, {**base_header, 'settings': settings}, report))
    for job in jobs:
        job.problems = problems
    return [_run_job(job, workers, skip_bad, overwrite, progress) for job in jobs]


def _job(name, folder, roles, png, tasks, spec, header, report) -> Job:
    targets = {role: folder / f'{role}.lmdb' for role in roles}
    png_dirs = {role: folder / role for role in roles} if png else {}
    return Job(name, targets, png_dirs, tasks, spec, header, report)
