"""Converts an official NDR-Restore checkpoint (github.com/mdyao/NDR-Restore) into BasicSR files for this plugin.

Usage::

    python -m ndr_plugin.convert_official IN.pth OUT.pth [--keep-bgr] [--legacy-residuals]

writes ``OUT.pth`` = ``{'params': <NDRNet state_dict>, 'network_options': {...}}`` and, when the checkpoint holds the
auxiliary network, ``OUT_deg.pth`` for NDRDegradationNet. The official format is a plain ``state_dict`` of ``NDRN``
(optionally with a ``module.`` prefix) that stores the NDR twice (``degradation_representations`` and
``restoration_net.dr``), may carry modules defined but never used before official commit 276ac74 (``fg_dwconv``,
``low_rank_transform2``: dropped here) and may lack ``degradation_net.*`` (the released ``model_L.pth``).

The official code reads images with OpenCV and never converts them, so its weights expect BGR; BasicSR pipelines feed
RGB, so the first and last convolutions are flipped unless ``--keep-bgr``. Every key is accounted for: an official
key with no counterpart, or a parameter of ours with no official source, is an error that lists them.
"""
from __future__ import annotations

import argparse
import functools
import os
import pickle
import re
import sys
from collections.abc import Callable, Mapping

import torch

from ndr_plugin.archs.ndr_arch import NDRNet
from ndr_plugin.archs.ndr_degradation_arch import NDRDegradationNet
from ndr_plugin.checkpoints import atomic_torch_save, torch_load

NDR_KEYS = ('degradation_representations', 'restoration_net.dr')
RESTORATION_PREFIX = 'restoration_net.'
DEGRADATION_PREFIX = 'degradation_net.'

Rule = tuple[re.Pattern, Callable[[re.Match], 'str | None']]


def _rules(table: list[tuple[str, Callable[[re.Match], str | None]]]) -> list[Rule]:
    return [(re.compile(pattern), rename) for pattern, rename in table]


def _rename(key: str, rules: list[Rule]) -> str | None:
    """Our name for an official key; '' for a key to drop; None for an unknown key."""
    for pattern, rename in rules:
        match = pattern.fullmatch(key)
        if match:
            return rename(match)
    return None


def _then(prefix: str, rest: str, rules: list[Rule]) -> str | None:
    inner = _rename(rest, rules)
    return None if inner is None else (inner and prefix + inner)


_GATE_FACTORS = {'C': 'channel', 'H': 'height', 'W': 'width'}

_TRANSFORMER_BLOCK_RULES = _rules([
    (r'norm([12])\.body\.(weight|bias)', lambda m: f'norm{m[1]}.{m[2]}'),
    (r'attn\.(temperature|(?:qkv|qkv_dwconv|project_out)\.(?:weight|bias))', lambda m: m[0]),
    (r'ffn\.(?:project_in|dwconv|project_out)\.(?:weight|bias)', lambda m: m[0]),
])

_INJECTION_RULES = _rules([
    (r'conv1\.(weight|bias)', lambda m: f'map_conv.{m[1]}'),
    (r'f\.(weight|bias)', lambda m: f'scale.{m[1]}'),
    (r'g\.(weight|bias)', lambda m: f'shift.{m[1]}'),
    (r'low_rank_transform1\.conv_([CHW])\.1\.(weight|bias)', lambda m: f'map_gate.{_GATE_FACTORS[m[1]]}.{m[2]}'),
    (r'low_rank_transform3\.conv_([CHW])\.1\.(weight|bias)',
     lambda m: f'feature_gate.{_GATE_FACTORS[m[1]]}.{m[2]}'),
    # Defined but never used in forward by the official code before commit 276ac74.
    (r'fg_dwconv\.(weight|bias)|low_rank_transform2\.conv_[CHW]\.1\.(weight|bias)', lambda m: ''),
])


def _level(m: re.Match) -> int:
    return int(m[1]) - 1


