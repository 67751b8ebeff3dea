"""Reading and checking option files: one safe loader, and checks that run before BasicSR builds anything.

Safe loading: BasicSR 1.4.2 reads option files with PyYAML's full ``Loader``, so a file can run code
(``!!python/object/apply:os.system [...]``). :class:`SafeOptionLoader` builds plain data only: the standard YAML tags
(``!!float``, ``!!int``, ``!!str``, ``!!bool``, ``!!null``, ``!!seq``, ``!!map``...) as BasicSR's own files use them,
mappings as ``OrderedDict`` (as BasicSR's loader makes them), and one Python tag, ``!!python/name:ndr_plugin.REGISTERED``
(our files' way to register the plugin while the file is read). Any other tag is a named error (file, line, tag).
:func:`ndr_plugin.compat.apply` makes BasicSR's own ``parse_options`` use this loader too; ``NDR_ALLOW_PYTHON_TAGS=1``
switches back to BasicSR's loader for files that need other Python tags (then such files can run code again).

Checking: BasicSR on its own answers a typo in ``type:`` with a ``KeyError`` from deep inside the build, and a missing
data folder or a bad number with a traceback after it has created ``experiments/<name>``. :func:`check_option_file`
checks the whole file first, one line per problem naming the file and the key.
"""
from __future__ import annotations

import difflib
import math
import os
from collections import OrderedDict
from typing import Any, Iterator

import yaml

ALLOW_PYTHON_TAGS_ENV = 'NDR_ALLOW_PYTHON_TAGS'
REGISTERED_TAG = 'tag:yaml.org,2002:python/name:ndr_plugin.REGISTERED'


class OptionError(ValueError):
    """An option file that cannot be used; the message says which file, which key and what is wrong."""


class UnsafeTagError(yaml.constructor.ConstructorError):
    """A YAML tag that would build a Python object (and so could run code) in an option file."""


class SafeOptionLoader(yaml.SafeLoader):
    """PyYAML's safe loader with BasicSR's ordered mappings and our one registration tag; see the module docstring."""


def _construct_ordered_mapping(loader: SafeOptionLoader, node: yaml.MappingNode) -> OrderedDict:
    loader.flatten_mapping(node)
    return OrderedDict(loader.construct_pairs(node))


def _construct_registered(loader: SafeOptionLoader, node: yaml.Node) -> bool:
    import ndr_plugin
    return ndr_plugin.REGISTERED


def _refuse_tag(loader: SafeOptionLoader, tag_suffix: str, node: yaml.Node) -> None:
    mark = node.start_mark
    raise UnsafeTagError(
        None, None,
        f'{mark.name}, line {mark.line + 1}: the tag {node.tag!r} is not allowed in option files: only standard YAML '
        f'tags and !!python/name:ndr_plugin.REGISTERED are read (Python tags build objects, which can run code). '
        f'Set {ALLOW_PYTHON_TAGS_ENV}=1 to read this file with BasicSR\'s unsafe loader if you trust it.', mark)


SafeOptionLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_ordered_mapping)
SafeOptionLoader.add_constructor(REGISTERED_TAG, _construct_registered)
SafeOptionLoader.add_multi_constructor('tag:yaml.org,2002:python/', _refuse_tag)
SafeOptionLoader.add_multi_constructor('!', _refuse_tag)
SafeOptionLoader.add_constructor(None, lambda loader, node: _refuse_tag(loader, '', node))


def python_tags_allowed() -> bool:
    return os.environ.get(ALLOW_PYTHON_TAGS_ENV, '').strip().lower() in ('1', 'true', 'yes')


def option_loader() -> type:
    """The loader option files are read with: safe unless ``NDR_ALLOW_PYTHON_TAGS=1``."""
    if python_tags_allowed():
        from basicsr.utils import options as basicsr_options
        return getattr(basicsr_options, 'ndr_original_ordered_yaml', basicsr_options.ordered_yaml)()[0]
    return SafeOptionLoader


def load_option_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML option file with :func:`option_loader`; every problem is an :class:`OptionError` naming the file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise OptionError(f'Option file not found: {path}')
    if os.path.isdir(path):
        raise OptionError(f'Option file {path} is a folder, not a YAML file')
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as err:
        raise OptionError(f'Option file {path} cannot be read: {err}') from None
    loader = option_loader()(text)
    loader.name = path
    try:
        opt = loader.get_single_data()
    except UnsafeTagError as err:
        raise OptionError(err.problem) from None
    except yaml.YAMLError as err:
        mark = getattr(err, 'problem_mark', None)
        where = f'{path}:{mark.line + 1}:{mark.column + 1}' if mark is not None else path
        problem = getattr(err, 'problem', None) or str(err)
        context = getattr(err, 'context', None)
        detail = f'{problem} ({context})' if context else problem
        raise OptionError(f'Invalid YAML in option file {where}: {detail}') from None
    except (ImportError, AttributeError) as err:
        raise OptionError(f'Option file {path} names a Python object that cannot be imported: {err}') from None
    finally:
        loader.dispose()
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


