"""PromptIR: a Restormer backbone whose decoder is steered by learned prompts (all-in-one baseline).

Potlapalli, Zamir, Khan and Khan, "PromptIR: Prompting for All-in-One Blind Image Restoration", NeurIPS 2023
(arXiv 2306.13090); official code github.com/va1shn9v/PromptIR (``PromptIR`` in ``net/model.py``). The Restormer
blocks are shared with NDRNet (:mod:`ndr_plugin.archs.restormer_blocks`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F

from ndr_plugin.archs.arch_utils import check_image, pad_to_multiple
from ndr_plugin.archs.recompute import check_flag, set_block_recompute
from ndr_plugin.archs.restormer_blocks import Downsample, TransformerBlock, Upsample, transformer_stage


class PromptGenerationModule(nn.Module):
    """Prompt generation module (PGM): an input-conditioned mixture of learned prompt components.

    Weights over the components come from the feature itself (global average pooling, linear layer, softmax); the
    weighted sum is resized bilinearly to the feature's size and passed through a 3x3 conv.

    Args:
        feature_dim (int): Channels of the decoder feature that conditions the prompt.
        prompt_dim (int): Channels of the prompt.
        prompt_len (int): Number of prompt components.
        prompt_size (int): Height and width of each learned component.
    """

    def __init__(self, feature_dim: int, prompt_dim: int, prompt_len: int, prompt_size: int) -> None:
        super().__init__()
        # Uniform [0, 1) initialisation, as the official code.
        self.components = nn.Parameter(torch.rand(prompt_len, prompt_dim, prompt_size, prompt_size))
        self.component_weights = nn.Linear(feature_dim, prompt_len)
        self.conv = nn.Conv2d(prompt_dim, prompt_dim, kernel_size=3, padding=1, bias=False)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.component_weights(feature.mean(dim=(-2, -1))), dim=1)  # (B, prompt_len)
        # One contraction instead of the official per-sample copy of every component.
        prompt = torch.einsum('bn,nchw->bchw', weights, self.components)
        prompt = F.interpolate(prompt, size=feature.shape[-2:], mode='bilinear', align_corners=False)
        return self.conv(prompt)


class PromptInteractionModule(nn.Module):
    """Prompt interaction module (PIM): concat [feature, prompt], a transformer block, then a 1x1 conv to out_dim.

    The paper draws a 3x3 conv at the end; the official code (and its parameter count) uses a 1x1 conv.

    Args:
        feature_dim (int): Channels of the decoder feature.
        prompt_dim (int): Channels of the prompt.
        out_dim (int): Output channels.
        num_heads (int): Heads of the transformer block; feature_dim + prompt_dim must be divisible by it.
        ffn_expansion_factor (float): GDFN expansion.
        bias (bool): Whether the convolutions have biases.
    """

    def __init__(self, feature_dim: int, prompt_dim: int, out_dim: int, num_heads: int, ffn_expansion_factor: float,
                 bias: bool) -> None:
        super().__init__()
        self.block = TransformerBlock(feature_dim + prompt_dim, num_heads, ffn_expansion_factor, bias)
        self.reduce = nn.Conv2d(feature_dim + prompt_dim, out_dim, kernel_size=1, bias=bias)

    def forward(self, feature: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        return self.reduce(self.block(torch.cat([feature, prompt], dim=1)))


class PromptBlock(nn.Module):
    """A PGM generating a prompt from a decoder feature and a PIM merging the two (one prompt block of the paper).

    Args:
        feature_dim (int): Channels of the decoder feature.
        out_dim (int): Output channels.
        prompt_dim (int): Channels of the prompt.
        prompt_len (int): Number of prompt components.
        prompt_size (int): Height and width of each learned component.
        num_heads (int): Heads of the PIM's transformer block.
        ffn_expansion_factor (float): GDFN expansion.
        bias (bool): Whether the PIM's convolutions have biases.
    """

    def __init__(self, feature_dim: int, out_dim: int, prompt_dim: int, prompt_len: int, prompt_size: int,
                 num_heads: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        self.generate = PromptGenerationModule(feature_dim, prompt_dim, prompt_len, prompt_size)
        self.interact = PromptInteractionModule(feature_dim, prompt_dim, out_dim, num_heads, ffn_expansion_factor,
                                                bias)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.interact(feature, self.generate(feature))


@ARCH_REGISTRY.register()
class PromptIR(nn.Module):
    """PromptIR: 4-level Restormer encoder-decoder with a prompt block after the latent and decoder levels 3 and 2.

    Layout as the official ``net/model.py`` with ``decoder=True``: the prompt block after the latent reduces it to
    4 * dim channels (not 8 * dim as plain Restormer), the level-1 decoder runs at 2 * dim without a 1x1 reduction,
    all three prompt interaction blocks use ``heads[2]`` heads, and the output adds the input (global residual).

    Parameters at the default settings: 35,376,967. The official module counts 35,592,263 (the 35.59M quoted by
    papers): the extra 215,296 sit in six 1x1 convs (``chnl_reduce1-3``, ``reduce_noise_channel_1-3``) that its
    ``forward`` never calls, so they are left out here. ``decoder=False`` removes the prompt blocks and restores the
    plain Restormer decoder (26,126,644 parameters, Restormer's own count); the official code crashes on that path.

    Any input size works: the input is reflect-padded to a multiple of 8 and the output cropped back.

    Args:
        inp_channels (int): Input image channels. Default: 3.
        out_channels (int): Output image channels; must equal inp_channels (global residual). Default: 3.
        dim (int): Channels at level 1; level i has dim * 2^(i-1). Default: 48.
        num_blocks (Sequence[int]): Transformer blocks at levels 1-4 (the decoder mirrors levels 1-3).
            Default: (4, 6, 6, 8).
        num_refinement_blocks (int): Transformer blocks after the decoder. Default: 4.
        heads (Sequence[int]): Attention heads at levels 1-4. Default: (1, 2, 4, 8).
        ffn_expansion_factor (float): GDFN expansion. Default: 2.66.
        bias (bool): Biases in the transformer blocks, the 1x1 convs and the output conv. Default: False.
        LayerNorm_type (str): Only 'WithBias' (the official default) is available. Default: 'WithBias'.
        decoder (bool): Whether the decoder has prompt blocks. Default: True.
        prompt_dims (Sequence[int]): Prompt channels of the three prompt blocks, from the finest (after decoder
            level 2) to the coarsest (after the latent). Default: (64, 128, 320).
        prompt_sizes (Sequence[int]): Height and width of the learned prompt components, same order.
            Default: (64, 32, 16).
        prompt_len (int): Number of prompt components per block. Default: 5.
        checkpoint_blocks (bool): Recompute the transformer blocks in the backward instead of storing their
            activations (ours; :mod:`ndr_plugin.archs.recompute`). Default: False.
    """

    pad_multiple = 8

    def __init__(self, inp_channels: int = 3, out_channels: int = 3, dim: int = 48,
                 num_blocks: Sequence[int] = (4, 6, 6, 8), num_refinement_blocks: int = 4,
                 heads: Sequence[int] = (1, 2, 4, 8), ffn_expansion_factor: float = 2.66, bias: bool = False,
                 LayerNorm_type: str = 'WithBias', decoder: bool = True,  # noqa: N803  (official option name)
                 prompt_dims: Sequence[int] = (64, 128, 320), prompt_sizes: Sequence[int] = (64, 32, 16),
                 prompt_len: int = 5, checkpoint_blocks: bool = False) -> None:
        super().__init__()
        dims = [dim, dim * 2, dim * 4, dim * 8]
        self._check_options(inp_channels, out_channels, num_blocks, heads, LayerNorm_type, decoder, prompt_dims,
                            prompt_sizes, dims)
        self.inp_channels = inp_channels
        self.decoder = decoder

        def stage(channels: int, blocks: int, num_heads: int) -> nn.Sequential:
            return transformer_stage(channels, blocks, num_heads, ffn_expansion_factor, bias)

        def prompt_block(level: int, feature_dim: int, out_dim: int) -> PromptBlock:
            return PromptBlock(feature_dim, out_dim, prompt_dims[level], prompt_len, prompt_sizes[level], heads[2],
                               ffn_expansion_factor, bias)

        self.patch_embed = nn.Conv2d(inp_channels, dim, kernel_size=3, padding=1, bias=False)  # official: never a bias
        # Encoder
        self.encoder_level1 = stage(dims[0], num_blocks[0], heads[0])
        self.down1_2 = Downsample(dims[0])
        self.encoder_level2 = stage(dims[1], num_blocks[1], heads[1])
        self.down2_3 = Downsample(dims[1])
        self.encoder_level3 = stage(dims[2], num_blocks[2], heads[2])
        self.down3_4 = Downsample(dims[2])
        self.latent = stage(dims[3], num_blocks[3], heads[3])
        latent_out = dims[2] if decoder else dims[3]
        # Decoder: [prompt block], upsample, concat skip, 1x1 reduce, transformer blocks
        if decoder:
            self.prompt_latent = prompt_block(2, dims[3], latent_out)
        self.up4_3 = Upsample(latent_out)
        self.reduce_chan_level3 = nn.Conv2d(latent_out // 2 + dims[2], dims[2], kernel_size=1, bias=bias)
        self.decoder_level3 = stage(dims[2], num_blocks[2], heads[2])
        if decoder:
            self.prompt_level3 = prompt_block(1, dims[2], dims[2])
        self.up3_2 = Upsample(dims[2])
        self.reduce_chan_level2 = nn.Conv2d(dims[2], dims[1], kernel_size=1, bias=bias)
        self.decoder_level2 = stage(dims[1], num_blocks[1], heads[1])
        if decoder:
            self.prompt_level2 = prompt_block(0, dims[1], dims[1])
        self.up2_1 = Upsample(dims[1])
        self.decoder_level1 = stage(dims[1], num_blocks[0], heads[0])  # concat [up, skip] stays at 2 * dim
        # Refinement and output
        self.refinement = stage(dims[1], num_refinement_blocks, heads[0])
        self.output = nn.Conv2d(dims[1], out_channels, kernel_size=3, padding=1, bias=bias)
        set_block_recompute(self, check_flag(checkpoint_blocks, 'PromptIR'))

    @staticmethod
    def _check_options(inp_channels: int, out_channels: int, num_blocks: Sequence[int], heads: Sequence[int],
                       layer_norm_type: str, decoder: bool, prompt_dims: Sequence[int], prompt_sizes: Sequence[int],
                       dims: list[int]) -> None:
        if inp_channels != out_channels:
            raise ValueError(f'PromptIR: the output adds the input, so out_channels ({out_channels}) must equal '
                             f'inp_channels ({inp_channels})')
        if len(num_blocks) != 4 or len(heads) != 4:
            raise ValueError(f'PromptIR: num_blocks and heads need 4 values (levels 1-4), got {list(num_blocks)} '
                             f'and {list(heads)}')
        if layer_norm_type != 'WithBias':
            raise ValueError(f"PromptIR: LayerNorm_type must be 'WithBias' (the official default), "
                             f'got {layer_norm_type!r}')
        if not decoder:
            return
        if len(prompt_dims) != 3 or len(prompt_sizes) != 3:
            raise ValueError(f'PromptIR: prompt_dims and prompt_sizes need 3 values (after decoder level 2, decoder '
                             f'level 3, latent), got {list(prompt_dims)} and {list(prompt_sizes)}')
        for feature_dim, prompt_dim in zip(dims[1:], prompt_dims):
            if (feature_dim + prompt_dim) % heads[2]:
                raise ValueError(f'PromptIR: prompt interaction width {feature_dim} + {prompt_dim} (prompt_dims) is '
                                 f'not divisible by heads[2]={heads[2]}')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restores ``x`` (B, inp_channels, H, W); returns (B, out_channels, H, W)."""
        check_image(x, self.inp_channels, 'PromptIR')
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x, self.pad_multiple)
        skip1 = self.encoder_level1(self.patch_embed(padded))
        skip2 = self.encoder_level2(self.down1_2(skip1))
        skip3 = self.encoder_level3(self.down2_3(skip2))
        decoded = self.latent(self.down3_4(skip3))
        if self.decoder:
            decoded = self.prompt_latent(decoded)
        decoded = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(decoded), skip3], dim=1)))
        if self.decoder:
            decoded = self.prompt_level3(decoded)
        decoded = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(decoded), skip2], dim=1)))
        if self.decoder:
            decoded = self.prompt_level2(decoded)
        decoded = self.decoder_level1(torch.cat([self.up2_1(decoded), skip1], dim=1))
        restored = self.output(self.refinement(decoded)) + padded
        return restored[..., :h, :w]
