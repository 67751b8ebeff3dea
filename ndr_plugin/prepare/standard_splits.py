"""The standard AIO-3 splits: training file lists and test-set sizes, and a comparison with a user's copy.

The training lists (``splits/*.txt``) are the ones every AIO-3 method since AirNet trains on. Names are compared by
file stem, so a copy converted to another image format still matches; BSD400 stems are compared without the ``a``
prefix that the list carries and common BSD400 downloads lack (AdaIR issue #4).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

__all__ = ['TRAIN_SPLITS', 'TEST_SIZES', 'SR_TEST_SIZES', 'load_split', 'normalize_stem', 'SplitReport', 'compare']

SPLIT_DIR = Path(__file__).resolve().parent / 'splits'

# task -> (list file, expected entries, what it is)
TRAIN_SPLITS = {
    'denoise': ('aio3_denoise_train.txt', 5144, 'BSD400 + WED'),
    'derain': ('aio3_derain_train.txt', 200, 'Rain100L training pairs'),
    'dehaze': ('aio3_dehaze_train.txt', 72135, 'RESIDE OTS (AIO-3 subset)'),
}
# task -> (test set, number of images)
TEST_SIZES = {
    'denoise': ('CBSD68', 68),
    'derain': ('Rain100L / Rain100H test', 100),
    'dehaze': ('SOTS-outdoor', 500),
}
# SR test sets recognised by their folder name (lower case)
SR_TEST_SIZES = {'set5': 5, 'set14': 14, 'bsd100': 100, 'b100': 100, 'urban100': 100, 'manga109': 109}

_BSD_STEM = re.compile(r'^a(\d+)$')


def normalize_stem(task: str, name: str) -> str:
    """The stem used for matching: no folder, no extension, no BSD400 ``a`` prefix."""
    stem = PurePosixPath(name.replace('\\', '/')).stem
    if task == 'denoise':
        match = _BSD_STEM.match(stem)
        if match:
            return match.group(1)
    return stem


def load_split(task: str) -> list[str]:
    """Entries of the standard training list of ``task`` ('denoise', 'derain' or 'dehaze'), as written in the file."""
    if task not in TRAIN_SPLITS:
        raise KeyError(f'no standard training split for {task!r}; known: {sorted(TRAIN_SPLITS)}')
    text = (SPLIT_DIR / TRAIN_SPLITS[task][0]).read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass
class SplitReport:
    """How a user's files compare with an expected split (a list of names, or just a count)."""
    reference: str
    expected: int
    found: int
    missing: list[str] = field(default_factory=list)
    not_in_split: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.found == self.expected and not self.missing

    def as_dict(self, limit: int = 200) -> dict:
        return {'reference': self.reference, 'expected': self.expected, 'found': self.found,
                'missing_count': len(self.missing), 'missing': self.missing[:limit],
                'not_in_split_count': len(self.not_in_split), 'not_in_split': self.not_in_split[:limit]}

    def message(self, what: str, limit: int = 10) -> str | None:
        """A warning naming what differs, or None when the copy matches."""
        if self.complete:
            return None
        parts = [f'{what}: found {self.found} images, the standard {self.reference} has {self.expected}']
        if self.missing:
            more = f' and {len(self.missing) - limit} more' if len(self.missing) > limit else ''
            parts.append(f'missing {len(self.missing)}: {", ".join(self.missing[:limit])}{more}')
        if self.not_in_split:
            parts.append(f'{len(self.not_in_split)} not in the standard list')
        lists = ' (full lists in manifest.json)' if self.missing or self.not_in_split else ''
        return '; '.join(parts) + lists


def compare(task: str, names: Iterable[str]) -> SplitReport:
    """Compares found file names (any folder, any extension) with the standard training list of ``task``."""
    listed = {normalize_stem(task, entry): entry for entry in load_split(task)}
    found = {normalize_stem(task, n) for n in names}
    missing = sorted(listed[s] for s in set(listed) - found)
    extra = sorted(found - set(listed))
    file, expected, what = TRAIN_SPLITS[task]
    return SplitReport(f'{what} list ({file})', expected, len(found), missing, extra)


def compare_count(reference: str, expected: int, found: int) -> SplitReport:
    """For test sets, which are checked by size only."""
    return SplitReport(reference, expected, found)
