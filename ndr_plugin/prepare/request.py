"""The parameters of one preparation run, checked before anything is created.

Every bad value is refused with a ``ValueError`` that names the command-line option, before any folder (``.partial``
included) is made: a NaN noise level would otherwise give black images and a manifest that is not valid JSON, and a
negative crop size a traceback from deep inside NumPy.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ndr_plugin.version import __version__

__all__ = ['PrepareRequest']

MAX_SIGMA = 255.0  # noise levels are on the 0-255 scale; beyond it every pixel clips to 0 or 255
MAX_SEED = 2**32 - 1  # numpy RandomState (the sequential AirNet/PromptIR stream) accepts no larger seed


def _positive_int(option: str, value: Any, least: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ValueError(f'{option} must be an integer >= {least}, got {value!r}')


@dataclass
class PrepareRequest:
    """Everything :func:`~ndr_plugin.prepare.kinds.prepare` was asked for; see there for the meaning."""
    kind: str
    sources: list[Path]
    out: Path
    sigmas: list[float] | None = None
    scales: list[int] | None = None
    seed: int = 0
    workers: int = 1
    skip_bad: bool = False
    subset: str = 'standard'
    quantize: str = 'round'
    seeding: str = 'per-image'
    crop_multiple: int | None = None
    crop_size: int | None = None
    crop_step: int | None = None
    crop_thresh: int = 0
    lq_dir: Path | None = None
    gt_dir: Path | None = None
    compress_level: int = 1
    overwrite: bool = False
    progress: bool = True
    blur_variant: str = 'blur'  # deblur kinds: GoPro's blur/ or blur_gamma/ inputs
    combos: list[str] | None = None  # composite-synth: e.g. ['haze+rain', 'sr+noise']

    @property
    def task_name(self) -> str:
        return self.kind.rsplit('-', 1)[0]

    @property
    def split(self) -> str:
        return self.kind.rsplit('-', 1)[1]

    @property
    def test(self) -> bool:
        return self.split == 'test'

    @property
    def subimage(self) -> tuple[int, int, int] | None:
        if not self.crop_size:
            return None
        return (int(self.crop_size), int(self.crop_step or max(1, self.crop_size // 2)), int(self.crop_thresh))

    def settings(self) -> dict[str, Any]:
        """Only what changes the output: a rerun with the same settings resumes or finds the job complete."""
        return {'seed': self.seed if self.kind == 'denoise-test' else None,
                'subset': self.subset if self.split == 'train' and self.task_name != 'sr' else None,
                'crop_multiple': self.crop_multiple if self.test else None, 'subimage': self.subimage,
                'compress_level': self.compress_level}

    def header(self, **extra: Any) -> dict[str, Any]:
        """The build description written into every manifest (a different one restarts instead of resuming)."""
        return {'kind': self.kind, 'generator': f'ndr_plugin {__version__}',
                'sources': [s.name for s in self.sources], 'settings': {**self.settings(), **extra}}

    def validate(self) -> None:
        """Refuses bad combinations and out-of-range values, naming the option; creates nothing."""
        self._check_sources()
        self._check_numbers()
        self._check_out()

    def _check_sources(self) -> None:
        if self.seeding not in ('per-image', 'sequential'):
            raise ValueError(f"--seeding must be 'per-image' or 'sequential', got {self.seeding!r}")
        if self.quantize not in ('round', 'truncate'):
            raise ValueError(f"--quantize must be 'round' or 'truncate', got {self.quantize!r}")
        if self.subset not in ('standard', 'all'):
            raise ValueError(f"--subset must be 'standard' or 'all', got {self.subset!r}")
        if not self.sources and not (self.lq_dir and self.gt_dir):
            raise ValueError(f'{self.kind}: give at least one source folder')
        if self.task_name in ('derain', 'dehaze') and len(self.sources) > 1:
            raise ValueError(f'{self.kind}: give one source folder (or --lq-dir and --gt-dir)')
        if self.crop_size and self.test:
            raise ValueError('--crop-size (sub-image cropping) is for training kinds only')

    def _check_numbers(self) -> None:
        for sigma in self.sigmas or []:
            if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not 0 < sigma <= MAX_SIGMA:
                raise ValueError(f'--sigma must be a finite number in (0, {MAX_SIGMA:g}] (0-255 scale), '
                                 f'got {sigma!r}')
        for scale in self.scales or []:
            _positive_int('--scale', scale, least=2)
        if not isinstance(self.seed, numbers.Integral) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f'--seed must be an integer in [0, {MAX_SEED}], got {self.seed!r}')
        _positive_int('--workers', self.workers)
        for option, value in (('--crop-multiple', self.crop_multiple), ('--crop-size', self.crop_size),
                              ('--crop-step', self.crop_step)):
            if value is not None:
                _positive_int(option, value)
        if self.crop_step is not None and not self.crop_size:
            raise ValueError('--crop-step needs --crop-size')
        _positive_int('--crop-thresh', self.crop_thresh, least=0)
        if not isinstance(self.compress_level, numbers.Integral) or not 0 <= self.compress_level <= 9:
            raise ValueError(f'--compress-level must be an integer from 0 to 9, got {self.compress_level!r}')

    def _check_out(self) -> None:
        """An output inside an LMDB folder would be a second LMDB nested in the first: BasicSR would not see it and
        copying the outer one would carry it along."""
        out = self.out.resolve()
        for folder in (out, *out.parents):
            if folder.is_dir() and (folder.suffix == '.lmdb' or (folder / 'data.mdb').exists()):
                raise ValueError(f'--out {self.out} is inside the LMDB folder {folder}; choose an output folder '
                                 'outside it')
            if folder.exists() and not folder.is_dir():
                raise ValueError(f'--out {self.out}: {folder} is a file, not a folder')

