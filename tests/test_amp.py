"""train.amp: mixed-precision NDRModel steps in every mode on the CPU, fp16 loss scaling with the non-finite guard,
and exact resume of the scaler state."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import ndr_plugin  # noqa: F401  (compat + registration before BasicSR)
from basicsr.models import build_model
from ndr_plugin.checkpoints import torch_load
from ndr_plugin.models.mixed_precision import parse_amp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'benchmarks'))
from train_steps import NETWORKS, make_batch, model_options  # noqa: E402

CPU = torch.device('cpu')


def build(tmp_path: Path, mode: str, amp: str | bool, **train: object):
    network_g, network_deg = NETWORKS['tiny']
    opt = model_options(mode, network_g, network_deg, str(tmp_path), train={'amp': amp, **train})
    return build_model(opt)


def run(model, iterations: range, lq: torch.Tensor | None = None) -> None:
    batch_lq, gt = make_batch(2, 32, seed=1)
    for current_iter in iterations:
        model.feed_data({'lq': batch_lq if lq is None else lq, 'gt': gt})
        model.optimize_parameters(current_iter)


def parameters(model) -> dict[str, torch.Tensor]:
    nets = [model.net_g] + ([model.net_deg] if hasattr(model, 'net_deg') else [])
    return {f'{i}.{k}': v.detach().clone() for i, net in enumerate(nets) for k, v in net.named_parameters()}


def test_amp_option_values():
    assert parse_amp(False, CPU) is None and parse_amp(None, CPU) is None
    assert parse_amp('bf16', CPU) == torch.bfloat16
    with pytest.raises(ValueError, match="train.amp must be bf16, fp16 or false, got 'half'"):
        parse_amp('half', CPU)


def test_amp_value_is_checked_before_anything_is_built(tmp_path):
    import yaml
    from ndr_plugin.options import OptionError, check_option_file
    from tiny_data import tiny_train_options
    path = tiny_train_options(tmp_path, 'amp_typo', model_type='NDRModel')
    opt = yaml.safe_load(path.read_text())
    opt['train']['amp'] = 'half'
    path.write_text(yaml.safe_dump(opt))
    with pytest.raises(OptionError, match=r"amp_typo.yml: train.amp must be bf16, fp16 or false, got 'half'"):
        check_option_file(str(path), training=True)


@pytest.mark.parametrize('mode', ['alternate', 'joint', 'off'])
def test_bf16_steps_in_every_mode(tmp_path, mode):
    torch.manual_seed(0)
    model = build(tmp_path, mode, 'bf16')
    before = parameters(model)
    run(model, range(1, 3))
    after = parameters(model)
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in after.values())  # float32 master weights
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert model.log_dict['updates_rest'] == 2 and model.log_dict['nonfinite_skips'] == 0
    assert torch.isfinite(torch.tensor(model.log_dict['l_rest']))


def test_fp16_resume_restores_the_loss_scale(tmp_path):
    torch.manual_seed(0)
    model = build(tmp_path, 'joint', 'fp16')
    run(model, range(1, 4))
    model.save(0, 3)
    saved = model.amp.scaler.state_dict()
    resumed = build(tmp_path, 'joint', 'fp16')
    resumed.resume_training(torch_load(tmp_path / 'training_states' / '3.state'))
    resumed.net_g.load_state_dict(model.net_g.state_dict())  # BasicSR's train loads the weights from models/
    resumed.net_deg.load_state_dict(model.net_deg.state_dict())
    assert resumed.amp.scaler.state_dict() == saved
    run(model, range(4, 5))
    run(resumed, range(4, 5))
    for key, value in parameters(model).items():
        assert torch.equal(value, parameters(resumed)[key]), key  # the same step after resume


def test_fp16_overflow_skips_do_not_count_but_nonfinite_data_does(tmp_path):
    torch.manual_seed(0)
    model = build(tmp_path, 'joint', 'fp16', max_nonfinite_steps=2)
    model.amp.scaler.load_state_dict({**model.amp.scaler.state_dict(), 'scale': 2.0 ** 60})
    before = parameters(model)
    run(model, range(1, 4))  # every scaled gradient overflows float16: three skips, none counted
    assert model.amp.scaler.get_scale() == 2.0 ** 57
    assert model.log_dict['amp_overflow_skips'] == 3 and model.log_dict['nonfinite_skips'] == 0
    assert all(torch.equal(before[k], v) for k, v in parameters(model).items())
    lq = make_batch(2, 32, seed=1)[0]
    lq[0, 0, 0, 0] = float('nan')  # a non-finite loss is the guard's, whatever the scale
    with pytest.raises(RuntimeError, match='2 non-finite updates in a row'):
        run(model, range(4, 6), lq)
