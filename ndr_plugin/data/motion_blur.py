"""Seeded camera-shake motion blur: random trajectories rasterised into blur kernels (GoPro-style training variety).

The trajectory model is Boracchi & Foi, "Modeling the Performance of Image Restoration From Motion Blur", TIP 2012, as
DeblurGAN (Kupyn et al., CVPR 2018) implements it in ``KupynOrest/DeblurGAN`` ``motion_blur/generate_trajectory.py``: a
point moves with constant speed (the path has a fixed length); at each step its velocity gets a Gaussian kick scaled by
``gaussian_shake``, a pull back to the start scaled by ``centripetal``, and, with probability ``prob_big_shake *
anxiety``, a sudden near-reversal (an abrupt shake). Per trajectory, as there: centripetal ~ U(0, 0.7), prob_big_shake ~
U(0, 0.2), gaussian_shake ~ U(0, 10), initial direction ~ U(0, 360) degrees; 2,000 steps. The anxiety range [0.003,
0.01] spans the values DeblurGAN's blurring script samples (Boracchi & Foi recommend 0.005).

Ours: the kernel is the whole trajectory (one exposure; DeblurGAN also cuts shorter exposures from it), splatted
bilinearly into the smallest odd square that holds it, and the path length is given in pixels of the image blurred.
GoPro's blur comes from averaging real high-speed frames, so this is "synthetic, not official".
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ndr_plugin.data.degradations import as_float

__all__ = ['motion_trajectory', 'trajectory_kernel', 'random_motion_kernel', 'add_motion_blur']

STEPS = 2000  # DeblurGAN's ``iters``


def motion_trajectory(rng: np.random.Generator, length: float, anxiety: float,
                      steps: int = STEPS) -> tuple[np.ndarray, dict[str, float]]:
    """Positions (complex x + iy, in px) of a random shake path of total ``length`` px, and the shape drawn."""
    if length <= 0 or anxiety < 0:
        raise ValueError(f'motion blur length must be > 0 and anxiety >= 0, got {length}, {anxiety}')
    shape = {'centripetal': 0.7 * float(rng.random()), 'prob_big_shake': 0.2 * float(rng.random()),
             'gaussian_shake': 10.0 * float(rng.random()), 'angle': 360.0 * float(rng.random())}
    step = float(length) / (steps - 1)
    big = rng.random(steps - 1) < shape['prob_big_shake'] * anxiety
    turn = np.exp(1j * (math.pi + rng.random(steps - 1) - 0.5))
    kicks = rng.standard_normal(steps - 1) + 1j * rng.standard_normal(steps - 1)
    velocity = complex(np.exp(1j * math.radians(shape['angle']))) * step
    points = np.zeros(steps, np.complex128)
    # Sequential by nature: each kick depends on where the path is (the centripetal pull).
    for t in range(steps - 1):
        change = anxiety * (shape['gaussian_shake'] * kicks[t] - shape['centripetal'] * points[t]) * step
        if big[t]:
            change += 2 * velocity * turn[t]
        velocity += change
        velocity *= step / max(abs(velocity), 1e-12)
        points[t + 1] = points[t] + velocity
    return points, shape


def trajectory_kernel(points: np.ndarray) -> np.ndarray:
    """The blur kernel of a trajectory: each position adds bilinear weights; odd square, sums to 1, float32."""
    x, y = points.real, points.imag
    extent = max(float(np.ptp(x)), float(np.ptp(y)))
    size = 2 * (math.ceil(extent / 2) + 1) + 1
    centre = (size - 1) / 2
    x = x - (x.min() + x.max()) / 2 + centre
    y = y - (y.min() + y.max()) / 2 + centre
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    kernel = np.zeros((size, size), np.float64)
    for dy, dx, weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)),
                           (1, 1, fy * fx)):
        np.add.at(kernel, (y0 + dy, x0 + dx), weight)
    return (kernel / kernel.sum()).astype(np.float32)


def random_motion_kernel(rng: np.random.Generator, length: float,
                         anxiety: float) -> tuple[np.ndarray, dict[str, float]]:
    """A random shake kernel and the trajectory parameters that made it."""
    points, shape = motion_trajectory(rng, length, anxiety)
    return trajectory_kernel(points), shape


def add_motion_blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolves every channel with ``kernel`` (reflected borders); float32 in [0, 1]."""
    kernel = np.asarray(kernel, np.float32)
    if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f'a blur kernel must be an odd square, got shape {kernel.shape}')
    # filter2D correlates; flipping the kernel makes it a convolution (the trajectory's direction is kept).
    blurred = cv2.filter2D(as_float(img), -1, cv2.flip(kernel, -1), borderType=cv2.BORDER_REFLECT)
    return np.clip(blurred, 0.0, 1.0).astype(np.float32)
