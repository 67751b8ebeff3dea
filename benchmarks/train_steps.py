"""Full training steps (forward, losses, backward, clip, optimizer) of NDRModel and of the official recipe.

Shared by ``train_speed.py`` (CPU time and memory) and ``gpu_check.py`` (CUDA). The official step is the recipe of
``models/NDR_model.py`` in github.com/mdyao/NDR-Restore (its training step) run on
``tests/official_reference.py``, the literal re-implementation of the official network: restoration then degradation
process, ``L1(lq_fake, lq) + L1(hq_fake, gt)``, one ``clip_grad_norm_`` at 10 over all parameters, one Adam (lr 1e-4,
betas (0.9, 0.999), weight decay 1e-8, the official train.yml). Ours is NDRModel built from an option dict with the
same optimizer settings and L1 losses, stepped through ``optimize_parameters`` exactly as BasicSR's training loop does.
"""
from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / 'tests')]

import ndr_plugin  # noqa: E402,F401  (compat + registration before BasicSR)
import official_reference  # noqa: E402
from basicsr.models import build_model  # noqa: E402
from ndr_plugin.demo.options import TINY_DEGRADATION_NET as DEMO_DEG  # noqa: E402
from ndr_plugin.demo.options import TINY_NDRNET as DEMO_NDRNET  # noqa: E402

OFFICIAL_OPTIM = {'type': 'Adam', 'lr': 1e-4, 'betas': [0.9, 0.999], 'weight_decay': 1e-8}
GRAD_CLIP = 10  # official clip_grad_norm_ max norm
# network size -> (network_g, network_deg) options
NETWORKS = {
    'paper': ({'type': 'NDRNet'}, {'type': 'NDRDegradationNet'}),
    'demo': (dict(DEMO_NDRNET), dict(DEMO_DEG)),
    # the size of official_reference.tiny_official, so quick checks compare like with like
    'tiny': tuple({'type': name, **options} for name, options in zip(('NDRNet', 'NDRDegradationNet'),
                                                                      official_reference.tiny_ours_options())),
}
MODES = ('alternate', 'joint', 'off')
Step = Callable[[torch.Tensor, torch.Tensor], None]


def model_options(mode: str, network_g: dict, network_deg: dict, workdir: str, device: str = 'cpu',
                  train: dict | None = None) -> dict:
    """NDRModel options as BasicSR's parse_options leaves them, for building the model directly (no EMA)."""
    root = Path(workdir)
    for sub in ('models', 'training_states'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    opt = {
        'name': 'train_steps', 'model_type': 'NDRModel', 'num_gpu': 1 if device.startswith('cuda') else 0,
        'is_train': True, 'dist': False, 'rank': 0, 'world_size': 1, 'scale': 1, 'datasets': {},
        'network_g': dict(network_g), 'network_deg': dict(network_deg),
        'path': {'models': str(root / 'models'), 'training_states': str(root / 'training_states'),
                 'visualization': str(root / 'visualization'), 'resume_state': None},
        'train': {'ema_decay': 0, 'optim_g': dict(OFFICIAL_OPTIM), 'optim_deg': dict(OFFICIAL_OPTIM),
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [10 ** 9], 'gamma': 0.5},
                  'pixel_opt': {'type': 'L1Loss'}, 'degradation_opt': {'type': 'L1Loss'},
                  'bidirectional': {'mode': mode, 'grad_clip': GRAD_CLIP}, 'total_iter': 10 ** 9},
        'val': {}, 'logger': {'print_freq': 10 ** 9},
    }
    opt['train'].update(train or {})
    return opt


def ours_step(mode: str, size: str = 'paper', device: str = 'cpu', train: dict | None = None,
              network: dict | None = None) -> tuple[Step, Any]:
    """(step(lq, gt), model): one NDRModel training iteration per call."""
    network_g, network_deg = NETWORKS[size]
    network_g = {**network_g, **(network or {})}
    network_deg = {**network_deg, **(network or {})}
    workdir = tempfile.mkdtemp(prefix='train_steps_')
    model = build_model(model_options(mode, network_g, network_deg, workdir, device, train))
    counter = [0]

    def step(lq: torch.Tensor, gt: torch.Tensor) -> None:
        counter[0] += 1
        model.feed_data({'lq': lq, 'gt': gt})
        model.optimize_parameters(counter[0])

    return step, model


def official_model(size: str = 'paper') -> official_reference.NDRN:
    """The official model, paper size or the tiny test copy (``tests/official_reference.py``)."""
    if size not in ('paper', 'tiny'):
        raise ValueError(f'the official reference comes in paper and tiny sizes, not {size!r}')
    return official_reference.NDRN() if size == 'paper' else official_reference.tiny_official()


def official_step(model: official_reference.NDRN) -> Step:
    """The official training step on ``model`` (its recipe: see the module docstring)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-8)

    def step(lq: torch.Tensor, gt: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        hq_fake = model.restoration_process(lq)
        lq_fake = model.degradation_process(gt)
        loss = F.l1_loss(lq_fake, lq) + F.l1_loss(hq_fake, gt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()

    return step


def make_batch(batch: int, size: int, device: str = 'cpu', seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(lq, gt): a smooth random clean image and a noisy copy (sigma 25/255), both in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    gt = F.interpolate(torch.rand(batch, 3, size // 8, size // 8, generator=generator), size=(size, size),
                       mode='bilinear', align_corners=False)
    lq = (gt + 25 / 255 * torch.randn(gt.shape, generator=generator)).clamp(0, 1)
    return lq.to(device), gt.to(device)
