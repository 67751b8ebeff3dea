"""NDRModel: NDR-Restore's bidirectional training (restoration and degradation) on top of BasicSR's SRModel.

Two networks: ``network_g`` (NDRNet, the restorer, the only one needed at test time) and ``network_deg``
(NDRDegradationNet, which re-synthesises the degraded input from the clean image and NDRNet's degradation maps and so
teaches the NDR what degradations look like). Every training iteration performs exactly one restoration update in
every mode, so ``total_iter``, the schedulers, validation and checkpoints mean the same for NDR, its ablations and every
baseline. ``train.bidirectional.mode`` picks the optimisation:

* ``alternate`` (our reading of the paper's "alternately"): each iteration performs a restoration update (NDRNet,
  restoration loss, ``optim_g``), then, every ``degradation_every`` iterations, a degradation update (as BasicSR's GAN
  models update net_g and net_d in one iteration): the degradation loss between ``net_deg(gt, maps(lq))`` and ``lq``
  updates NDRDegradationNet and NDRNet's NDR and query path (``degradation_updates: query``; the encoder features are
  detached) or also the encoder up to each query (``encoder``). Those NDRNet parameters keep one Adam state per
  objective (also held by ``optim_deg``) or share ``optim_g``'s (``shared_optimizer_state``). All of this is ours.
* ``joint`` (the official code, ``models/NDR_model.py``): one update on ``w_deg * L_deg + L_rest`` with the maps not
  detached, one gradient-norm clip over all parameters, both optimizers stepped. ``optim_deg`` then holds only the
  NDRDegradationNet parameters, so with equal optimizer settings this is exactly the official single Adam.
* ``off``: restoration only (ablation; also any network_g without degradation maps, e.g. a zoo baseline).

The log carries ``updates_rest`` and ``updates_deg``, the updates performed so far (saved in the training state).

Losses: ``train.pixel_opt`` (restoration) and ``train.degradation_opt`` are each one BasicSR loss dict or a list of
them (summed), e.g. ``[{type: L1Loss}, {type: FrequencyLoss, loss_weight: 0.1}]``.

Pieces kept beside this file: ``bidirectional.py`` (settings, objectives), ``distributed.py`` (gradient sync
DDP does not do for the degradation phase), ``checkpointing.py`` (atomic saves, safe loads; the training state also
holds the update counts and the non-finite counters), ``validation.py`` (per-dataset validation, tiling),
``mixed_precision.py`` (``train.amp: bf16 | fp16 | false``: autocast, fp16 loss scaling, its saved state).
"""
from __future__ import annotations

import warnings
from collections import OrderedDict, defaultdict
from typing import Any

import torch
from basicsr.archs import build_network
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY
from torch import nn
from tqdm import tqdm

from ndr_plugin.models.bidirectional import (DEGRADATION, JOINT, RESTORATION, STATE_VERSION, BidirectionalSettings,
                                             Objective, atom_usage_entropy, check_resumable)
from ndr_plugin.models.checkpointing import SafeCheckpointIO
from ndr_plugin.models.cpu_memory import apply_keep_freed_memory, check_keep_freed_memory
from ndr_plugin.models.distributed import any_rank_true, average_gradients, parameters_with_grad
from ndr_plugin.models.mixed_precision import MixedPrecision, check_amp_value
from ndr_plugin.models.validation import MultiDatasetValidation, parse_tile

GRAD_NORM_KEYS = {RESTORATION: 'grad_norm_rest', DEGRADATION: 'grad_norm_deg', JOINT: 'grad_norm'}
OPTIMIZERS = {'Adam': torch.optim.Adam, 'AdamW': torch.optim.AdamW, 'SGD': torch.optim.SGD}


