"""Finding the pairs of the five-task and composite benchmarks in their layouts as distributed, and of any paired set.

Layouts (``SRC`` may also be the folder above, holding ``train/`` and ``test/``, or LOL's ``our485/`` and ``eval15/``):

* GoPro (Nah et al., CVPR 2017; ``GOPRO_Large``): ``SRC/<sequence>/{blur,blur_gamma,sharp}/NNNNNN.png``. Frame names
  repeat across sequences, so keys are ``blur_<sequence>_<frame>``. ``blur`` (linear averaging) is the input of the
  AIO-5 tables; ``blur_gamma`` (averaged in linear light) is selectable.
* LOL-v1 (Wei et al., BMVC 2018): ``SRC/{low,high}/N.png`` (``our485`` for training, ``eval15`` for testing).
* CDD-11 (Guo et al., OneRestore, ECCV 2024; layout from the README of gy65896/OneRestore and MoCE-IR's
  ``src/data/dataset_utils.py`` ``CDD11``): ``SRC/clear/`` and one folder per combination (``low``, ``haze``, ``rain``,
  ``snow``, ``low_haze``, ``low_rain``, ``low_snow``, ``haze_rain``, ``haze_snow``, ``low_haze_rain``,
  ``low_haze_snow``), each holding the same file names as ``clear/``.
* any other paired set: ``--lq-dir`` and ``--gt-dir``, files paired by their path without extension.

Problems (a file without its partner, a missing folder, a non-ASCII name) are named like those of
:mod:`~ndr_plugin.prepare.sources`.
"""
from __future__ import annotations

from pathlib import Path

from ndr_plugin.data.dataset_files import BadInputError, list_images, make_key
from ndr_plugin.prepare.sources import Task

__all__ = ['CDD11_COMBINATIONS', 'split_root', 'stem_pair_tasks', 'gopro_tasks', 'lol_tasks', 'cdd11_tasks']

CDD11_COMBINATIONS = ('low', 'haze', 'rain', 'snow', 'low_haze', 'low_rain', 'low_snow', 'haze_rain', 'haze_snow',
                      'low_haze_rain', 'low_haze_snow')
GOPRO_VARIANTS = ('blur', 'blur_gamma')
LOL_SPLITS = {'train': 'our485', 'test': 'eval15'}

TaskList = tuple[list[Task], list[BadInputError]]


def split_root(src: Path, child: str) -> Path:
    """``src/child`` when the user gave the folder above the split (e.g. ``GOPRO_Large`` instead of its ``train``)."""
    if not src.is_dir():
        raise FileNotFoundError(f'source folder does not exist: {src}')
    return src / child if (src / child).is_dir() else src


def _require_dir(folder: Path, what: str, layout: str) -> Path:
    if not folder.is_dir():
        raise FileNotFoundError(f'{what}: missing folder {folder} (expected layout: {layout})')
    return folder


def _index(folder: Path, problems: list[BadInputError]) -> dict[str, Path]:
    """Images of ``folder`` by path without extension (relative to ``folder``); duplicates and non-ASCII reported."""
    index: dict[str, Path] = {}
    for path in list_images(folder):
        stem = path.relative_to(folder).with_suffix('').as_posix()
        if not stem.isascii():
            problems.append(BadInputError(path, 'file name is not ASCII; LMDB keys must be ASCII, please rename it'))
        elif stem in index:
            problems.append(BadInputError(path, f'two images in {folder} share the name {stem!r}: {index[stem]}'))
        else:
            index[stem] = path
    return index


def stem_pair_tasks(lq_dir: Path, gt_dir: Path, prefix: str, names_root: Path | None = None,
                    degradation: str | None = None) -> TaskList:
    """Degraded/clean pairs with the same name (any extension); keys ``{prefix}_{name}``.

    ``names_root`` is the folder the manifest names are relative to (default: each image's own folder).
    """
    problems: list[BadInputError] = []
    lq_index, gt_index = _index(lq_dir, problems), _index(gt_dir, problems)
    tasks = []
    for stem, lq in lq_index.items():
        gt = gt_index.get(stem)
        if gt is None:
            problems.append(BadInputError(lq, f'missing pair partner: no clean image named {stem}.* in {gt_dir}'))
            continue
        names = {'gt': gt.relative_to(names_root or gt_dir).as_posix(),
                 'lq': lq.relative_to(names_root or lq_dir).as_posix()}
        info = {'degradation': degradation} if degradation else {}
        tasks.append(Task(make_key(prefix, stem), {'gt': str(gt), 'lq': str(lq)}, names, info))
    for stem in sorted(set(gt_index) - set(lq_index)):
        problems.append(BadInputError(gt_index[stem], f'missing pair partner: no degraded image for this clean '
                                      f'image in {lq_dir}'))
    return tasks, problems


def gopro_tasks(src: Path, split: str, variant: str = 'blur') -> TaskList:
    """GoPro pairs of every sequence folder; keys ``blur_<sequence>_<frame>``."""
    if variant not in GOPRO_VARIANTS:
        raise ValueError(f'--blur-variant must be one of {", ".join(GOPRO_VARIANTS)}, got {variant!r}')
    root = split_root(src, split)
    layout = 'SRC/<sequence>/{blur,blur_gamma,sharp}/*.png'
    sequences = sorted(p for p in root.iterdir() if p.is_dir())
    if not sequences:
        raise FileNotFoundError(f'deblur: no sequence folders in {root} (expected layout: {layout})')
    tasks, problems = [], []
    for sequence in sequences:
        blur = _require_dir(sequence / variant, 'deblur', layout)
        sharp = _require_dir(sequence / 'sharp', 'deblur', layout)
        found, bad = stem_pair_tasks(blur, sharp, make_key('blur', sequence.name), root, 'deblur')
        tasks += found
        problems += bad
    return tasks, problems


def lol_tasks(src: Path, split: str) -> TaskList:
    """LOL low/normal-light pairs; keys ``lowlight_NNNN``."""
    root = split_root(src, LOL_SPLITS[split])
    layout = 'SRC/{low,high}/*.png (LOL our485/ or eval15/)'
    low = _require_dir(root / 'low', 'lowlight', layout)
    high = _require_dir(root / 'high', 'lowlight', layout)
    return stem_pair_tasks(low, high, 'lowlight', root, 'lowlight')


def cdd11_tasks(src: Path, split: str) -> tuple[list[Task], list[BadInputError], list[str]]:
    """Pairs of every combination folder with ``clear/``; keys ``<combination>_<name>``. Also returns the standard
    combinations that have no folder."""
    root = split_root(src, split)
    layout = 'SRC/{clear,low,haze,...,low_haze_snow}/*.png'
    clear = _require_dir(root / 'clear', 'composite', layout)
    combinations = sorted(p for p in root.iterdir() if p.is_dir() and p.name != 'clear')
    if not combinations:
        raise FileNotFoundError(f'composite: no degradation folders beside {clear} (expected layout: {layout})')
    tasks, problems = [], []
    for folder in combinations:
        if not folder.name.isascii():
            raise ValueError(f'composite: folder name {folder.name!r} is not ASCII; please rename it')
        found, bad = stem_pair_tasks(folder, clear, make_key('', folder.name), root, folder.name)
        tasks += found
        problems += bad
    missing = [c for c in CDD11_COMBINATIONS if not (root / c).is_dir()]
    return tasks, problems, missing
