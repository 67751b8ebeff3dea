"""``ndr-export`` and ``ndr-restore --backend onnxruntime``: tiny NDRNet / PromptIR checkpoints exported to ONNX and run
by onnxruntime (CPU) next to PyTorch at several sizes, the CLI on a folder, and the clear errors."""
from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import onnx
import pytest
import torch

from ndr_plugin.archs.ndr_arch import NDRNet
from ndr_plugin.archs.promptir_arch import PromptIR
from ndr_plugin.export import ExportError, export_onnx, main as export_main
from ndr_plugin.restore.cli import main as restore_main
from ndr_plugin.restore.image_io import read_image
from ndr_plugin.restore.onnx_backend import OnnxNetwork, OnnxRestorer
from ndr_plugin.restore.restorer import Restorer
from skimage import data as skdata

TINY_NDR = dict(dim=8, num_blocks=[1, 1, 1, 1], heads=[1, 1, 1, 1], num_refinement_blocks=1, num_atoms=8,
                atom_dim=16, degradation_dim=8, cp_rank=4, legacy_residuals=True, bias=True)
TINY_PROMPTIR = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1],
                     prompt_dims=[8, 8, 16], prompt_sizes=[8, 4, 4], prompt_len=2)
SIZES = ((40, 48), (37, 53), (4, 21))  # a multiple of 8, two that are not; 4 px is too small to reflect-pad
TOLERANCE = 1e-4


def _checkpoint(folder, net_class, options, seed=0):
    torch.manual_seed(seed)
    path = folder / f'{net_class.__name__}.pth'
    torch.save({'params': net_class(**options).state_dict(),
                'network_options': {'type': net_class.__name__, **options}}, path)
    return path


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """Tiny checkpoints and their ONNX files: NDRNet with the default (dynamo) exporter, PromptIR with torchscript."""
    folder = tmp_path_factory.mktemp('onnx')
    ndr = _checkpoint(folder, NDRNet, TINY_NDR)
    promptir = _checkpoint(folder, PromptIR, TINY_PROMPTIR)
    export_onnx(ndr, folder / 'ndr.onnx')
    export_onnx(promptir, folder / 'promptir.onnx', exporter='torchscript', verify=False)
    return {'NDRNet': (ndr, folder / 'ndr.onnx'), 'PromptIR': (promptir, folder / 'promptir.onnx')}


@pytest.mark.parametrize('name', ['NDRNet', 'PromptIR'])
def test_onnxruntime_matches_pytorch_at_any_size(exported, name):
    weights, onnx_path = exported[name]
    net = Restorer(weights).net
    onnx_net = OnnxNetwork(onnx_path)
    generator = torch.Generator().manual_seed(1)
    for h, w in SIZES:
        x = torch.rand(1, 3, h, w, generator=generator)
        with torch.no_grad():
            expected = net(x)
        got = onnx_net(x)
        assert got.shape == expected.shape
        assert (got - expected).abs().max().item() < TOLERANCE, (name, h, w)
    model = onnx.load(str(onnx_path))
    assert {p.key: p.value for p in model.metadata_props}['ndr_plugin.network'] == name


def test_restore_cli_with_onnxruntime_on_a_folder(exported, tmp_path, capsys):
    weights, onnx_path = exported['NDRNet']
    photos = tmp_path / 'in'
    photos.mkdir()
    rgb = skdata.astronaut()[40:112, 150:246]
    cv2.imwrite(str(photos / 'rgb16.png'), rgb[..., ::-1].astype(np.uint16) * 257)
    cv2.imwrite(str(photos / 'gray.png'), skdata.camera()[:72, :96])
    alpha = np.tile(np.linspace(0, 255, 96).astype(np.uint8), (72, 1))
    cv2.imwrite(str(photos / 'logo.png'), np.dstack([rgb[..., ::-1], alpha]))
    for flags, out in ((['--tile', '0'], 'whole'), (['--tile', '48', '--tile-overlap', '16'], 'tiled')):
        assert restore_main(['-i', str(photos), '-o', str(tmp_path / out), '--weights', str(onnx_path), *flags]) == 0
    assert 'ONNX file' in capsys.readouterr().out
    torch_restorer = Restorer(weights)
    for name in ('rgb16.png', 'gray.png', 'logo.png'):
        source = read_image(photos / name)
        whole = read_image(tmp_path / 'whole' / name)
        assert whole.dtype == source.dtype and whole.shape == source.shape
        if name == 'logo.png':
            np.testing.assert_array_equal(whole[..., 3], source[..., 3])
        expected = torch_restorer.restore(source)
        assert np.abs(whole.astype(np.int64) - expected.astype(np.int64)).max() <= 1  # rounding of the last bit
        assert read_image(tmp_path / 'tiled' / name).shape == source.shape


