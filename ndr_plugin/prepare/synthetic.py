"""Test sets synthesised here from clean images: ``denoise-test`` (CBSD68 + Gaussian noise) and ``sr-test``.

One job per noise level (``OUT/sigma{S}/``) or scale (``OUT/x{S}/``), each with ``{gt,lq}.lmdb`` (``lr.lmdb`` too for
SR) and PNG copies, so the same degraded images serve every method that is compared.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ndr_plugin.data.dataset_files import BadInputError, read_image
from ndr_plugin.prepare.jobs import Job, make_job
from ndr_plugin.prepare.processing import ProcessSpec, centre_crop
from ndr_plugin.prepare.request import PrepareRequest
from ndr_plugin.prepare.sources import Task

__all__ = ['denoise_test_jobs', 'sr_test_jobs', 'DEFAULT_SIGMAS', 'DEFAULT_SCALES']

DEFAULT_SIGMAS = (15, 25, 50)  # the AIO-3 protocol's CBSD68 noise levels (AirNet, PromptIR, NDR)
DEFAULT_SCALES = (2, 3, 4)  # the usual bicubic SR benchmark scales


def stream_states(tasks: list[Task], sigmas: list[float], seed: int, crop_multiple: int | None) -> list[list[Any]]:
    """Per sigma and image, the state of one ``RandomState(seed)`` stream before that image's noise is drawn: the
    images in sorted order for the first sigma, then again for the next (AirNet/PromptIR draw in that order)."""
    shapes = []
    for task in tasks:
        try:
            img = read_image(task.files['gt'])[0]
        except BadInputError:
            shapes.append(None)  # reported (or skipped) when the task itself runs
            continue
        shapes.append(centre_crop(img, crop_multiple).shape if crop_multiple else img.shape)
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


def denoise_test_jobs(request: PrepareRequest, tasks: list[Task], report: Any) -> list[Job]:
    """One job per noise level; noise per image from ``(seed, key)``, or AirNet/PromptIR's sequential stream."""
    sigmas = [float(s) for s in request.sigmas or DEFAULT_SIGMAS]
    if request.seeding == 'sequential':
        states = stream_states(tasks, sigmas, request.seed, request.crop_multiple)
    else:
        states = [[None] * len(tasks)] * len(sigmas)
    jobs = []
    for sigma, sigma_states in zip(sigmas, states):
        tag = f'{sigma:g}'.replace('.', 'p')
        synth = {'type': 'noise', 'sigmas': [sigma], 'clip': True, 'quantize': request.quantize}
        spec = ProcessSpec(('gt', 'lq'), request.seed, synth, crop_multiple=request.crop_multiple,
                           compress_level=request.compress_level)
        sigma_tasks = [Task(t.task_id.replace('denoise_', f'noise{tag}_', 1), t.files, t.names, rng_state=state)
                       for t, state in zip(tasks, sigma_states)]
        noise = {**synth, 'seeding': request.seeding,
                 'sigma_order': sigmas if request.seeding == 'sequential' else None}
        jobs.append(make_job(f'sigma{tag}', request.out / f'sigma{tag}', ('gt', 'lq'), True, sigma_tasks, spec,
                             request.header(noise=noise), report))
    return jobs


def sr_test_jobs(request: PrepareRequest, tasks: list[Task], report: Any) -> list[Job]:
    """One job per scale: gt mod-cropped, lq = MATLAB-bicubic x1/S then xS, lr = the x1/S image."""
    jobs = []
    for scale in request.scales or DEFAULT_SCALES:
        scale = int(scale)
        spec = ProcessSpec(('gt', 'lq', 'lr'), request.seed, scale=scale, crop_multiple=request.crop_multiple,
                           compress_level=request.compress_level)
        scale_tasks = [Task(t.task_id.replace('sr_', f'srx{scale}_', 1), t.files, t.names) for t in tasks]
        jobs.append(make_job(f'x{scale}', request.out / f'x{scale}', ('gt', 'lq', 'lr'), True, scale_tasks, spec,
                             request.header(scale=scale), report))
    return jobs
