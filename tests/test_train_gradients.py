"""NDRModel's joint step computes the official step's gradients (same weights, same batch, tiny networks).

The official step is the recipe of models/NDR_model.py (``L1(lq_fake, lq) + L1(hq_fake, gt)``, backward) on the literal
reference network of ``official_reference.py``; its gradients are mapped to our parameter names with the checkpoint
converter, as its weights are. Both sides skip the clip (``grad_clip: ~``) so the raw gradients are compared, and the
optimizers step with lr 0 so NDRModel's own ``optimize_parameters`` can be used unchanged. Both run in float64: in
float32 a few scalar gradients (attention temperatures, sums over every pixel) differ by a few 1e-4 of their norm from
summation order alone, which would hide a real difference of that size.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from torch.nn import functional as F

import ndr_plugin  # noqa: F401  (compat before BasicSR)
from basicsr.models import build_model
from ndr_plugin.convert_official import convert_official_state_dict
from official_reference import tiny_official, tiny_ours_options

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'benchmarks'))
from train_steps import make_batch, model_options  # noqa: E402

RELATIVE_TOLERANCE = 1e-4


def official_gradients(model: torch.nn.Module, lq: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradients of the official loss under the official state_dict key names (the NDR under both of its keys)."""
    model.zero_grad(set_to_none=True)
    hq_fake = model.restoration_process(lq)  # stores the maps the degradation process reads
    loss = F.l1_loss(model.degradation_process(gt), lq) + F.l1_loss(hq_fake, gt)
    loss.backward()
    params = dict(model.named_parameters(remove_duplicate=False))
    return {key: params[key].grad.detach().clone() for key in model.state_dict()}


def ours_gradients(official: torch.nn.Module, lq: torch.Tensor, gt: torch.Tensor, tmp: str) -> tuple[dict, dict]:
    """(net_g, net_deg) gradients after one NDRModel joint iteration on the official weights."""
    net_g_opt, net_deg_opt = tiny_ours_options()
    zero_lr = {'type': 'Adam', 'lr': 0.0}
    opt = model_options('joint', {'type': 'NDRNet', **net_g_opt}, {'type': 'NDRDegradationNet', **net_deg_opt}, tmp,
                        train={'optim_g': zero_lr, 'optim_deg': dict(zero_lr),
                               'bidirectional': {'mode': 'joint', 'grad_clip': None}})
    model = build_model(opt)
    net_g_sd, net_deg_sd = convert_official_state_dict(official.state_dict(), keep_bgr=True)
    model.net_g.load_state_dict(net_g_sd, strict=True)
    model.net_deg.load_state_dict(net_deg_sd, strict=True)
    model.net_g.double()  # in place: the optimizers keep the same Parameter objects
    model.net_deg.double()
    model.feed_data({'lq': lq, 'gt': gt})
    model.optimize_parameters(1)
    return ({k: p.grad for k, p in model.net_g.named_parameters()},
            {k: p.grad for k, p in model.net_deg.named_parameters()})


def test_joint_step_gradients_equal_official():
    torch.manual_seed(0)
    official = tiny_official().train().double()
    with torch.no_grad():  # the constant-initialised tensors (norms, temperatures) get noise, so no term is trivial
        for name, param in official.named_parameters():
            if 'norm' in name or 'temperature' in name:
                param.add_(0.2 * torch.randn_like(param))
    lq, gt = (t.double() for t in make_batch(2, 32, seed=3))
    expected_g, expected_deg = convert_official_state_dict(official_gradients(official, lq, gt), keep_bgr=True)
    with tempfile.TemporaryDirectory() as tmp:
        got_g, got_deg = ours_gradients(official, lq, gt, tmp)
    for expected, got, owner in ((expected_g, got_g, 'net_g'), (expected_deg, got_deg, 'net_deg')):
        assert set(got) == set(expected), owner
        for key, grad in expected.items():
            assert got[key] is not None, f'{owner}.{key} got no gradient'
            error = (got[key] - grad).norm().item() / max(grad.norm().item(), 1e-12)
            assert error < RELATIVE_TOLERANCE, f'{owner}.{key}: relative error {error:.2e}'