def test_onnx_backend_errors(exported, tmp_path, capsys):
    weights, onnx_path = exported['NDRNet']
    with pytest.raises(ValueError, match='float32 file .* ndr-export --fp16'):
        OnnxRestorer(onnx_path, half=True)
    with pytest.raises(ValueError, match='precision fp16: .* is a float32 file .* ndr-export --fp16'):
        OnnxRestorer(onnx_path, precision='fp16')
    assert OnnxRestorer(onnx_path, precision='auto').precision == 'fp32'
    with pytest.raises(ValueError, match='tile_passes 1: the onnxruntime backend cannot share'):
        OnnxRestorer(onnx_path, tile=64, tile_passes=1)
    cv2.imwrite(str(tmp_path / 'a.png'), skdata.camera()[:40, :40])
    base = ['-i', str(tmp_path), '-o', str(tmp_path / 'o')]
    assert restore_main([*base, '--weights', str(onnx_path), '--tile-passes', '2']) == 2
    assert '--tile-passes 2: the onnxruntime backend' in capsys.readouterr().err
    assert restore_main([*base, '--weights', str(weights), '--backend', 'onnxruntime']) == 2
    assert 'needs an exported .onnx file' in capsys.readouterr().err
    assert restore_main([*base, '--weights', str(onnx_path), '--explain']) == 2
    assert '--explain needs the torch backend' in capsys.readouterr().err


def test_export_errors(exported, tmp_path, capsys):
    weights, _ = exported['NDRNet']
    with pytest.raises(ExportError, match='--opset 13 is too old'):
        export_onnx(weights, tmp_path / 'a.onnx', opset=13)
    with pytest.raises(ExportError, match='--fp16 needs --exporter dynamo'):
        export_onnx(weights, tmp_path / 'a.onnx', fp16=True, exporter='torchscript')
    other = dict(TINY_NDR, dim=16)
    with pytest.raises(ValueError, match='weights do not fit network_g'):
        export_onnx(weights, tmp_path / 'a.onnx', opt={'network_g': {'type': 'NDRNet', **other}})
    with pytest.raises(ExportError, match='cannot be exported; ndr-export supports NDRNet, PromptIR'):
        torch.manual_seed(0)
        from ndr_plugin.archs.ndr_degradation_arch import NDRDegradationNet
        deg = NDRDegradationNet(dim=8, degradation_dim=8, cp_rank=4)
        torch.save({'params': deg.state_dict()}, tmp_path / 'deg.pth')
        export_onnx(tmp_path / 'deg.pth', tmp_path / 'a.onnx',
                    opt={'network_g': {'type': 'NDRDegradationNet', 'dim': 8, 'degradation_dim': 8, 'cp_rank': 4}})
    assert export_main(['--weights', str(weights), '--out', str(tmp_path / 'a.onnx'), '--opset', '11']) == 2
    assert 'ndr-export: error: ExportError: --opset 11 is too old' in capsys.readouterr().err
    assert not list(tmp_path.glob('*.onnx')) and not list(tmp_path.glob('.*.tmp'))  # nothing half-written


@pytest.mark.parametrize('module', ['onnxruntime', 'onnxscript'])
def test_missing_optional_package_gives_install_hint(exported, module, subprocess_env, tmp_path):
    weights, onnx_path = exported['NDRNet']
    command = ('from ndr_plugin.export import main; main(["--weights", r"%s", "--out", r"%s"])' % (weights,
               tmp_path / 'x.onnx') if module == 'onnxscript' else
               'from ndr_plugin.restore.cli import main; main(["-i", r"%s", "-o", r"%s", "--weights", r"%s"])'
               % (tmp_path, tmp_path / 'o', onnx_path))
    script = f'import sys; sys.modules[{module!r}] = None\n{command}'
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=subprocess_env,
                            timeout=120)
    assert f"needs the optional package '{module}', which is not installed: pip install 'ndr_plugin[onnx]'" \
        in result.stderr


@pytest.mark.parametrize('switch', [{'ndr_dictionary': False}, {'injection': 'concat'}, {'use_ndr': False}],
                         ids=['no-dictionary', 'concat-injection', 'no-ndr'])
def test_ablation_switches_export_and_match(switch, tmp_path):
    options = dict(TINY_NDR, **switch)
    if not options.get('use_ndr', True):
        options = {k: v for k, v in options.items() if k not in ('num_atoms', 'atom_dim', 'degradation_dim', 'cp_rank')}
    weights = _checkpoint(tmp_path, NDRNet, options)
    export_onnx(weights, tmp_path / 'ablation.onnx', exporter='torchscript', verify=False)
    net, onnx_net = Restorer(weights).net, OnnxNetwork(tmp_path / 'ablation.onnx')
    x = torch.rand(1, 3, 37, 53, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = net(x)
    assert (torch.as_tensor(onnx_net(x)) - expected).abs().max().item() < TOLERANCE
