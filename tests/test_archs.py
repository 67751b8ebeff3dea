"""NDRNet and NDRDegradationNet: sizes, shapes, padding, gradients, the query path, registry, bad inputs, and the
fast paths against the plain operators."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

import ndr_plugin  # noqa: F401  (compat before BasicSR)
from basicsr.archs import build_network
from ndr_plugin.archs import ndr_arch, ndr_degradation_arch
from ndr_plugin.archs.fast_paths import fast_paths_enabled, plain_operators
from ndr_plugin.archs.ndr_arch import NDRNet
from ndr_plugin.archs.ndr_degradation_arch import NDRDegradationNet
from ndr_plugin.archs.ndr_modules import DegradationInjection, DegradationQuery, LowRankCPGate
from ndr_plugin.archs.restormer_blocks import GDFN, MDTA, LayerNorm2d, TransformerBlock
import official_reference

TINY_G = dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2), ffn_expansion_factor=2.0,
              num_atoms=4, atom_dim=8, degradation_dim=8, cp_rank=2)
TINY_DEG = dict(dim=8, degradation_dim=8, cp_rank=2, attention_reduction=4)
OFFICIAL_KEYS = Path(__file__).resolve().parent / 'data' / 'ndr_official_keys.json'



def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture
def tiny_pair():
    torch.manual_seed(0)
    return NDRNet(**TINY_G), NDRDegradationNet(**TINY_DEG)


def test_paper_parameter_counts_equal_official():
    with torch.device('meta'):
        assert count(NDRNet()) == 27_330_315  # includes the 4,096-value NDR, stored once
        assert count(NDRDegradationNet()) == 9_632_169
        ablation = NDRNet(use_ndr=False)
        official = official_reference.NDRN()
    assert count(ablation) == 27_330_315 - 4_096 - 1_308_195  # minus the NDR and the DQ/DI modules
    assert count(official.restoration_net) == 27_330_315 and count(official.degradation_net) == 9_632_169


def test_reference_has_exactly_the_official_keys():
    # data/ndr_official_keys.json: every state_dict key and shape of the official NDRN (mdyao/NDR-Restore at e4e0436),
    # in the official order, so official checkpoints load into the reference with strict=True.
    expected = json.loads(OFFICIAL_KEYS.read_text())
    with torch.device('meta'):
        state = official_reference.NDRN().state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == expected
    assert list(state) == list(expected)


@pytest.mark.parametrize('size', [(16, 16), (17, 33), (3, 5), (1, 1)])
def test_shapes_maps_and_atom_weights(tiny_pair, size):
    net, deg = tiny_pair
    x = torch.rand(2, 3, *size)
    restored, maps, weights = net(x, return_degradation=True, return_atom_weights=True)
    assert restored.shape == x.shape
    padded = [-(-s // 8) * 8 for s in size]
    for level, (degradation_map, atom_weight) in enumerate(zip(maps, weights)):
        assert degradation_map.shape == (2, 8, padded[0] >> level, padded[1] >> level)
        assert atom_weight.shape == (2, 4, padded[0] >> level, padded[1] >> level)
        assert torch.allclose(atom_weight.sum(1), torch.ones(()), atol=1e-6) and atom_weight.min() >= 0
    assert deg(torch.rand(2, 3, *size), maps).shape == x.shape
    restored_only, maps_only = net(x, return_degradation=True)
    assert torch.equal(restored_only, restored) and all(torch.equal(a, b) for a, b in zip(maps_only, maps))


def test_odd_size_is_reflect_padded_and_cropped(tiny_pair):
    net, _ = tiny_pair
    x = torch.rand(1, 3, 17, 33)
    padded = F.pad(x, (0, 7, 0, 7), mode='reflect')
    with torch.no_grad():
        assert torch.equal(net(x), net(padded)[..., :17, :33])
        tiny = torch.rand(1, 3, 3, 5)  # too small to reflect by 5 and 3 pixels: replicate
        assert torch.equal(net(tiny), net(F.pad(tiny, (0, 3, 0, 5), mode='replicate'))[..., :3, :5])


def test_large_odd_image_tiny_config():
    torch.manual_seed(0)
    net = NDRNet(dim=4, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 1, 1), num_atoms=2,
                 atom_dim=4, degradation_dim=4, cp_rank=2).eval()
    x = torch.rand(1, 3, 481, 321)
    with torch.inference_mode():
        restored = net(x)
    assert restored.shape == x.shape and torch.isfinite(restored).all()


def test_gradients_reach_every_parameter(tiny_pair):
    net, deg = tiny_pair
    net.train()
    deg.train()
    lq, gt = torch.rand(2, 3, 16, 24), torch.rand(2, 3, 16, 24)
    restored, maps = net(lq, return_degradation=True)
    loss = F.l1_loss(restored, gt) + F.l1_loss(deg(gt, maps), lq)
    loss.backward()
    for name, param in list(net.named_parameters()) + list(deg.named_parameters()):
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_query_degradation_matches_forward_and_detaches(tiny_pair):
    net, _ = tiny_pair
    x = torch.rand(1, 3, 20, 12)
    _, maps, weights = net(x, return_degradation=True, return_atom_weights=True)
    queried, queried_weights = net.query_degradation(x, return_atom_weights=True)
    for a, b in zip(maps + weights, queried + queried_weights):
        assert torch.allclose(a, b, atol=1e-6)
    net.zero_grad()
    sum(m.square().mean() for m in net.query_degradation(x, detach_features=True)).backward()
    query_path = {id(p) for p in net.degradation_parameters()}
    for name, param in net.named_parameters():
        if id(param) in query_path:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name
    net.zero_grad()
    sum(m.square().mean() for m in net.query_degradation(x)).backward()
    assert net.encoder1[0].attn.qkv.weight.grad.abs().sum() > 0


def test_degradation_parameters_are_the_ndr_and_queries(tiny_pair):
    net, _ = tiny_pair
    names = {name for name, p in net.named_parameters() if any(p is q for q in net.degradation_parameters())}
    assert names == {n for n, _ in net.named_parameters() if n.startswith(('ndr.', 'degradation_queries.'))}
    assert 'ndr.atoms' in names and len(list(net.degradation_parameters())) == len(names)


def test_ablation_without_ndr():
    torch.manual_seed(0)
    net = NDRNet(**TINY_G, use_ndr=False)
    x = torch.rand(1, 3, 16, 16)
    assert net(x).shape == x.shape
    assert not any(name.startswith(('ndr', 'degradation_')) for name, _ in net.named_parameters())
    for call in (lambda: net(x, return_degradation=True), lambda: net.query_degradation(x),
                 lambda: list(net.degradation_parameters())):
        with pytest.raises(ValueError, match=r'use_ndr=False\) has no degradation representation'):
            call()


def test_bad_inputs_give_clear_errors(tiny_pair):
    net, deg = tiny_pair
    with pytest.raises(ValueError, match=r'NDRNet: input must have shape \(B, 3, H, W\), got \(1, 4, 16, 16\)'):
        net(torch.rand(1, 4, 16, 16))
    with pytest.raises(ValueError, match='floating-point'):
        net(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    _, maps = net(torch.rand(1, 3, 16, 16), return_degradation=True)
    with pytest.raises(ValueError, match=r'degradation map 1 has shape \(1, 8, 16, 16\), expected \(1, 8, 32, 32\)'):
        deg(torch.rand(1, 3, 32, 32), maps)
    with pytest.raises(ValueError, match='list of 3 degradation maps'):
        deg(torch.rand(1, 3, 16, 16), maps[:2])
    with pytest.raises(ValueError, match=r'clean must have shape \(B, 3, H, W\)'):
        deg(torch.rand(1, 1, 16, 16), maps)
    with pytest.raises(ValueError, match='num_blocks and heads need 4 values'):
        NDRNet(num_blocks=(1, 1, 1))
    with pytest.raises(ValueError, match=r'level 4 has 64 channels \(dim=8 \* 8\), which heads\[3\]=6 does not'):
        NDRNet(dim=8)
    with pytest.raises(ValueError, match='in_channels and out_channels must be equal'):
        NDRDegradationNet(in_channels=3, out_channels=1)


def test_other_channel_counts():
    torch.manual_seed(0)
    net = NDRNet(**TINY_G, in_channels=1, out_channels=2)
    deg = NDRDegradationNet(**TINY_DEG, in_channels=1, out_channels=1)
    x = torch.rand(1, 1, 12, 20)
    restored, maps = net(x, return_degradation=True)
    assert restored.shape == (1, 2, 12, 20) and deg(x, maps).shape == x.shape


def test_deterministic():
    x = torch.rand(1, 3, 24, 16)
    outputs = []
    for _ in range(2):
        torch.manual_seed(3)
        net = NDRNet(**TINY_G)
        outputs.append(net(x, return_degradation=True))
    assert torch.equal(outputs[0][0], outputs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(outputs[0][1], outputs[1][1]))


def test_build_from_option_dict():
    torch.manual_seed(0)
    net = build_network({'type': 'NDRNet', 'dim': 8, 'num_blocks': [1, 1, 1, 1], 'heads': [1, 1, 1, 1],
                         'num_refinement_blocks': 1, 'num_atoms': 4, 'atom_dim': 8, 'degradation_dim': 8,
                         'cp_rank': 2, 'legacy_residuals': True})
    deg = build_network({'type': 'NDRDegradationNet', 'dim': 8, 'degradation_dim': 8, 'cp_rank': 2,
                         'attention_reduction': 4})
    assert isinstance(net, NDRNet) and isinstance(deg, NDRDegradationNet) and net.legacy_residuals
    x = torch.rand(1, 3, 8, 8)
    _, maps = net(x, return_degradation=True)
    assert deg(x, maps).shape == x.shape
    assert NDRNet.pad_multiple == NDRDegradationNet.pad_multiple == 8


@pytest.mark.parametrize('make_block', [
    lambda: TransformerBlock(16, 2, 2.66, bias=True), lambda: LayerNorm2d(16), lambda: MDTA(16, 4, bias=False),
    lambda: GDFN(16, 2.66, bias=True), lambda: LowRankCPGate(16, rank=3, residual=True)],
    ids=['transformer_block', 'layer_norm', 'mdta', 'gdfn', 'cp_gate'])
def test_blocks_agree_in_both_memory_layouts_and_with_plain_operators(make_block):
    # CPU runs channels-last; other devices keep channels-first, and plain_operators() turns every fast path off:
    # all three must compute the same function.
    torch.manual_seed(0)
    block = make_block()
    x = torch.randn(2, 16, 12, 20, requires_grad=True)
    outputs, grads = [], []
    for layout, plain in ((torch.contiguous_format, False), (torch.channels_last, False), (torch.channels_last, True)):
        block.zero_grad()
        x.grad = None
        with plain_operators() if plain else contextlib.nullcontext():
            out = block(x.contiguous(memory_format=layout))
        out.square().sum().backward()
        outputs.append(out)
        grads.append([x.grad] + [p.grad for p in block.parameters()])
    for other_outputs, other_grads in zip(outputs[1:], grads[1:]):
        assert torch.allclose(outputs[0], other_outputs, atol=1e-5)
        for a, b in zip(grads[0], other_grads):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_query_and_injection_agree_in_both_memory_layouts():
    torch.manual_seed(0)
    query, inject = DegradationQuery(16, 8, 12), DegradationInjection(16, 8, 3)
    atoms = torch.randn(5, 12)
    feature = torch.randn(2, 16, 12, 20)
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        degradation_map, weights = query(feature.contiguous(memory_format=layout), atoms)
        results.append((degradation_map, weights, inject(feature.contiguous(memory_format=layout), degradation_map)))
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-5)


class RecordTorchFunctions(TorchFunctionMode):
    """Records the names of the torch functions the code calls (what a tracing exporter sees), changing nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.add(getattr(func, '__name__', str(func)))
        return func(*args, **(kwargs or {}))


