"""Validation and ``ndr-test`` with a checkpoint whose output is NaN: named, not scored, not saved, not exit 0."""
from __future__ import annotations

import subprocess
import sys

import torch
import yaml

from ndr_plugin.archs.ndr_arch import NDRNet
from tiny_data import TINY_NDRNET, tiny_test_options


def test_ndr_test_with_nan_weights_fails_and_names_the_images(tmp_path, repo_root, subprocess_env):
    net = NDRNet(**{k: v for k, v in TINY_NDRNET.items() if k != 'type'})
    broken = {key: torch.full_like(value, float('nan')) for key, value in net.state_dict().items()}
    torch.save({'params_ema': broken}, tmp_path / 'nan.pth')
    opt_path = tiny_test_options(tmp_path, 'nan_test', str(tmp_path / 'nan.pth'))
    opt = yaml.safe_load(opt_path.read_text())
    opt['model_type'] = 'NDRModel'
    opt_path.write_text(yaml.safe_dump(opt, sort_keys=False))
    result = subprocess.run([sys.executable, '-m', 'ndr_plugin.test', '-opt', str(opt_path)], cwd=tmp_path,
                            env=subprocess_env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert 'Validation tiny_test: image noise_0000 gave a non-finite output (NaN/Inf)' in output
    assert 'Validation tiny_test: 2 of 2 image(s) gave non-finite output (NaN/Inf): noise_0000, noise_0001' in output
    assert 'The checkpoint or input produced NaN/Inf; no metrics' in output
    assert 'psnr: nan' not in output.lower()
    assert not list((tmp_path / 'results').rglob('*.png'))
