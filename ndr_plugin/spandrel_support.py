"""NDRNet and PromptIR for spandrel (github.com/chaiNNer-org/spandrel): importing this module registers them.

    >>> import ndr_plugin.spandrel_support  # or ndr_plugin.spandrel_support.install(registry)
    >>> import spandrel
    >>> model = spandrel.ModelLoader().load_from_file('net_g_latest.pth')   # an ImageModelDescriptor, scale 1
    >>> restored = model(image)   # (1, 3, H, W) in [0, 1], any H and W

Registration follows spandrel-extra-arches: one :class:`spandrel.ArchSupport` per architecture added to
``spandrel.MAIN_REGISTRY`` (``install`` takes another registry too; adding twice is harmless).

Recognised files: BasicSR checkpoints of this plugin (spandrel unwraps ``params_ema``, else ``params``, as our loader
does), files written by ``python -m ndr_plugin.convert_official``, and official NDR-Restore checkpoints (converted to
RGB on the fly, as :mod:`ndr_plugin.restore.loading` does). The network options are read off the weights (dim,
blocks, heads, FFN expansion, bias, use_ndr, atoms, degradation_dim, CP rank; PromptIR's prompt sizes). One NDRNet
option leaves no trace in the weights: ``legacy_residuals``. spandrel hands an architecture the unwrapped state_dict
only, so the ``network_options`` stored beside the weights are out of its reach: ``ModelLoader`` builds
``legacy_residuals=False`` and warns; :func:`load_from_file` reads the file's ``network_options`` and takes it from
there (and warns only when the file has none).

The descriptor runs the network as :class:`~ndr_plugin.restore.restorer.Restorer` does without tiles (the network
pads to its multiple of 8 itself, so no size requirement is declared); tiling is marked discouraged because the
attention and CP gates use whole-image statistics.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ndr_plugin.restore.onnx_backend import import_optional

spandrel = import_optional('spandrel', 'ndr_plugin.spandrel_support', extra='spandrel')

StateDict = dict[str, torch.Tensor]
NDRNET_KEYS = ('embed.weight', 'encoder1.0.attn.temperature', 'latent.0.attn.temperature', 'reduce1.weight',
               'decoder1.0.attn.temperature', 'refinement.0.attn.temperature', 'output.weight')
PROMPTIR_KEYS = ('patch_embed.weight', 'encoder_level1.0.attn.temperature', 'latent.0.attn.temperature',
                 'reduce_chan_level3.weight', 'decoder_level1.0.attn.temperature', 'refinement.0.attn.temperature',
                 'output.weight')
TRACELESS_DEFAULTS = {'legacy_residuals': False}


def _count(state_dict: Mapping, prefix: str) -> int:
    """Number of consecutive blocks ``prefix.0``, ``prefix.1``, ... in the state_dict."""
    count = 0
    while any(key.startswith(f'{prefix}.{count}.') for key in state_dict):
        count += 1
    return count


def _ffn_expansion_factor(state_dict: Mapping, stages: list[str]) -> float:
    """A factor whose ``int(dim * factor)`` gives every GDFN's hidden width (the paper's 2.66 first)."""
    widths = [(state_dict[f'{stage}.0.ffn.project_in.weight'].shape[1],
               state_dict[f'{stage}.0.ffn.project_out.weight'].shape[1]) for stage in stages]
    dim, hidden = widths[0]
    for factor in (2.66, hidden / dim, (hidden + 0.5) / dim):
        if all(int(d * factor) == h for d, h in widths):
            return factor
    raise ValueError(f'no ffn_expansion_factor gives the hidden widths (dim, hidden) {widths} of these weights')


def _heads(state_dict: Mapping, stages: list[str]) -> list[int]:
    return [state_dict[f'{stage}.0.attn.temperature'].shape[0] for stage in stages]


def ndrnet_options(state_dict: Mapping) -> dict[str, Any]:
    """NDRNet options the weights determine (all but ``legacy_residuals`` and the initialisation switch).

    The ablation switches leave their own keys: no ``ndr.atoms`` (but degradation queries) is ``ndr_dictionary:
    false``; a ``fuse`` convolution instead of CP gates is ``injection: concat``.
    """
    stages = ['encoder1', 'encoder2', 'encoder3', 'latent']
    embed, output = state_dict['embed.weight'], state_dict['output.weight']
    options = dict(in_channels=embed.shape[1], out_channels=output.shape[0], dim=embed.shape[0],
                   num_blocks=[_count(state_dict, stage) for stage in stages],
                   num_refinement_blocks=_count(state_dict, 'refinement'), heads=_heads(state_dict, stages),
                   ffn_expansion_factor=_ffn_expansion_factor(state_dict, stages),
                   bias='encoder1.0.attn.qkv.bias' in state_dict,
                   use_ndr='degradation_queries.0.mapping.weight' in state_dict)
    if not options['use_ndr']:
        return options
    options.update(degradation_dim=state_dict['degradation_queries.0.mapping.weight'].shape[0],
                   atom_dim=state_dict['degradation_queries.0.to_query.weight'].shape[0],
                   ndr_dictionary='ndr.atoms' in state_dict,
                   injection='concat' if 'degradation_injections.0.fuse.weight' in state_dict else 'cp')
    if options['ndr_dictionary']:
        options.update(num_atoms=state_dict['ndr.atoms'].shape[0])
    if options['injection'] == 'cp':
        options.update(cp_rank=state_dict['degradation_injections.0.feature_gate.height.weight'].shape[0])
    return options


def promptir_options(state_dict: Mapping) -> dict[str, Any]:
    """PromptIR options, all of which the weights determine."""
    stages = ['encoder_level1', 'encoder_level2', 'encoder_level3', 'latent']
    embed = state_dict['patch_embed.weight']
    decoder = 'prompt_latent.generate.components' in state_dict
    options = dict(inp_channels=embed.shape[1], out_channels=state_dict['output.weight'].shape[0], dim=embed.shape[0],
                   num_blocks=[_count(state_dict, stage) for stage in stages],
                   num_refinement_blocks=_count(state_dict, 'refinement'), heads=_heads(state_dict, stages),
                   ffn_expansion_factor=_ffn_expansion_factor(state_dict, stages),
                   bias='encoder_level1.0.attn.qkv.bias' in state_dict, decoder=decoder)
    if decoder:
        components = [state_dict[f'{block}.generate.components'].shape
                      for block in ('prompt_level2', 'prompt_level3', 'prompt_latent')]
        options.update(prompt_dims=[c[1] for c in components], prompt_sizes=[c[2] for c in components],
                       prompt_len=components[0][0])
    return options


def _is_official(state_dict: Mapping) -> bool:
    from ndr_plugin.convert_official import is_official_state_dict
    return is_official_state_dict(state_dict)


def _load_strict(net: nn.Module, state_dict: Mapping, options: Mapping) -> nn.Module:
    from ndr_plugin.restore.loading import mismatch_summary
    summary = mismatch_summary(net.state_dict(), state_dict)
    if summary:
        raise ValueError(f'{type(net).__name__} weights do not fit the options read from them ({dict(options)}): '
                         f'{summary}')
    net.load_state_dict(state_dict, strict=True)
    return net.eval()


class _Arch(spandrel.Architecture):
    """Shared descriptor building; subclasses give the network class and how options are read."""

    net_class: type

    def _options(self, state_dict: StateDict, stored: Mapping | None) -> tuple[StateDict, dict[str, Any]]:
        raise NotImplementedError

    def load(self, state_dict: StateDict, stored_options: Mapping | None = None) -> spandrel.ImageModelDescriptor:
        """Builds the network (options from the weights, plus ``stored_options`` where given) and loads strictly."""
        state_dict, options = self._options(state_dict, stored_options)
        net = _load_strict(self.net_class(**options), state_dict, options)
        channels = options.get('in_channels', options.get('inp_channels', 3))
        return spandrel.ImageModelDescriptor(
            net, state_dict, architecture=self, purpose='Restoration',
            tags=[f'{options["dim"]}dim', f'{sum(options["num_blocks"])}blocks'], supports_half=True,
            supports_bfloat16=True, scale=1, input_channels=channels, output_channels=options['out_channels'],
            tiling=spandrel.ModelTiling.DISCOURAGED)


class NDRNetArch(_Arch):
    """NDRNet checkpoints of this plugin, converted official ones, and official NDR-Restore files."""

    def __init__(self) -> None:
        super().__init__(id='ndr_plugin.NDRNet', name='NDRNet',
                         detect=lambda sd: _is_official(sd) or all(key in sd for key in NDRNET_KEYS))
        from ndr_plugin.archs.ndr_arch import NDRNet
        self.net_class = NDRNet

    def _options(self, state_dict: StateDict, stored: Mapping | None) -> tuple[StateDict, dict[str, Any]]:
        if _is_official(state_dict):
            from ndr_plugin.convert_official import convert_official_state_dict
            state_dict, _ = convert_official_state_dict(state_dict, keep_bgr=False)  # RGB, as our loader
        options = ndrnet_options(state_dict)
        for key, default in TRACELESS_DEFAULTS.items():
            if stored is not None and key in stored:
                options[key] = stored[key]
            else:
                options[key] = default
                where = ("the file's network_options do not set it" if stored else
                         'the file has no network_options' if stored is not None else
                         'spandrel passes only the weights; ndr_plugin.spandrel_support.load_from_file reads the '
                         "file's network_options")
                warnings.warn(f'NDRNet: {key} leaves no trace in the weights and was set to {default} ({where})',
                              stacklevel=4)
        return state_dict, options


class PromptIRArch(_Arch):
    """PromptIR checkpoints of this plugin (``ndr_plugin.archs.promptir_arch``; the official key layout differs)."""

    def __init__(self) -> None:
        super().__init__(id='ndr_plugin.PromptIR', name='PromptIR',
                         detect=lambda sd: all(key in sd for key in PROMPTIR_KEYS))
        from ndr_plugin.archs.promptir_arch import PromptIR
        self.net_class = PromptIR

    def _options(self, state_dict: StateDict, stored: Mapping | None) -> tuple[StateDict, dict[str, Any]]:
        return state_dict, promptir_options(state_dict)


ARCHITECTURES = (NDRNetArch(), PromptIRArch())


def install(registry: Any = None) -> list:
    """Adds NDRNet and PromptIR to ``registry`` (default ``spandrel.MAIN_REGISTRY``); returns what was added."""
    registry = spandrel.MAIN_REGISTRY if registry is None else registry
    return registry.add(*(spandrel.ArchSupport.from_architecture(arch) for arch in ARCHITECTURES),
                        ignore_duplicates=True)


def load_from_file(path: str | Path, device: str | torch.device = 'cpu') -> spandrel.ImageModelDescriptor:
    """Like ``spandrel.ModelLoader().load_from_file``, but NDRNet options without a trace in the weights
    (``legacy_residuals``) come from the file's ``network_options``. Loads with ``weights_only`` (see
    :func:`ndr_plugin.checkpoints.torch_load`)."""
    from ndr_plugin.checkpoints import torch_load
    checkpoint = torch_load(str(path))
    stored = checkpoint.get('network_options') if isinstance(checkpoint, Mapping) else None
    state_dict = spandrel.canonicalize_state_dict(checkpoint)
    for arch in ARCHITECTURES:
        if arch.detect(state_dict):
            return arch.load(state_dict, stored if isinstance(stored, Mapping) else {}).to(device)
    raise spandrel.UnsupportedModelError(f'{path}: neither an NDRNet nor a PromptIR checkpoint of ndr_plugin')


install()
