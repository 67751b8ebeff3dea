"""The compact NDRNet that ships with the package: its file, its model card, and the default restore path."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import ndr_plugin  # noqa: F401
from ndr_plugin import weights as shipped
from ndr_plugin.checkpoints import torch_load
from ndr_plugin.metrics.standard_sets import load_standard_sets, score_images
from ndr_plugin.options import load_option_file
from ndr_plugin.restore.loading import load_network
from ndr_plugin.restore.restorer import Restorer
from ndr_plugin.weights.card_text import target_rows, write_card
from ndr_plugin.weights.make_card import finished_run, training_seconds

CARD = json.loads(shipped.CARD_JSON.read_text(encoding='utf-8'))


def test_weights_load_strictly_into_the_recipe_network(repo_root):
    recipe = load_option_file(repo_root / 'options' / 'ndr_compact.yml')['network_g']
    net, _ = load_network(shipped.SHIPPED_WEIGHTS, opt=recipe)  # strict: any missing or extra key is an error
    assert sum(p.numel() for p in net.parameters()) == CARD['parameters']
    checkpoint = torch_load(str(shipped.SHIPPED_WEIGHTS))
    assert dict(checkpoint['network_options']) == dict(recipe) == CARD['network_g']
    assert all(torch.isfinite(v.float()).all() for v in checkpoint['params'].values())
    assert shipped.SHIPPED_WEIGHTS.stat().st_size < 8e6  # a few MB of package data


def test_sha256_matches_the_card_and_a_changed_file_is_refused(tmp_path, monkeypatch):
    assert shipped.file_sha256(shipped.SHIPPED_WEIGHTS) == CARD['sha256']
    assert shipped.shipped_weights() == shipped.SHIPPED_WEIGHTS
    assert CARD['sha256'] in shipped.MODEL_CARD.read_text(encoding='utf-8')
    changed = tmp_path / shipped.SHIPPED_WEIGHTS.name
    data = bytearray(shipped.SHIPPED_WEIGHTS.read_bytes())
    data[-100] ^= 0xFF
    changed.write_bytes(bytes(data))
    monkeypatch.setattr(shipped, 'SHIPPED_WEIGHTS', changed)
    with pytest.raises(shipped.ShippedWeightsError, match='is not the'):
        shipped.shipped_weights()


def test_model_card_markdown_is_the_script_output_of_the_card_record(tmp_path):
    regenerated = write_card(CARD, tmp_path / 'MODEL_CARD.md').read_text(encoding='utf-8')
    assert regenerated == shipped.MODEL_CARD.read_text(encoding='utf-8')
    for who, per_set in CARD['scores'].items():
        assert set(per_set) == set(CARD['scores']['input']), who
    for name, rows in CARD['per_image']['ndr'].items():  # the means are the means of the per-image scores
        assert CARD['scores']['ndr'][name]['psnr_aio'] == pytest.approx(
            np.mean([r['psnr_aio'] for r in rows.values()]), abs=1e-9)
    assert len(target_rows(CARD['scores'])) == 4
    manifest = json.loads(shipped.DATA_MANIFEST.read_text(encoding='utf-8'))
    assert len(manifest['images']) == CARD['data']['images']
    assert all(len(img['sha256']) == 64 for img in manifest['images'])
    held_out = {'chelsea.png', 'rocket.png'}
    assert not held_out & {img['file'] for img in manifest['images']}


def test_card_scores_match_a_fresh_scoring_of_a_few_images(shared_data):
    names = ('CBSD68_sigma25', 'Rain100L', 'SOTS_outdoor', 'Set5_x2')
    sets = load_standard_sets(shared_data, names, max_images=2)
    fresh = score_images(Restorer().restore_tensor, sets)
    for name in names:
        for stem, row in fresh[name].items():
            card_row = CARD['per_image']['ndr'][name][stem]
            for metric in ('psnr', 'psnr_aio', 'psnr_ndr', 'ssim_aio'):
                assert row[metric] == pytest.approx(card_row[metric], abs=2e-3), (name, stem, metric)


def test_default_restore_command_uses_the_shipped_model(tmp_path, subprocess_env):
    from skimage import data
    clean = np.ascontiguousarray(data.chelsea()[:160, 100:340])  # a demo held-out photograph, not a training one
    rng = np.random.default_rng(0)
    noisy = np.clip(np.round(clean + rng.normal(0, 25, clean.shape)), 0, 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / 'photo.png'), noisy[..., ::-1])
    proc = subprocess.run([sys.executable, '-m', 'ndr_plugin.restore', '-i', str(tmp_path / 'photo.png'), '-o',
                           str(tmp_path / 'out'), '--precision', 'fp32', '--explain'], env=subprocess_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.splitlines()[0].startswith('Network: the shipped compact NDRNet (ndr_compact.pth')
    restored = cv2.imread(str(tmp_path / 'out' / 'photo.png'))[..., ::-1]
    from basicsr.metrics import calculate_psnr
    assert calculate_psnr(restored, clean, 0) > calculate_psnr(noisy, clean, 0) + 3.0
    explanation = json.loads((tmp_path / 'out' / 'photo.explain.json').read_text())
    assert explanation


def test_default_restore_refuses_options_that_need_explicit_weights(tmp_path, repo_root):
    from ndr_plugin.restore.cli import main
    cv2.imwrite(str(tmp_path / 'photo.png'), np.zeros((16, 16, 3), np.uint8))
    assert main(['-i', str(tmp_path / 'photo.png'), '-o', str(tmp_path / 'out'), '--opt',
                 str(repo_root / 'options' / 'ndr_compact.yml')]) == 2
    assert main(['-i', str(tmp_path / 'photo.png'), '-o', str(tmp_path / 'out'), '--backend', 'onnxruntime']) == 2


def test_make_card_refuses_an_unfinished_run_and_sums_logged_time(tmp_path, repo_root):
    run = tmp_path / 'NDR_compact'
    (run / 'models').mkdir(parents=True)
    (run / 'ndr_compact.yml').write_text((repo_root / 'options' / 'ndr_compact.yml').read_text())
    (run / 'models' / 'net_g_250.pth').write_bytes(b'')
    with pytest.raises(ValueError, match='net_g_4000.pth is missing'):
        finished_run(run)
    # Two log files: a run interrupted after 100 s, then resumed for 50 s.
    (run / 'train_a.log').write_text('2026-01-01 10:00:00,000 INFO: Start training from epoch: 0, iter: 0\n'
                                     '2026-01-01 10:01:40,000 INFO: [x][iter: 100]\n')
    (run / 'train_b.log').write_text('2026-01-01 11:00:00,000 INFO: Resuming training from epoch: 0, iter: 100.\n'
                                     '2026-01-01 11:00:10,500 INFO: Start training from epoch: 0, iter: 100\n'
                                     '2026-01-01 11:01:00,500 INFO: End of training.\n')
    assert training_seconds(run) == pytest.approx(150.0)
