"""The two metric protocols: BasicSR's built-ins (uint8, Gaussian SSIM) and the all-in-one tables' (float, skimage)."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import yaml

import ndr_plugin  # noqa: F401  (compat layer + registration first)
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils.registry import METRIC_REGISTRY
from ndr_plugin.metrics.aio_metric import calculate_psnr_aio, calculate_ssim_aio, crop_to_multiple
from ndr_plugin.metrics.evaluation import compute_metrics, metric_wants_float
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def _cbsd68_pair(shared_data, index: int = 0, sigma: float = 25.) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) float32 RGB in [0, 1]: a real CBSD68 image with seeded float Gaussian noise (NDR style)."""
    path = sorted((shared_data / 'CBSD68').glob('*.png'))[index]
    clean = cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.
    rng = np.random.default_rng(index)
    noisy = np.clip(clean + rng.standard_normal(clean.shape).astype(np.float32) * np.float32(sigma / 255.), 0, 1)
    return noisy, clean


def test_registered_and_declared_float():
    assert METRIC_REGISTRY.get('calculate_psnr_aio') is calculate_psnr_aio
    assert METRIC_REGISTRY.get('calculate_ssim_aio') is calculate_ssim_aio
    assert metric_wants_float('calculate_psnr_aio') and metric_wants_float('calculate_ssim_aio')
    assert not metric_wants_float('calculate_psnr') and not metric_wants_float('calculate_ssim')


def test_crop_to_multiple_matches_promptir_offsets():
    img = np.arange(500 * 321).reshape(500, 321)
    cropped = crop_to_multiple(img, 16)
    # 500 % 16 = 4 -> rows 2..497; 321 % 16 = 1 -> columns 0..319 (the odd pixel goes to the bottom/right).
    np.testing.assert_array_equal(cropped, img[2:498, 0:320])
    assert crop_to_multiple(img, 1).shape == img.shape
    with pytest.raises(ValueError, match='smaller than crop_multiple=16'):
        crop_to_multiple(img[:10], 16)


def test_aio_metrics_equal_skimage_on_cbsd68(shared_data):
    for index in (0, 1):
        noisy, clean = _cbsd68_pair(shared_data, index)
        h, w = clean.shape[:2]  # 481x321 or 321x481 -> 480x320 or 320x480, offsets 0
        gt, out = clean[:h - h % 16, :w - w % 16], noisy[:h - h % 16, :w - w % 16]
        assert calculate_psnr_aio(noisy, clean) == pytest.approx(peak_signal_noise_ratio(gt, out, data_range=1),
                                                                 abs=1e-9)
        assert calculate_ssim_aio(noisy, clean) == pytest.approx(
            structural_similarity(gt, out, data_range=1, channel_axis=-1), abs=1e-9)


def test_aio_metrics_clip_and_scale_integers():
    clean = skdata.astronaut()[:96, :128].astype(np.float32) / 255.
    restored = clean + np.float32(0.2) * (np.indices(clean.shape).sum(0) % 2).astype(np.float32) - np.float32(0.1)
    clipped = np.clip(restored, 0, 1)
    assert calculate_psnr_aio(restored, clean) == pytest.approx(peak_signal_noise_ratio(clean, clipped, data_range=1))
    as_uint8 = (clipped * 255).round().astype(np.uint8), (clean * 255).round().astype(np.uint8)
    assert calculate_ssim_aio(*as_uint8) == pytest.approx(structural_similarity(
        as_uint8[1].astype(np.float32) / 255, as_uint8[0].astype(np.float32) / 255, data_range=1, channel_axis=-1))
    as_uint16 = (clipped * 65535).round().astype(np.uint16), (clean * 65535).round().astype(np.uint16)
    assert calculate_psnr_aio(*as_uint16) == pytest.approx(calculate_psnr_aio(clipped, clean), abs=1e-3)
    gray = skdata.camera()[:64, :80]
    assert calculate_ssim_aio(gray, gray) == pytest.approx(1.0)
    assert calculate_psnr_aio(gray, gray) == math.inf


def test_aio_metrics_reject_bad_input():
    img = np.zeros((32, 32, 3), np.float32)
    with pytest.raises(ValueError, match='shapes differ'):
        calculate_psnr_aio(img, img[:16])
    with pytest.raises(TypeError, match='dtype int64'):
        calculate_ssim_aio(img.astype(np.int64), img.astype(np.int64))


def test_protocols_differ_as_documented(shared_data):
    """On the same noisy image, BasicSR's Gaussian-window uint8 SSIM and the tables' uniform-window SSIM disagree."""
    noisy, clean = _cbsd68_pair(shared_data, 0)
    noisy8, clean8 = (noisy * 255).round().astype(np.uint8), (clean * 255).round().astype(np.uint8)
    basicsr_ssim, aio_ssim = calculate_ssim(noisy8, clean8, crop_border=0), calculate_ssim_aio(noisy, clean)
    assert aio_ssim - basicsr_ssim > 0.01  # 0.563 vs 0.534 for sigma 25 on the first CBSD68 image
    assert calculate_psnr(noisy8, clean8, crop_border=0) == pytest.approx(calculate_psnr_aio(noisy, clean), abs=0.05)


