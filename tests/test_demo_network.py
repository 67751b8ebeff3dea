"""The demo's tiny NDRNet starts as the identity (global residual + zero output convolution) and still trains."""
import torch

import ndr_plugin  # noqa: F401
from basicsr.archs import build_network
from ndr_plugin.demo import BASELINES, TINY_NDRNET


def test_demo_network_starts_as_identity_and_learns():
    torch.manual_seed(0)
    net = build_network(dict(TINY_NDRNET))
    x = torch.rand(2, 3, 40, 44)
    assert torch.equal(net(x), x)
    loss = (net(x) - x.flip(-1)).abs().mean()
    loss.backward()
    assert net.output.weight.grad.abs().sum() > 0
    plain = build_network(dict(TINY_NDRNET, zero_init_output=False))
    assert not torch.allclose(plain(x), x)
    for options in BASELINES.values():
        assert build_network(dict(options))(x).shape == x.shape
