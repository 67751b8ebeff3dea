"""From a checkpoint file to a network ready for inference, and the device to run it on.

Checkpoints: BasicSR's ``{'params': ..., 'params_ema': ...}`` (``params_ema`` preferred), a bare state_dict, or an
official NDR-Restore checkpoint (converted on the fly to RGB by :mod:`ndr_plugin.convert_official`). The network comes
from the first of:

1. ``opt``: an option file whose ``network_g`` is used, or a ``network_g`` dict (or an options dict holding one);
2. the checkpoint's ``network_options`` (what ``python -m ndr_plugin.convert_official`` stores next to ``params``);
3. the shape of an official checkpoint;
4. the option file BasicSR copied beside the run, for weights in ``experiments/<name>/models/``: a ``.yml`` in
   ``experiments/<name>/`` (the newest if there are several);
5. the paper-size ``NDRNet``.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ndr_plugin.checkpoints import torch_load

PAPER_NETWORK_G = {'type': 'NDRNet'}
SHOWN_KEYS = 3  # keys listed per kind of mismatch; the counts say how many more


def resolve_device(device: str | torch.device | None) -> torch.device:
    """A device as PyTorch spells it (``cpu``, ``cuda``, ``cuda:1``, ``mps``), checked to exist on this machine.

    None: ``cuda`` when available, else ``cpu``.
    """
    if device is None:
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f'device {device!r} is not a PyTorch device (expected cpu, cuda, cuda:<index> or mps): '
                         f'{err}') from None
    if resolved.type == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError(f'device {device!r} requested but CUDA is not available (torch {torch.__version__}); '
                             'use cpu')
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f'device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist')
    elif resolved.type == 'mps':
        if not torch.backends.mps.is_available():
            raise ValueError(f'device {device!r} requested but MPS (Apple GPU) is not available; use cpu')
    elif resolved.type != 'cpu':
        raise ValueError(f'device {device!r}: only cpu, cuda[:<index>] and mps are supported')
    return resolved


def _network_g_of(opt: str | Path | Mapping, source: str) -> dict:
    """``network_g`` of an option file, an options dict, or a ``network_g`` dict itself."""
    if isinstance(opt, (str, Path)):
        from ndr_plugin.options import load_option_file
        opt = load_option_file(str(opt))
    if not isinstance(opt, Mapping):
        raise ValueError(f'{source}: expected a mapping of options, got {type(opt).__name__}')
    network_g = opt.get('network_g', opt if 'type' in opt else None)
    if not isinstance(network_g, Mapping) or 'type' not in network_g:
        raise ValueError(f"{source}: no 'network_g' with a 'type' (give an option file or a network_g dict)")
    return dict(network_g)


def run_option_file(weights: Path) -> Path | None:
    """The option file BasicSR copied into ``experiments/<name>/`` for weights in ``experiments/<name>/models/``."""
    if weights.parent.name != 'models':
        return None
    candidates = sorted(weights.parent.parent.glob('*.yml'), key=lambda p: (p.stat().st_mtime, p.name))
    return candidates[-1] if candidates else None


def _state_dict(checkpoint: Any, path: str) -> tuple[dict, dict | None]:
    """(state_dict, network options implied by the file or None); unwraps params_ema/params, converts official files."""
    from ndr_plugin.convert_official import (convert_official_state_dict, is_official_state_dict,
                                             official_network_options, strip_module_prefix)
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f'{path}: expected a checkpoint dict, got {type(checkpoint).__name__}')
    state_dict = next((checkpoint[key] for key in ('params_ema', 'params') if isinstance(checkpoint.get(key), Mapping)),
                      checkpoint)
    if not state_dict or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path}: neither 'params_ema' nor 'params' found, and it is not a bare state_dict "
                         f'(top-level keys: {sorted(checkpoint)[:8]})')
    if is_official_state_dict(state_dict):
        net_g_options, _ = official_network_options(state_dict)
        converted, _ = convert_official_state_dict(state_dict, keep_bgr=False)
        return converted, {'type': 'NDRNet', **net_g_options}
    return strip_module_prefix(state_dict), None


def _choose_network_g(opt: str | Path | Mapping | None, checkpoint: Any, implied: dict | None,
                      weights: Path) -> tuple[dict, str]:
    """(network_g, where it came from), in the order of the module docstring."""
    if opt is not None:
        source = f'option file {opt}' if isinstance(opt, (str, Path)) else 'the opt dict'
        return _network_g_of(opt, source), source
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get('network_options'), Mapping):
        return dict(checkpoint['network_options']), "the checkpoint's network_options"
    if implied is not None:
        return implied, 'the official checkpoint'
    run_file = run_option_file(weights)
    if run_file is not None:
        source = f'{run_file} (the option file saved with the run)'
        return _network_g_of(run_file, source), source
    return dict(PAPER_NETWORK_G), 'the paper-size NDRNet (no option file given)'


def mismatch_summary(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> str:
    """Counts of missing, unexpected and wrongly shaped keys, with the first few of each."""
    shapes = [f'{k} {tuple(given[k].shape)} vs {tuple(v.shape)}' for k, v in expected.items()
              if k in given and given[k].shape != v.shape]
    kinds = (('missing from the checkpoint', [k for k in expected if k not in given]),
             ('not in the network', [k for k in given if k not in expected]),
             ('with another shape (checkpoint vs network)', shapes))
    parts = [f'{len(keys)} key(s) {label}: {", ".join(keys[:SHOWN_KEYS])}{", ..." if len(keys) > SHOWN_KEYS else ""}'
             for label, keys in kinds if keys]
    return '; '.join(parts)


def load_network(weights: str | Path, opt: str | Path | Mapping | None = None) -> tuple[nn.Module, str]:
    """(network in eval mode with ``weights`` loaded strictly, where its ``network_g`` came from)."""
    from basicsr.archs import build_network
    path = Path(weights)
    checkpoint = torch_load(str(path))
    state_dict, implied = _state_dict(checkpoint, str(path))
    network_g, source = _choose_network_g(opt, checkpoint, implied, path)
    net = build_network(copy.deepcopy(network_g))
    summary = mismatch_summary(net.state_dict(), state_dict)
    if summary:
        hint = '' if opt is not None else '; pass the option file it was trained with as opt / --opt'
        raise ValueError(f'{path}: weights do not fit network_g {network_g} (from {source}): {summary}{hint}')
    net.load_state_dict(state_dict, strict=True)
    return net.eval(), source


def load_network_g(weights: str | Path, opt: str | Path | Mapping | None = None) -> nn.Module:
    """Builds the restoration network with BasicSR's ``build_network`` and loads ``weights`` strictly (eval mode)."""
    return load_network(weights, opt)[0]
