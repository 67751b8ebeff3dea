"""Kinds of the five-task (AIO-5) and composite-degradation benchmarks, plus a generic paired kind.

=================  ====================================================================================================
KIND               what it writes
=================  ====================================================================================================
deblur-train/test  GoPro ``<sequence>/{blur|blur_gamma, sharp}`` -> ``OUT/{gt,lq}.lmdb`` (+ PNG folders for test)
lowlight-train     LOL-v1 ``our485/{low,high}`` -> ``OUT/{gt,lq}.lmdb``
lowlight-test      LOL-v1 ``eval15/{low,high}`` -> ``OUT/{gt,lq}.lmdb`` + PNG folders
composite-train    CDD-11 train -> ``OUT/<combination>/{gt,lq}.lmdb``, one pair per combination (e.g. ``low_haze``)
composite-test     CDD-11 test -> the same, + PNG folders: the per-combination test sets of the CDD-11 tables
composite-synth    clean images + ``--combo haze+rain ...`` -> ``OUT/<combination>/{gt,lq}.lmdb`` + PNG folders,
                   synthesised here, one fixed realisation per (seed, combination, image)
paired-train/test  any ``--lq-dir``/``--gt-dir`` pair of folders, paired by name -> ``OUT/{gt,lq}.lmdb``
=================  ====================================================================================================

One output per combination, for training too: a :class:`~ndr_plugin.data.MultiDegradationDataset` source per
combination then carries its own label, and equal ratios draw each combination equally often, as OneRestore and
MoCE-IR sample CDD-11 (a combination first, then an image).

Published sizes (checked by count, no file lists are published for these sets; a difference is a warning naming it):
GoPro 2,103 train / 1,111 test pairs (Nah et al. 2017; DFPIR ``data_dir/gopro/train_gopro.txt``), LOL-v1 485 / 15
(Wei et al. 2018), CDD-11 1,183 train / 200 test images per combination: the OneRestore paper (Guo et al., ECCV 2024)
makes 13,013 training and 2,200 test pairs from 1,383 images over 11 combinations (as a public summary of the paper
quotes it; not checked against the paper itself).
"""
from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

from ndr_plugin.data.dataset_files import BadInputError
from ndr_plugin.prepare import standard_splits
from ndr_plugin.prepare.jobs import Job, make_job
from ndr_plugin.prepare.paired_sources import cdd11_tasks, gopro_tasks, lol_tasks, stem_pair_tasks
from ndr_plugin.prepare.processing import ProcessSpec
from ndr_plugin.prepare.request import PrepareRequest
from ndr_plugin.prepare.sources import Task, clean_tasks

__all__ = ['PUBLISHED_SIZES', 'SYNTH_STEPS', 'parse_combo', 'deblur_pairs', 'lowlight_pairs', 'composite_pairs',
           'generic_pairs', 'synth_sources', 'paired_jobs', 'composite_jobs', 'synth_jobs']

TaskList = tuple[list[Task], list[BadInputError]]

# (task, split) -> (reference, expected count); CDD-11 counts are per combination
PUBLISHED_SIZES = {
    ('deblur', 'train'): ('GoPro train', 2103),
    ('deblur', 'test'): ('GoPro test', 1111),
    ('lowlight', 'train'): ('LOL-v1 our485', 485),
    ('lowlight', 'test'): ('LOL-v1 eval15', 15),
    ('composite', 'train'): ('CDD-11 train (per combination)', 1183),
    ('composite', 'test'): ('CDD-11 test (per combination)', 200),
}

# composite-synth step names, in the order they are applied whatever the order written: the scene (haze, rain), the
# camera moving during the exposure, the sampling, then the sensor (a dark exposure, noise). Ours.
SYNTH_STEPS = ('haze', 'rain', 'blur', 'sr', 'lowlight', 'noise')


def _one_source(request: PrepareRequest) -> Path:
    if request.lq_dir or request.gt_dir:
        raise ValueError(f'{request.kind}: --lq-dir/--gt-dir are for the paired-train/paired-test kinds; give the '
                         'dataset folder with --src')
    if len(request.sources) != 1:
        raise ValueError(f'{request.kind}: give one source folder (--src), got {len(request.sources)}')
    return request.sources[0]


def _check_options(request: PrepareRequest) -> None:
    """Options that only some kinds use are refused elsewhere, so none is silently ignored."""
    if request.blur_variant != 'blur' and request.task_name != 'deblur':
        raise ValueError(f'--blur-variant is for deblur-train/deblur-test, not {request.kind}')
    if request.combos and request.kind != 'composite-synth':
        raise ValueError(f'--combo is for composite-synth, not {request.kind}')


def deblur_pairs(request: PrepareRequest) -> TaskList:
    _check_options(request)
    return gopro_tasks(_one_source(request), request.split, request.blur_variant)


def lowlight_pairs(request: PrepareRequest) -> TaskList:
    _check_options(request)
    return lol_tasks(_one_source(request), request.split)


def composite_pairs(request: PrepareRequest) -> TaskList:
    _check_options(request)
    tasks, problems, missing = cdd11_tasks(_one_source(request), request.split)
    if missing:
        warnings.warn(f'{request.kind}: the standard CDD-11 has 11 combination folders; missing {len(missing)}: '
                      f'{", ".join(missing)}', stacklevel=3)
    return tasks, problems


