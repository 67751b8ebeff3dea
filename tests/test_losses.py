"""FrequencyLoss, InputRelativeL1Loss and the loss lists of NDRModel's objectives."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ndr_plugin  # noqa: F401  (compat + registration before BasicSR)
from basicsr.losses import build_loss
from ndr_plugin.models.bidirectional import Objective


def _astronaut_pair() -> tuple[torch.Tensor, torch.Tensor]:
    from skimage import data
    img = torch.from_numpy(np.ascontiguousarray(data.astronaut()[100:164, 180:236])).permute(2, 0, 1)[None] / 255.
    noisy = (img + 0.1 * torch.randn(img.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    return noisy.float(), img.float()


def test_frequency_loss_matches_a_direct_dft_and_its_options():
    pred, target = _astronaut_pair()
    h, w = pred.shape[-2:]
    loss = build_loss({'type': 'FrequencyLoss', 'loss_weight': 0.5, 'reduction': 'mean'})
    # Direct DFT with explicit matrices (no torch.fft), 'ortho' normalisation, one-sided in the last axis.
    rows = torch.exp(-2j * torch.pi * torch.outer(torch.arange(h), torch.arange(h)).double() / h)
    cols = torch.exp(-2j * torch.pi * torch.outer(torch.arange(w), torch.arange(w // 2 + 1)).double() / w)
    diff = (pred - target).double().to(torch.complex128)
    spectrum = rows @ diff @ cols / (h * w) ** 0.5
    expected = 0.5 * (spectrum.real.abs().mean() + spectrum.imag.abs().mean()) / 2
    assert float(loss(pred, target)) == pytest.approx(float(expected), rel=1e-5)

    total = build_loss({'type': 'FrequencyLoss', 'reduction': 'sum'})(pred, target)
    per_entry = build_loss({'type': 'FrequencyLoss', 'reduction': 'none'})(pred, target)
    assert per_entry.shape == (1, 3, h, w // 2 + 1, 2)
    assert float(total) == pytest.approx(float(per_entry.sum()), rel=1e-5)
    unnormalised = build_loss({'type': 'FrequencyLoss', 'norm': 'backward'})(pred, target)
    assert float(unnormalised) == pytest.approx(float(loss(pred, target)) * 2 * (h * w) ** 0.5, rel=1e-5)
    assert float(loss(target, target)) == 0.0


def test_frequency_loss_gradient_flows_and_bad_options_are_named():
    pred, target = _astronaut_pair()
    pred.requires_grad_(True)
    build_loss({'type': 'FrequencyLoss'})(pred, target).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='FrequencyLoss: unsupported reduction'):
        build_loss({'type': 'FrequencyLoss', 'reduction': 'avg'})
    with pytest.raises(ValueError, match='FrequencyLoss: unsupported norm'):
        build_loss({'type': 'FrequencyLoss', 'norm': 'unit'})
    with pytest.raises(ValueError, match='differ'):
        build_loss({'type': 'FrequencyLoss'})(pred, target[..., :-1])


def test_objective_accepts_a_dict_or_a_list_and_logs_each_term():
    pred, target = _astronaut_pair()
    single = Objective('l_rest', {'type': 'L1Loss', 'loss_weight': 2.0}, 'train.pixel_opt')
    value, log = single(pred, target)
    assert float(value) == pytest.approx(2 * float((pred - target).abs().mean()), rel=1e-6)
    assert list(log) == ['l_rest']

    both = Objective('l_deg', [{'type': 'L1Loss'}, {'type': 'FrequencyLoss', 'loss_weight': 0.1}],
                     'train.degradation_opt')
    value, log = both(pred, target)
    assert list(log) == ['l_deg', 'l_deg_L1Loss', 'l_deg_FrequencyLoss']
    assert float(value) == pytest.approx(float(log['l_deg_L1Loss'] + log['l_deg_FrequencyLoss']), rel=1e-6)
    with pytest.raises(ValueError, match="train.pixel_opt: expected a loss dict with a 'type'"):
        Objective('l_rest', [{'loss_weight': 1.0}], 'train.pixel_opt')


def _astronaut_triple() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of two (prediction, target, input) samples whose inputs are off by very different amounts."""
    noisy, clean = _astronaut_pair()
    slightly = (clean + 0.01 * (noisy - clean)).clamp(0, 1)
    lq = torch.cat([noisy, slightly])
    target = torch.cat([clean, clean])
    pred = target + 0.5 * (lq - target)  # half of each input's error is left
    return pred, target, lq


def test_input_relative_l1_weighs_each_sample_by_its_input_error():
    pred, target, lq = _astronaut_triple()
    loss = build_loss({'type': 'InputRelativeL1Loss', 'loss_weight': 2.0, 'eps': 1e-6})
    # Half of every input's error is left, so the relative loss is 0.5 for both samples however large each error is.
    assert float(loss(pred, target, lq)) == pytest.approx(2 * 0.5, rel=1e-3)
    assert float(loss(target, target, lq)) == 0
    # The default eps adds 0.005 to each input's error: the nearly clean sample counts less, by a known amount.
    default = build_loss({'type': 'InputRelativeL1Loss'})
    input_error = (lq - target).abs().flatten(1).mean(1)
    expected = (0.5 * input_error / (input_error + 0.005)).mean()
    assert float(default(pred, target, lq)) == pytest.approx(float(expected), rel=1e-5)
    # Plain L1 of the same batch is dominated by the sample with the large error; the relative loss is not.
    l1 = (pred - target).abs().flatten(1).mean(1)
    assert float(l1[0] / l1[1]) > 50


def test_input_relative_l1_gradient_reaches_only_the_prediction():
    pred, target, lq = _astronaut_triple()
    pred.requires_grad_(True)
    lq.requires_grad_(True)
    build_loss({'type': 'InputRelativeL1Loss'})(pred, target, lq).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert lq.grad is None


def test_input_relative_l1_errors_are_named():
    pred, target, lq = _astronaut_triple()
    with pytest.raises(ValueError, match='InputRelativeL1Loss: eps must be a number > 0'):
        build_loss({'type': 'InputRelativeL1Loss', 'eps': 0})
    with pytest.raises(ValueError, match='InputRelativeL1Loss: prediction .* must have the same shape'):
        build_loss({'type': 'InputRelativeL1Loss'})(pred, target, lq[..., :-1])
    # The objective passes the degraded input only where it has one: NDRModel's restoration loss, not its
    # degradation loss, which compares the re-degraded image with the input itself.
    with pytest.raises(ValueError, match=r"train.degradation_opt: \['InputRelativeL1Loss'\] compare"):
        Objective('l_deg', {'type': 'InputRelativeL1Loss'}, 'train.degradation_opt', input_available=False)
    objective = Objective('l_rest', [{'type': 'L1Loss'}, {'type': 'InputRelativeL1Loss'}], 'train.pixel_opt')
    value, log = objective(pred, target, lq)
    assert set(log) == {'l_rest', 'l_rest_L1Loss', 'l_rest_InputRelativeL1Loss'}
    with pytest.raises(ValueError, match='l_rest: a loss that needs the degraded input was called without it'):
        objective(pred, target)
