"""Dataset preparation: turn the standard source folders into BasicSR LMDBs (and PNG folders for test sets).

One function, :func:`prepare`, behind ``ndr-prepare`` and ``datasets_prep/prepare.py``. Each KIND lists its source
files (:mod:`~ndr_plugin.prepare.sources`) and becomes one or more *jobs* (one output set, e.g. ``sigma15/``), built by
:mod:`~ndr_plugin.prepare.synthetic` (test sets synthesised here) or :mod:`~ndr_plugin.prepare.stored` (sources stored
as they are) and run by :mod:`~ndr_plugin.prepare.jobs`.

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

Five-task (GoPro, LOL), composite (CDD-11, ``composite-synth``) and generic ``paired-*`` kinds: see
:mod:`~ndr_plugin.prepare.fivetask`.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ndr_plugin.data.dataset_files import BadInputError
from ndr_plugin.prepare import fivetask, standard_splits
from ndr_plugin.prepare.jobs import Job, check_problems, run_job
from ndr_plugin.prepare.request import PrepareRequest
from ndr_plugin.prepare.sources import Task, clean_tasks, haze_pair_tasks, rain_pair_tasks
from ndr_plugin.prepare.stored import stored_jobs
from ndr_plugin.prepare.synthetic import denoise_test_jobs, sr_test_jobs

__all__ = ['KINDS', 'Kind', 'prepare']

TaskList = tuple[list[Task], list[BadInputError]]


def _clean(request: PrepareRequest) -> TaskList:
    return clean_tasks(request.sources, request.task_name)


def _rain_pairs(request: PrepareRequest) -> TaskList:
    return rain_pair_tasks(request.sources[0] if request.sources else None, request.lq_dir, request.gt_dir)


def _haze_pairs(request: PrepareRequest) -> TaskList:
    return haze_pair_tasks(request.sources[0] if request.sources else None, request.lq_dir, request.gt_dir)


@dataclass(frozen=True)
class Kind:
    """One KIND: its ``--help`` line, how its source files are found, and which jobs it makes of them."""
    description: str
    list_tasks: Callable[[PrepareRequest], TaskList]
    make_jobs: Callable[[PrepareRequest, list[Task], Any], list[Job]]


KINDS: dict[str, Kind] = {
    'denoise-train': Kind('BSD400 + WED clean images -> OUT/gt.lmdb (noise added on the fly in training)', _clean,
                          stored_jobs),
    'denoise-test': Kind('CBSD68 -> OUT/sigma{S}/{gt,lq}.lmdb + PNG folders (noise fixed per image by --seed)', _clean,
                         denoise_test_jobs),
    'derain-train': Kind('Rain100L training pairs (rainy/rain-N.png, gt/norain-N.png) -> OUT/{gt,lq}.lmdb',
                         _rain_pairs, stored_jobs),
    'derain-test': Kind('Rain100L or Rain100H test pairs -> OUT/{gt,lq}.lmdb + PNG folders', _rain_pairs,
                        stored_jobs),
    'dehaze-train': Kind('RESIDE OTS (synthetic/partK/ID_A_beta.jpg, original/ID.jpg) -> OUT/{gt,lq}.lmdb',
                         _haze_pairs, stored_jobs),
    'dehaze-test': Kind('SOTS-outdoor (hazy/ID_A_beta.jpg, gt/ID.png) -> OUT/{gt,lq}.lmdb + PNG folders', _haze_pairs,
                        stored_jobs),
    'clean-train': Kind('any folders of clean photographs -> OUT/gt.lmdb (every degradation synthesised on the fly)',
                        _clean, stored_jobs),
    'sr-train': Kind('DIV2K / Flickr2K HR images -> OUT/gt.lmdb (bicubic downsampling on the fly in training)', _clean,
                     stored_jobs),
    'sr-test': Kind('Set5 / Set14 / BSD100 / Urban100 HR -> OUT/x{S}/{gt,lq,lr}.lmdb + PNG folders', _clean,
                    sr_test_jobs),
    # five-task and composite benchmarks, and any paired set: see ndr_plugin.prepare.fivetask
    'deblur-train': Kind('GoPro train (<sequence>/{blur,sharp}/*.png) -> OUT/{gt,lq}.lmdb', fivetask.deblur_pairs,
                         fivetask.paired_jobs),
    'deblur-test': Kind('GoPro test -> OUT/{gt,lq}.lmdb + PNG folders', fivetask.deblur_pairs, fivetask.paired_jobs),
    'lowlight-train': Kind('LOL-v1 our485/{low,high} -> OUT/{gt,lq}.lmdb', fivetask.lowlight_pairs,
                           fivetask.paired_jobs),
    'lowlight-test': Kind('LOL-v1 eval15/{low,high} -> OUT/{gt,lq}.lmdb + PNG folders', fivetask.lowlight_pairs,
                          fivetask.paired_jobs),
    'composite-train': Kind('CDD-11 train (clear/ + one folder per combination) -> OUT/<combination>/{gt,lq}.lmdb',
                            fivetask.composite_pairs, fivetask.composite_jobs),
    'composite-test': Kind('CDD-11 test -> OUT/<combination>/{gt,lq}.lmdb + PNG folders', fivetask.composite_pairs,
                           fivetask.composite_jobs),
    'composite-synth': Kind('clean images + --combo haze+rain ... -> OUT/<combination>/{gt,lq}.lmdb + PNG folders',
                            fivetask.synth_sources, fivetask.synth_jobs),
    'paired-train': Kind('any --lq-dir/--gt-dir folders, paired by name -> OUT/{gt,lq}.lmdb', fivetask.generic_pairs,
                         fivetask.paired_jobs),
    'paired-test': Kind('the same -> OUT/{gt,lq}.lmdb + PNG folders', fivetask.generic_pairs, fivetask.paired_jobs),
}


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


def _standard_report(request: PrepareRequest, tasks: list[Task]) -> tuple[list[Task], Any]:
    """Compares the tasks with the standard split (keeping only listed training images unless ``subset='all'``);
    differences are announced with ``warnings.warn`` and the report goes into each manifest."""
    task_name, sources, report = request.task_name, request.sources, None
    if request.split == 'train' and task_name in standard_splits.TRAIN_SPLITS:
        tasks, report = _filter_standard(task_name, tasks, request.subset, 'gt' if task_name == 'denoise' else 'lq')
    elif request.test and task_name in standard_splits.TEST_SIZES:
        reference, expected = standard_splits.TEST_SIZES[task_name]
        report = standard_splits.compare_count(reference, expected, len(tasks))
    elif request.test and sources and sources[0].name.lower() in standard_splits.SR_TEST_SIZES:
        report = standard_splits.compare_count(sources[0].name, standard_splits.SR_TEST_SIZES[sources[0].name.lower()],
                                               len(tasks))
    if report is not None and report.message(request.kind):
        warnings.warn(report.message(request.kind), stacklevel=3)
    return tasks, report


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
            progress: bool = True,
            blur_variant: str = 'blur',
            combos: list[str] | None = None) -> list[dict[str, Any]]:
    """Builds the LMDBs of one KIND (see :data:`KINDS`); returns one summary dict per output set.

    Standard-split differences, and sources that changed since an existing output was built (it is then rebuilt), are
    reported with ``warnings.warn`` and recorded in each manifest.json. Bad parameters raise ``ValueError`` naming the
    option before anything is written.

    denoise-test ``seeding``: ``'per-image'`` (default) draws each image's noise from ``item_rng(seed, key)``, so it
    does not depend on which other files are present; ``'sequential'`` draws ``np.random.randn`` from one
    ``RandomState(seed)`` over the sorted images, sigma after sigma, on the RGB image after ``crop_multiple``, which is
    AirNet/PromptIR's procedure (they list files in ``os.listdir`` order; we sort).

    ``blur_variant`` (deblur kinds) picks GoPro's ``blur`` or ``blur_gamma`` inputs; ``combos`` (composite-synth) lists
    the combinations to synthesise, e.g. ``['haze+rain', 'sr+noise']``.
    """
    if kind not in KINDS:
        raise ValueError(f'unknown kind {kind!r}; choose from {", ".join(KINDS)}')
    request = PrepareRequest(kind, [Path(s) for s in sources or []], Path(out), sigmas, scales, seed,
                             workers or os.cpu_count() or 1, skip_bad, subset, quantize, seeding, crop_multiple,
                             crop_size, crop_step, crop_thresh, Path(lq_dir) if lq_dir else None,
                             Path(gt_dir) if gt_dir else None, compress_level, overwrite, progress,
                             blur_variant, list(combos) if combos else None)
    request.validate()
    tasks, problems = KINDS[kind].list_tasks(request)
    check_problems(problems, skip_bad)
    tasks, report = _standard_report(request, tasks)
    jobs = KINDS[kind].make_jobs(request, tasks, report)
    for job in jobs:
        job.problems = problems
    return [run_job(job, request.workers, skip_bad, overwrite, request.progress) for job in jobs]
