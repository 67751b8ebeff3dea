"""Synthesis statistics and reproducibility of ndr_plugin.data.degradations on real images."""
import cv2
import numpy as np
import pytest
import skimage.data

from ndr_plugin.data import degradations as deg
from ndr_plugin.data.degradation_specs import build_degradation

@pytest.fixture(scope='module')
def astronaut() -> np.ndarray:
    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)[:256, 128:384]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64))**2)
    return float('inf') if mse == 0 else 10 * np.log10(255.0**2 / mse)


# ---------------------------------------------------------------------------------------------------------- noise
@pytest.mark.parametrize('sigma', [15, 25, 50])
def test_noise_std_matches_sigma(astronaut, sigma):
    noisy = deg.add_gaussian_noise(astronaut, sigma, np.random.default_rng(1), clip=False)
    residual = noisy.astype(np.float64) * 255 - astronaut
    assert abs(residual.std() / sigma - 1) < 0.02
    assert abs(residual.mean()) < 0.02 * sigma
    assert noisy.dtype == np.float32


def test_noise_clip_and_quantize(astronaut):
    clipped = deg.add_gaussian_noise(astronaut, 50, np.random.default_rng(7))
    assert clipped.min() >= 0 and clipped.max() <= 1
    assert not np.allclose(clipped * 255, np.round(clipped * 255), atol=1e-3)  # float output stays off the 8-bit grid
    rounded = deg.add_gaussian_noise(astronaut, 50, np.random.default_rng(7), quantize='round')
    truncated = deg.add_gaussian_noise(astronaut, 50, np.random.default_rng(7), quantize='truncate')
    for out in (rounded, truncated):
        assert np.allclose(out * 255, np.round(out * 255), atol=1e-4)
    # AirNet/PromptIR: uint8(clip(x + sigma n)) truncates, so it is never above the rounded value and 0.5 lower on avg
    r, t = deg.to_uint8(rounded).astype(int), deg.to_uint8(truncated).astype(int)
    assert np.all(t <= r) and 0.3 < (r - t).mean() < 0.7
    # the same realisation as an explicit uint8 AirNet computation
    noise = np.random.default_rng(7).standard_normal(astronaut.shape)
    airnet = np.clip(astronaut + 50 * noise, 0, 255).astype(np.uint8)
    assert np.array_equal(deg.to_uint8(truncated), airnet)


def test_noise_is_seeded(astronaut):
    a = deg.add_gaussian_noise(astronaut, 25, deg.item_rng(0, 'noise25_0001'))
    b = deg.add_gaussian_noise(astronaut, 25, deg.item_rng(0, 'noise25_0001'))
    c = deg.add_gaussian_noise(astronaut, 25, deg.item_rng(0, 'noise25_0002'))
    assert a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()
    with pytest.raises(ValueError, match='quantize'):
        deg.add_gaussian_noise(astronaut, 25, np.random.default_rng(0), quantize='floor')


# ----------------------------------------------------------------------------------------------------------- rain
@pytest.mark.parametrize('style', ['light', 'heavy'])
def test_rain_only_brightens_equally_per_channel(astronaut, style):
    out, label, params = build_degradation({'type': 'rain', 'style': style})(astronaut, np.random.default_rng(3))
    assert label == 'derain' and params['style'] == style
    clean = astronaut.astype(np.float32) / 255
    residual = out - clean
    assert residual.min() >= -1e-6  # never darker
    unclipped = np.all(out < 1.0, axis=2)
    spread = residual.max(axis=2) - residual.min(axis=2)
    assert spread[unclipped].max() < 1e-5  # the same amount in B, G and R
    brightened = (deg.to_uint8(out).astype(int) - astronaut).mean(axis=2) > 3
    low, high = (0.1, 0.5) if style == 'light' else (0.45, 0.99)
    assert low < brightened.mean() < high  # Rain100L about 25 %, Rain100H 52-96 % of the pixels


def test_rain_parameters_shape_the_streaks():
    flat = np.full((96, 96, 3), 0.2, np.float32)
    sparse = deg.add_rain(flat, np.random.default_rng(0), density=0.002, length=15, intensity=0.3)
    dense = deg.add_rain(flat, np.random.default_rng(0), density=0.02, length=15, intensity=0.3)
    assert (dense - flat).mean() > 3 * (sparse - flat).mean()
    vertical = deg.rain_layer(128, 128, np.random.default_rng(0), density=0.003, length=31, angle=0.0)
    # a vertical streak field varies much less along columns than along rows
    assert np.abs(np.diff(vertical, axis=0)).mean() < 0.5 * np.abs(np.diff(vertical, axis=1)).mean()


# ----------------------------------------------------------------------------------------------------------- haze
def test_haze_inverts_with_known_transmission_and_light(astronaut):
    depth = 2 + 2 * deg.estimate_depth(astronaut, 'blend')
    light, beta = 0.9, 0.16
    hazy = deg.add_haze(astronaut, light, beta, depth)
    t = np.exp(-beta * depth)[..., None]
    recovered = (hazy - light * (1 - t)) / t
    assert np.abs(recovered - astronaut / 255.0).max() < 1e-5
    # the same with the estimated depth mapped to the default range, and t agrees across channels (scalar A)
    auto = deg.add_haze(astronaut, light, beta)
    assert np.array_equal(auto, hazy)
    clean = astronaut / 255.0
    t_est = (auto - light) / (clean - light)
    valid = np.abs(clean - light).min(axis=2) > 0.2
    assert np.median(np.ptp(t_est, axis=2)[valid]) < 1e-4
    assert 0.4 < t.min() and t.max() < 0.8  # SOTS-outdoor pairs show t of about 0.46-0.87


