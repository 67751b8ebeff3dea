"""Official checkpoints -> NDRNet / NDRDegradationNet: same outputs as the official forward, every key accounted for.

The official forward is the literal re-implementation in ``official_reference.py``; its state_dict has exactly the
official keys and shapes (checked in test_archs.py against the key list of the official model).
"""
from __future__ import annotations

import os

import pytest
import torch

import ndr_plugin  # noqa: F401  (compat before BasicSR)
from basicsr.archs import build_network
from ndr_plugin.archs.ndr_arch import NDRNet
from ndr_plugin.archs.ndr_degradation_arch import NDRDegradationNet
from ndr_plugin.checkpoints import torch_load
from ndr_plugin.convert_official import (convert_official_state_dict, degradation_path, is_official_state_dict, main,
                                         official_network_options)
import official_reference
from official_reference import tiny_official, tiny_ours_options

TOLERANCE = 1e-4
NDR_KEYS = ('degradation_representations', 'restoration_net.dr')



def randomise(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Default initialisation plus noise on the tensors initialised to constants (norms, temperatures)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if 'norm' in name or 'temperature' in name:
                param.add_(0.2 * torch.randn(param.shape, generator=generator))
    return model.state_dict()


def build_ours(official_sd, legacy):
    g_opt, deg_opt = official_network_options(official_sd)
    return (NDRNet(**g_opt, legacy_residuals=legacy).eval(),
            NDRDegradationNet(**deg_opt, legacy_residuals=legacy).eval())


def load_ours(official_sd, net, deg, keep_bgr=True):
    net_g_sd, net_deg_sd = convert_official_state_dict(official_sd, keep_bgr=keep_bgr)
    net.load_state_dict(net_g_sd, strict=True)
    deg.load_state_dict(net_deg_sd, strict=True)
    return net, deg


def converted(official_sd, legacy, keep_bgr=True):
    return load_ours(official_sd, *build_ours(official_sd, legacy), keep_bgr=keep_bgr)


def official_forward(model, lq, clean):
    """[restored, degradation map 1, 2, 3, degraded] of the official model."""
    with torch.no_grad():
        restored = model.restoration_process(lq)
        return [restored, model.x_rep1, model.x_rep2, model.x_rep3, model.degradation_process(clean)]


def ours_forward(net, deg, lq, clean):
    """[restored, degradation map 1, 2, 3, degraded] of the converted networks."""
    with torch.no_grad():
        restored, maps = net(lq, return_degradation=True)
        return [restored, *maps, deg(clean, maps)]


def max_diff(a, b) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b))


@pytest.mark.parametrize('legacy', [False, True], ids=['current', 'legacy-residuals'])
def test_tiny_conversion_equals_official_forward(legacy):
    torch.manual_seed(0)
    official = tiny_official(legacy=legacy).eval()
    official_sd = randomise(official, 1)
    for inferred, expected in zip(official_network_options(official_sd), tiny_ours_options()):
        expected = {k: list(v) if isinstance(v, tuple) else v for k, v in expected.items()}
        assert {k: inferred[k] for k in expected} == expected
    net, deg = converted(official_sd, legacy)
    lq, clean = torch.rand(2, 3, 32, 24), torch.rand(2, 3, 32, 24)
    expected, got = official_forward(official, lq, clean), ours_forward(net, deg, lq, clean)
    assert max_diff(expected, got) <= TOLERANCE


@pytest.mark.parametrize('legacy', [False, True], ids=['current', 'legacy-residuals'])
def test_paper_size_conversion_equals_official_forward(legacy):
    torch.manual_seed(0)
    official = official_reference.NDRN(restoration=dict(legacy=legacy), degradation=dict(legacy=legacy)).eval()
    official_sd = randomise(official, 2)
    net, deg = converted(official_sd, legacy)
    lq, clean = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    expected, got = official_forward(official, lq, clean), ours_forward(net, deg, lq, clean)
    assert max_diff(expected, got) <= TOLERANCE
    # A few tensors perturbed at paper size change the converted model's output.
    generator = torch.Generator().manual_seed(0)
    keys = [k for k in official_sd if k not in NDR_KEYS]
    for index in torch.randperm(len(keys), generator=generator)[:6].tolist():
        changed = dict(official_sd, **{keys[index]: official_sd[keys[index]] + 0.5})
        assert max_diff(got, ours_forward(*load_ours(changed, net, deg), lq, clean)) > 1e-5, keys[index]


def test_any_size_matches_official_on_reflect_padded_input():
    torch.manual_seed(0)
    official = tiny_official().eval()
    net, deg = converted(randomise(official, 3), legacy=False)
    lq, clean = torch.rand(1, 3, 17, 33), torch.rand(1, 3, 17, 33)
    pad = torch.nn.functional.pad
    expected = official_forward(official, pad(lq, (0, 7, 0, 7), mode='reflect'), pad(clean, (0, 7, 0, 7),
                                                                                      mode='reflect'))
    got = ours_forward(net, deg, lq, clean)
    assert max_diff([expected[0][..., :17, :33], expected[4][..., :17, :33]], [got[0], got[4]]) <= TOLERANCE


def test_rgb_conversion_flips_channels():
    torch.manual_seed(0)
    official = tiny_official(legacy=True).eval()  # with the global residual: the flip must still be exact
    official_sd = randomise(official, 4)
    net, deg = converted(official_sd, legacy=True, keep_bgr=False)
    bgr_lq, bgr_clean = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    expected = official_forward(official, bgr_lq, bgr_clean)
    got = ours_forward(net, deg, bgr_lq.flip(1), bgr_clean.flip(1))
    assert max_diff([expected[0].flip(1), expected[4].flip(1)], [got[0], got[4]]) <= TOLERANCE