def _called_functions(net: torch.nn.Module, x: torch.Tensor) -> set[str]:
    with RecordTorchFunctions() as recorder:
        net(x)
    return recorder.names


def test_plain_operators_match_the_fast_paths_without_onednn_calls(tiny_pair):
    net, deg = tiny_pair
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        restored, maps = net(x, return_degradation=True)
        degraded = deg(x, maps)
        with plain_operators():
            restored_plain, maps_plain = net(x, return_degradation=True)
            degraded_plain = deg(x, maps_plain)
            plain_calls = _called_functions(net, x)
        fast_calls = _called_functions(net, x)
    assert torch.allclose(restored, restored_plain, atol=1e-5) and torch.allclose(degraded, degraded_plain, atol=1e-5)
    assert all(m.is_contiguous() for m in maps_plain)  # channels-first throughout
    if torch.backends.mkldnn.is_available():
        assert 'mkldnn_convolution' in fast_calls
    assert 'einsum' in fast_calls and 'layer_norm' in fast_calls
    assert not {'mkldnn_convolution', 'einsum', 'layer_norm'} & plain_calls


def test_plain_operators_switch_is_restored_on_exit():
    assert fast_paths_enabled()
    with pytest.raises(RuntimeError, match='inside'):
        with plain_operators():
            with plain_operators():
                assert not fast_paths_enabled()
            assert not fast_paths_enabled()
            raise RuntimeError('inside')
    assert fast_paths_enabled()


