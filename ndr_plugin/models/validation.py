"""Validation shared by NDRModel: whole or tiled images, each metric in its protocol, one row per dataset (and per
degradation inside a mixed dataset), and an average row over all validation sets of a round with its best iteration.

An image whose output has NaN/Inf pixels is neither scored nor saved: a warning names it, an error line after its
dataset's row counts such images, and that dataset stays out of the round's average. When testing (``ndr-test``),
validation then raises :class:`~ndr_plugin.restore.restorer.NonFiniteOutputError`, so the run does not end with
exit status 0; during training it only logs, since the training loop has its own guard against non-finite steps.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from os import path as osp
from typing import Any

import torch
from basicsr.utils import get_root_logger, imwrite, tensor2img
from tqdm import tqdm

from ndr_plugin.metrics.evaluation import compute_metrics
from ndr_plugin.restore.restorer import NonFiniteOutputError
from ndr_plugin.restore.tiling import TileSettings, forward_padded, tiled_forward

AVERAGE_ROW = 'average'
TILE_KEYS = ('size', 'overlap', 'passes')
TILE_OPTION_NAMES = tuple(f'val.tile.{key}' for key in TILE_KEYS)
RENAMED_TILE_KEYS = {'tile_size': 'size', 'tile_overlap': 'overlap', 'statistics_passes': 'passes'}
SHOWN_NAMES = 5


class MultiDatasetValidation:
    """Mixin for a BasicSR ``SRModel`` subclass (listed before it): overrides ``test`` and ``nondist_validation``.

    Reads ``self.tile`` (None or a :class:`TileSettings`, see :func:`parse_tile`).
    """

    tile: TileSettings | None = None

    def test(self) -> None:
        # The bare network (never the DDP wrapper): validation runs on rank 0 alone.
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.get_bare_model(self.net_g)
        was_training = net.training
        net.eval()
        with torch.no_grad():
            if self.tile is None or self.tile.whole_image:
                # A network that does not pad itself (SwinIR: window size) gets its multiple from val.pad_multiple.
                multiple = getattr(net, 'pad_multiple', self.opt['val'].get('pad_multiple', 1))
                self.output = forward_padded(net, self.lq, multiple)
            else:
                self.output = tiled_forward(net, self.lq, self.tile)
        net.train(was_training)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img: bool) -> None:
        dataset_name = dataloader.dataset.opt['name']
        metric_opts = self.opt['val'].get('metrics')
        scores_by_degradation: dict[str | None, list[dict[str, float]]] = defaultdict(list)
        nonfinite: list[str] = []
        pbar = tqdm(total=len(dataloader), unit='image') if self.opt['val'].get('pbar', False) else None
        for val_data in dataloader:
            img_name = osp.splitext(osp.basename(val_data['lq_path'][0]))[0]
            if metric_opts and 'gt' not in val_data:
                raise ValueError(f'val.metrics is set but dataset {dataset_name!r} gives no gt images.')
            self.feed_data(val_data)
            self.test()
            if not bool(torch.isfinite(self.output).all()):
                nonfinite.append(img_name)
                get_root_logger().warning(f'Validation {dataset_name}: image {img_name} gave a non-finite output '
                                          '(NaN/Inf); it is neither scored nor saved.')
            else:
                self._score_and_save(dataset_name, img_name, current_iter, save_img, metric_opts,
                                     scores_by_degradation)
            for name in ('lq', 'gt', 'output'):
                if hasattr(self, name):
                    delattr(self, name)
            if pbar is not None:
                pbar.update(1)
                pbar.set_description(f'Test {img_name}')
        if pbar is not None:
            pbar.close()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if metric_opts and scores_by_degradation:
            self._report_dataset(dataset_name, scores_by_degradation, current_iter, tb_logger, counted=not nonfinite)
        if nonfinite:
            self._report_nonfinite(dataset_name, nonfinite, len(dataloader))

    def _score_and_save(self, dataset_name: str, img_name: str, current_iter: Any, save_img: bool,
                        metric_opts: dict | None, scores_by_degradation: dict) -> None:
        if save_img:
            imwrite(tensor2img([self.output.detach().cpu()]),
                    self._visualization_path(dataset_name, img_name, current_iter))
        if metric_opts:
            labels = getattr(self, 'degradation', None)
            degradation = labels[0] if labels else None
            scores_by_degradation[degradation].append(compute_metrics(self.output, self.gt, metric_opts))

    def _report_dataset(self, dataset_name: str, scores_by_degradation: dict, current_iter: Any, tb_logger,
                        counted: bool) -> None:
        if len(scores_by_degradation) > 1:
            for degradation, scores in sorted(scores_by_degradation.items(), key=lambda kv: str(kv[0])):
                self._report(f'{dataset_name}/{degradation}', _mean(scores), current_iter, tb_logger)
        dataset_means = _mean([s for scores in scores_by_degradation.values() for s in scores])
        self._report(dataset_name, dataset_means, current_iter, tb_logger)
        if counted:
            self._report_round_average(dataset_means, current_iter, tb_logger)

    def _report_nonfinite(self, dataset_name: str, names: list[str], total: int) -> None:
        shown = ', '.join(names[:SHOWN_NAMES]) + (', ...' if len(names) > SHOWN_NAMES else '')
        scored = 'the metrics above are over the other images' if len(names) < total else 'no metrics'
        message = (f'Validation {dataset_name}: {len(names)} of {total} image(s) gave non-finite output (NaN/Inf): '
                   f'{shown}. The checkpoint or input produced NaN/Inf; {scored}, and {dataset_name} is left out '
                   'of the average.')
        get_root_logger().error(message)
        if not self.opt['is_train']:
            raise NonFiniteOutputError(message)

    def _visualization_path(self, dataset_name: str, img_name: str, current_iter: Any) -> str:
        # BasicSR's layout: per image during training, per dataset (with val.suffix or the run name) when testing.
        if self.opt['is_train']:
            return osp.join(self.opt['path']['visualization'], img_name, f'{img_name}_{current_iter}.png')
        suffix = self.opt['val'].get('suffix') or self.opt['name']
        return osp.join(self.opt['path']['visualization'], dataset_name, f'{img_name}_{suffix}.png')

    def _report(self, row: str, means: dict[str, float], current_iter: Any, tb_logger) -> None:
        self._initialize_best_metric_results(row)
        for metric, value in means.items():
            self._update_best_metric_result(row, metric, value, current_iter)
        self.metric_results = means
        self._log_validation_metric_values(current_iter, row, tb_logger)

    def _report_round_average(self, dataset_means: dict[str, float], current_iter: Any, tb_logger) -> None:
        # BasicSR validates the loaders one after another with the same current_iter: once the last one of a round
        # is in, log the mean over datasets (each counts once, as the AVERAGE column of the papers' tables).
        phases = ('val',) if self.opt['is_train'] else ('val', 'test')
        expected = len([k for k in self.opt['datasets'] if k.split('_')[0] in phases])
        round_iter, rows = getattr(self, '_val_round', (None, []))
        if round_iter != current_iter:
            rows = []
        rows.append(dataset_means)
        self._val_round = (current_iter, rows)
        if len(rows) == expected and expected > 1:
            self._report(AVERAGE_ROW, _mean(rows), current_iter, tb_logger)
            self._val_round = (None, [])


def _tile_multiple(val_opt: Mapping, network_g: Mapping | None) -> int:
    """The size multiple of ``network_g``'s class (its ``pad_multiple``), else ``val.pad_multiple``, else 1."""
    from basicsr.utils.registry import ARCH_REGISTRY
    arch = None
    if isinstance(network_g, Mapping) and network_g.get('type') in ARCH_REGISTRY:
        arch = ARCH_REGISTRY.get(network_g['type'])
    return getattr(arch, 'pad_multiple', val_opt.get('pad_multiple', 1))


