"""Checks an option file before BasicSR reads it, so that users get errors that name the file, the key and the fix.

BasicSR on its own answers a typo in ``type:`` with ``KeyError: "No object named 'X' found in 'arch' registry!"`` from
deep inside the build, and a YAML mistake with a parser traceback. We check the whole file first.
"""
from __future__ import annotations

import difflib
import os
from typing import Any, Iterator

import yaml


class OptionError(ValueError):
    """An option file that cannot be used; the message says which file, which key and what is wrong."""


def load_option_file(path: str) -> dict[str, Any]:
    """Read a YAML option file the way BasicSR does (its loader allows ``!!python/name`` tags)."""
    from basicsr.utils.options import ordered_yaml
    if not os.path.exists(path):
        raise OptionError(f'Option file not found: {path}')
    if os.path.isdir(path):
        raise OptionError(f'Option file {path} is a folder, not a YAML file')
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as err:
        raise OptionError(f'Option file {path} cannot be read: {err}') from None
    try:
        opt = yaml.load(text, Loader=ordered_yaml()[0])
    except yaml.YAMLError as err:
        mark = getattr(err, 'problem_mark', None)
        where = f'{path}:{mark.line + 1}:{mark.column + 1}' if mark is not None else path
        problem = getattr(err, 'problem', None) or str(err)
        context = getattr(err, 'context', None)
        detail = f'{problem} ({context})' if context else problem
        raise OptionError(f'Invalid YAML in option file {where}: {detail}') from None
    except (ImportError, AttributeError) as err:
        raise OptionError(f'Option file {path} names a Python object that cannot be imported: {err}') from None
    if not isinstance(opt, dict):
        raise OptionError(f'Option file {path} must contain a mapping of options at the top level, '
                          f'found {type(opt).__name__}')
    return opt


def _typed_entries(opt: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """Yield (key path, registry name, type value) for every ``type:`` that BasicSR resolves through a registry."""
    if 'model_type' in opt:
        yield 'model_type', 'model', opt['model_type']
    for key, value in opt.items():
        if key.startswith('network_') and isinstance(value, dict):
            yield f'{key}.type', 'arch', value.get('type')
    for phase, dataset in (opt.get('datasets') or {}).items():
        if isinstance(dataset, dict):
            yield f'datasets.{phase}.type', 'dataset', dataset.get('type')
    for key, value in (opt.get('train') or {}).items():
        if not key.endswith('_opt'):
            continue
        entries = value if isinstance(value, list) else [value]
        for i, entry in enumerate(entries):
            if isinstance(entry, dict):
                suffix = f'[{i}]' if isinstance(value, list) else ''
                yield f'train.{key}{suffix}.type', 'loss', entry.get('type')
    for name, metric in ((opt.get('val') or {}).get('metrics') or {}).items():
        if isinstance(metric, dict):
            yield f'val.metrics.{name}.type', 'metric', metric.get('type')


def _registries() -> dict[str, Any]:
    from basicsr.utils.registry import (ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY,
                                        MODEL_REGISTRY)
    return {'arch': ARCH_REGISTRY, 'dataset': DATASET_REGISTRY, 'loss': LOSS_REGISTRY, 'metric': METRIC_REGISTRY,
            'model': MODEL_REGISTRY}


def unknown_name_message(registry_name: str, name: Any, registered: list[str]) -> str:
    close = difflib.get_close_matches(str(name), registered, n=3, cutoff=0.5)
    hint = f' Did you mean {", ".join(repr(c) for c in close)}?' if close else ''
    return f"no {registry_name} named {name!r} is registered.{hint} Registered: {', '.join(sorted(registered))}"


def check_registered_types(opt: dict[str, Any], path: str) -> None:
    """Raise :class:`OptionError` for the first ``type:`` (or ``model_type``) that names nothing registered."""
    registries = _registries()
    for key, registry_name, value in _typed_entries(opt):
        registry = registries[registry_name]
        if value is None:
            raise OptionError(f'{path}: {key} is missing (it must name a registered {registry_name})')
        names = list(registry._obj_map.keys())
        if value not in names and f'{value}_basicsr' not in names:
            raise OptionError(f'{path}: {key}: {unknown_name_message(registry_name, value, names)}')


def check_option_file(path: str) -> dict[str, Any]:
    """Load and check an option file; return its options (BasicSR re-reads the file itself)."""
    opt = load_option_file(path)
    for required in ('name', 'model_type'):
        if required not in opt:
            raise OptionError(f'{path}: the top-level key {required!r} is missing')
    check_registered_types(opt, path)
    return opt