@MODEL_REGISTRY.register()
class NDRModel(MultiDatasetValidation, SafeCheckpointIO, SRModel):
    """NDR-Restore training and validation. Option keys: see the module docstring and ``options/`` examples."""

    def __init__(self, opt: dict) -> None:
        self.tile = parse_tile(opt.get('val') or {}, opt.get('network_g'))
        super().__init__(opt)

    # ------------------------------------------------------------------ setup
    def init_training_settings(self) -> None:
        # SRModel's version builds single-dict losses only; this one builds the second network and the objectives.
        train_opt = self.opt['train']
        self._parse_bidirectional(train_opt.get('bidirectional') or {})
        self.max_nonfinite_steps = int(train_opt.get('max_nonfinite_steps', 5))
        self.nonfinite_streak, self.nonfinite_total = 0, 0
        self.amp = MixedPrecision(train_opt.get('amp', False), self.device)  # train.amp: mixed_precision.py
        self.amp_overflow_total = 0
        self.keeps_freed_memory = apply_keep_freed_memory(train_opt.get('keep_freed_memory'), self.device)
        self._last_log: OrderedDict[str, float] = OrderedDict()
        self._degradation_l1: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])

        self.net_g.train()
        self._setup_ema(train_opt.get('ema_decay', 0))
        bare_g = self.get_bare_model(self.net_g)
        self._has_ndr = _network_has_ndr(bare_g)
        if self.mode == 'off':
            if 'network_deg' in self.opt:
                get_root_logger().warning('train.bidirectional.mode is off: network_deg is ignored (not trained).')
        else:
            if not self._has_ndr:
                raise ValueError(f"train.bidirectional.mode: {self.mode} needs a network_g with degradation maps "
                                 f"(NDRNet with use_ndr: true); {type(bare_g).__name__} has none. Use mode: off.")
            if 'network_deg' not in self.opt:
                raise ValueError(f'train.bidirectional.mode: {self.mode} needs a network_deg (NDRDegradationNet) '
                                 'entry in the option file; add one or set mode: off.')
            self.net_deg = self.model_to_device(build_network(self.opt['network_deg']))
            self.print_network(self.net_deg)
            self._load_pretrained(self.net_deg, 'deg')
            self.net_deg.train()

        if train_opt.get('perceptual_opt'):
            raise ValueError('NDRModel does not read train.perceptual_opt: add the loss to the train.pixel_opt list.')
        if not train_opt.get('pixel_opt'):
            raise ValueError('train.pixel_opt (the restoration loss) is required.')
        self.cri_rest = Objective('l_rest', train_opt['pixel_opt'], 'train.pixel_opt').to(self.device)
        if self.mode != 'off':
            if not train_opt.get('degradation_opt'):
                raise ValueError(f'train.degradation_opt is required with train.bidirectional.mode: {self.mode}.')
            self.cri_deg = Objective('l_deg', train_opt['degradation_opt'], 'train.degradation_opt',
                                     input_available=False).to(self.device)
        if not train_opt.get('scheduler'):
            raise ValueError('train.scheduler is required (e.g. {type: MultiStepLR, milestones: [...], gamma: 0.5}).')
        self.setup_optimizers()
        self.setup_schedulers()

    @classmethod
    def check_options(cls, opt: dict) -> None:
        """Option errors found before BasicSR builds anything (called by
        :func:`ndr_plugin.options.check_option_file`); :class:`BidirectionalSettings` is where they are checked."""
        BidirectionalSettings.from_options((opt.get('train') or {}).get('bidirectional'))
        check_amp_value((opt.get('train') or {}).get('amp'))
        check_keep_freed_memory((opt.get('train') or {}).get('keep_freed_memory'))

    def _parse_bidirectional(self, options: dict) -> None:
        self.settings = BidirectionalSettings.from_options(options)
        self.mode = self.settings.mode
        self.joint_degradation_weight = float(self.settings.joint_degradation_weight)
        self.grad_clip = self.settings.grad_clip
        self.rest_update_count, self.deg_update_count = 0, 0

    def _setup_ema(self, decay: float) -> None:
        self.ema_decay = decay
        if decay <= 0:
            return
        get_root_logger().info(f'Use Exponential Moving Average with decay: {decay}')
        self.net_g_ema = build_network(self.opt['network_g']).to(self.device)
        if self.opt['path'].get('pretrain_network_g') is not None:
            self.load_network(self.net_g_ema, self.opt['path']['pretrain_network_g'],
                              self.opt['path'].get('strict_load_g', True), 'params_ema')
        else:
            self.model_ema(0)
        self.net_g_ema.eval()

    def _load_pretrained(self, net: nn.Module, label: str) -> None:
        load_path = self.opt['path'].get(f'pretrain_network_{label}')
        if load_path is not None:
            self.load_network(net, load_path, self.opt['path'].get(f'strict_load_{label}', True),
                              self.opt['path'].get(f'param_key_{label}', 'params'))

    def get_optimizer(self, optim_type: str, params: Any, lr: float, **kwargs: Any) -> torch.optim.Optimizer:
        if optim_type not in OPTIMIZERS:
            raise ValueError(f'Unsupported optimizer type {optim_type!r}; choose one of {list(OPTIMIZERS)}.')
        return OPTIMIZERS[optim_type](params, lr, **kwargs)

    def _build_optimizer(self, key: str, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        options = dict(self.opt['train'][key])
        if 'type' not in options or 'lr' not in options:
            raise ValueError(f"train.{key} needs 'type' and 'lr', got {options}")
        optim_type = options.pop('type')
        try:
            return self.get_optimizer(optim_type, params, **options)
        except (TypeError, ValueError) as err:
            raise ValueError(f'train.{key}: {err}') from None

    def setup_optimizers(self) -> None:
        train_opt = self.opt['train']
        if 'optim_g' not in train_opt:
            raise ValueError('train.optim_g is required.')
        self.optimizer_g = self._build_optimizer('optim_g', _trainable(self.net_g, 'network_g'))
        self.optimizers.append(self.optimizer_g)
        if self.mode == 'off':
            return
        if 'optim_deg' not in train_opt:
            get_root_logger().info('train.optim_deg not given: NDRDegradationNet uses the settings of train.optim_g.')
            train_opt['optim_deg'] = dict(train_opt['optim_g'])
        deg_params = _trainable(self.net_deg, 'network_deg')
        self._degradation_reach = self._degradation_reach_in_g() if self.mode == 'alternate' else []
        if not self.settings.shared_optimizer_state:
            deg_params += self._degradation_reach
        self.optimizer_deg = self._build_optimizer('optim_deg', deg_params)
        self.optimizers.append(self.optimizer_deg)

    def _degradation_reach_in_g(self) -> list[nn.Parameter]:
        """The NDRNet parameters an alternate-mode degradation loss reaches (``degradation_updates``)."""
        bare_g = self.get_bare_model(self.net_g)
        params = list(bare_g.degradation_parameters())
        if self.settings.degradation_updates == 'encoder':
            params += list(bare_g.query_encoder_parameters())
        return [p for p in params if p.requires_grad]

    # ------------------------------------------------------------------ training
    def update_learning_rate(self, current_iter: int, warmup_iter: int = -1) -> None:
        # With degradation_every > 1 optim_deg sits out iterations, so torch warns that its scheduler stepped before
        # it did; the schedule is a function of the iteration and is right either way.
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message=r'Detected call of `lr_scheduler\.step\(\)` before')
            super().update_learning_rate(current_iter, warmup_iter)

    def feed_data(self, data: dict) -> None:
        super().feed_data(data)
        self.degradation = data.get('degradation')

    def optimize_parameters(self, current_iter: int) -> None:
        """One iteration: one restoration update in every mode, plus the degradation update that is due."""
        log: dict[str, torch.Tensor] = {}
        if self.mode == 'joint':
            applied = self._update(current_iter, JOINT, log)
            self.rest_update_count += applied
            self.deg_update_count += applied
        else:
            applied = self._update(current_iter, RESTORATION, log)
            self.rest_update_count += applied
            if self.settings.degradation_due(current_iter):
                done = self._update(current_iter, DEGRADATION, log)
                self.deg_update_count += done
                applied = applied or done
        if applied and self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)
        self._update_log(log, current_iter)
        self._advance_progress_bar(current_iter)

    def _update(self, current_iter: int, kind: str, log: dict[str, torch.Tensor]) -> bool:
        """Computes one objective, clips its gradient and steps its optimizers; False if skipped (non-finite)."""
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        objective = {RESTORATION: self._restoration_objective, DEGRADATION: self._degradation_objective,
                     JOINT: self._joint_objective}[kind]
        with self.amp.autocast():
            loss, terms, optimizers, manual_sync = objective()
        # Backward runs even on a non-finite loss: every DDP rank must finish its gradient reduction in step.
        self.amp.backward(loss)
        average_gradients(parameters_with_grad(manual_sync))
        self.amp.unscale(optimizers)
        params = [p for optimizer in optimizers for group in optimizer.param_groups for p in group['params']]
        grad_norm = self._clip_or_measure(parameters_with_grad(dict.fromkeys(params)))
        log.update(terms)
        log[GRAD_NORM_KEYS[kind]] = grad_norm.detach()
        if any_rank_true(not (torch.isfinite(loss) and torch.isfinite(grad_norm)), self.device):
            if self.amp.skip(loss):  # an fp16 loss-scale overflow: the scaler lowers its scale, not a failure
                self.amp_overflow_total += 1
            else:
                self._skip_update(current_iter, kind, loss)
            return False
        self.nonfinite_streak = 0
        self.amp.step(optimizers)
        return True

    def _advance_progress_bar(self, current_iter: int) -> None:
        """``logger.progress_bar: true`` shows a bar over the training iterations (rank 0), next to the log lines."""
        if not self.opt['logger'].get('progress_bar') or self.opt['rank'] != 0:
            return
        if getattr(self, '_progress', None) is None:
            total = int(self.opt['train']['total_iter'])
            self._progress = tqdm(total=total, initial=current_iter - 1, unit='iter', desc='train', dynamic_ncols=True)
        self._progress.update(1)
        if current_iter >= self._progress.total:
            self._progress.close()

    def _restoration_objective(self) -> tuple[torch.Tensor, dict, list, list]:
        log = {}
        if self._has_ndr:
            self.output, _, atom_weights = self.net_g(self.lq, return_degradation=True, return_atom_weights=True)
            log.update(_entropy_log(atom_weights))
        else:
            self.output = self.net_g(self.lq)
        loss, rest_log = self.cri_rest(self.output, self.gt, self.lq)
        self._accumulate_degradation_l1()
        return loss, {**rest_log, **log}, [self.optimizer_g], []

    def _degradation_objective(self) -> tuple[torch.Tensor, dict, list, list]:
        self._check_same_size()
        bare_g = self.get_bare_model(self.net_g)
        # The query path (and with degradation_updates: encoder the encoder) is reached outside DDP's forward: its
        # gradients are averaged across processes by hand, see average_gradients.
        detach = self.settings.degradation_updates == 'query'
        maps, atom_weights = bare_g.query_degradation(self.lq, detach_features=detach, return_atom_weights=True)
        lq_fake = self.net_deg(self.gt, maps)
        loss, log = self.cri_deg(lq_fake, self.lq)
        log.update(_entropy_log(atom_weights))
        shared = self.settings.shared_optimizer_state
        optimizers = [self.optimizer_deg, self.optimizer_g] if shared else [self.optimizer_deg]
        return loss, log, optimizers, self._degradation_reach

    def _joint_objective(self) -> tuple[torch.Tensor, dict, list, list]:
        self._check_same_size()
        self.output, maps, atom_weights = self.net_g(self.lq, return_degradation=True, return_atom_weights=True)
        lq_fake = self.net_deg(self.gt, maps)
        l_rest, rest_log = self.cri_rest(self.output, self.gt, self.lq)
        l_deg, deg_log = self.cri_deg(lq_fake, self.lq)
        self._accumulate_degradation_l1()
        loss = self.joint_degradation_weight * l_deg + l_rest
        return loss, {**rest_log, **deg_log, **_entropy_log(atom_weights)}, [self.optimizer_g, self.optimizer_deg], []

    def _check_same_size(self) -> None:
        if self.lq.shape != self.gt.shape:
            raise ValueError(f'The degradation objective compares net_deg(gt) with lq, so they must have the same '
                             f'shape; got lq {tuple(self.lq.shape)} and gt {tuple(self.gt.shape)}. For '
                             'super-resolution data, resize lq to the gt size (scale: 1) or use mode: off.')

    def _clip_or_measure(self, params: list[nn.Parameter]) -> torch.Tensor:
        if not params:
            return torch.zeros((), device=self.device)
        if self.grad_clip:
            return torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        return torch.nn.utils.get_total_norm([p.grad for p in params])

    def _skip_update(self, current_iter: int, kind: str, loss: torch.Tensor) -> None:
        self.nonfinite_streak += 1
        self.nonfinite_total += 1
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        what = 'loss' if not torch.isfinite(loss) else 'gradient norm'
        get_root_logger().warning(
            f'Iteration {current_iter} ({kind} phase): non-finite {what} on at least one process; update skipped '
            f'({self.nonfinite_streak} in a row, limit train.max_nonfinite_steps = {self.max_nonfinite_steps}).')
        if self.nonfinite_streak >= self.max_nonfinite_steps:
            raise RuntimeError(
                f'Stopping at iteration {current_iter} ({kind} phase): {self.nonfinite_streak} non-finite updates '
                f'in a row (train.max_nonfinite_steps = {self.max_nonfinite_steps}). The weights are those of the '
                'last good step. Check the data for NaN/Inf, lower the learning rate or set '
                'train.bidirectional.grad_clip.')

    def _accumulate_degradation_l1(self) -> None:
        if not self.degradation:
            return
        with torch.no_grad():
            per_sample = (self.output.detach() - self.gt).abs().flatten(1).mean(1).tolist()
        for name, value in zip(self.degradation, per_sample):
            self._degradation_l1[name][0] += value
            self._degradation_l1[name][1] += 1

    def _update_log(self, log: dict[str, torch.Tensor], current_iter: int) -> None:
        # With degradation_every > 1 not every iteration computes l_deg: keep the latest value of each entry.
        self._last_log.update(self.reduce_loss_dict(OrderedDict(log)))
        self.log_dict = OrderedDict(self._last_log)
        self.log_dict['updates_rest'] = self.rest_update_count
        self.log_dict['updates_deg'] = self.deg_update_count
        self.log_dict['lr_g'] = self.optimizer_g.param_groups[0]['lr']
        if self.mode != 'off':
            self.log_dict['lr_deg'] = self.optimizer_deg.param_groups[0]['lr']
        self.log_dict['nonfinite_skips'] = self.nonfinite_total
        if self.amp.scaling:
            self.log_dict['amp_overflow_skips'] = self.amp_overflow_total
        # Per-degradation restoration L1 (this process's samples), averaged since the previous log line.
        for name, (total, count) in sorted(self._degradation_l1.items()):
            self.log_dict[f'l1/{name}'] = total / count
        if current_iter % self.opt.get('logger', {}).get('print_freq', 1) == 0:
            self._degradation_l1.clear()

    # ------------------------------------------------------------------ checkpoints
    def save(self, epoch: int, current_iter: int) -> None:
        if hasattr(self, 'net_deg'):
            self.save_network(self.net_deg, 'net_deg', current_iter)
        super().save(epoch, current_iter)  # net_g (+ EMA), then the training state

    def extra_training_state(self) -> dict:
        # The update counts and the non-finite counters, so a resumed run continues exactly (see resume_training).
        settings = self.settings
        return {'ndr': {'version': STATE_VERSION, 'mode': self.mode,
                        'degradation_updates': settings.degradation_updates,
                        'shared_optimizer_state': settings.shared_optimizer_state,
                        'updates_rest': self.rest_update_count, 'updates_deg': self.deg_update_count,
                        'nonfinite_streak': self.nonfinite_streak, 'nonfinite_total': self.nonfinite_total,
                        'amp': self.amp.state_dict(), 'amp_overflow_total': self.amp_overflow_total}}

    def resume_training(self, resume_state: dict) -> None:
        saved = resume_state.get('ndr', {})
        check_resumable(saved, self.settings)
        if len(resume_state['optimizers']) != len(self.optimizers):
            raise ValueError(f"The training state has {len(resume_state['optimizers'])} optimizers, this model "
                             f'{len(self.optimizers)}: was it saved by a different model_type or network set?')
        super().resume_training(resume_state)
        # States of joint/off runs saved before version 2 performed one restoration update per iteration already.
        default = resume_state['iter']
        self.rest_update_count = saved.get('updates_rest', default)
        self.deg_update_count = saved.get('updates_deg', default if self.mode == 'joint' else 0)
        self.nonfinite_streak = saved.get('nonfinite_streak', 0)
        self.nonfinite_total = saved.get('nonfinite_total', 0)
        self.amp.load_state_dict(saved.get('amp', {}))  # the fp16 loss scale, so the run continues exactly
        self.amp_overflow_total = saved.get('amp_overflow_total', 0)


def _entropy_log(atom_weights: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    # No atom weights without the NDR dictionary (ndr_dictionary: false).
    return {'atom_entropy': atom_usage_entropy(atom_weights)} if atom_weights else {}


def _trainable(net: nn.Module, option_key: str) -> list[nn.Parameter]:
    params = []
    for name, param in net.named_parameters():
        if param.requires_grad:
            params.append(param)
        else:
            get_root_logger().warning(f'{option_key}: parameter {name} will not be optimized.')
    return params


def _network_has_ndr(net: nn.Module) -> bool:
    return callable(getattr(net, 'query_degradation', None)) and bool(getattr(net, 'use_ndr', False))
