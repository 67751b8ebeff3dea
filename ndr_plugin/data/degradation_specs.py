"""Degradations described in option files: parse a spec, list the labels it can produce, draw parameters and apply.

A spec is a dict with a ``type`` (or a list of such dicts, applied in order: a mixed degradation). Parameters given as a
two-element list ``[low, high]`` are drawn uniformly per image (integers for pixel sizes); a single number is used as
is. ``sigmas`` and ``scales`` are sets of choices, one drawn per image.

============  =======================================================================  ==============================
type          keys (defaults)                                                          labels
============  =======================================================================  ==============================
noise         sigmas ([15, 25, 50]) or sigma_range ([low, high], uniform), clip        ``denoise_15``, ``denoise_25``
              (true), quantize (null | round | truncate)                               (``denoise`` with a range)
rain          style (light | heavy), density, length, angle, width, intensity,         ``derain``
              directions (number of streak angles); unset keys come from the style
haze          atmospheric_light ([0.8, 1.0]), beta ([0.04, 0.2]), depth_range          ``dehaze``
              ([2, 4]), depth_method (blend | vertical | dark_channel)
downsample    scales ([2, 3, 4]), quantize (true)                                      ``sr_x2``, ``sr_x3``, ...
lowlight      alpha ([0.9, 1.0]), beta ([0.5, 1.0]), gamma ([1.5, 5.0]),               ``lowlight``
              shot_noise ([1e-4, 0.012], log-uniform; 0 = no noise), read_noise
              (null = from the shot level as Brooks et al. 2019; or a value/range)
motion_blur   length ([5, 30] px, path length), anxiety ([0.003, 0.01])                ``deblur``
============  =======================================================================  ==============================

Where the defaults of ``lowlight`` and ``motion_blur`` come from: :mod:`ndr_plugin.data.degradations` and
:mod:`ndr_plugin.data.motion_blur`; the ``[5, 30]`` px blur length is ours.

A composed spec's label joins the step labels with ``+`` in the order applied, e.g. ``derain+denoise_25``; a physically
plausible order is haze, rain, motion_blur, downsample, lowlight, noise (the sensor adds noise
last).
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from ndr_plugin.data import degradations as deg
from ndr_plugin.data.motion_blur import add_motion_blur, random_motion_kernel

__all__ = ['Degradation', 'build_degradation', 'DEGRADATION_TYPES']


def _draw(rng: np.random.Generator, value: Any, integer: bool = False) -> Any:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f'a range must be [low, high], got {value!r}')
        low, high = value
        if integer:
            return int(rng.integers(int(low), int(high) + 1))
        return float(rng.uniform(float(low), float(high)))
    return int(value) if integer else float(value)


def _choice(rng: np.random.Generator, values: Sequence[Any]) -> Any:
    return values[int(rng.integers(len(values)))]


class Degradation:
    """Base class: ``labels`` lists every label this spec can produce; calling it degrades one image."""

    keys: tuple[str, ...] = ()

    def __init__(self, spec: dict[str, Any]) -> None:
        unknown = sorted(set(spec) - set(self.keys) - {'type'})
        if unknown:
            raise ValueError(f"degradation '{spec.get('type')}' has unknown option(s) {unknown}; "
                             f'allowed: {sorted(self.keys)}')
        self.spec = dict(spec)

    @property
    def labels(self) -> list[str]:
        raise NotImplementedError

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str, dict[str, Any]]:
        """Returns the degraded float32 image, its label and the parameters drawn (JSON-serialisable)."""
        raise NotImplementedError


class NoiseDegradation(Degradation):
    keys = ('sigmas', 'sigma_range', 'clip', 'quantize')

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.sigma_range = spec.get('sigma_range')
        if self.sigma_range is not None:
            if 'sigmas' in spec:
                raise ValueError("noise: give either 'sigmas' (levels to choose from) or 'sigma_range' "
                                 '([low, high], drawn uniformly), not both')
            if (not isinstance(self.sigma_range, (list, tuple)) or len(self.sigma_range) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.sigma_range)
                    or not 0 <= self.sigma_range[0] <= self.sigma_range[1]):
                raise ValueError(f'noise sigma_range must be [low, high] with 0 <= low <= high, '
                                 f'got {self.sigma_range!r}')
            self.sigma_range = [float(v) for v in self.sigma_range]
        sigmas = spec.get('sigmas', [15, 25, 50])
        self.sigmas = [float(s) for s in (sigmas if isinstance(sigmas, (list, tuple)) else [sigmas])]
        if not self.sigmas or min(self.sigmas) < 0:
            raise ValueError(f'noise sigmas must be a non-empty list of numbers >= 0, got {sigmas!r}')
        self.clip = bool(spec.get('clip', True))
        self.quantize = spec.get('quantize')
        if self.quantize not in (None, 'round', 'truncate'):
            raise ValueError(f"noise quantize must be null, 'round' or 'truncate', got {self.quantize!r}")

    @property
    def labels(self) -> list[str]:
        if self.sigma_range is not None:  # blind: one label for the whole range
            return ['denoise']
        return [f'denoise_{s:g}' for s in self.sigmas]

    def __call__(self, img, rng):
        if self.sigma_range is not None:
            sigma, label = _draw(rng, self.sigma_range), 'denoise'
        else:
            sigma = _choice(rng, self.sigmas)
            label = f'denoise_{sigma:g}'
        out = deg.add_gaussian_noise(img, sigma, rng, clip=self.clip, quantize=self.quantize)
        params = {'type': 'noise', 'sigma': sigma, 'clip': self.clip, 'quantize': self.quantize}
        return out, label, params


class RainDegradation(Degradation):
    keys = ('style', 'density', 'length', 'angle', 'width', 'intensity', 'directions')

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        style = spec.get('style', 'light')
        if style not in deg.RAIN_STYLES:
            raise ValueError(f'rain style must be one of {sorted(deg.RAIN_STYLES)}, got {style!r}')
        self.params = {**deg.RAIN_STYLES[style], **{k: v for k, v in spec.items() if k not in ('type', 'style')}}
        self.style = style

    @property
    def labels(self) -> list[str]:
        return ['derain']

    def __call__(self, img, rng):
        p = self.params
        directions = _draw(rng, p['directions'], integer=True)
        drawn = {
            'density': _draw(rng, p['density']),
            'length': _draw(rng, p['length'], integer=True),
            'angle': [_draw(rng, p['angle']) for _ in range(directions)],
            'width': _draw(rng, p['width'], integer=True),
            'intensity': _draw(rng, p['intensity']),
        }
        return deg.add_rain(img, rng, **drawn), 'derain', {'type': 'rain', 'style': self.style, **drawn}


class HazeDegradation(Degradation):
    keys = ('atmospheric_light', 'beta', 'depth_range', 'depth_method')

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.atmospheric_light = spec.get('atmospheric_light', [0.8, 1.0])
        self.beta = spec.get('beta', [0.04, 0.2])
        self.depth_range = tuple(float(v) for v in spec.get('depth_range', [2.0, 4.0]))
        self.depth_method = spec.get('depth_method', 'blend')
        if self.depth_method not in ('blend', 'vertical', 'dark_channel'):
            raise ValueError(f"haze depth_method must be 'blend', 'vertical' or 'dark_channel', "
                             f'got {self.depth_method!r}')

    @property
    def labels(self) -> list[str]:
        return ['dehaze']

    def __call__(self, img, rng):
        light = _draw(rng, self.atmospheric_light)
        beta = _draw(rng, self.beta)
        out = deg.add_haze(img, light, beta, depth_range=self.depth_range, depth_method=self.depth_method)
        params = {'type': 'haze', 'atmospheric_light': light, 'beta': beta, 'depth_range': list(self.depth_range),
                  'depth_method': self.depth_method}
        return out, 'dehaze', params


class DownsampleDegradation(Degradation):
    keys = ('scales', 'quantize')

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        scales = spec.get('scales', [2, 3, 4])
        self.scales = [int(s) for s in (scales if isinstance(scales, (list, tuple)) else [scales])]
        if not self.scales or min(self.scales) < 2:
            raise ValueError(f'downsample scales must be integers >= 2, got {scales!r}')
        self.quantize = bool(spec.get('quantize', True))

    @property
    def labels(self) -> list[str]:
        return [f'sr_x{s}' for s in self.scales]

    def __call__(self, img, rng):
        scale = _choice(rng, self.scales)
        out = deg.bicubic_degrade(img, scale, quantize=self.quantize)
        return out, f'sr_x{scale}', {'type': 'downsample', 'scale': scale, 'quantize': self.quantize}


def _log_uniform(rng: np.random.Generator, value: Any) -> float:
    """Noise levels span two decades, so a range is drawn uniformly in log space (as Brooks et al. 2019)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or min(value) <= 0:
            raise ValueError(f'a noise level range must be [low, high] with low > 0, got {value!r}')
        return float(np.exp(rng.uniform(np.log(float(value[0])), np.log(float(value[1])))))
    return float(value)