_RESTORATION_RULES = _rules([
    (r'extractor\.(weight|bias)', lambda m: f'embed.{m[1]}'),
    (r'block([123])\.(\d+)\.(.+)', lambda m: _then(f'encoder{m[1]}.{m[2]}.', m[3], _TRANSFORMER_BLOCK_RULES)),
    (r'pool([123])\.body\.0\.weight', lambda m: f'down{m[1]}.conv.weight'),
    (r'bottom\.(\d+)\.(.+)', lambda m: _then(f'latent.{m[1]}.', m[2], _TRANSFORMER_BLOCK_RULES)),
    (r'res_connect([123])\.mapping\.weight', lambda m: f'degradation_queries.{_level(m)}.mapping.weight'),
    (r'res_connect([123])\.degradation_recog\.attn\.temperature',
     lambda m: f'degradation_queries.{_level(m)}.temperature'),
    (r'res_connect([123])\.degradation_recog\.attn\.qkv\.(weight|bias)',
     lambda m: f'degradation_queries.{_level(m)}.to_query.{m[2]}'),
    (r'res_connect([123])\.degradation_recog\.attn\.project_out\.(weight|bias)',
     lambda m: f'degradation_queries.{_level(m)}.project_atoms.{m[2]}'),
    (r'res_connect([123])\.degradation_recog\.ffn\.project_out\.(weight|bias)',
     lambda m: f'degradation_queries.{_level(m)}.project_out.{m[2]}'),
    (r'res_connect([123])\.inject_degradation\.(.+)',
     lambda m: _then(f'degradation_injections.{_level(m)}.', m[2], _INJECTION_RULES)),
    (r'up([123])\.body\.0\.weight', lambda m: f'up{m[1]}.conv.weight'),
    (r'block_up([123])\.0\.(weight|bias)', lambda m: f'reduce{m[1]}.{m[2]}'),
    (r'block_up([123])\.(\d+)\.(.+)',
     lambda m: _then(f'decoder{m[1]}.{int(m[2]) - 1}.', m[3], _TRANSFORMER_BLOCK_RULES)),
    (r'refinement\.(\d+)\.(.+)', lambda m: _then(f'refinement.{m[1]}.', m[2], _TRANSFORMER_BLOCK_RULES)),
    (r'reconstruction\.(weight|bias)', lambda m: f'output.{m[1]}'),
])

_DEGRADATION_RULES = _rules([
    (r'extractor\.(weight|bias)', lambda m: f'embed.{m[1]}'),
    (r'block([123])\.conv\.([02])\.(weight|bias)', lambda m: f'encoder{m[1]}.conv{int(m[2]) // 2 + 1}.{m[3]}'),
    (r'pool([123])\.body\.0\.weight', lambda m: f'down{m[1]}.conv.weight'),
    (r'bottom\.conv\.([02])\.(weight|bias)', lambda m: f'latent.conv{int(m[1]) // 2 + 1}.{m[2]}'),
    (r'inject_degradation([123])\.(.+)',
     lambda m: _then(f'degradation_injections.{_level(m)}.', m[2], _INJECTION_RULES)),
    (r'up([123])\.body\.0\.weight', lambda m: f'up{m[1]}.conv.weight'),
    (r'block_up([123])\.0\.weight', lambda m: f'reduce{m[1]}.weight'),
    (r'block_up([123])\.1\.conv\.([02])\.(weight|bias)', lambda m: f'decoder{m[1]}.conv{int(m[2]) // 2 + 1}.{m[3]}'),
    (r'refinement\.body\.(\d+)\.body\.([02])\.(weight|bias)',
     lambda m: f'refinement.residual_group.{m[1]}.rcab.{m[2]}.{m[3]}'),
    (r'refinement\.body\.(\d+)\.body\.3\.conv_du\.([02])\.(weight|bias)',
     lambda m: f'refinement.residual_group.{m[1]}.rcab.3.attention.{int(m[2]) + 1}.{m[3]}'),
    (r'refinement\.body\.(\d+)\.(weight|bias)', lambda m: f'refinement.conv.{m[2]}'),  # the group's tail conv
    (r'reconstruction\.(weight|bias)', lambda m: f'output.{m[1]}'),
])