def test_every_official_tensor_is_used():
    torch.manual_seed(0)
    official = tiny_official(num_blocks=(1, 1, 1, 1)).eval()  # every tensor kind; the block indices are checked above
    official_sd = randomise(official, 5)
    lq, clean = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    net, deg = converted(official_sd, legacy=False)
    with torch.no_grad():
        restored, maps = net(lq, return_degradation=True)
        degraded = deg(clean, maps)
    generator = torch.Generator().manual_seed(6)
    for name in (k for k in official_sd if k != 'restoration_net.dr'):
        noise = torch.randn(official_sd[name].shape, generator=generator)
        changed = dict(official_sd, **{name: official_sd[name] + noise})
        if name == 'degradation_representations':
            changed['restoration_net.dr'] = changed[name]  # one parameter in the official model
        load_ours(changed, net, deg)
        with torch.no_grad():  # restoration tensors change the restored image, degradation tensors the degraded
            change = (deg(clean, maps) - degraded if name.startswith('degradation_net.') else net(lq) - restored)
        assert change.abs().max() > 0, name  # deterministic: an unused tensor changes nothing at all


def test_checkpoint_variants_are_accepted():
    torch.manual_seed(0)
    legacy_file = tiny_official(unused_legacy_modules=True).eval()
    official_sd = randomise(legacy_file, 7)
    assert any('fg_dwconv' in k for k in official_sd) and any('low_rank_transform2' in k for k in official_sd)
    net_g_sd, net_deg_sd = convert_official_state_dict(official_sd, keep_bgr=True)
    assert not any('fg_dwconv' in k or 'low_rank_transform2' in k for k in list(net_g_sd) + list(net_deg_sd))
    # model_L.pth style: DataParallel prefix, no degradation_net, and only one of the two NDR keys.
    restoration_only = {f'module.{k}': v for k, v in official_sd.items()
                        if not k.startswith('degradation_net.') and k != 'degradation_representations'}
    assert is_official_state_dict(restoration_only)
    g_only, deg_none = convert_official_state_dict(restoration_only, keep_bgr=True)
    assert deg_none is None and g_only.keys() == net_g_sd.keys()
    assert all(torch.equal(g_only[k], net_g_sd[k]) for k in g_only)
    assert not is_official_state_dict(net_g_sd) and not is_official_state_dict({'params': net_g_sd})
    with pytest.raises(ValueError, match='Not an official NDR-Restore checkpoint'):
        convert_official_state_dict({'params': net_g_sd})


def test_bad_checkpoints_give_clear_errors():
    torch.manual_seed(0)
    official_sd = tiny_official().state_dict()
    with pytest.raises(ValueError, match=r'no counterpart.*restoration_net\.block1\.0\.attn\.extra'):
        convert_official_state_dict(dict(official_sd, **{'restoration_net.block1.0.attn.extra': torch.zeros(1)}))
    with pytest.raises(ValueError, match=r'outside restoration_net.*optimizer'):
        convert_official_state_dict(dict(official_sd, optimizer=torch.zeros(1)))
    missing = {k: v for k, v in official_sd.items() if 'block_up2.1.ffn.dwconv' not in k}
    with pytest.raises(ValueError, match=r'missing: decoder2\.0\.ffn\.dwconv\.weight'):
        convert_official_state_dict(missing)
    different = dict(official_sd, **{'restoration_net.dr': official_sd['restoration_net.dr'] + 1})
    with pytest.raises(ValueError, match='two different NDR tensors'):
        convert_official_state_dict(different)
    wrong = dict(official_sd, **{'restoration_net.up2.body.0.weight': torch.zeros(1, 1, 3, 3)})
    with pytest.raises(ValueError, match=r'wrong shape: up2\.conv\.weight'):
        convert_official_state_dict(wrong)


def test_command_line(tmp_path, capsys):
    torch.manual_seed(0)
    official = tiny_official(legacy=True).eval()
    official_sd = randomise(official, 8)
    source, target = tmp_path / 'official.pth', tmp_path / 'out' / 'ndr.pth'
    torch.save({f'module.{k}': v for k, v in official_sd.items()}, source)
    assert main([str(source), str(target), '--legacy-residuals']) == 0
    printed = capsys.readouterr().out
    assert str(target) in printed and degradation_path(str(target)) in printed
    assert sorted(os.listdir(target.parent)) == ['ndr.pth', 'ndr_deg.pth']  # no temporary files left
    nets = []
    for path in (target, degradation_path(str(target))):
        saved = torch_load(str(path))
        net = build_network(saved['network_options']).eval()
        net.load_state_dict(saved['params'], strict=True)
        nets.append(net)
    assert nets[0].legacy_residuals and nets[1].degradation_injections[0].legacy_residuals
    bgr_lq, bgr_clean = torch.rand(1, 3, 16, 8), torch.rand(1, 3, 16, 8)
    expected = official_forward(official, bgr_lq, bgr_clean)
    got = ours_forward(*nets, bgr_lq.flip(1), bgr_clean.flip(1))
    assert max_diff([expected[0].flip(1), expected[4].flip(1)], [got[0], got[4]]) <= TOLERANCE
    assert main([str(tmp_path / 'absent.pth'), str(target)]) == 1
    assert 'absent.pth' in capsys.readouterr().err
