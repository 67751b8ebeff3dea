"""Small pieces of NDRModel's training step: objectives, the phase schedule, gradient sync, checkpoint writes."""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.distributed as dist
from basicsr.losses import build_loss
from torch import nn

RESTORATION, DEGRADATION, JOINT = 'restoration', 'degradation', 'joint'
# Numeric phase ids for the log: BasicSR's MessageLogger formats every logged value as a number.
PHASE_IDS = {RESTORATION: 0, DEGRADATION: 1, JOINT: 2}
MODES = ('alternate', 'joint', 'off')


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


def parameters_with_grad(params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    return [p for p in params if p.grad is not None]


def average_gradients(params: Sequence[nn.Parameter]) -> None:
    """All-reduces (averages) the gradients of ``params`` over the process group, in one flat buffer.

    DDP averages gradients only for parameters used through its own ``forward``. The degradation phase reaches
    NDRNet's NDR and query path through ``query_degradation``, outside ``forward``, so those are averaged here.
    """
    if not (dist.is_available() and dist.is_initialized()) or not params:
        return
    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def any_rank_true(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` is true on any process (every process gets the same answer)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)
