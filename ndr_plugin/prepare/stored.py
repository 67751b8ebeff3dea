"""Kinds that store their source images as they are, in one output set: clean training sets (``denoise-train``,
``sr-train``: the degradation is synthesised on the fly during training) and the distributed degraded/clean pairs
(``derain-*``, ``dehaze-*``)."""
from __future__ import annotations

from typing import Any

from ndr_plugin.prepare.jobs import Job, make_job
from ndr_plugin.prepare.processing import ProcessSpec
from ndr_plugin.prepare.request import PrepareRequest
from ndr_plugin.prepare.sources import Task

__all__ = ['stored_jobs']


def stored_jobs(request: PrepareRequest, tasks: list[Task], report: Any) -> list[Job]:
    """``OUT/gt.lmdb`` (clean sets) or ``OUT/{gt,lq}.lmdb`` (pairs); test sets also get PNG folders."""
    paired = request.task_name in ('derain', 'dehaze')
    roles = ('gt', 'lq') if paired else ('gt', )
    if paired:
        for task in tasks:
            task.info['degradation'] = request.task_name
    spec = ProcessSpec(roles, request.seed, crop_multiple=request.crop_multiple if request.test else None,
                       subimage=request.subimage, compress_level=request.compress_level)
    return [make_job(request.kind, request.out, roles, request.test, tasks, spec, request.header(), report)]