class LowlightDegradation(Degradation):
    keys = ('alpha', 'beta', 'gamma', 'shot_noise', 'read_noise')

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.alpha = spec.get('alpha', [0.9, 1.0])
        self.beta = spec.get('beta', [0.5, 1.0])
        self.gamma = spec.get('gamma', [1.5, 5.0])
        self.shot_noise = spec.get('shot_noise', [1e-4, 0.012])
        self.read_noise = spec.get('read_noise')

    @property
    def labels(self) -> list[str]:
        return ['lowlight']

    def __call__(self, img, rng):
        drawn = {'alpha': _draw(rng, self.alpha), 'beta': _draw(rng, self.beta), 'gamma': _draw(rng, self.gamma)}
        if self.read_noise is None and isinstance(self.shot_noise, (list, tuple)):
            shot, read = deg.lowlight_noise_levels(rng, tuple(self.shot_noise))
        else:
            shot = _log_uniform(rng, self.shot_noise)
            read = 0.0 if self.read_noise is None else _draw(rng, self.read_noise)
        out = deg.add_lowlight(img, drawn['alpha'], drawn['beta'], drawn['gamma'], shot, read, rng)
        return out, 'lowlight', {'type': 'lowlight', **drawn, 'shot_noise': shot, 'read_noise': read}


