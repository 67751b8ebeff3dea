"""Validation shared by NDRModel: whole or tiled images, each metric in its protocol, one row per dataset (and per
degradation inside a mixed dataset), and an average row over all validation sets of a round with its best iteration.
"""
from __future__ import annotations

import math
from collections import defaultdict
from os import path as osp
from typing import Any

import torch
from basicsr.utils import imwrite, tensor2img
from tqdm import tqdm

from ndr_plugin.metrics.evaluation import compute_metrics
from ndr_plugin.tiling import forward_padded, tiled_forward

AVERAGE_ROW = 'average'


class MultiDatasetValidation:
    """Mixin for a BasicSR ``SRModel`` subclass (listed before it): overrides ``test`` and ``nondist_validation``.

    Reads ``self.tile`` (None or (tile_size, tile_overlap, statistics_passes), see :func:`parse_tile`).
    """

    tile: tuple[int, int, int] | None = None

    def test(self) -> None:
        # The bare network (never the DDP wrapper): validation runs on rank 0 alone.
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.get_bare_model(self.net_g)
        was_training = net.training
        net.eval()
        with torch.no_grad():
            if self.tile is None:
                # A network that does not pad itself (SwinIR: window size) gets its multiple from val.pad_multiple.
                multiple = getattr(net, 'pad_multiple', self.opt['val'].get('pad_multiple', 1))
                self.output = forward_padded(net, self.lq, multiple)
            else:
                tile_size, tile_overlap, statistics_passes = self.tile
                self.output = tiled_forward(net, self.lq, tile_size, tile_overlap, statistics_passes=statistics_passes)
        net.train(was_training)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img: bool) -> None:
        dataset_name = dataloader.dataset.opt['name']
        metric_opts = self.opt['val'].get('metrics')
        scores_by_degradation: dict[str | None, list[dict[str, float]]] = defaultdict(list)
        pbar = tqdm(total=len(dataloader), unit='image') if self.opt['val'].get('pbar', False) else None
        for val_data in dataloader:
            img_name = osp.splitext(osp.basename(val_data['lq_path'][0]))[0]
            self.feed_data(val_data)
            self.test()
            if save_img:
                imwrite(tensor2img([self.output.detach().cpu()]),
                        self._visualization_path(dataset_name, img_name, current_iter))
            if metric_opts:
                if 'gt' not in val_data:
                    raise ValueError(f'val.metrics is set but dataset {dataset_name!r} gives no gt images.')
                labels = getattr(self, 'degradation', None)
                degradation = labels[0] if labels else None
                scores_by_degradation[degradation].append(compute_metrics(self.output, self.gt, metric_opts))
                del self.gt
            del self.lq, self.output
            if pbar is not None:
                pbar.update(1)
                pbar.set_description(f'Test {img_name}')
        if pbar is not None:
            pbar.close()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if not metric_opts:
            return
        if len(scores_by_degradation) > 1:
            for degradation, scores in sorted(scores_by_degradation.items(), key=lambda kv: str(kv[0])):
                self._report(f'{dataset_name}/{degradation}', _mean(scores), current_iter, tb_logger)
        dataset_means = _mean([s for scores in scores_by_degradation.values() for s in scores])
        self._report(dataset_name, dataset_means, current_iter, tb_logger)
        self._report_round_average(dataset_means, current_iter, tb_logger)

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


def parse_tile(val_opt: dict) -> tuple[int, int, int] | None:
    """``val.tile`` -> (tile_size, tile_overlap, statistics_passes), or None when absent."""
    tile = val_opt.get('tile')
    if tile is None:
        return None
    if not isinstance(tile, dict) or not isinstance(tile.get('tile_size'), int) or tile['tile_size'] < 1:
        raise ValueError('val.tile must be {tile_size: <positive int>, tile_overlap: <int>, statistics_passes: <int>}, '
                         f'got {tile!r}')
    overlap = tile.get('tile_overlap', 32)
    if not isinstance(overlap, int) or not 0 <= overlap < tile['tile_size']:
        raise ValueError(f'val.tile.tile_overlap must be an integer in [0, tile_size), got {overlap!r}')
    passes = tile.get('statistics_passes', 1)
    if not isinstance(passes, int) or passes < 0:
        raise ValueError(f'val.tile.statistics_passes must be a non-negative integer, got {passes!r}')
    unknown = sorted(set(tile) - {'tile_size', 'tile_overlap', 'statistics_passes'})
    if unknown:
        raise ValueError(f'val.tile: unknown key(s) {unknown}; expected tile_size, tile_overlap, statistics_passes')
    return tile['tile_size'], overlap, passes


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {metric: math.fsum(row[metric] for row in rows) / len(rows) for metric in rows[0]}
