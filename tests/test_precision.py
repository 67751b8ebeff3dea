"""Inference precision: the choices, the errors, ``auto``'s pick, and ndr-restore's --precision / --half."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata

import ndr_plugin  # noqa: F401  (compat before BasicSR)
from ndr_plugin.archs.ndr_arch import NDRNet
from ndr_plugin.restore.cli import main as restore_main
from ndr_plugin.restore.precision import auto_precision, cpu_has_native_bf16, resolve_precision
from ndr_plugin.restore.restorer import Restorer

TINY_NDR = dict(dim=8, num_blocks=[1, 1, 1, 1], heads=[1, 1, 1, 1], num_refinement_blocks=1, num_atoms=8,
                atom_dim=16, degradation_dim=8, cp_rank=4)
CPU = torch.device('cpu')


@pytest.fixture(scope='module')
def tiny_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp('precision')
    torch.manual_seed(0)
    torch.save({'params': NDRNet(**TINY_NDR).state_dict(), 'network_options': {'type': 'NDRNet', **TINY_NDR}},
               folder / 'net_g.pth')
    lines = ['network_g:', '  type: NDRNet'] + [f'  {key}: {value}' for key, value in TINY_NDR.items()]
    (folder / 'tiny.yml').write_text('\n'.join(lines) + '\n')
    return folder / 'net_g.pth', folder / 'tiny.yml'


def test_cpu_choices_and_errors():
    assert resolve_precision('fp32', CPU) == torch.float32
    assert resolve_precision('bf16', CPU) == torch.bfloat16
    assert resolve_precision('fp32', CPU, half=True) == torch.bfloat16  # the old switch on the CPU
    assert resolve_precision('auto', CPU) == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
    assert auto_precision(CPU) == ('bf16' if cpu_has_native_bf16() else 'fp32')
    with pytest.raises(ValueError, match='precision fp16 is not available on the CPU'):
        resolve_precision('fp16', CPU)
    with pytest.raises(ValueError, match=r"precision must be one of .* got 'half'"):
        resolve_precision('half', CPU)
    with pytest.raises(ValueError, match='either half .* or precision bf16'):
        resolve_precision('bf16', CPU, half=True)


def test_restorer_defaults_to_fp32_and_bf16_stays_close(tiny_weights):
    weights, opt = tiny_weights
    image = skdata.astronaut()[:64, :64]
    full = Restorer(weights, opt=opt)
    assert full.precision == 'fp32' and next(full.net.parameters()).dtype == torch.float32
    bf16 = Restorer(weights, opt=opt, precision='bf16', tile=48, tile_overlap=16)
    assert bf16.precision == 'bf16' and next(bf16.net.parameters()).dtype == torch.bfloat16
    difference = np.abs(bf16.restore(image).astype(np.float32) - full.restore(image).astype(np.float32))
    assert difference.mean() < 2.
    with pytest.raises(ValueError, match='fp16 is not available on the CPU'):
        Restorer(weights, opt=opt, precision='fp16')


def test_cli_precision_flags(tiny_weights, tmp_path, capsys):
    weights, opt = tiny_weights
    cv2.imwrite(str(tmp_path / 'a.png'), skdata.astronaut()[:40, :40, ::-1])
    base = ['-i', str(tmp_path / 'a.png'), '-o', str(tmp_path / 'out'), '--weights', str(weights), '--opt', str(opt),
            '--device', 'cpu', '--tile', '0']
    assert restore_main(base) == 0
    assert f'(cpu, {auto_precision(CPU)}, tile off)' in capsys.readouterr().out
    assert restore_main([*base, '--half']) == 0
    assert '(cpu, bf16, tile off)' in capsys.readouterr().out
    assert restore_main([*base, '--half', '--precision', 'fp32']) == 2
    assert 'either --half (the old switch) or --precision fp32' in capsys.readouterr().err
    assert restore_main([*base, '--precision', 'fp16']) == 2
    assert '--precision fp16 is not available on the CPU' in capsys.readouterr().err