def _dataroots(dataset: dict[str, Any], where: str) -> Iterator[tuple[str, Any]]:
    """(key path, value) of every data folder a dataset entry names, MultiDegradationDataset sources included."""
    for key in ('dataroot_gt', 'dataroot_lq'):
        if key in dataset:
            yield f'{where}.{key}', dataset[key]
    for i, source in enumerate(dataset.get('sources') or []):
        if isinstance(source, dict):
            for key in ('dataroot_gt', 'dataroot_lq'):
                if key in source:
                    yield f'{where}.sources[{i}].{key}', source[key]


def _smallest_lmdb_side(root: str) -> int | None:
    """The smaller side of the smallest image an LMDB's meta_info.txt lists (None for folders or unreadable lists)."""
    from ndr_plugin.data.lmdb_io import LmdbFormatError, read_meta_info
    if not root.endswith('.lmdb'):
        return None
    try:
        meta = read_meta_info(root)
    except LmdbFormatError:
        return None
    return min((min(h, w) for _, (h, w, _), _ in meta), default=None)


def _check_datasets(opt: dict[str, Any], path: str, training: bool) -> None:
    for phase, dataset in (opt.get('datasets') or {}).items():
        if not isinstance(dataset, dict):
            raise OptionError(f'{path}: datasets.{phase} must be a mapping of dataset options')
        where = f'datasets.{phase}'
        for key, root in _dataroots(dataset, where):
            if not isinstance(root, str) or not root:
                raise OptionError(f'{path}: {key} must be a path, got {root!r}')
            if not os.path.exists(root):
                raise OptionError(f'{path}: {key}: {root} does not exist (prepare it first, see README "Data")')
        if not (training and phase == 'train'):
            continue
        batch = dataset.get('batch_size_per_gpu')
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise OptionError(f'{path}: {where}.batch_size_per_gpu must be a positive integer, got {batch!r}')
        gt_size = dataset.get('gt_size')
        if gt_size is None:
            continue
        if not isinstance(gt_size, int) or isinstance(gt_size, bool) or gt_size < 1:
            raise OptionError(f'{path}: {where}.gt_size must be a positive integer, got {gt_size!r}')
        for key, root in _dataroots(dataset, where):
            side = _smallest_lmdb_side(root)
            if key.endswith('dataroot_gt') and side is not None and side < gt_size:
                raise OptionError(f'{path}: {where}.gt_size {gt_size} is larger than the smallest image in {key} '
                                  f'({root}: {side} px); lower gt_size or remove the small images')


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_training(opt: dict[str, Any], path: str) -> None:
    train = opt.get('train')
    if not isinstance(train, dict):
        raise OptionError(f'{path}: the top-level key \'train\' is missing (a training file needs it)')
    for key, value in train.items():
        if key.startswith('optim_') and isinstance(value, dict):
            lr = value.get('lr')
            if not _is_number(lr) or lr <= 0:
                hint = ' (YAML reads 2e-4 without a dot as text: write !!float 2e-4 or 2.0e-4)' \
                    if isinstance(lr, str) else ''
                raise OptionError(f'{path}: train.{key}.lr must be a positive number, got {lr!r}{hint}')
    total = train.get('total_iter')
    if total is not None and (not _is_number(total) or total < 1):
        raise OptionError(f'{path}: train.total_iter must be a positive number, got {total!r}')
    resume = (opt.get('path') or {}).get('resume_state')
    if resume and not os.path.isfile(str(resume)):
        raise OptionError(f'{path}: path.resume_state: {resume} does not exist')
    _check_model_options(opt, path)


def _check_model_options(opt: dict[str, Any], path: str) -> None:
    """Options the registered model class checks itself (its ``check_options(opt)``, when it has one)."""
    from basicsr.utils.registry import MODEL_REGISTRY
    model_cls = MODEL_REGISTRY._obj_map.get(opt.get('model_type'))
    check = getattr(model_cls, 'check_options', None)
    if check is None:
        return
    try:
        check(opt)
    except ValueError as err:
        raise OptionError(f'{path}: {err}') from None


def check_option_file(path: str, training: bool = False) -> dict[str, Any]:
    """Load and check an option file; return its options (BasicSR re-reads the file itself).

    Checks what BasicSR would otherwise find only while building (after creating the experiment folder): registered
    names, data folders, batch and patch sizes, learning rates, the resume state and the model's own options.
    """
    opt = load_option_file(path)
    for required in ('name', 'model_type'):
        if required not in opt:
            raise OptionError(f'{path}: the top-level key {required!r} is missing')
    check_registered_types(opt, path)
    _check_datasets(opt, path, training)
    if training:
        _check_training(opt, path)
    return opt
