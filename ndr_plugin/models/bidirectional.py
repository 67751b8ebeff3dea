"""The pieces of NDR-Restore's bidirectional training (restoration and degradation) that NDRModel assembles.

* Update names (:data:`RESTORATION`, :data:`DEGRADATION`, :data:`JOINT`) and the ``train.bidirectional.mode`` names
  (:data:`MODES`): ``alternate`` is our reading of the paper's abstract (the two processes optimised "alternately";
  the ratio and what each update reaches are ours, and named options), ``joint`` the official code's single step,
  ``off`` is ours (ablation).
* :class:`BidirectionalSettings`: the ``train.bidirectional`` options, checked; the one place they are checked.
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
MODES = ('alternate', 'joint', 'off')
DEGRADATION_UPDATES = ('query', 'encoder')
BIDIRECTIONAL_KEYS = ('mode', 'degradation_every', 'degradation_updates', 'shared_optimizer_state',
                      'joint_degradation_weight', 'grad_clip')
# Options of alternate mode only: in joint mode the one official step fixes what each loss reaches and steps one update.
ALTERNATE_KEYS = ('degradation_every', 'degradation_updates', 'shared_optimizer_state')
# Version of the ``ndr`` entry of training states: 2 counts updates per iteration (1 alternated whole iterations).
STATE_VERSION = 2
# Keys that changed meaning when every mode became one restoration update per iteration: their replacement.
REMOVED_KEYS = {
    'restoration_iters': 'every iteration now performs one restoration update in every mode (so total_iter, the '
                         'scheduler and checkpoints mean the same for NDR and every baseline); remove the key',
    'degradation_iters': 'use train.bidirectional.degradation_every: N (one degradation update every N iterations, '
                         'next to that iteration\'s restoration update)',
}


@dataclass(frozen=True)
class BidirectionalSettings:
    """``train.bidirectional``, checked once: by the option check before anything is built, and by NDRModel.

    Every choice here beyond ``mode: joint`` is ours (the paper's abstract says only "alternately"):

    * ``degradation_every``: in ``alternate``, one degradation update every N iterations, after that iteration's
      restoration update (as BasicSR's GAN models update net_g and net_d in one iteration). Default 1.
    * ``degradation_updates``: what the degradation loss may update in ``alternate``: ``query`` (NDR + degradation
      queries, the encoder features detached) or ``encoder`` (also the restoration encoder up to each query, as the
      official joint step lets it). Default ``query``.
    * ``shared_optimizer_state``: in ``alternate``, the NDRNet parameters the degradation loss updates keep one Adam
      state for both objectives (``true``: stepped by ``optim_g``) or one per objective (``false``: also held by
      ``optim_deg``, each objective's gradient scale normalised on its own). Default ``false``.
    """
    mode: str = 'alternate'
    degradation_every: int = 1
    degradation_updates: str = 'query'
    shared_optimizer_state: bool = False
    joint_degradation_weight: float = 1.0
    grad_clip: float | None = 10

    @classmethod
    def from_options(cls, options: Mapping | None) -> BidirectionalSettings:
        options = dict(options or {})
        for key, replacement in REMOVED_KEYS.items():
            if key in options:
                raise ValueError(f'train.bidirectional.{key} is no longer an option: {replacement}.')
        unknown = set(options) - set(BIDIRECTIONAL_KEYS)
        if unknown:
            raise ValueError(f'train.bidirectional: unknown keys {sorted(unknown)}; known: {list(BIDIRECTIONAL_KEYS)}')
        if options.get('mode') is False:  # YAML 1.1 reads a bare `off` as false
            options['mode'] = 'off'
        misplaced = [key for key in ALTERNATE_KEYS if key in options]
        if misplaced and options.get('mode', cls.mode) != 'alternate':
            raise ValueError(f'train.bidirectional: {misplaced} apply to mode alternate only, this file sets mode '
                             f'{options["mode"]}; remove them')
        settings = cls(**options)
        settings._check()
        return settings

    def _check(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f'train.bidirectional.mode must be one of {MODES}, got {self.mode!r}')
        every = self.degradation_every
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f'train.bidirectional.degradation_every must be a positive integer, got {every!r}')
        if self.degradation_updates not in DEGRADATION_UPDATES:
            raise ValueError(f'train.bidirectional.degradation_updates must be one of {DEGRADATION_UPDATES}, got '
                             f'{self.degradation_updates!r}')
        if not isinstance(self.shared_optimizer_state, bool):
            raise ValueError('train.bidirectional.shared_optimizer_state must be true or false, got '
                             f'{self.shared_optimizer_state!r}')
        weight = self.joint_degradation_weight
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f'train.bidirectional.joint_degradation_weight must be a number >= 0, got {weight!r}')
        clip = self.grad_clip
        if clip is not None and (not isinstance(clip, (int, float)) or isinstance(clip, bool) or clip < 0):
            raise ValueError(f'train.bidirectional.grad_clip must be a number >= 0 or ~, got {clip!r}')

    def degradation_due(self, current_iter: int) -> bool:
        """Whether iteration ``current_iter`` (1-based, BasicSR's count) performs a degradation update."""
        if self.mode == 'joint':
            return True
        return self.mode == 'alternate' and current_iter % self.degradation_every == 0


def check_resumable(saved: Mapping, settings: BidirectionalSettings) -> None:
    """A clear error where the ``ndr`` entry of a training state cannot continue under these settings.

    States saved before :data:`STATE_VERSION` 2 by alternate mode alternated whole iterations, so their iteration
    count, schedulers and optimizer states mean something else: refused. Joint and off states resume (they already
    performed one restoration update per iteration).
    """
    mode = settings.mode
    if saved.get('mode', mode) != mode:
        raise ValueError(f"The training state was saved with train.bidirectional.mode: {saved['mode']}, this run "
                         f'uses {mode}; their optimizers hold different parameters. Resume with the same mode '
                         'or start a new run from the weights (path.pretrain_network_g / _deg).')
    if mode == 'alternate' and saved.get('version', 1) < STATE_VERSION:
        raise ValueError('The training state was saved by an alternate-mode run that alternated whole iterations '
                         '(train.bidirectional.restoration_iters / degradation_iters): its iteration count, scheduler '
                         'and optimizer states do not mean the same as now (one restoration update per iteration). '
                         'Start a new run from its weights (path.pretrain_network_g / pretrain_network_deg).')
    for key in ('degradation_updates', 'shared_optimizer_state'):
        now = getattr(settings, key)
        if key in saved and saved[key] != now:
            raise ValueError(f'The training state was saved with train.bidirectional.{key}: {saved[key]}, this '
                             f'run uses {now}; the optimizers hold different parameters. Resume with the same value '
                             'or start a new run from the weights.')


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