def generic_pairs(request: PrepareRequest) -> TaskList:
    _check_options(request)
    if not (request.lq_dir and request.gt_dir) or request.sources:
        raise ValueError(f'{request.kind}: give the degraded and the clean folder with --lq-dir and --gt-dir '
                         '(and no --src)')
    for folder in (request.lq_dir, request.gt_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f'{request.kind}: folder does not exist: {folder}')
    return stem_pair_tasks(request.lq_dir, request.gt_dir, 'paired')


def parse_combo(combo: str, sigmas: list[float] | None, scales: list[int] | None) -> tuple[str, list[dict[str, Any]]]:
    """``'noise+rain'`` -> (``'rain_noise'``, the degradation spec list in the order applied)."""
    parts = [p.strip().lower() for p in str(combo).split('+')]
    unknown = [p for p in parts if p not in SYNTH_STEPS]
    if not parts or unknown:
        raise ValueError(f'--combo {combo!r}: unknown step(s) {unknown}; combine {", ".join(SYNTH_STEPS)} with +')
    if len(set(parts)) != len(parts):
        raise ValueError(f'--combo {combo!r} names a step twice')
    specs = {'haze': {'type': 'haze'}, 'rain': {'type': 'rain', 'style': 'light'}, 'blur': {'type': 'motion_blur'},
             'sr': {'type': 'downsample', 'scales': [int(s) for s in scales or (2, 3, 4)]},
             'lowlight': {'type': 'lowlight'},
             'noise': {'type': 'noise', 'sigmas': [float(s) for s in sigmas or (15, 25, 50)]}}
    ordered = [step for step in SYNTH_STEPS if step in parts]
    return '_'.join(ordered), [specs[step] for step in ordered]


def synth_sources(request: PrepareRequest) -> TaskList:
    """Clean images for composite-synth; every ``--combo`` is parsed here, before anything is written."""
    if request.blur_variant != 'blur':
        raise ValueError(f'--blur-variant is for deblur-train/deblur-test, not {request.kind}')
    if not request.combos:
        raise ValueError('composite-synth: give at least one --combo, e.g. --combo haze+rain --combo sr+noise')
    if request.crop_size:
        raise ValueError('--crop-size (sub-image cropping) is for training kinds only, not composite-synth')
    names = [parse_combo(c, request.sigmas, request.scales)[0] for c in request.combos]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f'--combo: the same combination is given twice ({", ".join(repeated)})')
    return clean_tasks(request.sources, 'clean')


def _count_report(request: PrepareRequest, found: int, what: str) -> standard_splits.SplitReport | None:
    if (request.task_name, request.split) not in PUBLISHED_SIZES:
        return None
    reference, expected = PUBLISHED_SIZES[(request.task_name, request.split)]
    report = standard_splits.compare_count(reference, expected, found)
    if report.message(what):
        warnings.warn(report.message(what), stacklevel=4)
    return report


def _spec(request: PrepareRequest, synth: list[dict[str, Any]] | None = None, test: bool | None = None) -> ProcessSpec:
    test = request.test if test is None else test
    return ProcessSpec(('gt', 'lq'), request.seed, synth, crop_multiple=request.crop_multiple if test else None,
                       subimage=None if test else request.subimage, compress_level=request.compress_level)


def paired_jobs(request: PrepareRequest, tasks: list[Task], report: Any) -> list[Job]:
    """One output set ``OUT/{gt,lq}.lmdb`` (test kinds: also PNG folders)."""
    report = _count_report(request, len(tasks), request.kind) or report
    extra = {'blur_variant': request.blur_variant} if request.task_name == 'deblur' else {}
    return [make_job(request.kind, request.out, ('gt', 'lq'), request.test, tasks, _spec(request),
                     request.header(**extra), report)]


def composite_jobs(request: PrepareRequest, tasks: list[Task], report: Any) -> list[Job]:
    """One output set per combination folder, ``OUT/<combination>/``."""
    groups: dict[str, list[Task]] = defaultdict(list)
    for task in tasks:
        groups[task.info['degradation']].append(task)
    jobs = []
    for combination, group in sorted(groups.items()):
        combo_report = _count_report(request, len(group), f'{request.kind} {combination}') or report
        jobs.append(make_job(combination, request.out / combination, ('gt', 'lq'), request.test, group,
                             _spec(request), request.header(combination=combination), combo_report))
    return jobs


def synth_jobs(request: PrepareRequest, tasks: list[Task], report: Any) -> list[Job]:
    """One output set per ``--combo``; each image degraded with ``item_rng(seed, '<combination>_<name>')``."""
    jobs = []
    for combo in request.combos:
        name, synth = parse_combo(combo, request.sigmas, request.scales)
        combo_tasks = [Task(t.task_id.replace('clean_', f'{name}_', 1), t.files, t.names) for t in tasks]
        header = request.header(seed=request.seed, combination=name, synth=synth, crop_multiple=request.crop_multiple)
        jobs.append(make_job(name, request.out / name, ('gt', 'lq'), True, combo_tasks, _spec(request, synth, True),
                             header, report))
    return jobs
