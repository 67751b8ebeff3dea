"""checkpoint_blocks: recomputing the blocks in the backward gives the plain forward's outputs and gradients."""
from __future__ import annotations

import pytest
import torch

import ndr_plugin  # noqa: F401  (compat + registration before BasicSR)
from basicsr.archs import build_network
from ndr_plugin.archs.recompute import RecomputableBlock

TOLERANCE = 1e-6
TINY = {
    'NDRNet': dict(dim=8, num_blocks=[1, 2, 1, 1], heads=[1, 2, 1, 1], num_refinement_blocks=1, num_atoms=8,
                   atom_dim=16, degradation_dim=8, cp_rank=4),
    'PromptIR': dict(dim=8, num_blocks=[1, 1, 1, 2], num_refinement_blocks=1, heads=[1, 1, 2, 2],
                     ffn_expansion_factor=2.0, prompt_dims=[8, 16, 32], prompt_sizes=[16, 8, 4], prompt_len=2),
    'NDRDegradationNet': dict(dim=8, degradation_dim=8, cp_rank=4, attention_reduction=4),
}


def forward_backward(net: torch.nn.Module, name: str, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
    if name == 'NDRDegradationNet':
        maps = [torch.rand(x.shape[0], 8, x.shape[2] >> level, x.shape[3] >> level, generator=torch.Generator()
                           .manual_seed(level), requires_grad=True) for level in range(3)]
        out = net(x, maps)
    else:
        out = net(x)
    (out * torch.linspace(0, 1, out.numel()).view_as(out)).sum().backward()  # every pixel weighted differently
    return out.detach(), {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize('name', list(TINY))
def test_checkpointed_blocks_give_the_same_gradients(name):
    torch.manual_seed(0)
    plain = build_network({'type': name, **TINY[name]}).train()
    checkpointed = build_network({'type': name, **TINY[name], 'checkpoint_blocks': True}).train()
    checkpointed.load_state_dict(plain.state_dict())
    blocks = [m for m in checkpointed.modules() if isinstance(m, RecomputableBlock)]
    assert blocks and all(block.recompute for block in blocks)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    out_plain, grads_plain = forward_backward(plain, name, x)
    out_ckpt, grads_ckpt = forward_backward(checkpointed, name, x)
    assert torch.allclose(out_plain, out_ckpt, atol=TOLERANCE, rtol=0)
    assert grads_plain.keys() == grads_ckpt.keys()
    for key, grad in grads_plain.items():
        error = (grads_ckpt[key] - grad).norm() / grad.norm().clamp_min(1e-12)
        assert error < TOLERANCE, f'{name}.{key}: relative gradient error {error:.2e}'


def test_checkpoint_blocks_must_be_a_boolean():
    with pytest.raises(ValueError, match="PromptIR: checkpoint_blocks must be true or false, got 'yes'"):
        build_network({'type': 'PromptIR', **TINY['PromptIR'], 'checkpoint_blocks': 'yes'})
