"""spandrel recognises our checkpoints once ``ndr_plugin.spandrel_support`` is imported, and reproduces Restorer."""
from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import spandrel
import torch

import ndr_plugin.spandrel_support as spandrel_support
from ndr_plugin.archs.ndr_arch import NDRNet
from ndr_plugin.archs.promptir_arch import PromptIR
from ndr_plugin.convert_official import main as convert_main
from ndr_plugin.restore.restorer import Restorer
from official_reference import tiny_official
from test_convert_official import randomise

TINY_NDR = dict(dim=8, num_blocks=[1, 2, 1, 1], heads=[1, 2, 1, 2], num_refinement_blocks=2, num_atoms=8,
                atom_dim=16, degradation_dim=8, cp_rank=4, ffn_expansion_factor=2.0, bias=True)
TINY_PROMPTIR = dict(dim=8, num_blocks=[1, 1, 2, 1], num_refinement_blocks=1, heads=[1, 1, 2, 2],
                     prompt_dims=[8, 8, 16], prompt_sizes=[8, 4, 4], prompt_len=3)
TOLERANCE = 1e-5
# Sizes of parts that use_ndr=False / decoder=False leave out: nothing in the weights to read them from.
UNUSED_WITHOUT_NDR_OR_PROMPTS = {'num_atoms', 'atom_dim', 'degradation_dim', 'cp_rank', 'prompt_dims', 'prompt_sizes',
                                 'prompt_len'}


def _same_output(descriptor, weights) -> float:
    x = torch.rand(1, 3, 37, 29, generator=torch.Generator().manual_seed(0))
    return (descriptor(x) - Restorer(weights).restore_tensor(x)).abs().max().item()


@pytest.mark.parametrize('net_class, options', [
    (NDRNet, TINY_NDR), (NDRNet, dict(TINY_NDR, use_ndr=False)), (NDRNet, dict(TINY_NDR, ndr_dictionary=False)),
    (NDRNet, dict(TINY_NDR, injection='concat')), (PromptIR, TINY_PROMPTIR),
    (PromptIR, dict(TINY_PROMPTIR, decoder=False))],
    ids=['ndrnet', 'ndrnet-no-ndr', 'ndrnet-no-dictionary', 'ndrnet-concat-injection', 'promptir',
         'promptir-no-decoder'])
def test_basicsr_checkpoint_is_recognised(tmp_path, net_class, options):
    torch.manual_seed(0)
    ema = net_class(**options)
    path = tmp_path / 'net_g_latest.pth'
    torch.save({'params': net_class(**options).state_dict(), 'params_ema': ema.state_dict(),
                'network_options': {'type': net_class.__name__, **options}}, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        descriptor = spandrel.ModelLoader().load_from_file(path)
    expect_warning = net_class is NDRNet  # legacy_residuals (also the global residual without the NDR)
    assert sum('legacy_residuals leaves no trace' in str(w.message) for w in caught) == expect_warning
    assert isinstance(descriptor, spandrel.ImageModelDescriptor)
    assert (descriptor.scale, descriptor.input_channels, descriptor.purpose) == (1, 3, 'Restoration')
    assert type(descriptor.model) is net_class
    read = (spandrel_support.ndrnet_options if net_class is NDRNet else spandrel_support.promptir_options)(
        ema.state_dict())
    assert {key: read[key] for key in options if key in read} == {k: v for k, v in options.items() if k in read}
    assert set(options) - set(read) <= UNUSED_WITHOUT_NDR_OR_PROMPTS
    assert read.get('ndr_dictionary', True) == options.get('ndr_dictionary', True)
    assert read.get('injection', 'cp') == options.get('injection', 'cp')
    torch.testing.assert_close(descriptor.model.state_dict(), ema.state_dict())  # params_ema, as our loader
    assert _same_output(descriptor, path) < TOLERANCE


def test_converted_and_raw_official_checkpoints(tmp_path):
    torch.manual_seed(0)
    official = tiny_official(legacy=True).eval()
    torch.save(randomise(official, 1), tmp_path / 'official.pth')
    assert convert_main([str(tmp_path / 'official.pth'), str(tmp_path / 'ndr.pth'), '--legacy-residuals']) == 0
    descriptor = spandrel_support.load_from_file(tmp_path / 'ndr.pth')  # reads network_options: no warning
    assert descriptor.model.legacy_residuals
    assert _same_output(descriptor, tmp_path / 'ndr.pth') < TOLERANCE
    with pytest.warns(UserWarning, match='legacy_residuals leaves no trace .* set to False'):
        raw = spandrel.ModelLoader().load_from_file(tmp_path / 'official.pth')
    assert not raw.model.legacy_residuals
    torch.testing.assert_close(raw.model.state_dict(), descriptor.model.state_dict())  # converted to RGB alike


def test_install_is_idempotent_and_takes_a_registry():
    assert spandrel_support.install() == []
    registry = spandrel.ArchRegistry()
    assert [support.architecture.name for support in spandrel_support.install(registry)] == ['NDRNet', 'PromptIR']


def test_missing_spandrel_gives_install_hint(subprocess_env):
    script = "import sys; sys.modules['spandrel'] = None\nimport ndr_plugin.spandrel_support"
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=subprocess_env,
                            timeout=60)
    assert result.returncode != 0
    assert "needs the optional package 'spandrel', which is not installed: pip install 'ndr_plugin[spandrel]'" \
        in result.stderr