def parse_tile(val_opt: Mapping, network_g: Mapping | None = None) -> TileSettings | None:
    """``val.tile: {size, overlap, passes}`` -> :class:`TileSettings` checked against ``network_g``'s size multiple,
    or None when absent. Size 0 validates whole images."""
    tile = val_opt.get('tile')
    if tile is None:
        return None
    expected = 'val.tile must be {size: <pixels, 0 = whole image>, overlap: <pixels>, passes: <int>}'
    if not isinstance(tile, Mapping):
        raise ValueError(f'{expected}, got {tile!r}')
    for old, new in RENAMED_TILE_KEYS.items():
        if old in tile:
            raise ValueError(f'val.tile.{old} is now val.tile.{new} ({expected})')
    unknown = sorted(set(tile) - set(TILE_KEYS))
    if unknown or 'size' not in tile:
        raise ValueError(f'{expected}; got {dict(tile)!r}' + (f' with unknown key(s) {unknown}' if unknown else ''))
    settings = TileSettings(**{key: tile[key] for key in TILE_KEYS if key in tile}, names=TILE_OPTION_NAMES)
    if not settings.whole_image:
        settings.size_for(_tile_multiple(val_opt, network_g))
    return settings


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {metric: math.fsum(row[metric] for row in rows) / len(rows) for metric in rows[0]}