def test_channels_first_network_matches(tiny_pair, monkeypatch):
    net, deg = tiny_pair
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        restored, maps = net(x, return_degradation=True)
        degraded = deg(x, maps)
        monkeypatch.setattr(ndr_arch, 'preferred_layout', lambda t: t)
        monkeypatch.setattr(ndr_degradation_arch, 'preferred_layout', lambda t: t)
        restored_nchw, maps_nchw = net(x, return_degradation=True)
        assert not maps_nchw[0].is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(restored, restored_nchw, atol=1e-5)
        assert torch.allclose(degraded, deg(x, maps_nchw), atol=1e-5)


def test_ablation_switches_sizes_and_outputs():
    with torch.device('meta'):
        assert count(NDRNet(ndr_dictionary=False)) == 27_330_315 - 4_096 - 3  # no atoms, no query temperatures
        assert count(NDRNet(injection='concat')) == 26_348_091
        paper = NDRNet()
        assert sum(p.numel() for p in paper.query_encoder_parameters()) == count(paper.embed) + sum(
            count(m) for m in (paper.encoder1, paper.down1, paper.encoder2, paper.down2, paper.encoder3))
    torch.manual_seed(0)
    x = torch.rand(1, 3, 20, 20)
    plain = NDRNet(**TINY_G, ndr_dictionary=False)
    assert not any(k.startswith('ndr.') or (k.endswith('temperature') and 'queries' in k) for k in plain.state_dict())
    restored, maps, weights = plain(x, return_degradation=True, return_atom_weights=True)
    assert restored.shape == x.shape and len(maps) == 3 and weights == []
    assert [p for p in plain.degradation_parameters()] == list(plain.degradation_queries.parameters())
    concat = NDRNet(**TINY_G, injection='concat')
    assert 'degradation_injections.0.fuse.weight' in concat.state_dict()
    concat(x).abs().mean().backward()
    assert all(p.grad is not None for p in concat.parameters())


def test_ablation_switches_refuse_bad_values():
    with pytest.raises(ValueError, match=r"NDRNet: injection must be one of \('cp', 'concat'\), got 'film'"):
        NDRNet(**TINY_G, injection='film')
    with pytest.raises(ValueError, match='with use_ndr=False there is none'):
        NDRNet(**TINY_G, use_ndr=False, ndr_dictionary=False)


def test_no_ndr_backbone_keeps_the_global_residual_of_legacy_residuals():
    backbone = {k: v for k, v in TINY_G.items() if k not in ('num_atoms', 'atom_dim', 'degradation_dim', 'cp_rank')}
    net = NDRNet(**backbone, use_ndr=False, legacy_residuals=True, zero_init_output=True)
    x = torch.rand(1, 3, 20, 20)
    assert torch.equal(net(x), x), 'zero output conv + global residual: the untrained network is the identity'
