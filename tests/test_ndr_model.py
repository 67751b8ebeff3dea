"""NDRModel: the three bidirectional modes, the joint step against a hand-written Adam, resume, EMA, non-finite guard,
validation per dataset with the average row, tiled validation, and a full train/auto-resume run of the entry point."""
from __future__ import annotations

import copy
import logging
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import ndr_plugin  # noqa: F401  (compat + registration before BasicSR)
from basicsr.data import build_dataloader, build_dataset
from basicsr.models import build_model
from basicsr.utils import check_resume
from ndr_plugin.checkpoints import torch_load
from ndr_plugin.checkpoints import atomic_torch_save
from tiny_data import TINY_NDRNET, noisy_pairs, write_paired_lmdb

TINY_DEGRADATION_NET = {'type': 'NDRDegradationNet', 'dim': 8, 'degradation_dim': 8, 'cp_rank': 4,
                        'attention_reduction': 4}



class RecordingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    @property
    def text(self) -> str:
        return '\n'.join(self.messages)


@pytest.fixture
def basicsr_log():
    # BasicSR's logger may not propagate to the root logger (pytest's caplog), so listen to it directly.
    logger = logging.getLogger('basicsr')
    handler, level = RecordingHandler(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def model_options(tmp_path: Path, mode: str = 'alternate', **train: object) -> dict:
    """Options as BasicSR's parse_options leaves them (is_train, dist, paths), for building the model directly."""
    (tmp_path / 'models').mkdir(exist_ok=True)
    (tmp_path / 'training_states').mkdir(exist_ok=True)
    opt = {
        'name': 'unit', 'model_type': 'NDRModel', 'num_gpu': 0, 'is_train': True, 'dist': False, 'rank': 0,
        'world_size': 1, 'scale': 1, 'datasets': {},
        'network_g': dict(TINY_NDRNET), 'network_deg': dict(TINY_DEGRADATION_NET),
        'path': {'models': str(tmp_path / 'models'), 'training_states': str(tmp_path / 'training_states'),
                 'visualization': str(tmp_path / 'visualization'), 'resume_state': None},
        'train': {
            'ema_decay': 0.5,
            'optim_g': {'type': 'Adam', 'lr': 1e-3, 'betas': [0.9, 0.99]},
            'optim_deg': {'type': 'Adam', 'lr': 2e-3, 'betas': [0.9, 0.99]},
            'scheduler': {'type': 'MultiStepLR', 'milestones': [2], 'gamma': 0.5},
            'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0},
            'degradation_opt': [{'type': 'L1Loss'}, {'type': 'FrequencyLoss', 'loss_weight': 0.1}],
            'bidirectional': {'mode': mode},
        },
        'val': {'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False},
                            'psnr_aio': {'type': 'calculate_psnr_aio', 'crop_multiple': 1}}},
        'logger': {'print_freq': 1},
    }
    opt['train'].update(train)
    return opt


def noisy_batch(size: int = 24, seed: int = 0) -> dict:
    pairs = noisy_pairs(2, size, 25, seed=seed)
    gt = torch.from_numpy(np.stack([p[1][..., ::-1] for p in pairs]).copy()).permute(0, 3, 1, 2).float() / 255
    lq = torch.from_numpy(np.stack([p[2][..., ::-1] for p in pairs]).copy()).permute(0, 3, 1, 2).float() / 255
    return {'lq': lq, 'gt': gt, 'degradation': ['denoise_25', 'denoise_25']}


def train_steps(model, batch: dict, first: int, last: int) -> None:
    for it in range(first, last + 1):
        model.update_learning_rate(it)
        model.feed_data(batch)
        model.optimize_parameters(it)


