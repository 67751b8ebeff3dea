"""What the worker processes do with one task: read, check, degrade, crop and PNG-encode its images.

Everything here runs in worker processes (forkserver, else spawn), so it takes only picklable arguments: a
:class:`~ndr_plugin.prepare.sources.Task` and a :class:`ProcessSpec`. Problems with one input come back as a
:class:`~ndr_plugin.data.dataset_files.BadInputError` value (not raised), so the parent can stop or skip it.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.pool
from dataclasses import dataclass
from typing import Any

import numpy as np

from ndr_plugin.data.dataset_files import BadInputError, read_image
from ndr_plugin.data.degradation_specs import build_degradation
from ndr_plugin.data.degradations import add_gaussian_noise, bicubic_degrade, item_rng, lr_image, to_uint8
from ndr_plugin.prepare.lmdb_writer import image_entry
from ndr_plugin.prepare.sources import Task

__all__ = ['ProcessSpec', 'process_task', 'subimage_boxes', 'centre_crop', 'start_pool']

Images = dict[str, np.ndarray]


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


def centre_crop(img: np.ndarray, multiple: int) -> np.ndarray:
    """AirNet/PromptIR's ``crop_img``: the centred crop whose sides are multiples of ``multiple``."""
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


def _read_task(task: Task) -> tuple[Images, dict[str, Any]]:
    """The task's source images and the record info naming them (file, SHA-256, conversions)."""
    images: Images = {}
    info: dict[str, Any] = {'source': {}, 'degradation': task.info.get('degradation'), 'params': {}}
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
    return images, info


def _check_size(task: Task, img: np.ndarray, least: int, what: str) -> None:
    height, width = img.shape[:2]
    if height < least or width < least:
        raise BadInputError(task.files['gt'], f'{width}x{height} is smaller than {what} {least}')


def _transform(images: Images, info: dict[str, Any], task: Task, spec: ProcessSpec) -> Images:
    """Test-set cropping and synthesis: centre crop, SR pairs (mod-crop, lq, lr), or noise."""
    if spec.crop_multiple:
        _check_size(task, images['gt'], spec.crop_multiple, 'the crop multiple (--crop-multiple)')
        images = {role: centre_crop(img, spec.crop_multiple) for role, img in images.items()}
    if spec.scale:
        _check_size(task, images['gt'], spec.scale, 'the scale (--scale)')
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
    return images


def _records(images: Images, info: dict[str, Any], task: Task, spec: ProcessSpec) -> list[tuple]:
    """(key, {role: (png, shape)}, info) of the whole image, or of each sub-image."""
    if not spec.subimage:
        return [(task.task_id, {role: image_entry(images[role], spec.compress_level) for role in spec.roles}, info)]
    size, step, thresh = spec.subimage
    _check_size(task, images['gt'], size, 'the crop size')
    records = []
    height, width = images['gt'].shape[:2]
    for index, (y, x) in enumerate(subimage_boxes(height, width, size, step, thresh)):
        entries = {role: image_entry(images[role][y:y + size, x:x + size], spec.compress_level) for role in spec.roles}
        records.append((f'{task.task_id}_s{index:03d}', entries, {**info, 'crop': [y, x, size, size]}))
    return records


def process_task(task: Task, spec: ProcessSpec) -> list[tuple] | BadInputError:
    """Reads, checks, degrades, crops and PNG-encodes one task. Returns its records, or the problem found."""
    try:
        images, info = _read_task(task)
        images = _transform(images, info, task, spec)
        return _records(images, info, task, spec)
    except BadInputError as err:
        return err


def _init_worker() -> None:
    import cv2
    import torch
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def start_pool(workers: int) -> multiprocessing.pool.Pool:
    """Worker processes started from a clean interpreter (forkserver, else spawn), never forked from this one:
    a fork inherits OpenCV's and OpenMP's thread-pool locks in whatever state they are, and the children can hang."""
    if 'forkserver' in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context('forkserver')
        context.set_forkserver_preload([__name__])  # import torch/BasicSR once in the server, not in every worker
    else:
        context = multiprocessing.get_context('spawn')
    return context.Pool(workers, initializer=_init_worker)
