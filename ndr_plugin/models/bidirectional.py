"""The pieces of NDR-Restore's bidirectional training (restoration and degradation) that NDRModel assembles.

* Phases (:data:`RESTORATION`, :data:`DEGRADATION`, :data:`JOINT`) and the ``train.bidirectional.mode`` names
  (:data:`MODES`): ``alternate`` follows the paper's abstract (the two processes optimised "alternately"; the period
  and the parameters of each phase are ours), ``joint`` the official code's single step, ``off`` is ours (ablation).
* :class:`BidirectionalSettings`: the ``train.bidirectional`` options, checked.
* :class:`PhaseSchedule`: which phase an alternate-mode step runs, and where a resumed run is in the cycle.
* :class:`Objective`: one option entry (a loss dict or a list of them) as one summed, logged loss.
* :func:`atom_usage_entropy`: a log value (ours) that shows whether the NDR's atoms are all in use.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from basicsr.losses import build_loss
from torch import nn

RESTORATION, DEGRADATION, JOINT = 'restoration', 'degradation', 'joint'
# Numeric phase ids for the log: BasicSR's MessageLogger formats every logged value as a number.
PHASE_IDS = {RESTORATION: 0, DEGRADATION: 1, JOINT: 2}
MODES = ('alternate', 'joint', 'off')
BIDIRECTIONAL_KEYS = ('mode', 'restoration_iters', 'degradation_iters', 'joint_degradation_weight', 'grad_clip')


@dataclass(frozen=True)
class BidirectionalSettings:
    """``train.bidirectional``, checked once: by the option check before anything is built, and by NDRModel."""
    mode: str = 'alternate'
    restoration_iters: int = 1
    degradation_iters: int = 1
    joint_degradation_weight: float = 1.0
    grad_clip: float | None = 10

    @classmethod
    def from_options(cls, options: Mapping | None) -> BidirectionalSettings:
        options = dict(options or {})
        unknown = set(options) - set(BIDIRECTIONAL_KEYS)
        if unknown:
            raise ValueError(f'train.bidirectional: unknown keys {sorted(unknown)}; known: {list(BIDIRECTIONAL_KEYS)}')
        if options.get('mode') is False:  # YAML 1.1 reads a bare `off` as false
            options['mode'] = 'off'
        settings = cls(**options)
        settings._check()
        return settings

    def _check(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f'train.bidirectional.mode must be one of {MODES}, got {self.mode!r}')
        for key in ('restoration_iters', 'degradation_iters'):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f'train.bidirectional.{key} must be a positive integer, got {value!r}')
        weight = self.joint_degradation_weight
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f'train.bidirectional.joint_degradation_weight must be a number >= 0, got {weight!r}')
        clip = self.grad_clip
        if clip is not None and (not isinstance(clip, (int, float)) or isinstance(clip, bool) or clip < 0):
            raise ValueError(f'train.bidirectional.grad_clip must be a number >= 0 or ~, got {clip!r}')


class Objective(nn.Module):
    """A weighted sum of losses built from one option entry, as BasicSR's ``build_loss`` builds a single loss.

    Args:
        name (str): Log name of the total, e.g. 'l_rest'; each term is also logged as '<name>_<LossType>' when there
            are several.
        loss_opts (Mapping | Sequence[Mapping]): One loss option dict (BasicSR's convention: ``type``, ``loss_weight``,
            ...) or a list of them, whose outputs are summed. Every loss is called as ``loss(pred, target)``; one
            whose class sets ``uses_input = True`` (e.g. InputRelativeL1Loss) as ``loss(pred, target, lq)``.
        option_key (str): Where the options come from, for error messages, e.g. 'train.pixel_opt'.
        input_available (bool): Whether the caller passes the degraded input; if not, a loss that needs it is an
            error. Default: True.
    """

    def __init__(self, name: str, loss_opts: Mapping | Sequence[Mapping], option_key: str,
                 input_available: bool = True) -> None:
        super().__init__()
        opts = [loss_opts] if isinstance(loss_opts, Mapping) else list(loss_opts)
        if not opts or not all(isinstance(o, Mapping) and 'type' in o for o in opts):
            raise ValueError(f"{option_key}: expected a loss dict with a 'type' or a non-empty list of them, "
                             f'got {loss_opts!r}')
        self.name = name
        self.losses = nn.ModuleList(build_loss(dict(o)) for o in opts)
        self.uses_input = [bool(getattr(loss, 'uses_input', False)) for loss in self.losses]
        if not input_available and any(self.uses_input):
            needs = [o['type'] for o, uses in zip(opts, self.uses_input) if uses]
            raise ValueError(f'{option_key}: {needs} compare(s) the output with the degraded input, which this '
                             'objective does not have; use it in train.pixel_opt only')
        self.term_names = []
        for index, o in enumerate(opts):
            term = f'{name}_{o["type"]}'
            self.term_names.append(term if term not in self.term_names else f'{term}{index}')

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                lq: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Returns the total loss and the log entries (the total, and each term when there are several)."""
        if lq is None and any(self.uses_input):
            raise ValueError(f'{self.name}: a loss that needs the degraded input was called without it')
        terms = [_as_tensor(loss(pred, target, lq) if uses else loss(pred, target))
                 for loss, uses in zip(self.losses, self.uses_input)]
        total = sum(terms[1:], terms[0])
        log = {self.name: total.detach()}
        if len(terms) > 1:
            log.update({n: t.detach() for n, t in zip(self.term_names, terms)})
        return total, log


def _as_tensor(value: torch.Tensor | tuple) -> torch.Tensor:
    # BasicSR's PerceptualLoss returns (perceptual, style), either of which may be None.
    if isinstance(value, tuple):
        parts = [v for v in value if v is not None]
        return sum(parts[1:], parts[0])
    return value


class PhaseSchedule:
    """Alternation of the restoration and degradation phases, counted in training steps.

    A cycle is ``restoration_iters`` restoration steps followed by ``degradation_iters`` degradation steps. ``step`` is
    the number of steps taken so far; it is saved in the training state, so a resumed run continues mid-cycle.
    """

    def __init__(self, restoration_iters: int, degradation_iters: int) -> None:
        for key, value in (('restoration_iters', restoration_iters), ('degradation_iters', degradation_iters)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'train.bidirectional.{key} must be a positive integer, got {value!r}')
        self.restoration_iters = restoration_iters
        self.cycle = restoration_iters + degradation_iters
        self.step = 0

    def current(self) -> str:
        return RESTORATION if self.step % self.cycle < self.restoration_iters else DEGRADATION

    def advance(self) -> None:
        self.step += 1


def atom_usage_entropy(atom_weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean entropy of the query's attention over NDR atoms, normalised to [0, 1] by log(num_atoms).

    1 means every pixel spreads its attention evenly over all atoms; 0 means each pixel picks a single atom.

    Args:
        atom_weights (Sequence[Tensor]): One (B, num_atoms, H, W) softmax (over dim 1) per query level.
    """
    levels = []
    for weights in atom_weights:
        weights = weights.detach().float()
        num_atoms = weights.size(1)
        entropy = -(weights * weights.clamp_min(1e-12).log()).sum(dim=1)
        levels.append(entropy.mean() / math.log(num_atoms) if num_atoms > 1 else entropy.mean())
    return torch.stack(levels).mean()
