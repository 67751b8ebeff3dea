"""Feeds each metric of ``val.metrics`` the image form its protocol expects.

BasicSR's validation converts the output and the ground truth with ``tensor2img`` (clamp, ``round()`` to uint8, RGB to
BGR) before any metric sees them. That is right for BasicSR's ``calculate_psnr`` / ``calculate_ssim`` but destroys the
float protocol of the all-in-one tables. :func:`compute_metrics` gives every metric function that declares
``wants_float = True`` (ours: ``calculate_psnr_aio``, ``calculate_ssim_aio``) float32 HWC RGB arrays clipped to [0, 1],
and every other metric exactly what BasicSR's ``SRModel.nondist_validation`` would give it.

Use in a model's validation loop (one image per call, as BasicSR validates)::

    from ndr_plugin.metrics.evaluation import compute_metrics
    scores = compute_metrics(self.output, self.gt, self.opt['val']['metrics'])   # {'psnr': 31.2, 'ssim_aio': 0.88}
    for name, value in scores.items():
        self.metric_results[name] += value

Choosing a protocol in an option file::

    val:
      metrics:
        psnr:     {type: calculate_psnr, crop_border: 0, test_y_channel: false}   # BasicSR standard (uint8, rounded)
        ssim:     {type: calculate_ssim, crop_border: 0, test_y_channel: false}   # 11x11 Gaussian window
        psnr_aio: {type: calculate_psnr_aio}                                      # PromptIR/AirNet tables (float,
        ssim_aio: {type: calculate_ssim_aio}                                      # 7x7 uniform SSIM, crop to x16)
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from basicsr.metrics import calculate_metric
from basicsr.utils import tensor2img
from basicsr.utils.registry import METRIC_REGISTRY


def metric_wants_float(metric_type: str) -> bool:
    """Whether the registered metric ``metric_type`` scores float images (``fn.wants_float``)."""
    return bool(getattr(METRIC_REGISTRY.get(metric_type), 'wants_float', False))


def tensor_to_float_image(tensor: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) or (C, H, W) tensor in [0, 1] -> float32 HWC (HW for one channel) array clipped to [0, 1]."""
    if tensor.dim() == 4:
        if tensor.size(0) != 1:
            raise ValueError(f'Expected one image per call, got a batch of {tensor.size(0)}')
        tensor = tensor[0]
    if tensor.dim() != 3:
        raise ValueError(f'Expected a (1, C, H, W) or (C, H, W) tensor, got shape {tuple(tensor.shape)}')
    img = tensor.detach().float().clamp(0, 1).cpu().numpy().transpose(1, 2, 0)
    return img[..., 0] if img.shape[2] == 1 else img


def compute_metrics(output: torch.Tensor, gt: torch.Tensor, metric_opts: Mapping[str, Mapping[str, Any]]
                    ) -> dict[str, float]:
    """Scores one restored image against its ground truth with every metric of ``metric_opts``.

    Args:
        output (Tensor): Restored image, (1, C, H, W) or (C, H, W), RGB, nominally [0, 1].
        gt (Tensor): Ground truth, same shape.
        metric_opts (Mapping): ``opt['val']['metrics']``: name -> {'type': registered metric, **its options}.

    Returns:
        dict[str, float]: name -> score, in the order of ``metric_opts``.
    """
    if output.shape != gt.shape:
        raise ValueError(f'Output and ground truth shapes differ: {tuple(output.shape)} vs {tuple(gt.shape)}')
    as_uint8, as_float = None, None
    scores = {}
    for name, opt in metric_opts.items():
        if 'type' not in opt:
            raise KeyError(f"val.metrics.{name} has no 'type'")
        if metric_wants_float(opt['type']):
            if as_float is None:
                as_float = {'img': tensor_to_float_image(output), 'img2': tensor_to_float_image(gt)}
            data = as_float
        else:
            if as_uint8 is None:
                as_uint8 = {'img': tensor2img([output.detach()]), 'img2': tensor2img([gt.detach()])}
            data = as_uint8
        scores[name] = float(calculate_metric(data, opt))
    return scores