def test_compute_metrics_feeds_each_protocol_its_input(shared_data):
    noisy, clean = _cbsd68_pair(shared_data, 2)
    output = torch.from_numpy(noisy.transpose(2, 0, 1).copy())[None]
    gt = torch.from_numpy(clean.transpose(2, 0, 1).copy())[None]
    metric_opts = yaml.safe_load("""
        psnr: {type: calculate_psnr, crop_border: 4, test_y_channel: true}
        ssim: {type: calculate_ssim, crop_border: 0}
        psnr_aio: {type: calculate_psnr_aio}
        ssim_aio: {type: calculate_ssim_aio, crop_multiple: 8}
    """)
    scores = compute_metrics(output, gt, metric_opts)
    assert list(scores) == ['psnr', 'ssim', 'psnr_aio', 'ssim_aio']
    # BasicSR's metrics see what SRModel's validation gives them: rounded uint8, BGR.
    out8 = (noisy * 255).round().astype(np.uint8)[..., ::-1]
    gt8 = (clean * 255).round().astype(np.uint8)[..., ::-1]
    assert scores['psnr'] == pytest.approx(calculate_psnr(out8, gt8, crop_border=4, test_y_channel=True), abs=1e-9)
    assert scores['ssim'] == pytest.approx(calculate_ssim(out8, gt8, crop_border=0), abs=1e-9)
    # Ours see the float image: equal to skimage on float data, not to the value after 8-bit rounding.
    h, w = clean.shape[:2]
    assert scores['psnr_aio'] == pytest.approx(
        peak_signal_noise_ratio(clean[:h - h % 16, :w - w % 16], noisy[:h - h % 16, :w - w % 16], data_range=1),
        abs=1e-6)
    assert scores['psnr_aio'] != pytest.approx(calculate_psnr_aio(out8, gt8), abs=1e-4)
    assert scores['ssim_aio'] == pytest.approx(
        structural_similarity(clean[:h - h % 8, :w - w % 8], noisy[:h - h % 8, :w - w % 8], data_range=1,
                              channel_axis=-1), abs=1e-6)


def test_compute_metrics_errors():
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match='one image per call'):
        compute_metrics(x, x, {'psnr_aio': {'type': 'calculate_psnr_aio'}})
    with pytest.raises(ValueError, match='shapes differ'):
        compute_metrics(x[:1], x[1:, :, :8], {'psnr_aio': {'type': 'calculate_psnr_aio'}})
    with pytest.raises(KeyError, match="val.metrics.psnr has no 'type'"):
        compute_metrics(x[:1], x[1:], {'psnr': {'crop_border': 0}})


def _hand_ssim_ndr(img: np.ndarray, img2: np.ndarray) -> float:
    """NDR's test SSIM written out: 11x11 Gaussian (sigma 1.5) window over every valid position, x255, per channel."""
    offsets = np.arange(11) - 5
    g = np.exp(-offsets ** 2 / (2 * 1.5 ** 2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    scores = []
    for c in range(img.shape[2]):
        a = np.lib.stride_tricks.sliding_window_view(img[..., c] * 255., (11, 11))
        b = np.lib.stride_tricks.sliding_window_view(img2[..., c] * 255., (11, 11))
        mu_a, mu_b = (a * window).sum((-2, -1)), (b * window).sum((-2, -1))
        var_a = (a * a * window).sum((-2, -1)) - mu_a ** 2
        var_b = (b * b * window).sum((-2, -1)) - mu_b ** 2
        cov = (a * b * window).sum((-2, -1)) - mu_a * mu_b
        scores.append((((2 * mu_a * mu_b + c1) * (2 * cov + c2))
                       / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))).mean())
    return float(np.mean(scores))


def test_ndr_protocol_against_a_hand_computation(shared_data):
    from ndr_plugin.metrics.ndr_metric import calculate_psnr_ndr, calculate_ssim_ndr
    noisy, clean = _cbsd68_pair(shared_data, 0)
    noisy, clean = noisy[:37, :45].astype(np.float64), clean[:37, :45].astype(np.float64)
    restored = noisy + 0.05  # leaves [0, 1]: the metric clips it
    clipped = np.clip(restored, 0, 1)
    assert calculate_psnr_ndr(restored, clean) == pytest.approx(
        10 * math.log10(1 / np.mean((clipped - clean) ** 2)), abs=1e-9)
    assert calculate_ssim_ndr(restored, clean) == pytest.approx(_hand_ssim_ndr(clipped, clean), abs=1e-6)
    # No crop to x16 and a Gaussian window: not the all-in-one tables' numbers.
    assert calculate_ssim_ndr(restored, clean) != pytest.approx(calculate_ssim_aio(restored, clean), abs=1e-4)
    assert calculate_psnr_ndr(clean, clean) == math.inf
    assert METRIC_REGISTRY.get('calculate_psnr_ndr') is calculate_psnr_ndr
    assert metric_wants_float('calculate_psnr_ndr') and metric_wants_float('calculate_ssim_ndr')
    with pytest.raises(ValueError, match='smaller than the 11x11 SSIM window'):
        calculate_ssim_ndr(clean[:8, :8], clean[:8, :8])
