"""L1 loss of each sample relative to the L1 error of its degraded input.

A plain L1 loss averages absolute errors, so in an all-in-one batch the degradations with large errors dominate: a hazy
or sigma-50 input is off by 30-40 grey levels, a bicubic-upsampled one by 5. A network that cannot yet tell the
degradations apart is then pushed to apply the large corrections everywhere, and the inputs that need only a small one
get worse: the tiny demo network, trained with L1 for a few hundred CPU iterations, darkened downsampled inputs by up to
15 grey levels (-6 dB) while it learned to dehaze. Dividing each sample's error by the error of its own input makes the
loss the fraction of the input's error that is left (1 = no better than the input), so every degradation counts by how
much of its error is removed, whatever its size. Samples are weighted by a constant per sample, unlike the PSNR loss of
HINet/NAFNet (log of the current MSE), whose weights follow the output's error and let a small error grow again.
"""
from __future__ import annotations

import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn


@LOSS_REGISTRY.register()
class InputRelativeL1Loss(nn.Module):
    """Mean over samples of ``mean|pred - target| / (mean|lq - target| + eps)``.

    Called as ``loss(pred, target, lq)``; :class:`~ndr_plugin.models.bidirectional.Objective` passes the degraded
    input to losses with ``uses_input = True``, so it is a restoration loss (``train.pixel_opt``) only.

    Args:
        loss_weight (float): Multiplier of the loss. Default: 1.0.
        eps (float): Added to each input's error (images in [0, 1]), so that nearly clean inputs do not get unbounded
            weights. Default: 0.005 (about 1.3 grey levels).
    """

    uses_input = True

    def __init__(self, loss_weight: float = 1.0, eps: float = 0.005) -> None:
        super().__init__()
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps <= 0:
            raise ValueError(f'InputRelativeL1Loss: eps must be a number > 0, got {eps!r}')
        self.loss_weight = loss_weight
        self.eps = float(eps)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        """
        Args:
            pred (Tensor): (B, C, H, W) prediction.
            target (Tensor): (B, C, H, W) target.
            lq (Tensor): (B, C, H, W) degraded input the prediction was restored from.
        """
        if not pred.shape == target.shape == lq.shape:
            raise ValueError(f'InputRelativeL1Loss: prediction {tuple(pred.shape)}, target {tuple(target.shape)} and '
                             f'input {tuple(lq.shape)} must have the same shape')
        error = (pred - target).abs().flatten(1).mean(1)
        input_error = (lq - target).abs().flatten(1).mean(1).detach()
        return self.loss_weight * (error / (input_error + self.eps)).mean()
