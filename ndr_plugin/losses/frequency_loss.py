"""L1 distance between the 2-D Fourier spectra of two images.

Pixel losses weigh every pixel alike, so errors concentrated in a few frequencies (lost texture, residual rain streaks,
periodic noise) cost little. Comparing spectra makes them explicit. This is the FFT loss used beside L1 by MIMO-UNet
("Rethinking Coarse-to-Fine Approach in Single Image Deblurring", Cho et al., ICCV 2021) and by the all-in-one
restorer AdaIR ("Adaptive All-in-One Image Restoration via Frequency Mining and Modulation", Cui et al., ICLR 2025):
L1 on the real and imaginary parts of ``rfft2`` of output and target. Unlike the Focal Frequency Loss (Jiang et al.,
ICCV 2021) it does not re-weight frequencies by their current error.
"""
from __future__ import annotations

import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

_REDUCTIONS = ('none', 'mean', 'sum')
_FFT_NORMS = ('ortho', 'backward', 'forward')


@LOSS_REGISTRY.register()
class FrequencyLoss(nn.Module):
    """L1 loss between the real and imaginary parts of the 2-D real FFTs of prediction and target.

    Args:
        loss_weight (float): Multiplier of the loss. Default: 1.0.
        reduction (str): 'none' | 'mean' | 'sum', over all spectrum entries (B, C, H, W // 2 + 1, 2). Default: 'mean'.
        norm (str): ``torch.fft`` normalisation. 'ortho' (default) divides by sqrt(H * W), which keeps the loss about
            as large as an L1 pixel loss whatever the patch size; 'backward' is the unnormalised FFT that MIMO-UNet and
            AdaIR use (their loss weights, e.g. 0.1, assume it).
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = 'mean', norm: str = 'ortho') -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f'FrequencyLoss: unsupported reduction {reduction!r}; choose one of {_REDUCTIONS}')
        if norm not in _FFT_NORMS:
            raise ValueError(f'FrequencyLoss: unsupported norm {norm!r}; choose one of {_FFT_NORMS}')
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.norm = norm

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            pred (Tensor): (B, C, H, W) prediction.
            target (Tensor): (B, C, H, W) target.
        """
        if pred.shape != target.shape:
            raise ValueError(f'FrequencyLoss: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ')
        # cuFFT has no bfloat16 and only power-of-two half-precision sizes: transform in float32.
        pred_spectrum = torch.fft.rfft2(pred.float(), norm=self.norm)
        target_spectrum = torch.fft.rfft2(target.float(), norm=self.norm)
        distance = torch.view_as_real(pred_spectrum - target_spectrum).abs()
        if self.reduction == 'mean':
            distance = distance.mean()
        elif self.reduction == 'sum':
            distance = distance.sum()
        return self.loss_weight * distance
