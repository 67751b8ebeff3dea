"""NDRNet: the restoration network of NDR-Restore.

Yao et al., "Neural Degradation Representation Learning for All-In-One Image Restoration", IEEE TIP 2024
(arXiv 2310.12848); official code github.com/mdyao/NDR-Restore (``RestorationNet`` in ``models/modules/NDR.py``).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from ndr_plugin.archs.arch_utils import check_image, pad_to_multiple
from ndr_plugin.archs.fast_paths import PointwiseConv2d, preferred_layout
from ndr_plugin.archs.ndr_modules import (
    ConcatInjection,
    DegradationInjection,
    DegradationQuery,
    NeuralDegradationRepresentation,
)
from ndr_plugin.archs.recompute import check_flag, set_block_recompute
from ndr_plugin.archs.restormer_blocks import Downsample, Upsample, transformer_stage

NO_NDR_MESSAGE = 'NDRNet(use_ndr=False) has no degradation representation'
INJECTIONS = ('cp', 'concat')


@ARCH_REGISTRY.register()
class NDRNet(nn.Module):
    """Restormer-style 4-level encoder-decoder whose skip connections carry NDR degradation injection.

    At encoder levels 1-3, a DegradationQuery turns the feature into a degradation map by querying the NDR atoms, and
    a DegradationInjection modulates the feature with that map; the result replaces the skip connection (decoder
    input: concat [skip, upsampled]). The three maps also drive :class:`NDRDegradationNet`.

    Any input size works: the input is reflect-padded to a multiple of ``pad_multiple`` and the output cropped back.

    Args:
        in_channels (int): Input image channels. Default: 3.
        out_channels (int): Output image channels. Default: 3.
        dim (int): Channels at level 1; level i has dim * 2^(i-1). Default: 48.
        num_blocks (Sequence[int]): Transformer blocks at levels 1-4 (the decoder mirrors levels 1-3).
            Default: (4, 6, 6, 8).
        num_refinement_blocks (int): Transformer blocks after the decoder. Default: 3.
        heads (Sequence[int]): Attention heads at levels 1-4. Default: (1, 2, 4, 6).
        ffn_expansion_factor (float): GDFN expansion. Default: 2.66.
        bias (bool): Biases in the transformer blocks and resizing convs. Default: False.
        use_ndr (bool): False gives the same backbone with plain skip connections (ablation). Default: True.
        num_atoms (int): NDR atoms. Default: 32.
        atom_dim (int): Length of each NDR atom. Default: 128.
        degradation_dim (int): Channels of the degradation maps. Default: 64.
        cp_rank (int): Rank of the low-rank CP gates. Default: 16.
        legacy_residuals (bool): The four residual connections of the official code before commit 7c0bd21 (CP gate
            x + x*T, injection f*x + g + x, query block out + feature, global output + input), for checkpoints
            trained with that variant. Without the NDR path (``use_ndr=False``) only the global residual applies,
            so a no-NDR baseline can keep the same backbone. Default: False.
        zero_init_output (bool): Start the output convolution at zero. With ``legacy_residuals`` the untrained
            network is then exactly the identity and only learns the correction, which small models trained for a
            few hundred iterations (the demo) need. Default: False (PyTorch's initialisation, as the official code).
        ndr_dictionary (bool): False is our "no dictionary" ablation: the queries predict the degradation maps from
            the features directly, without attending to NDR atoms (no ``ndr.atoms``, no atom weights). Default: True.
        injection (str): ``cp`` (the paper's DI with low-rank CP gates) or ``concat``, our "no CP injection"
            ablation: each map is concatenated to its feature and fused by a 1x1 conv. Default: 'cp'.
        checkpoint_blocks (bool): Recompute the transformer blocks in the backward instead of storing their
            activations (ours; :mod:`ndr_plugin.archs.recompute`): less training memory, same gradients.
            Default: False.
    """

    pad_multiple = 8

    def __init__(self, in_channels: int = 3, out_channels: int = 3, dim: int = 48,
                 num_blocks: Sequence[int] = (4, 6, 6, 8), num_refinement_blocks: int = 3,
                 heads: Sequence[int] = (1, 2, 4, 6), ffn_expansion_factor: float = 2.66, bias: bool = False,
                 use_ndr: bool = True, num_atoms: int = 32, atom_dim: int = 128, degradation_dim: int = 64,
                 cp_rank: int = 16, legacy_residuals: bool = False, zero_init_output: bool = False,
                 ndr_dictionary: bool = True, injection: str = 'cp', checkpoint_blocks: bool = False) -> None:
        super().__init__()
        self._check_options(in_channels, out_channels, dim, num_blocks, heads, legacy_residuals)
        self._check_ablations(use_ndr, ndr_dictionary, injection)
        dims = [dim, dim * 2, dim * 4, dim * 8]
        self.in_channels = in_channels
        self.use_ndr = use_ndr
        self.ndr_dictionary = use_ndr and ndr_dictionary
        self.legacy_residuals = legacy_residuals

        def stage(channels: int, blocks: int, num_heads: int) -> nn.Sequential:
            return transformer_stage(channels, blocks, num_heads, ffn_expansion_factor, bias)

        self.embed = nn.Conv2d(in_channels, dim, kernel_size=3, padding=1)
        # Encoder
        self.encoder1 = stage(dims[0], num_blocks[0], heads[0])
        self.down1 = Downsample(dims[0])
        self.encoder2 = stage(dims[1], num_blocks[1], heads[1])
        self.down2 = Downsample(dims[1])
        self.encoder3 = stage(dims[2], num_blocks[2], heads[2])
        self.down3 = Downsample(dims[2])
        self.latent = stage(dims[3], num_blocks[3], heads[3])
        # Neural degradation representation, queried and injected at levels 1-3
        if use_ndr:
            if ndr_dictionary:
                self.ndr = NeuralDegradationRepresentation(num_atoms, atom_dim)
            self.degradation_queries = nn.ModuleList(
                DegradationQuery(c, degradation_dim, atom_dim, ndr_dictionary) for c in dims[:3])
            self.degradation_injections = nn.ModuleList(
                DegradationInjection(c, degradation_dim, cp_rank, legacy_residuals) if injection == 'cp'
                else ConcatInjection(c, degradation_dim, legacy_residuals) for c in dims[:3])
        # Decoder: concat [skip, upsampled], 1x1 reduce, transformer blocks
        self.up3 = Upsample(dims[3])
        self.reduce3 = PointwiseConv2d(dims[3], dims[2], bias=bias)
        self.decoder3 = stage(dims[2], num_blocks[2], heads[2])
        self.up2 = Upsample(dims[2])
        self.reduce2 = PointwiseConv2d(dims[2], dims[1], bias=bias)
        self.decoder2 = stage(dims[1], num_blocks[1], heads[1])
        self.up1 = Upsample(dims[1])
        self.reduce1 = PointwiseConv2d(dims[1], dims[1], bias=bias)  # level 1 stays at 2 * dim
        self.decoder1 = stage(dims[1], num_blocks[0], heads[0])
        # Refinement and output
        self.refinement = stage(dims[1], num_refinement_blocks, heads[0])
        self.output = nn.Conv2d(dims[1], out_channels, kernel_size=3, padding=1)
        if zero_init_output:
            nn.init.zeros_(self.output.weight)
            nn.init.zeros_(self.output.bias)
        set_block_recompute(self, check_flag(checkpoint_blocks, 'NDRNet'))

    @staticmethod
    def _check_options(in_channels: int, out_channels: int, dim: int, num_blocks: Sequence[int], heads: Sequence[int],
                       legacy_residuals: bool) -> None:
        if len(num_blocks) != 4 or len(heads) != 4:
            raise ValueError(f'NDRNet: num_blocks and heads need 4 values (levels 1-4), got {list(num_blocks)} '
                             f'and {list(heads)}')
        if legacy_residuals and in_channels != out_channels:
            raise ValueError('NDRNet: legacy_residuals adds the input to the output, so it needs in_channels == '
                             f'out_channels, got {in_channels} and {out_channels}')
        for level, num_heads in enumerate(heads):
            channels = dim * 2 ** level
            if channels % num_heads:
                raise ValueError(f'NDRNet: level {level + 1} has {channels} channels (dim={dim} * {2 ** level}), '
                                 f'which heads[{level}]={num_heads} does not divide')

    @staticmethod
    def _check_ablations(use_ndr: bool, ndr_dictionary: bool, injection: str) -> None:
        if injection not in INJECTIONS:
            raise ValueError(f'NDRNet: injection must be one of {INJECTIONS}, got {injection!r}')
        if not use_ndr and (not ndr_dictionary or injection != 'cp'):
            raise ValueError('NDRNet: ndr_dictionary and injection ablate parts of the NDR path; with use_ndr=False '
                             'there is none, so leave them at their defaults')

    def _encode(self, padded: torch.Tensor) -> list[torch.Tensor]:
        """Features of encoder levels 1-3."""
        feature1 = self.encoder1(self.embed(padded))
        feature2 = self.encoder2(self.down1(feature1))
        feature3 = self.encoder3(self.down2(feature2))
        return [feature1, feature2, feature3]

    def _query(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        atoms = self.ndr.atoms if self.ndr_dictionary else None
        answers = [query(feature, atoms) for query, feature in zip(self.degradation_queries, features)]
        return [answer[0] for answer in answers], [answer[1] for answer in answers if answer[1] is not None]

    def _require_ndr(self) -> None:
        if not self.use_ndr:
            raise ValueError(NO_NDR_MESSAGE)

    def forward(self, x: torch.Tensor, return_degradation: bool = False, return_atom_weights: bool = False):
        """Restores ``x`` (B, in_channels, H, W).

        Returns the restored image (B, out_channels, H, W); with ``return_degradation`` also the three degradation
        maps (B, degradation_dim, Hp / 2^i, Wp / 2^i) at the padded size Hp x Wp; with ``return_atom_weights`` as
        well the atom weights (B, num_atoms, Hp / 2^i, Wp / 2^i), which sum to 1 over the atoms (an empty list
        with ``ndr_dictionary=False``).
        """
        if return_degradation or return_atom_weights:
            self._require_ndr()
        check_image(x, self.in_channels, 'NDRNet')
        h, w = x.shape[-2:]
        padded = preferred_layout(pad_to_multiple(x, self.pad_multiple))
        features = self._encode(padded)
        latent = self.latent(self.down3(features[2]))
        if self.use_ndr:
            maps, atom_weights = self._query(features)
            skips = [inject(feature, degradation_map) for inject, feature, degradation_map
                     in zip(self.degradation_injections, features, maps)]
            if self.legacy_residuals:
                skips = [skip + feature for skip, feature in zip(skips, features)]
        else:
            skips = features
        decoded = self.decoder3(self.reduce3(torch.cat([skips[2], self.up3(latent)], dim=1)))
        decoded = self.decoder2(self.reduce2(torch.cat([skips[1], self.up2(decoded)], dim=1)))
        decoded = self.decoder1(self.reduce1(torch.cat([skips[0], self.up1(decoded)], dim=1)))
        restored = self.output(self.refinement(decoded))
        if self.legacy_residuals:
            restored = restored + padded
        restored = restored[..., :h, :w].contiguous()
        if return_atom_weights:
            return restored, maps, atom_weights
        if return_degradation:
            return restored, maps
        return restored

    def query_degradation(self, x: torch.Tensor, detach_features: bool = False, return_atom_weights: bool = False):
        """Degradation maps of ``x`` from encoder levels 1-3 and the queries only (no decoder).

        With ``detach_features`` no gradient reaches the encoder, only the NDR and the query modules (the encoder then
        runs without building a graph). Returns the maps, or (maps, atom_weights) with ``return_atom_weights``.
        """
        self._require_ndr()
        check_image(x, self.in_channels, 'NDRNet')
        padded = preferred_layout(pad_to_multiple(x, self.pad_multiple))
        with torch.set_grad_enabled(torch.is_grad_enabled() and not detach_features):
            features = self._encode(padded)
        maps, atom_weights = self._query(features)
        return (maps, atom_weights) if return_atom_weights else maps

    def degradation_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the query path: the NDR atoms (if any) and the three degradation queries."""
        self._require_ndr()
        if self.ndr_dictionary:
            yield from self.ndr.parameters()
        yield from self.degradation_queries.parameters()

    def query_encoder_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the encoder up to the level-3 query (embedding, levels 1-3, the two downsamplings between
        them): what a degradation loss also reaches when the features are not detached."""
        self._require_ndr()
        for module in (self.embed, self.encoder1, self.down1, self.encoder2, self.down2, self.encoder3):
            yield from module.parameters()