def test_depth_heuristics(astronaut):
    for method in ('vertical', 'dark_channel', 'blend'):
        depth = deg.estimate_depth(astronaut, method)
        assert depth.shape == astronaut.shape[:2] and depth.min() >= 0 and depth.max() <= 1
    vertical = deg.estimate_depth(astronaut, 'vertical')
    assert vertical[0].min() == 1 and vertical[-1].max() == 0
    with pytest.raises(ValueError, match='depth method'):
        deg.estimate_depth(astronaut, 'midas')
    with pytest.raises(ValueError, match='depth map shape'):
        deg.add_haze(astronaut, 0.9, 0.1, np.ones((3, 3)))


# ----------------------------------------------------------------------------------------------------------- bicubic
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_bicubic_reproduces_matlab_set5(shared_data, scale):
    folder = shared_data / 'Set5' / f'image_SRF_{scale}'
    for index in range(1, 6):
        hr = cv2.imread(str(folder / f'img_00{index}_SRF_{scale}_HR.png'))
        lr = cv2.imread(str(folder / f'img_00{index}_SRF_{scale}_LR.png'))
        ours = deg.lr_image(hr, scale)
        assert ours.shape == lr.shape
        assert psnr(ours, lr) >= 55.0  # the bar of the task is 50 dB; a correct port gives about 56 dB
        assert np.mean(np.abs(ours.astype(int) - lr) <= 1) > 0.99


def test_bicubic_matches_basicsr_port():
    from basicsr.utils.matlab_functions import imresize
    img = np.random.default_rng(0).random((45, 38, 3)).astype(np.float32)
    for scale in (1 / 2, 1 / 3, 1 / 4, 2, 3):
        assert np.abs(deg.bicubic_resize(img, scale) - imresize(img, scale)).max() < 1e-5


def test_bicubic_degrade_keeps_size(astronaut):
    for scale in (2, 3, 4):
        patch = astronaut[:128, :127]  # not a multiple of 3 or 4: padded internally
        out = deg.bicubic_degrade(patch, scale)
        assert out.shape == patch.shape[:2] + (3, ) and out.flags['C_CONTIGUOUS']
        assert 22 < psnr(deg.to_uint8(out), patch) < 40
    # on a mod-cropped image the result equals MATLAB-style down-then-up with 8-bit LR
    lr = deg.lr_image(astronaut, 4)
    assert np.array_equal(deg.to_uint8(deg.bicubic_degrade(astronaut, 4)), deg.to_uint8(deg.bicubic_resize(lr, 4)))
    with pytest.raises(ValueError, match='mod-crop'):
        deg.lr_image(astronaut[:127], 2)


# ----------------------------------------------------------------------------------------------------------- specs
def test_composition_and_labels(astronaut):
    spec = [{'type': 'haze'}, {'type': 'rain'}, {'type': 'downsample', 'scales': [2]},
            {'type': 'noise', 'sigmas': [25]}]
    mixed = build_degradation(spec)
    assert mixed.labels == ['dehaze+derain+sr_x2+denoise_25']
    out, label, params = mixed(astronaut, np.random.default_rng(5))
    again, _, _ = mixed(astronaut, np.random.default_rng(5))
    assert label == mixed.labels[0] and [p['type'] for p in params['steps']] == ['haze', 'rain', 'downsample', 'noise']
    assert out.tobytes() == again.tobytes() and out.shape == astronaut.shape
    assert build_degradation({'type': 'noise'}).labels == ['denoise_15', 'denoise_25', 'denoise_50']
    assert build_degradation({'type': 'downsample', 'scales': [2, 4]}).labels == ['sr_x2', 'sr_x4']


def test_spec_errors():
    with pytest.raises(ValueError, match="unknown degradation type 'blur'"):
        build_degradation({'type': 'blur'})
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['sigma'\]"):
        build_degradation({'type': 'noise', 'sigma': 25})
    with pytest.raises(ValueError, match='rain style'):
        build_degradation({'type': 'rain', 'style': 'drizzle'})
    with pytest.raises(ValueError, match='scales'):
        build_degradation({'type': 'downsample', 'scales': [1]})


def test_noise_sigma_range_draws_a_blind_level(astronaut):
    spec = build_degradation({'type': 'noise', 'sigma_range': [0, 55]})
    assert spec.labels == ['denoise']
    img = astronaut[:64, :64].astype(np.float32) / 255.0
    sigmas = []
    for seed in range(40):
        out, label, params = spec(img, np.random.default_rng(seed))
        assert label == 'denoise' and 0 <= params['sigma'] <= 55
        sigmas.append(params['sigma'])
    assert min(sigmas) < 15 and max(sigmas) > 40  # spread over the range, not a few fixed levels
    _, _, again = spec(img, np.random.default_rng(3))
    assert again['sigma'] == sigmas[3]
    for bad in ({'sigma_range': [30, 10]}, {'sigma_range': [-1, 5]}, {'sigma_range': 25},
                {'sigma_range': [0, 55], 'sigmas': [25]}):
        with pytest.raises(ValueError, match='sigma'):
            build_degradation({'type': 'noise', **bad})
