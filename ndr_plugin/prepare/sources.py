"""Finding the images of each standard dataset in a user's folder and pairing degraded with clean files.

Accepted layouts (folder names are matched case-insensitively; ``--lq-dir``/``--gt-dir`` override the detection):

* rain: ``SRC/{rainy|rain|input|lq|data}/`` with ``SRC/{gt|norain|target|clean|groundtruth|label}/``, or one folder
  holding both ``rain-N.png`` and ``norain-N.png`` (RainTrainL), or clean ``norain-N.png`` at the top of SRC with the
  rainy ``rain-N.png`` in ``SRC/rainy/`` (the layout PReNet distributes its test sets in, e.g. ``test/Rain100L``). A
  degraded file pairs with the clean file of the same stem, or ``rain-N`` with ``norain-N``.
* haze: ``SRC/{hazy|synthetic|input|lq}/`` (searched recursively, e.g. OTS ``synthetic/part1..4``) with
  ``SRC/{gt|clear|original|target|groundtruth|clean}/``. ``ID_A_beta.jpg`` pairs with ``ID.<any extension>`` (RESIDE,
  AirNet/PromptIR rule); A and beta are read from the name.
* clean images (denoise, SR): every image under each source folder, recursively.

Every problem (a file without its partner, a non-ASCII name, two files that would get the same key) becomes a
:class:`~ndr_plugin.data.dataset_files.BadInputError` naming the file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ndr_plugin.data.dataset_files import BadInputError, list_images, make_key

__all__ = ['Task', 'clean_tasks', 'rain_pair_tasks', 'haze_pair_tasks', 'find_pair_dirs']

RAIN_LQ_DIRS = ('rainy', 'rain', 'input', 'lq', 'data')
RAIN_GT_DIRS = ('gt', 'norain', 'target', 'clean', 'groundtruth', 'label')
HAZE_LQ_DIRS = ('hazy', 'synthetic', 'input', 'lq')
HAZE_GT_DIRS = ('gt', 'clear', 'original', 'target', 'groundtruth', 'clean')

_RAIN_NAME = re.compile(r'^rain-(\d+)$', re.IGNORECASE)
_NORAIN_NAME = re.compile(r'^norain-(\d+)$', re.IGNORECASE)
_HAZE_NAME = re.compile(r'^(.+?)_(\d+(?:\.\d+)?)_(\d+(?:\.\d+)?)$')


@dataclass
class Task:
    """One source image (or pair) to process; ``task_id`` is its LMDB key (sub-images add ``_sNNN``)."""
    task_id: str
    files: dict[str, str]  # role ('gt', 'lq') -> absolute path
    names: dict[str, str]  # role -> path relative to the source folder, for the manifest
    info: dict[str, Any] = field(default_factory=dict)
    rng_state: Any = None  # legacy numpy RandomState state, for test noise drawn from one sequential stream


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _ascii_problem(path: Path) -> BadInputError | None:
    if not path.name.isascii():
        return BadInputError(path, 'file name is not ASCII; LMDB keys must be ASCII, please rename the file')
    return None


def find_pair_dirs(src: Path, lq_names: tuple[str, ...], gt_names: tuple[str, ...]) -> tuple[Path, Path] | None:
    """The degraded and clean subfolders of ``src`` by conventional names, or None."""
    if not src.is_dir():
        raise FileNotFoundError(f'source folder does not exist: {src}')
    children = {p.name.lower(): p for p in sorted(src.iterdir()) if p.is_dir()}
    lq = next((children[n] for n in lq_names if n in children), None)
    gt = next((children[n] for n in gt_names if n in children), None)
    return (lq, gt) if lq and gt else None


def _check_unique(tasks: list[Task], problems: list[BadInputError]) -> list[Task]:
    seen: dict[str, Task] = {}
    unique = []
    for task in tasks:
        if task.task_id in seen:
            first = next(iter(seen[task.task_id].files.values()))
            problems.append(BadInputError(next(iter(task.files.values())),
                                          f'would get the same key {task.task_id!r} as {first}; rename one of them'))
            continue
        seen[task.task_id] = task
        unique.append(task)
    return unique


def clean_tasks(sources: list[Path], prefix: str) -> tuple[list[Task], list[BadInputError]]:
    """Every image of the source folders as a GT-only task with key ``{prefix}_{stem}``."""
    tasks, problems = [], []
    for src in sources:
        for path in list_images(src):
            problem = _ascii_problem(path)
            if problem:
                problems.append(problem)
                continue
            tasks.append(Task(make_key(prefix, path.stem), {'gt': str(path)}, {'gt': _relative(path, src)}))
    return _check_unique(tasks, problems), problems


def _index_by_stem(folder: Path, problems: list[BadInputError]) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in list_images(folder):
        problem = _ascii_problem(path)
        if problem:
            problems.append(problem)
        elif path.stem in index:
            problems.append(BadInputError(path, f'two clean images share the name {path.stem!r}: {index[path.stem]}'))
        else:
            index[path.stem] = path
    return index


def _pair_folders(src: Path | None, lq_dir: Path | None, gt_dir: Path | None, lq_names, gt_names, what: str):
    if lq_dir or gt_dir:
        if not (lq_dir and gt_dir):
            raise ValueError(f'{what}: give both the degraded and the clean folder (--lq-dir and --gt-dir)')
        return Path(lq_dir), Path(gt_dir)
    found = find_pair_dirs(Path(src), lq_names, gt_names)
    if found is None:
        raise FileNotFoundError(f'{what}: cannot find the degraded/clean folders in {src}: expected one subfolder '
                                f'named {"|".join(lq_names)} and one named {"|".join(gt_names)}, '
                                'or pass --lq-dir and --gt-dir')
    return found


def _rain_folders(src: Path | None, lq_dir: Path | None, gt_dir: Path | None,
                  problems: list[BadInputError]) -> tuple[Path, Path, list[Path], dict[str, Path]]:
    """(rainy root, clean root, rainy files, clean files by lower-case stem) of the accepted rain layouts."""
    explicit = bool(lq_dir or gt_dir)
    if explicit or find_pair_dirs(Path(src), RAIN_LQ_DIRS, RAIN_GT_DIRS) is not None:
        lq_root, gt_root = _pair_folders(src, lq_dir, gt_dir, RAIN_LQ_DIRS, RAIN_GT_DIRS, 'derain')
        clean = {k.lower(): v for k, v in _index_by_stem(gt_root, problems).items()}
        return lq_root, gt_root, list_images(lq_root), clean
    src = Path(src)
    top = list_images(src, recursive=False)
    clean = {p.stem.lower(): p for p in top if _NORAIN_NAME.match(p.stem)}
    rainy = [p for p in top if _RAIN_NAME.match(p.stem)]
    if rainy:  # RainTrainL: rain-N.png and norain-N.png side by side
        return src, src, rainy, clean
    children = {p.name.lower(): p for p in sorted(src.iterdir()) if p.is_dir()}
    lq_root = next((children[n] for n in RAIN_LQ_DIRS if n in children), None)
    if lq_root is not None and clean:  # PReNet's test layout: norain-N.png on top, rainy/rain-N.png below
        return lq_root, src, list_images(lq_root), clean
    raise FileNotFoundError(f'derain: {src} has neither rainy/clean subfolders ({"|".join(RAIN_LQ_DIRS)} and '
                            f'{"|".join(RAIN_GT_DIRS)}), nor rain-N/norain-N images side by side, nor norain-N '
                            'images with a rainy/ subfolder (the PReNet test layout)')


def rain_pair_tasks(src: Path | None,
                    lq_dir: Path | None = None,
                    gt_dir: Path | None = None) -> tuple[list[Task], list[BadInputError]]:
    """Rainy/clean pairs; keys ``rain_{N}`` (``rain-N`` names, N zero-padded to 4) or ``rain_{stem}``."""
    problems: list[BadInputError] = []
    lq_root, gt_root, rainy, clean = _rain_folders(src, lq_dir, gt_dir, problems)
    tasks, used = [], set()
    for path in rainy:
        problem = _ascii_problem(path)
        if problem:
            problems.append(problem)
            continue
        number = _RAIN_NAME.match(path.stem)
        partner = clean.get(path.stem.lower()) or (clean.get(f'norain-{number.group(1)}') if number else None)
        if partner is None:
            expected = f'{path.stem} or norain-{number.group(1)}' if number else path.stem
            reason = f'missing pair partner: no clean image named {expected}.* in {gt_root}'
            problems.append(BadInputError(path, reason))
            continue
        used.add(partner)
        key = make_key('rain', number.group(1)) if number else make_key('rain', path.stem)
        tasks.append(Task(key, {'gt': str(partner), 'lq': str(path)},
                          {'gt': _relative(partner, gt_root), 'lq': _relative(path, lq_root)}))
    for partner in sorted(set(clean.values()) - used):
        reason = f'missing pair partner: no rainy image for this clean image in {lq_root}'
        problems.append(BadInputError(partner, reason))
    return _check_unique(tasks, problems), problems


def haze_pair_tasks(src: Path | None,
                    lq_dir: Path | None = None,
                    gt_dir: Path | None = None) -> tuple[list[Task], list[BadInputError]]:
    """Hazy/clear pairs ``ID_A_beta.*`` -> ``ID.*``; keys ``haze_{ID}_{A}_{beta}`` with dots written as ``p``."""
    problems: list[BadInputError] = []
    lq_root, gt_root = _pair_folders(src, lq_dir, gt_dir, HAZE_LQ_DIRS, HAZE_GT_DIRS, 'dehaze')
    clear = _index_by_stem(gt_root, problems)
    tasks = []
    for path in list_images(lq_root):
        problem = _ascii_problem(path)
        if problem:
            problems.append(problem)
            continue
        match = _HAZE_NAME.match(path.stem)
        scene = match.group(1) if match else path.stem
        partner = clear.get(scene)
        if partner is None:
            problems.append(BadInputError(path, f'missing pair partner: no clear image named {scene}.* in {gt_root}'))
            continue
        info = {'atmospheric_light': float(match.group(2)), 'beta': float(match.group(3))} if match else {}
        tasks.append(Task(make_key('haze', path.stem), {'gt': str(partner), 'lq': str(path)},
                          {'gt': _relative(partner, gt_root), 'lq': _relative(path, lq_root)}, info))
    return _check_unique(tasks, problems), problems