class MotionBlurDegradation(Degradation):
    keys = ('length', 'anxiety')

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.length = spec.get('length', [5, 30])
        self.anxiety = spec.get('anxiety', [0.003, 0.01])

    @property
    def labels(self) -> list[str]:
        return ['deblur']

    def __call__(self, img, rng):
        length, anxiety = _draw(rng, self.length), _draw(rng, self.anxiety)
        kernel, shape = random_motion_kernel(rng, length, anxiety)
        params = {'type': 'motion_blur', 'length': length, 'anxiety': anxiety, **shape,
                  'kernel_size': int(kernel.shape[0])}
        return add_motion_blur(img, kernel), 'deblur', params


class ComposedDegradation(Degradation):
    """Several degradations applied in order to the same image (a mixed degradation)."""

    def __init__(self, steps: Sequence[Degradation]) -> None:
        self.steps = list(steps)
        self.spec = {'type': 'compose', 'steps': [s.spec for s in self.steps]}

    @property
    def labels(self) -> list[str]:
        return ['+'.join(parts) for parts in itertools.product(*(s.labels for s in self.steps))]

    def __call__(self, img, rng):
        labels, params = [], []
        for step in self.steps:
            img, label, drawn = step(img, rng)
            labels.append(label)
            params.append(drawn)
        return img, '+'.join(labels), {'type': 'compose', 'steps': params}


DEGRADATION_TYPES: dict[str, type[Degradation]] = {
    'noise': NoiseDegradation,
    'rain': RainDegradation,
    'haze': HazeDegradation,
    'downsample': DownsampleDegradation,
    'lowlight': LowlightDegradation,
    'motion_blur': MotionBlurDegradation,
}


def build_degradation(spec: dict[str, Any] | Sequence[dict[str, Any]]) -> Degradation:
    """Builds a :class:`Degradation` from an option dict, or a composed one from a list of dicts."""
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ValueError('a composed degradation needs at least one step')
        steps = [build_degradation(s) for s in spec]
        return steps[0] if len(steps) == 1 else ComposedDegradation(steps)
    if not isinstance(spec, dict) or 'type' not in spec:
        raise ValueError(f"a degradation must be a dict with a 'type' key, got {spec!r}")
    kind = spec['type']
    if kind not in DEGRADATION_TYPES:
        raise ValueError(f'unknown degradation type {kind!r}; choose from {sorted(DEGRADATION_TYPES)}')
    return DEGRADATION_TYPES[kind](spec)
