"""A deliberately literal re-implementation of the official NDR-Restore network, for tests and benchmarks only.

It follows the structure, the operation order and the ``state_dict`` key names of ``models/modules/NDR.py`` and
``models/modules/common.py`` in github.com/mdyao/NDR-Restore (HEAD e4e0436), so that an official checkpoint loads into
it with ``strict=True`` and its forward is the official forward:

* LayerNorm on (B, HW, C) rearranged tensors, MDTA with explicitly normalised q and k, GDFN;
* the low-rank CP transform that materialises the (B, R, C, H, W) product and averages it over the rank;
* the degradation injection that calls ``low_rank_transform1`` twice;
* the NDR registered twice (``degradation_representations`` and ``restoration_net.dr``).

``legacy=True`` restores the four residual connections removed in official commit 7c0bd21, and
``unused_legacy_modules=True`` adds the ``fg_dwconv`` / ``low_rank_transform2`` modules of the code before commit
276ac74 (defined, never used). Sizes the official code hard-codes are arguments here so tests can build tiny copies;
the defaults are the official values.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _tokens(x):  # (B, C, H, W) -> (B, HW, C)
    return x.flatten(2).transpose(1, 2)


def _image(x, h, w):  # (B, HW, C) -> (B, C, H, W)
    return x.transpose(1, 2).reshape(x.shape[0], -1, h, w)


class WithBias_LayerNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        mu = x.mean(-1, keepdim=True)
        sigma = x.var(-1, keepdim=True, unbiased=False)
        return (x - mu) / torch.sqrt(sigma + 1e-5) * self.weight + self.bias


class LayerNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.body = WithBias_LayerNorm(dim)

    def forward(self, x):
        h, w = x.shape[-2:]
        return _image(self.body(_tokens(x)), h, w)


class FeedForward(nn.Module):
    def __init__(self, dim, ffn_expansion_factor, bias):
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x):
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class Attention(nn.Module):
    def __init__(self, dim, num_heads, bias):
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        q, k, v = (t.reshape(b, self.num_heads, c // self.num_heads, h * w) for t in (q, k, v))
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        return self.project_out((attn @ v).reshape(b, c, h, w))


class TransformerBlock(nn.Module):
    def __init__(self, dim, num_heads, ffn_expansion_factor, bias):
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = Attention(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class Downsample(nn.Module):
    def __init__(self, n_feat):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x):
        return self.body(x)


class Upsample(nn.Module):
    def __init__(self, n_feat):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x):
        return self.body(x)


class Degradation_Attention(nn.Module):
    def __init__(self, dim, atom_dim):
        super().__init__()
        self.temperature = nn.Parameter(torch.ones(1))
        self.qkv = nn.Conv2d(dim, atom_dim, kernel_size=1, bias=True)
        self.project_out = nn.Conv2d(atom_dim, dim, kernel_size=1, bias=True)

    def forward(self, x, dr):
        b, c, h, w = x.shape
        q = self.qkv(x).view(b, -1, h * w)
        attn = ((q.transpose(-2, -1) @ dr.transpose(-2, -1)) * self.temperature).softmax(dim=-1)  # (B, HW, atoms)
        out = (attn @ dr).transpose(-2, -1).reshape(b, -1, h, w)
        return self.project_out(out)


class FeedForward_DR(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=True)

    def forward(self, x):
        return self.project_out(x)


class Degradation_recognition(nn.Module):
    def __init__(self, dim, atom_dim):
        super().__init__()
        self.attn = Degradation_Attention(dim, atom_dim)
        self.ffn = FeedForward_DR(dim)

    def forward(self, x, dr):
        return self.ffn(self.attn(x, dr))


class Low_rank_transform(nn.Module):
    def __init__(self, inchn, rank, legacy):
        super().__init__()
        self.rank = rank
        self.legacy = legacy
        self.conv_C = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(inchn, rank * inchn, 1), nn.Sigmoid())
        self.conv_H = nn.Sequential(nn.AdaptiveAvgPool2d((None, 1)), nn.Conv2d(inchn, rank, 1), nn.Sigmoid())
        self.conv_W = nn.Sequential(nn.AdaptiveAvgPool2d((1, None)), nn.Conv2d(inchn, rank, 1), nn.Sigmoid())

    def forward(self, x):
        n = x.shape[0]
        c = self.conv_C(x).view(n, self.rank, -1, 1, 1)
        h = self.conv_H(x).view(n, self.rank, 1, -1, 1)
        w = self.conv_W(x).view(n, self.rank, 1, 1, -1)
        cube = (c * h * w).mean(1)
        return x + x * cube if self.legacy else x * cube


class Degradation_inject(nn.Module):
    def __init__(self, dim, out_n_feat, rank, legacy, unused_legacy_modules):
        super().__init__()
        self.legacy = legacy
        self.conv1 = nn.Conv2d(dim, dim, kernel_size=1, bias=True)
        self.f = nn.Conv2d(dim, out_n_feat, kernel_size=1, bias=True)
        self.g = nn.Conv2d(dim, out_n_feat, kernel_size=1, bias=True)
        if unused_legacy_modules:
            self.fg_dwconv = nn.Conv2d(out_n_feat * 2, out_n_feat * 2, 3, padding=1, groups=2, bias=True)
        self.low_rank_transform1 = Low_rank_transform(dim, rank, legacy)
        if unused_legacy_modules:
            self.low_rank_transform2 = Low_rank_transform(dim, rank, legacy)
        self.low_rank_transform3 = Low_rank_transform(out_n_feat, rank, legacy)

    def forward(self, x, dr):
        res = x
        x = self.low_rank_transform3(x)
        dr = self.conv1(dr)
        f = self.f(self.low_rank_transform1(dr))
        g = self.g(self.low_rank_transform1(dr))
        x = f * x + g
        return x + res if self.legacy else x


class Degradation_representation_learning(nn.Module):
    def __init__(self, in_n_feat, n_feat, atom_dim, rank, legacy, unused_legacy_modules):
        super().__init__()
        self.legacy = legacy
        self.mapping = nn.Conv2d(in_n_feat, n_feat, kernel_size=3, padding=1, bias=False)
        self.degradation_recog = Degradation_recognition(n_feat, atom_dim)
        self.inject_degradation = Degradation_inject(n_feat, in_n_feat, rank, legacy, unused_legacy_modules)

    def forward(self, x, dr):
        feat = x
        info = self.degradation_recog(self.mapping(x), dr)
        out = self.inject_degradation(feat, info)
        return (out + feat if self.legacy else out), info


class DoubleConv(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, x):
        return x + self.conv(x)


class CALayer(nn.Module):
    def __init__(self, channel, reduction):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(nn.Conv2d(channel, channel // reduction, 1), nn.ReLU(inplace=True),
                                     nn.Conv2d(channel // reduction, channel, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.conv_du(self.avg_pool(x))


class RCAB(nn.Module):
    def __init__(self, n_feat, reduction):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat, 3, padding=1), nn.ReLU(True),
                                  nn.Conv2d(n_feat, n_feat, 3, padding=1), CALayer(n_feat, reduction))

    def forward(self, x):
        return self.body(x) + x


class ResidualGroup(nn.Module):
    def __init__(self, n_feat, reduction, n_resblocks):
        super().__init__()
        self.body = nn.Sequential(*[RCAB(n_feat, reduction) for _ in range(n_resblocks)],
                                  nn.Conv2d(n_feat, n_feat, 3, padding=1))

    def forward(self, x):
        return self.body(x) + x


def _unet_forward(net, x, skip_fn):
    """Encoder, three skips from ``skip_fn(level, feature)``, decoder with concat [skip, up] (both networks)."""
    x1_1 = net.block1(net.extractor(x))
    x2_1 = net.block2(net.pool1(x1_1))
    x3_1 = net.block3(net.pool2(x2_1))
    x_bottom = net.bottom(net.pool3(x3_1))
    x_res1, x_res2, x_res3 = skip_fn(1, x1_1), skip_fn(2, x2_1), skip_fn(3, x3_1)
    x_de3 = net.block_up3(torch.cat([x_res3, net.up3(x_bottom)], dim=1))
    x_de2 = net.block_up2(torch.cat([x_res2, net.up2(x_de3)], dim=1))
    x_de1 = net.block_up1(torch.cat([x_res1, net.up1(x_de2)], dim=1))
    return net.reconstruction(net.refinement(x_de1))


class DegradationNet(nn.Module):
    def __init__(self, in_channels=3, out_channels=3, dim=48, n_feat=64, rank=16, reduction=16, n_resblocks=1,
                 legacy=False, unused_legacy_modules=False):
        super().__init__()
        self.extractor = nn.Conv2d(in_channels, dim, kernel_size=3, padding=1)
        self.block1 = DoubleConv(dim)
        self.pool1 = Downsample(dim)
        self.block2 = DoubleConv(dim * 2)
        self.pool2 = Downsample(dim * 2)
        self.block3 = DoubleConv(dim * 4)
        self.pool3 = Downsample(dim * 4)
        self.bottom = DoubleConv(dim * 8)
        for level, channels in ((1, dim), (2, dim * 2), (3, dim * 4)):
            setattr(self, f'inject_degradation{level}',
                    Degradation_inject(n_feat, channels, rank, legacy, unused_legacy_modules))
        self.up3 = Upsample(dim * 8)
        self.block_up3 = nn.Sequential(nn.Conv2d(dim * 8, dim * 4, 1, bias=False), DoubleConv(dim * 4))
        self.up2 = Upsample(dim * 4)
        self.block_up2 = nn.Sequential(nn.Conv2d(dim * 4, dim * 2, 1, bias=False), DoubleConv(dim * 2))
        self.up1 = Upsample(dim * 2)
        self.block_up1 = nn.Sequential(nn.Conv2d(dim * 2, dim * 2, 1, bias=False), DoubleConv(dim * 2))
        self.refinement = ResidualGroup(dim * 2, reduction, n_resblocks)
        self.reconstruction = nn.Conv2d(dim * 2, out_channels, kernel_size=3, padding=1)

    def forward(self, x, x_rep1, x_rep2, x_rep3):
        reps = {1: x_rep1, 2: x_rep2, 3: x_rep3}
        out = _unet_forward(self, x, lambda level, feat: getattr(self, f'inject_degradation{level}')(feat, reps[level]))
        return out + x


class RestorationNet(nn.Module):
    def __init__(self, dr, in_channels=3, out_channels=3, dim=48, num_blocks=(4, 6, 6, 8), num_refinement_blocks=3,
                 heads=(1, 2, 4, 6), ffn_expansion_factor=2.66, bias=False, n_feat=64, rank=16, legacy=False,
                 unused_legacy_modules=False):
        super().__init__()
        self.legacy = legacy
        self.dr = dr  # the NDR parameter of the parent, registered a second time

        def blocks(channels, count, num_heads):
            return [TransformerBlock(channels, num_heads, ffn_expansion_factor, bias) for _ in range(count)]

        atom_dim = dr.shape[-1]
        self.extractor = nn.Conv2d(in_channels, dim, kernel_size=3, padding=1)
        self.block1 = nn.Sequential(*blocks(dim, num_blocks[0], heads[0]))
        self.pool1 = Downsample(dim)
        self.block2 = nn.Sequential(*blocks(dim * 2, num_blocks[1], heads[1]))
        self.pool2 = Downsample(dim * 2)
        self.block3 = nn.Sequential(*blocks(dim * 4, num_blocks[2], heads[2]))
        self.pool3 = Downsample(dim * 4)
        self.bottom = nn.Sequential(*blocks(dim * 8, num_blocks[3], heads[3]))
        for level, channels in ((1, dim), (2, dim * 2), (3, dim * 4)):
            setattr(self, f'res_connect{level}', Degradation_representation_learning(
                channels, n_feat, atom_dim, rank, legacy, unused_legacy_modules))
        self.up3 = Upsample(dim * 8)
        self.block_up3 = nn.Sequential(nn.Conv2d(dim * 8, dim * 4, 1, bias=bias), *blocks(dim * 4, num_blocks[2],
                                                                                            heads[2]))
        self.up2 = Upsample(dim * 4)
        self.block_up2 = nn.Sequential(nn.Conv2d(dim * 4, dim * 2, 1, bias=bias), *blocks(dim * 2, num_blocks[1],
                                                                                            heads[1]))
        self.up1 = Upsample(dim * 2)
        self.block_up1 = nn.Sequential(nn.Conv2d(dim * 2, dim * 2, 1, bias=bias), *blocks(dim * 2, num_blocks[0],
                                                                                            heads[0]))
        self.refinement = nn.Sequential(*blocks(dim * 2, num_refinement_blocks, heads[0]))
        self.reconstruction = nn.Conv2d(dim * 2, out_channels, kernel_size=3, padding=1)

    def forward(self, x):
        reps = {}

        def skip(level, feat):
            out, reps[level] = getattr(self, f'res_connect{level}')(feat, self.dr)
            return out

        out = _unet_forward(self, x, skip)
        if self.legacy:
            out = out + x
        return out, reps[1], reps[2], reps[3]


class NDRN(nn.Module):
    """The official top-level module: NDR + degradation net + restoration net, with stored x_rep (as official)."""

    def __init__(self, num_atoms=32, atom_dim=128, restoration=None, degradation=None):
        super().__init__()
        self.degradation_representations = nn.Parameter(torch.randn(1, num_atoms, atom_dim))
        self.degradation_net = DegradationNet(**(degradation or {}))
        self.restoration_net = RestorationNet(self.degradation_representations, **(restoration or {}))

    def restoration_process(self, lq):
        hq, self.x_rep1, self.x_rep2, self.x_rep3 = self.restoration_net(lq)
        return hq

    def degradation_process(self, hq):
        return self.degradation_net(hq, self.x_rep1, self.x_rep2, self.x_rep3)


TINY_SIZES = dict(num_atoms=4, atom_dim=8, dim=8, n_feat=8, rank=2)


def tiny_official(legacy=False, unused_legacy_modules=False, num_blocks=(1, 2, 1, 2)):
    """A small official-structure model for fast tests: every module type present, every size changed."""
    s = TINY_SIZES
    common = dict(dim=s['dim'], n_feat=s['n_feat'], rank=s['rank'], legacy=legacy,
                  unused_legacy_modules=unused_legacy_modules)
    restoration = dict(common, num_blocks=num_blocks, num_refinement_blocks=1, heads=(1, 2, 2, 4))
    degradation = dict(common, reduction=4, n_resblocks=1)
    return NDRN(s['num_atoms'], s['atom_dim'], restoration, degradation)


def tiny_ours_options():
    """NDRNet / NDRDegradationNet options matching :func:`tiny_official`."""
    s = TINY_SIZES
    net_g = dict(dim=s['dim'], num_blocks=(1, 2, 1, 2), num_refinement_blocks=1, heads=(1, 2, 2, 4),
                 num_atoms=s['num_atoms'], atom_dim=s['atom_dim'], degradation_dim=s['n_feat'], cp_rank=s['rank'])
    net_deg = dict(dim=s['dim'], degradation_dim=s['n_feat'], cp_rank=s['rank'], attention_reduction=4)
    return net_g, net_deg