def snapshot(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def changed(before: dict, net: torch.nn.Module, prefix: str = '') -> set[str]:
    return {k for k, v in net.state_dict().items() if k.startswith(prefix) and not torch.equal(v, before[k])}


def test_alternate_iteration_is_a_restoration_then_a_degradation_update(tmp_path):
    model = build_model(model_options(tmp_path, 'alternate', bidirectional={'mode': 'alternate',
                                                                            'degradation_every': 2}))
    g, deg, batch = model.net_g, model.net_deg, noisy_batch()
    query_path = {n for n, p in g.named_parameters() if any(p is q for q in g.degradation_parameters())}
    assert query_path and all(n.startswith(('ndr.', 'degradation_queries.')) for n in query_path)

    g0, deg0 = snapshot(g), snapshot(deg)
    train_steps(model, batch, 1, 1)  # iteration 1: restoration update only (degradation_every: 2)
    log = model.log_dict
    assert (log['updates_rest'], log['updates_deg']) == (1, 0) and math.isfinite(log['l_rest'])
    assert 'l_deg' not in log and log['l1/denoise_25'] > 0
    assert not changed(deg0, deg), 'the restoration update must not touch NDRDegradationNet'
    assert changed(g0, g, 'decoder1.') and changed(g0, g, 'ndr.')

    train_steps(model, batch, 2, 2)  # iteration 2: restoration update, then the degradation update
    log = model.log_dict
    assert (log['updates_rest'], log['updates_deg']) == (2, 1)
    assert math.isfinite(log['l_deg']) and math.isfinite(log['l_rest'])
    assert {'l_deg_L1Loss', 'l_deg_FrequencyLoss', 'lr_g', 'lr_deg', 'atom_entropy', 'grad_norm_rest',
            'grad_norm_deg'} <= set(log)
    assert 0 < log['atom_entropy'] <= 1 and log['lr_deg'] == 2e-3 and changed(deg0, deg)
    # Separate Adam states by default: optim_deg also holds the query path.
    in_deg = {id(p) for group in model.optimizer_deg.param_groups for p in group['params']}
    assert all(id(p) in in_deg for p in g.degradation_parameters())
    assert len(model.optimizers) == len(model.schedulers) == 2


@pytest.mark.parametrize('mode, every, iters, want', [
    ('alternate', 1, 4, (4, 4)), ('alternate', 3, 7, (7, 2)), ('joint', None, 3, (3, 3)), ('off', None, 3, (3, 0))])
def test_every_mode_performs_one_restoration_update_per_iteration(tmp_path, mode, every, iters, want):
    bidirectional = {'mode': mode} if every is None else {'mode': mode, 'degradation_every': every}
    model = build_model(model_options(tmp_path, mode, ema_decay=0, bidirectional=bidirectional))
    train_steps(model, noisy_batch(size=16), 1, iters)
    assert (model.log_dict['updates_rest'], model.log_dict['updates_deg']) == want
    # Adam's own step count: one restoration update per iteration, whatever the mode.
    assert int(model.optimizer_g.state[model.net_g.output.weight]['step']) == iters


def _degradation_reach(model) -> set[str]:
    """Top-level NDRNet modules the degradation loss reaches (has a nonzero gradient for)."""
    for optimizer in model.optimizers:
        optimizer.zero_grad(set_to_none=True)
    if model.mode == 'joint':  # the L_deg term of the official joint step on its own
        maps = model.net_g(model.lq, return_degradation=True)[1]
        loss = model.cri_deg(model.net_deg(model.gt, maps), model.lq)[0]
    else:
        loss = model._degradation_objective()[0]
    loss.backward()
    assert all(p.grad is not None for p in model.net_deg.parameters())
    return {n.split('.')[0] for n, p in model.net_g.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


@pytest.mark.parametrize('reading, mode', [('query', 'alternate'), ('encoder', 'alternate'), (None, 'joint')])
def test_what_the_degradation_loss_reaches(tmp_path, reading, mode):
    bidirectional = {'mode': mode} if reading is None else {'mode': mode, 'degradation_updates': reading}
    model = build_model(model_options(tmp_path, mode, bidirectional=bidirectional))
    model.feed_data(noisy_batch(size=16))
    encoder = {'embed', 'encoder1', 'down1', 'encoder2', 'down2', 'encoder3'}
    # `query` (default): the NDR and the queries only; the official joint step and our `encoder` reading also reach
    # the encoder up to each query; never the bottleneck, the decoder or the injections.
    want = {'ndr', 'degradation_queries'} | (set() if reading == 'query' else encoder)
    assert _degradation_reach(model) == want
    if mode == 'alternate':  # and exactly those are what the degradation update steps and syncs across processes
        reach = {id(p) for p in model._degradation_reach}
        assert reach == {id(p) for n, p in model.net_g.named_parameters() if n.split('.')[0] in want}


@pytest.mark.parametrize('shared', [False, True])
def test_shared_optimizer_state_decides_who_holds_the_query_path(tmp_path, shared):
    bidirectional = {'mode': 'alternate', 'shared_optimizer_state': shared, 'degradation_updates': 'encoder'}
    model = build_model(model_options(tmp_path, 'alternate', ema_decay=0, bidirectional=bidirectional))
    g, batch = model.net_g, noisy_batch(size=16)
    in_deg = {id(p) for group in model.optimizer_deg.param_groups for p in group['params']}
    assert all((id(p) in in_deg) != shared for p in g.degradation_parameters())
    assert all((id(p) in in_deg) != shared for p in g.query_encoder_parameters())
    train_steps(model, batch, 1, 2)
    atoms, latent = g.ndr.atoms, g.latent[0].attn.qkv.weight
    # Shared: the query path is stepped by optim_g twice per iteration (both objectives); else once by each.
    assert int(model.optimizer_g.state[atoms]['step']) == (4 if shared else 2)
    assert int(model.optimizer_g.state[latent]['step']) == 2
    assert (atoms in model.optimizer_deg.state) != shared


def test_removed_and_misplaced_options_name_their_replacement(tmp_path):
    from ndr_plugin.models.ndr_model import NDRModel
    for key, value, message in (
            ('degradation_iters', 2, r'degradation_iters is no longer an option: use train.bidirectional'
                                     r'.degradation_every'),
            ('restoration_iters', 1, r'restoration_iters is no longer an option: every iteration now performs one'),
            ('degradation_every', 0, r'degradation_every must be a positive integer'),
            ('degradation_updates', 'decoder', r"degradation_updates must be one of \('query', 'encoder'\)"),
            ('shared_optimizer_state', 'yes', r'shared_optimizer_state must be true or false')):
        opt = model_options(tmp_path, 'alternate', bidirectional={'mode': 'alternate', key: value})
        with pytest.raises(ValueError, match=message):
            NDRModel.check_options(opt)
    opt = model_options(tmp_path, 'joint', bidirectional={'mode': 'joint', 'degradation_every': 2})
    with pytest.raises(ValueError, match=r"\['degradation_every'\] apply to mode alternate only"):
        NDRModel.check_options(opt)


def _hand_adam(params, grads, state, lr, betas, eps, step):
    """One Adam step written out (Kingma & Ba, Algorithm 1), in float64."""
    new = []
    for p, g, s in zip(params, grads, state):
        s['m'] = betas[0] * s['m'] + (1 - betas[0]) * g
        s['v'] = betas[1] * s['v'] + (1 - betas[1]) * g * g
        m_hat = s['m'] / (1 - betas[0] ** step)
        v_hat = s['v'] / (1 - betas[1] ** step)
        new.append(p - lr * m_hat / (v_hat.sqrt() + eps))
    return new


def test_joint_step_equals_one_adam_over_all_parameters(tmp_path):
    optim = {'type': 'Adam', 'lr': 1e-3, 'betas': [0.9, 0.99], 'eps': 1e-8}
    opt = model_options(tmp_path, 'joint', ema_decay=0, optim_g=dict(optim), optim_deg=dict(optim),
                        degradation_opt={'type': 'L1Loss'},
                        bidirectional={'mode': 'joint', 'joint_degradation_weight': 0.5, 'grad_clip': 0.05})
    model = build_model(opt)
    ref_g, ref_deg = copy.deepcopy(model.net_g), copy.deepcopy(model.net_deg)
    params = list(ref_g.parameters()) + list(ref_deg.parameters())
    values = [p.detach().double() for p in params]
    state = [{'m': torch.zeros_like(v), 'v': torch.zeros_like(v)} for v in values]
    batch = noisy_batch()
    for step in (1, 2):
        # The official step: both networks, maps not detached, one loss, one clip over everything, one Adam.
        for p, v in zip(params, values):
            p.data.copy_(v.float())
            p.grad = None
        restored, maps = ref_g(batch['lq'], return_degradation=True)
        resynthesised = ref_deg(batch['gt'], maps)
        loss = 0.5 * (resynthesised - batch['lq']).abs().mean() + (restored - batch['gt']).abs().mean()
        loss.backward()
        grads = [p.grad.double() for p in params]
        norm = torch.sqrt(sum((g * g).sum() for g in grads))
        grads = [g * min(1.0, 0.05 / (float(norm) + 1e-6)) for g in grads]
        values = _hand_adam(values, grads, state, 1e-3, (0.9, 0.99), 1e-8, step)
        assert float(norm) > 0.05, 'the clip must be active for the test to check it'

        model.feed_data(batch)
        model.optimize_parameters(step)
        assert (model.log_dict['updates_rest'], model.log_dict['updates_deg']) == (step, step)
        assert model.log_dict['l_deg'] == pytest.approx((resynthesised - batch['lq']).abs().mean().item(), rel=1e-5)
    got = list(model.net_g.parameters()) + list(model.net_deg.parameters())
    for got_p, want in zip(got, values):
        torch.testing.assert_close(got_p.detach().double(), want, rtol=1e-5, atol=1e-7)


def test_off_mode_trains_a_plain_backbone_and_bad_setups_are_named(tmp_path):
    plain = dict(TINY_NDRNET, use_ndr=False)
    opt = model_options(tmp_path, 'off')
    opt['network_g'] = plain
    del opt['network_deg']
    model = build_model(opt)
    g0 = snapshot(model.net_g)
    train_steps(model, noisy_batch(), 1, 2)
    assert math.isfinite(model.log_dict['l_rest']) and 'l_deg' not in model.log_dict and 'lr_deg' not in model.log_dict
    assert changed(g0, model.net_g) and not hasattr(model, 'net_deg')

    opt = model_options(tmp_path, 'alternate')
    opt['network_g'] = plain
    with pytest.raises(ValueError, match='needs a network_g with degradation maps'):
        build_model(opt)
    opt = model_options(tmp_path, 'joint')
    del opt['network_deg']
    with pytest.raises(ValueError, match='needs a network_deg'):
        build_model(opt)
    with pytest.raises(ValueError, match=r"train.bidirectional.mode must be one of"):
        build_model(model_options(tmp_path, 'alternating'))



def test_input_relative_restoration_loss_trains_and_is_refused_for_the_degradation_loss(tmp_path):
    relative = {'type': 'InputRelativeL1Loss', 'eps': 0.005}
    batch = noisy_batch()
    for mode in ('alternate', 'joint'):
        model = build_model(model_options(tmp_path, mode, pixel_opt=dict(relative)))
        g0 = snapshot(model.net_g)
        train_steps(model, batch, 1, 2)
        assert math.isfinite(model.log_dict['l_rest']) and model.log_dict['l_rest'] > 0
        assert changed(g0, model.net_g)
    with pytest.raises(ValueError, match=r"train.degradation_opt: \['InputRelativeL1Loss'\] compare"):
        build_model(model_options(tmp_path, 'alternate', degradation_opt=dict(relative)))

def test_optimizer_types(tmp_path):
    model = build_model(model_options(tmp_path, 'alternate', optim_g={'type': 'AdamW', 'lr': 1e-3,
                                                                      'weight_decay': 1e-2},
                                      optim_deg={'type': 'SGD', 'lr': 1e-2, 'momentum': 0.9}))
    assert isinstance(model.optimizer_g, torch.optim.AdamW) and isinstance(model.optimizer_deg, torch.optim.SGD)
    with pytest.raises(ValueError, match=r"train.optim_deg: Unsupported optimizer type 'Lion'"):
        build_model(model_options(tmp_path, 'alternate', optim_deg={'type': 'Lion', 'lr': 1e-3}))
    with pytest.raises(ValueError, match=r'train.optim_g: .*unexpected keyword'):
        build_model(model_options(tmp_path, 'off', optim_g={'type': 'Adam', 'lr': 1e-3, 'beta': 0.9}))


def test_resume_restores_iteration_phase_lr_optimizer_and_ema_exactly(tmp_path):
    batch = noisy_batch()
    opt = model_options(tmp_path, 'alternate')
    model = build_model(copy.deepcopy(opt))
    train_steps(model, batch, 1, 3)
    model.save(epoch=0, current_iter=3)
    assert sorted(p.name for p in (tmp_path / 'models').iterdir()) == ['net_deg_3.pth', 'net_g_3.pth']
    state = torch_load(str(tmp_path / 'training_states' / '3.state'))
    assert state['iter'] == 3 and (state['ndr']['updates_rest'], state['ndr']['updates_deg']) == (3, 3)

    resumed_opt = copy.deepcopy(opt)
    resumed_opt['path']['resume_state'] = str(tmp_path / 'training_states' / '3.state')
    check_resume(resumed_opt, state['iter'])  # BasicSR's own rewrite of pretrain_network_* paths
    resumed = build_model(resumed_opt)
    resumed.resume_training(state)
    assert (resumed.rest_update_count, resumed.deg_update_count) == (3, 3)
    assert [g['lr'] for o in resumed.optimizers for g in o.param_groups] == \
        [g['lr'] for o in model.optimizers for g in o.param_groups] == [5e-4, 1e-3]
    for name in ('net_g', 'net_g_ema', 'net_deg'):
        for (k, a), b in zip(getattr(model, name).state_dict().items(), getattr(resumed, name).state_dict().values()):
            assert torch.equal(a, b), f'{name}.{k} differs after resume'
    for o_a, o_b in zip(model.optimizers, resumed.optimizers):
        for s_a, s_b in zip(o_a.state_dict()['state'].values(), o_b.state_dict()['state'].values()):
            assert all(torch.equal(s_a[k], s_b[k]) for k in s_a)

    train_steps(model, batch, 4, 5)
    train_steps(resumed, batch, 4, 5)
    for name in ('net_g', 'net_g_ema', 'net_deg'):
        for a, b in zip(getattr(model, name).state_dict().values(), getattr(resumed, name).state_dict().values()):
            assert torch.equal(a, b), f'{name} diverged after resume'

    other = model_options(tmp_path, 'joint')
    other['path'] = resumed_opt['path']
    with pytest.raises(ValueError, match='saved with train.bidirectional.mode: alternate'):
        build_model(other).resume_training(state)
    encoder = model_options(tmp_path, 'alternate',
                            bidirectional={'mode': 'alternate', 'degradation_updates': 'encoder'})
    encoder['path'] = resumed_opt['path']
    with pytest.raises(ValueError, match='saved with train.bidirectional.degradation_updates: query'):
        build_model(encoder).resume_training(state)
    # States saved when alternate mode alternated whole iterations are refused; joint/off ones resume.
    old = dict(state, ndr={'mode': 'alternate', 'phase_step': 3, 'nonfinite_streak': 0, 'nonfinite_total': 0})
    with pytest.raises(ValueError, match='alternated whole iterations .*Start a new run from its weights'):
        build_model(copy.deepcopy(resumed_opt)).resume_training(old)


def test_checkpoint_writes_are_atomic(tmp_path):
    target = tmp_path / 'net_g_7.pth'
    atomic_torch_save({'params': {'w': torch.ones(3)}}, str(target))
    good = target.read_bytes()
    with pytest.raises(Exception):  # noqa: B017  (lambdas cannot be pickled: the write fails midway)
        atomic_torch_save({'params': {'w': torch.zeros(3)}, 'oops': lambda: None}, str(target))
    assert target.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ['net_g_7.pth'], 'no temporary file may be left behind'


def test_model_checkpoints_are_written_atomically_and_loaded_safely(tmp_path, basicsr_log):
    import argparse
    import pickle

    import basicsr.models.base_model as basicsr_base_model

    model = build_model(model_options(tmp_path, 'off'))
    model.save_network(model.net_g, 'net_g', 5)
    saved = torch_load(str(tmp_path / 'models' / 'net_g_5.pth'))
    assert set(saved) == {'params'} and not any(k.startswith('module.') for k in saved['params'])
    assert [p.name for p in (tmp_path / 'models').iterdir()] == ['net_g_5.pth'], 'no temporary file may be left'
    assert basicsr_base_model.torch is torch, 'the torch global of BasicSR is restored after each call'

    # BasicSR would retry, log and train on without the checkpoint; a failed write must stop the run instead.
    model.opt['path']['models'] = str(tmp_path / 'models' / 'net_g_5.pth' / 'not_a_folder')
    with pytest.raises(OSError):
        model.save_network(model.net_g, 'net_g', 6)
    assert basicsr_base_model.torch is torch and 'Save model error' not in basicsr_log.text

    model.load_network(model.net_g, str(tmp_path / 'models' / 'net_g_5.pth'), param_key='params_ema')
    assert 'use params' in basicsr_log.text  # BasicSR's fallback to 'params' is kept
    renamed = tmp_path / 'renamed.pth'
    torch.save({'weights': saved['params']}, renamed)
    with pytest.raises(KeyError, match=r"renamed.pth has no 'params' entry \(it has \['weights'\]\)"):
        model.load_network(model.net_g, str(renamed))
    pickled = tmp_path / 'pickled.pth'
    torch.save({'params': saved['params'], 'args': argparse.Namespace(a=1)}, pickled)
    with pytest.raises(pickle.UnpicklingError, match='NDR_TRUST_CHECKPOINTS=1'):
        model.load_network(model.net_g, str(pickled))
    assert basicsr_base_model.torch is torch


def test_nonfinite_loss_is_skipped_then_stops_the_run(tmp_path, basicsr_log):
    model = build_model(model_options(tmp_path, 'alternate', max_nonfinite_steps=2))
    batch = noisy_batch()
    poisoned = dict(batch, lq=batch['lq'].clone())
    poisoned['lq'][0, 0, 3, 3] = float('nan')
    g0, deg0, ema0 = snapshot(model.net_g), snapshot(model.net_deg), snapshot(model.net_g_ema)
    model.max_nonfinite_steps = 3
    train_steps(model, poisoned, 1, 1)  # both updates of the iteration are skipped
    assert 'Iteration 1 (restoration phase): non-finite loss' in basicsr_log.text
    assert 'Iteration 1 (degradation phase): non-finite loss' in basicsr_log.text
    assert not changed(g0, model.net_g) and not changed(deg0, model.net_deg) and not changed(ema0, model.net_g_ema)
    assert model.log_dict['nonfinite_skips'] == 2 and model.log_dict['updates_rest'] == 0
    train_steps(model, batch, 2, 2)  # a good update resets the streak
    assert changed(deg0, model.net_deg) and model.nonfinite_streak == 0
    assert (model.log_dict['updates_rest'], model.log_dict['updates_deg']) == (1, 1)
    train_steps(model, poisoned, 3, 3)
    with pytest.raises(RuntimeError, match=r'Stopping at iteration 4 \(restoration phase\): 3 non-finite'):
        train_steps(model, poisoned, 4, 4)


def _val_loader(root: Path, name: str, seed: int, size: int):
    gt, lq = write_paired_lmdb(root, name, noisy_pairs(2, size, 25, seed=seed))
    dataset_opt = {'name': name, 'type': 'PairedImageDataset', 'dataroot_gt': gt, 'dataroot_lq': lq,
                   'io_backend': {'type': 'lmdb'}, 'phase': 'val', 'scale': 1}
    return build_dataloader(build_dataset(dataset_opt), dataset_opt, num_gpu=0, dist=False, sampler=None, seed=0)


def test_validation_reports_each_dataset_the_average_and_runs_tiled(tmp_path, basicsr_log):
    loaders = [_val_loader(tmp_path, 'val_noise_a', 1, 36), _val_loader(tmp_path, 'val_noise_b', 2, 27)]
    opt = model_options(tmp_path, 'alternate')
    opt['datasets'] = {'train': {}, 'val': {}, 'val_2': {}}
    model = build_model(opt)
    for loader in loaders:
        model.validation(loader, 10, None, save_img=True)
    best = model.best_metric_results
    assert set(best) == {'val_noise_a', 'val_noise_b', 'average'}
    for metric in ('psnr', 'psnr_aio'):
        mean = (best['val_noise_a'][metric]['val'] + best['val_noise_b'][metric]['val']) / 2
        assert best['average'][metric]['val'] == pytest.approx(mean) and best['average'][metric]['iter'] == 10
    assert 'Validation val_noise_a' in basicsr_log.text and 'Validation average' in basicsr_log.text
    # BasicSR's training layout is visualization/<image>/<image>_<iter>.png (both sets use the keys noise_000x).
    assert {p.name for p in (tmp_path / 'visualization').rglob('*.png')} == {'noise_0000_10.png', 'noise_0001_10.png'}
    # Float-protocol metrics see unrounded images: they differ from BasicSR's uint8 PSNR.
    assert best['val_noise_a']['psnr_aio']['val'] != pytest.approx(best['val_noise_a']['psnr']['val'], abs=1e-6)

    whole = best['val_noise_a']['psnr']['val']
    opt['val']['tile'] = {'size': 16, 'overlap': 8}
    tiled = build_model(opt)
    tiled.net_g_ema.load_state_dict(model.net_g_ema.state_dict())
    tiled.validation(loaders[0], 10, None, save_img=False)
    assert math.isfinite(tiled.best_metric_results['val_noise_a']['psnr']['val'])
    assert tiled.best_metric_results['val_noise_a']['psnr']['val'] != whole
    opt['val']['tile'] = {'size': 16, 'overlap': 16}
    with pytest.raises(ValueError, match='val.tile.size 16 is too small for val.tile.overlap 16'):
        build_model(opt)
    opt['val']['tile'] = {'size': 16, 'overlap': 8, 'passes': -1}
    with pytest.raises(ValueError, match='val.tile.passes must be a non-negative integer'):
        build_model(opt)
    opt['val']['tile'] = {'tile_size': 16, 'tile_overlap': 8}
    with pytest.raises(ValueError, match='val.tile.tile_size is now val.tile.size'):
        build_model(opt)
    opt['val']['tile'] = {'size': 16, 'overlap': 8, 'statistics_passes': 1}
    with pytest.raises(ValueError, match='val.tile.statistics_passes is now val.tile.passes'):
        build_model(opt)

    # A mixed validation set (degradation label per image) also gets one row per degradation.
    noise_gt, _ = write_paired_lmdb(tmp_path, 'mixed_noise', noisy_pairs(1, 24, 25, seed=3))
    rain_gt, rain_lq = write_paired_lmdb(tmp_path, 'mixed_pairs', noisy_pairs(1, 24, 50, seed=4))
    mixed_opt = {'name': 'mixed', 'type': 'MultiDegradationDataset', 'phase': 'val', 'scale': 1,
                 'sources': [{'name': 'noise', 'dataroot_gt': noise_gt,
                              'degradation': {'type': 'noise', 'sigmas': [15]}},
                             {'name': 'pairs', 'dataroot_gt': rain_gt, 'dataroot_lq': rain_lq, 'label': 'paired'}]}
    mixed = build_dataloader(build_dataset(mixed_opt), mixed_opt, num_gpu=0, dist=False, sampler=None, seed=0)
    model.validation(mixed, 11, None, save_img=False)
    rows = {row for row in model.best_metric_results if row.startswith('mixed')}
    assert rows == {'mixed', 'mixed/denoise_15', 'mixed/paired'}

    # Test mode (what ndr_plugin.test runs): network_g only, EMA weights, the average over every test set.
    model.save_network([model.net_g, model.net_g_ema], 'net_g', 10, ['params', 'params_ema'])
    test_opt = {'name': 'unit_test', 'model_type': 'NDRModel', 'num_gpu': 0, 'is_train': False, 'dist': False,
                'rank': 0, 'world_size': 1, 'network_g': dict(TINY_NDRNET),
                'datasets': {'test_1': {}, 'test_2': {}},
                'path': {'pretrain_network_g': str(tmp_path / 'models' / 'net_g_10.pth'), 'param_key_g': 'params_ema',
                         'visualization': str(tmp_path / 'results')},
                'val': {'save_img': True, 'suffix': 'ndr', 'metrics': opt['val']['metrics']}}
    tester = build_model(test_opt)
    assert not hasattr(tester, 'net_deg')
    for loader in loaders:
        tester.validation(loader, 'unit_test', None, save_img=True)
    assert tester.best_metric_results['average']['psnr']['val'] == pytest.approx(best['average']['psnr']['val'])
    assert len(list((tmp_path / 'results' / 'val_noise_b').glob('*_ndr.png'))) == 2


def test_train_and_auto_resume_through_the_entry_point(tmp_path, subprocess_env):
    train_gt, train_lq = write_paired_lmdb(tmp_path, 'train', noisy_pairs(4, 32, 25, seed=0))
    val = {}
    for i, (name, size) in enumerate((('val_a', 32), ('val_b', 24))):
        gt, lq = write_paired_lmdb(tmp_path, name, noisy_pairs(1, size, 25, seed=i + 1))
        val['val' if i == 0 else 'val_2'] = {'name': name, 'type': 'PairedImageDataset', 'dataroot_gt': gt,
                                             'dataroot_lq': lq, 'io_backend': {'type': 'lmdb'}}
    unit = model_options(tmp_path, 'alternate')
    opt = {
        'name': 'ndr_entry', 'model_type': 'NDRModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {'train': {'name': 'train', 'type': 'PairedImageDataset', 'dataroot_gt': train_gt,
                               'dataroot_lq': train_lq, 'io_backend': {'type': 'lmdb'}, 'gt_size': 24,
                               'use_hflip': True, 'use_rot': True, 'num_worker_per_gpu': 0,
                               'batch_size_per_gpu': 2, 'dataset_enlarge_ratio': 1}, **val},
        'network_g': unit['network_g'], 'network_deg': unit['network_deg'],
        'path': {'pretrain_network_g': None, 'pretrain_network_deg': None, 'resume_state': None},
        'train': dict(unit['train'], total_iter=4, warmup_iter=-1),
        'val': {'val_freq': 4, 'save_img': False, 'metrics': unit['val']['metrics']},
        'logger': {'print_freq': 2, 'save_checkpoint_freq': 2, 'use_tb_logger': True, 'wandb': {'project': None}},
    }
    path = tmp_path / 'ndr_entry.yml'
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    cmd = [sys.executable, '-m', 'ndr_plugin.train', '-opt', str(path)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=subprocess_env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = tmp_path / 'experiments' / 'ndr_entry'
    log = next(exp.glob('train_*.log')).read_text()
    for needle in ('l_rest:', 'l_deg:', 'lr_g:', 'lr_deg:', 'updates_rest:', 'updates_deg:', 'atom_entropy:',
                   'Validation val_a', 'Validation val_b', 'Validation average'):
        assert needle in log, f'{needle!r} missing from the training log'
    models = {p.name for p in (exp / 'models').iterdir()}
    assert {'net_g_4.pth', 'net_deg_4.pth', 'net_g_latest.pth', 'net_deg_latest.pth'} <= models
    assert set(torch_load(str(exp / 'models' / 'net_g_4.pth'))) == {'params', 'params_ema'}
    assert (tmp_path / 'tb_logger' / 'ndr_entry').is_dir()

    opt['train']['total_iter'] = 6
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    proc = subprocess.run(cmd + ['--auto_resume'], cwd=tmp_path, env=subprocess_env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    logs = sorted(exp.glob('train_*.log'))
    resumed_log = logs[-1].read_text() if len(logs) > 1 else log
    assert 'Resuming training from epoch: ' in resumed_log and 'iter: 4.' in resumed_log
    assert (exp / 'models' / 'net_deg_6.pth').is_file() and (exp / 'training_states' / '6.state').is_file()
    assert torch_load(str(exp / 'training_states' / '6.state'))['ndr']['updates_rest'] == 6