def strip_module_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Removes the ``module.`` prefix that (Distributed)DataParallel adds."""
    return {(k[len('module.'):] if k.startswith('module.') else k): v for k, v in state_dict.items()}


def _unwrap(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f'Expected a state_dict (a mapping of names to tensors), got {type(checkpoint).__name__}')
    if isinstance(checkpoint.get('params'), Mapping):
        checkpoint = checkpoint['params']
    return strip_module_prefix(checkpoint)


def is_official_state_dict(state_dict: Mapping) -> bool:
    """True when ``state_dict`` (optionally prefixed with ``module.``) has the official NDR-Restore key layout."""
    try:
        keys = _unwrap(state_dict).keys()
    except ValueError:
        return False
    return any(k in NDR_KEYS or k.startswith(RESTORATION_PREFIX) for k in keys)


def _count_indices(keys, pattern: str) -> int:
    compiled = re.compile(pattern)
    return len({m[1] for m in map(compiled.match, keys) if m})


def _ffn_expansion_factor(dim: int, hidden: int) -> float:
    # NDRNet computes hidden = int(dim * factor); the paper value first, else a factor that reproduces ``hidden``.
    for factor in (2.66, hidden / dim, (hidden + 0.5) / dim):
        if int(dim * factor) == hidden:
            return factor
    raise ValueError(f'No ffn_expansion_factor gives {hidden} hidden channels at dim {dim}')


def _require(state_dict: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state_dict:
        raise ValueError(f'Official checkpoint lacks the key {key!r}')
    return state_dict[key]


def _ndr(official: Mapping[str, torch.Tensor]) -> torch.Tensor:
    present = [official[k] for k in NDR_KEYS if k in official]
    if not present:
        raise ValueError(f'Official checkpoint holds no NDR ({" or ".join(NDR_KEYS)})')
    if len(present) == 2 and not torch.equal(present[0], present[1]):
        raise ValueError(f'Official checkpoint holds two different NDR tensors under {NDR_KEYS}; in the official '
                         'model they are one parameter, so this file is not an official checkpoint')
    if present[0].dim() != 3 or present[0].shape[0] != 1:
        raise ValueError(f'Official NDR must have shape (1, atoms, atom_dim), got {tuple(present[0].shape)}')
    return present[0][0]


def official_network_options(state_dict: Mapping) -> tuple[dict, dict | None]:
    """NDRNet and NDRDegradationNet options (``None`` without ``degradation_net.*``) matching an official checkpoint."""
    official = _unwrap(state_dict)
    r = {k[len(RESTORATION_PREFIX):]: v for k, v in official.items() if k.startswith(RESTORATION_PREFIX)}
    ndr = _ndr(official)
    embed, output = _require(r, 'extractor.weight'), _require(r, 'reconstruction.weight')
    dim = embed.shape[0]
    level_keys = ('block1', 'block2', 'block3', 'bottom')
    heads = [r[f'{name}.0.attn.temperature'].shape[0] if f'{name}.0.attn.temperature' in r else 1
             for name in level_keys]
    hidden = _require(r, 'block1.0.ffn.project_out.weight').shape[1]
    net_g = dict(
        in_channels=embed.shape[1], out_channels=output.shape[0], dim=dim,
        num_blocks=[_count_indices(r, rf'{name}\.(\d+)\.') for name in level_keys],
        num_refinement_blocks=_count_indices(r, r'refinement\.(\d+)\.'), heads=heads,
        ffn_expansion_factor=_ffn_expansion_factor(dim, hidden), bias='block1.0.attn.qkv.bias' in r,
        num_atoms=ndr.shape[0], atom_dim=ndr.shape[1],
        degradation_dim=_require(r, 'res_connect1.mapping.weight').shape[0],
        cp_rank=_require(r, 'res_connect1.inject_degradation.low_rank_transform1.conv_H.1.weight').shape[0])
    d = {k[len(DEGRADATION_PREFIX):]: v for k, v in official.items() if k.startswith(DEGRADATION_PREFIX)}
    if not d:
        return net_g, None
    deg_embed, squeeze = _require(d, 'extractor.weight'), _require(d, 'refinement.body.0.body.3.conv_du.0.weight')
    num_rcab = _count_indices(d, r'refinement\.body\.(\d+)\.body\.')
    if f'refinement.body.{num_rcab}.weight' not in d:
        raise ValueError(f'Official degradation_net has {num_rcab} refinement blocks but no tail conv '
                         f'refinement.body.{num_rcab}.weight')
    refine_channels = 2 * deg_embed.shape[0]
    reduction = refine_channels // squeeze.shape[0]
    if refine_channels // reduction != squeeze.shape[0]:
        raise ValueError(f'Official degradation_net channel attention squeezes {refine_channels} channels to '
                         f'{squeeze.shape[0]}, which no integer reduction gives')
    net_deg = dict(
        in_channels=deg_embed.shape[1], out_channels=_require(d, 'reconstruction.weight').shape[0],
        dim=deg_embed.shape[0], degradation_dim=_require(d, 'inject_degradation1.conv1.weight').shape[0],
        cp_rank=_require(d, 'inject_degradation1.low_rank_transform1.conv_H.1.weight').shape[0],
        num_refinement_blocks=num_rcab, attention_reduction=reduction)
    return net_g, net_deg


def _convert_part(part: Mapping[str, torch.Tensor], rules: list[Rule], prefix: str) -> dict[str, torch.Tensor]:
    converted, unknown = {}, []
    for key, value in part.items():
        name = _rename(key, rules)
        if name is None:
            unknown.append(prefix + key)
        elif name:
            converted[name] = value
    if unknown:
        raise ValueError(f'Official checkpoint has {len(unknown)} key(s) with no counterpart in this plugin: '
                         + ', '.join(sorted(unknown)))
    return converted


@functools.lru_cache(maxsize=16)
def _expected_shapes(net_cls: type, frozen_options: tuple) -> dict[str, torch.Size]:
    with torch.device('meta'):  # no storage
        return {k: v.shape for k, v in net_cls(**dict(frozen_options)).state_dict().items()}


def _check_against(converted: Mapping[str, torch.Tensor], net_cls: type, options: dict) -> None:
    """Key-for-key and shape-for-shape comparison with the network that ``options`` build."""
    frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))
    expected = _expected_shapes(net_cls, frozen)
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    wrong = sorted(f'{k} {tuple(converted[k].shape)} != {tuple(expected[k])}' for k in set(expected) & set(converted)
                   if converted[k].shape != expected[k])
    problems = [f'{title}: {", ".join(keys)}' for title, keys in
                (('missing', missing), ('unexpected', unexpected), ('wrong shape', wrong)) if keys]
    if problems:
        raise ValueError(f'Converted official weights do not fit {net_cls.__name__}({options}): ' + '; '.join(problems))


def _to_rgb(state_dict: dict[str, torch.Tensor], owner: str) -> None:
    if state_dict['embed.weight'].shape[1] != 3 or state_dict['output.weight'].shape[0] != 3:
        raise ValueError(f'{owner}: BGR -> RGB conversion needs 3 input and output channels; use keep_bgr=True '
                         '(--keep-bgr)')
    state_dict['embed.weight'] = state_dict['embed.weight'].flip(1)
    state_dict['output.weight'] = state_dict['output.weight'].flip(0)
    state_dict['output.bias'] = state_dict['output.bias'].flip(0)


def convert_official_state_dict(state_dict: Mapping, keep_bgr: bool = False
                                ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """Official ``NDRN`` state_dict -> (NDRNet state_dict, NDRDegradationNet state_dict or None).

    The results load with ``strict=True`` into networks built from :func:`official_network_options`. Unless
    ``keep_bgr``, the first and last convolutions are flipped so the networks take and give RGB images.
    """
    official = _unwrap(state_dict)
    if not is_official_state_dict(official):
        raise ValueError('Not an official NDR-Restore checkpoint (no restoration_net.* or NDR keys); weights saved '
                         'by this plugin load directly')
    net_g_options, net_deg_options = official_network_options(official)
    unknown = sorted(k for k in official if k not in NDR_KEYS and not k.startswith((RESTORATION_PREFIX,
                                                                                   DEGRADATION_PREFIX)))
    if unknown:
        raise ValueError('Official checkpoint has key(s) outside restoration_net / degradation_net / the NDR: '
                         + ', '.join(unknown))
    restoration = {k[len(RESTORATION_PREFIX):]: v for k, v in official.items()
                   if k.startswith(RESTORATION_PREFIX) and k not in NDR_KEYS}
    net_g = _convert_part(restoration, _RESTORATION_RULES, RESTORATION_PREFIX)
    net_g['ndr.atoms'] = _ndr(official)
    net_g = {k: v.detach().clone() for k, v in net_g.items()}  # own storage: the NDR is no longer shared
    _check_against(net_g, NDRNet, net_g_options)
    if not keep_bgr:
        _to_rgb(net_g, 'NDRNet')
    if net_deg_options is None:
        return net_g, None
    degradation = {k[len(DEGRADATION_PREFIX):]: v for k, v in official.items() if k.startswith(DEGRADATION_PREFIX)}
    net_deg = {k: v.detach().clone() for k, v in _convert_part(degradation, _DEGRADATION_RULES,
                                                                DEGRADATION_PREFIX).items()}
    _check_against(net_deg, NDRDegradationNet, net_deg_options)
    if not keep_bgr:
        _to_rgb(net_deg, 'NDRDegradationNet')
    return net_g, net_deg


def degradation_path(out_path: str) -> str:
    """Where the NDRDegradationNet weights go: ``OUT_deg.pth`` next to ``OUT.pth``."""
    root, ext = os.path.splitext(out_path)
    return f'{root}_deg{ext or ".pth"}'


def convert_official_checkpoint(in_path: str, out_path: str, keep_bgr: bool = False,
                                legacy_residuals: bool = False) -> tuple[str, str | None]:
    """Converts an official checkpoint file; returns the written paths (NDRNet, NDRDegradationNet or None).

    Each file is ``{'params': state_dict, 'network_options': {...}}``, where the options (with ``type``) build the
    network the weights were verified against by a strict load. Refuses, before reading anything, an output that is
    a folder or that would overwrite the input.
    """
    _check_outputs(in_path, [out_path, degradation_path(out_path)])
    official = torch_load(in_path)
    net_g_sd, net_deg_sd = convert_official_state_dict(official, keep_bgr=keep_bgr)
    net_g_options, net_deg_options = official_network_options(official)
    g_path = _write(NDRNet, net_g_options, net_g_sd, legacy_residuals, out_path)
    deg_path = None
    if net_deg_sd is not None:
        deg_path = _write(NDRDegradationNet, net_deg_options, net_deg_sd, legacy_residuals, degradation_path(out_path))
    return g_path, deg_path


def _check_outputs(in_path: str, out_paths: list[str]) -> None:
    for out in out_paths:
        if os.path.isdir(out):
            raise ValueError(f'the output {out} is a folder; give a file name such as {os.path.join(out, "ndr.pth")}')
        if os.path.exists(in_path) and os.path.exists(out) and os.path.samefile(in_path, out):
            raise ValueError(f'the output {out} is the input file; choose another output name (the input is kept)')


def _write(net_cls: type, options: dict, weights: dict[str, torch.Tensor], legacy_residuals: bool, path: str) -> str:
    options = dict(options, legacy_residuals=legacy_residuals)
    net_cls(**options).load_state_dict(weights, strict=True)
    atomic_torch_save({'params': weights, 'network_options': dict(type=net_cls.__name__, **options)}, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('input', help='official checkpoint (.pth), e.g. model_L.pth')
    parser.add_argument('output', help='NDRNet weights to write (.pth); NDRDegradationNet weights go to OUT_deg.pth')
    parser.add_argument('--keep-bgr', action='store_true',
                        help='keep the official BGR channel order instead of converting to RGB')
    parser.add_argument('--legacy-residuals', action='store_true',
                        help='target NDRNet(legacy_residuals=True): the residuals removed in official commit 7c0bd21')
    args = parser.parse_args(argv)
    try:
        g_path, deg_path = convert_official_checkpoint(args.input, args.output, args.keep_bgr, args.legacy_residuals)
    except (ValueError, OSError, pickle.UnpicklingError) as err:
        print(f'convert_official: {args.input}: {err}', file=sys.stderr)
        return 1
    order = 'BGR (as trained)' if args.keep_bgr else 'RGB'
    print(f'NDRNet weights ({order}): {g_path}')
    if deg_path is None:
        print('No degradation_net.* keys in the checkpoint: NDRDegradationNet starts from random weights when '
              'fine-tuning.')
    else:
        print(f'NDRDegradationNet weights ({order}): {deg_path}')
    legacy = ' with legacy_residuals: true' if args.legacy_residuals else ''
    print(f'Use in an option file as network_g: {{type: NDRNet{legacy}}}, path.pretrain_network_g: {g_path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
