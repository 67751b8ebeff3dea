"""PromptIR baseline: registration, official parameter count, official forward, any size, gradients, determinism."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import ndr_plugin  # noqa: F401  (compat layer and registration before BasicSR)
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY
from ndr_plugin.archs.promptir_arch import PromptIR
from official_reference import Downsample as OfficialDownsample
from official_reference import TransformerBlock as OfficialTransformerBlock
from official_reference import Upsample as OfficialUpsample

OFFICIAL_PARAMS = 35_592_263  # PromptIR(decoder=True) of the official net/model.py, the "35.59M" of the papers
OFFICIAL_UNUSED_PARAMS = 215_296  # its six 1x1 convs that forward never calls
RESTORMER_PARAMS = 26_126_644  # Restormer's published default model

TINY = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 4, 8], prompt_dims=[8, 8, 16],
            prompt_sizes=[5, 4, 3], prompt_len=3)


class OfficialPromptGenBlock(nn.Module):
    """Literal PGM of the official code: (1, len, C, S, S) parameter, per-sample copies, sum, resize, conv."""

    def __init__(self, prompt_dim, prompt_len, prompt_size, lin_dim):
        super().__init__()
        self.prompt_param = nn.Parameter(torch.rand(1, prompt_len, prompt_dim, prompt_size, prompt_size))
        self.linear_layer = nn.Linear(lin_dim, prompt_len)
        self.conv3x3 = nn.Conv2d(prompt_dim, prompt_dim, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, x):
        b, _, h, w = x.shape
        weights = F.softmax(self.linear_layer(x.mean(dim=(-2, -1))), dim=1)
        prompt = (weights[:, :, None, None, None] * self.prompt_param.expand(b, -1, -1, -1, -1)).sum(dim=1)
        return self.conv3x3(F.interpolate(prompt, (h, w), mode='bilinear'))


class OfficialPromptIR(nn.Module):
    """The official PromptIR(decoder=True) layout with its key names and its six unused convs.

    Widths the official code writes as numbers (64/128/320 prompts, 192, 224, 512, ...) are expressed through dim and
    the prompt options, so tiny copies can be built; the defaults give the official model.
    """

    def __init__(self, dim=48, num_blocks=(4, 6, 6, 8), num_refinement_blocks=4, heads=(1, 2, 4, 8),
                 prompt_dims=(64, 128, 320), prompt_sizes=(64, 32, 16), prompt_len=5, reduced_prompt_dim=256):
        super().__init__()
        d1, d2, d3, d4 = dim, dim * 2, dim * 4, dim * 8
        p1, p2, p3 = prompt_dims

        def stage(channels, blocks, num_heads):
            return nn.Sequential(*[OfficialTransformerBlock(channels, num_heads, 2.66, False) for _ in range(blocks)])

        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, kernel_size=3, padding=1, bias=False)
        self.prompt1 = OfficialPromptGenBlock(p1, prompt_len, prompt_sizes[0], d2)
        self.prompt2 = OfficialPromptGenBlock(p2, prompt_len, prompt_sizes[1], d3)
        self.prompt3 = OfficialPromptGenBlock(p3, prompt_len, prompt_sizes[2], d4)
        self.chnl_reduce1 = nn.Conv2d(p1, p1, kernel_size=1, bias=False)
        self.chnl_reduce2 = nn.Conv2d(p2, p2, kernel_size=1, bias=False)
        self.chnl_reduce3 = nn.Conv2d(p3, reduced_prompt_dim, kernel_size=1, bias=False)
        self.reduce_noise_channel_1 = nn.Conv2d(d1 + p1, d1, kernel_size=1, bias=False)
        self.encoder_level1 = stage(d1, num_blocks[0], heads[0])
        self.down1_2 = OfficialDownsample(d1)
        self.reduce_noise_channel_2 = nn.Conv2d(d2 + p2, d2, kernel_size=1, bias=False)
        self.encoder_level2 = stage(d2, num_blocks[1], heads[1])
        self.down2_3 = OfficialDownsample(d2)
        self.reduce_noise_channel_3 = nn.Conv2d(d3 + reduced_prompt_dim, d3, kernel_size=1, bias=False)
        self.encoder_level3 = stage(d3, num_blocks[2], heads[2])
        self.down3_4 = OfficialDownsample(d3)
        self.latent = stage(d4, num_blocks[3], heads[3])
        self.up4_3 = OfficialUpsample(d3)
        self.reduce_chan_level3 = nn.Conv2d(d2 + d3, d3, kernel_size=1, bias=False)
        self.noise_level3 = OfficialTransformerBlock(d4 + p3, heads[2], 2.66, False)
        self.reduce_noise_level3 = nn.Conv2d(d4 + p3, d3, kernel_size=1, bias=False)
        self.decoder_level3 = stage(d3, num_blocks[2], heads[2])
        self.up3_2 = OfficialUpsample(d3)
        self.reduce_chan_level2 = nn.Conv2d(d3, d2, kernel_size=1, bias=False)
        self.noise_level2 = OfficialTransformerBlock(d3 + p2, heads[2], 2.66, False)
        self.reduce_noise_level2 = nn.Conv2d(d3 + p2, d3, kernel_size=1, bias=False)
        self.decoder_level2 = stage(d2, num_blocks[1], heads[1])
        self.up2_1 = OfficialUpsample(d2)
        self.noise_level1 = OfficialTransformerBlock(d2 + p1, heads[2], 2.66, False)
        self.reduce_noise_level1 = nn.Conv2d(d2 + p1, d2, kernel_size=1, bias=False)
        self.decoder_level1 = stage(d2, num_blocks[0], heads[0])
        self.refinement = stage(d2, num_refinement_blocks, heads[0])
        self.output = nn.Conv2d(d2, 3, kernel_size=3, padding=1, bias=False)

    def forward(self, inp_img):
        enc1 = self.encoder_level1(self.patch_embed.proj(inp_img))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.latent(self.down3_4(enc3))
        latent = self.reduce_noise_level3(self.noise_level3(torch.cat([latent, self.prompt3(latent)], 1)))
        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        dec3 = self.reduce_noise_level2(self.noise_level2(torch.cat([dec3, self.prompt2(dec3)], 1)))
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        dec2 = self.reduce_noise_level1(self.noise_level1(torch.cat([dec2, self.prompt1(dec2)], 1)))
        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1))
        return self.output(self.refinement(dec1)) + inp_img


_OFFICIAL_PREFIXES = [  # official name -> ours, longest first where one is a prefix of another
    ('patch_embed.proj.', 'patch_embed.'),
    ('prompt3.', 'prompt_latent.generate.'), ('prompt2.', 'prompt_level3.generate.'),
    ('prompt1.', 'prompt_level2.generate.'),
    ('reduce_noise_level3.', 'prompt_latent.interact.reduce.'), ('noise_level3.', 'prompt_latent.interact.block.'),
    ('reduce_noise_level2.', 'prompt_level3.interact.reduce.'), ('noise_level2.', 'prompt_level3.interact.block.'),
    ('reduce_noise_level1.', 'prompt_level2.interact.reduce.'), ('noise_level1.', 'prompt_level2.interact.block.'),
]
_OFFICIAL_INFIXES = [('.body.0.weight', '.conv.weight'), ('.body.weight', '.weight'), ('.body.bias', '.bias'),
                     ('prompt_param', 'components'), ('linear_layer', 'component_weights'), ('conv3x3', 'conv')]


def official_to_ours(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    ours = {}
    for key, value in state_dict.items():
        if key.startswith(('chnl_reduce', 'reduce_noise_channel_')):
            continue
        for old, new in _OFFICIAL_PREFIXES:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        for old, new in _OFFICIAL_INFIXES:
            key = key.replace(old, new)
        ours[key] = value[0] if key.endswith('components') else value
    return ours


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def tiny(seed: int = 0, **overrides) -> PromptIR:
    torch.manual_seed(seed)
    return build_network({'type': 'PromptIR', **TINY, **overrides})


def test_registered_under_its_own_name_and_built_by_basicsr():
    assert ARCH_REGISTRY.get('PromptIR') is PromptIR
    assert isinstance(tiny(), PromptIR)


def test_parameter_count_at_default_settings_matches_official():
    with torch.device('meta'):  # counts shapes only: no weight initialisation, no memory
        official, ours = OfficialPromptIR(), build_network({'type': 'PromptIR'})
        plain = PromptIR(decoder=False)
    assert count(official) == OFFICIAL_PARAMS
    assert count(ours) == OFFICIAL_PARAMS - OFFICIAL_UNUSED_PARAMS == 35_376_967
    assert count(plain) == RESTORMER_PARAMS
    assert not any('prompt' in name for name, _ in plain.named_parameters())


def test_forward_equals_official_forward_with_official_weights():
    torch.manual_seed(1)
    official = OfficialPromptIR(**TINY).eval()
    ours = PromptIR(**TINY).eval()
    ours.load_state_dict(official_to_ours(official.state_dict()), strict=True)
    x = torch.rand(2, 3, 16, 24)  # a multiple of 8: no padding, so both see the same tensor
    with torch.no_grad():
        expected, actual = official(x), ours(x)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('decoder', [True, False])
def test_any_size_restores_to_input_size(decoder):
    net = tiny(decoder=decoder).eval()
    x = torch.rand(1, 3, 17, 33)
    with torch.no_grad():
        out = net(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    # With a zero output conv only the global residual remains: the crop must give back exactly the input.
    nn.init.zeros_(net.output.weight)
    with torch.no_grad():
        assert torch.equal(net(x), x)


def test_gradients_reach_every_parameter():
    net = tiny()
    net(torch.rand(2, 3, 17, 33)).square().mean().backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f'no gradient for {missing}'


def test_deterministic_for_a_seed():
    x = torch.rand(1, 3, 17, 33)
    with torch.no_grad():
        first, again, other = tiny(seed=3)(x), tiny(seed=3)(x), tiny(seed=4)(x)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize('options, message', [
    (dict(out_channels=1), 'out_channels'),
    (dict(heads=[1, 2, 4]), 'num_blocks and heads'),
    (dict(LayerNorm_type='BiasFree'), 'LayerNorm_type'),
    (dict(prompt_dims=[8, 8]), 'prompt_dims'),
    (dict(prompt_dims=[8, 8, 15]), 'heads'),
])
def test_bad_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        tiny(**options)


def test_wrong_channel_count_is_a_clear_error():
    with pytest.raises(ValueError, match=r'PromptIR.*\(B, 3, H, W\)'):
        tiny()(torch.rand(1, 4, 16, 16))
