"""Low-light and motion-blur synthesis: seeded, reproducible, in range, and usable in MultiDegradationDataset."""
import cv2
import numpy as np
import pytest
import skimage.data

import ndr_plugin  # noqa: F401  (compat layer before basicsr)
from ndr_plugin.data.degradation_specs import build_degradation
from ndr_plugin.data.degradations import add_lowlight, darken, item_rng, lowlight_noise_levels
from ndr_plugin.data.motion_blur import add_motion_blur, motion_trajectory, random_motion_kernel, trajectory_kernel
from ndr_plugin.data.multi_degradation_dataset import MultiDegradationDataset


@pytest.fixture(scope='module')
def photo() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut()[:64, 100:196, ::-1])


@pytest.mark.parametrize('spec', [{'type': 'lowlight'}, {'type': 'motion_blur'},
                                  [{'type': 'motion_blur'}, {'type': 'lowlight'}, {'type': 'noise', 'sigmas': [15]}]])
def test_same_seed_same_bytes_other_seed_differs(photo, spec):
    degradation = build_degradation(spec)
    first, label, params = degradation(photo, item_rng(0, 'img'))
    again = degradation(photo, item_rng(0, 'img'))[0]
    other = degradation(photo, item_rng(1, 'img'))[0]
    assert first.dtype == np.float32 and first.shape == photo.shape
    assert 0.0 <= first.min() and first.max() <= 1.0
    assert first.tobytes() == again.tobytes() and first.tobytes() != other.tobytes()
    assert label in degradation.labels
    assert params['type'] in ('lowlight', 'motion_blur', 'compose')


def test_lowlight_darkens_and_noise_grows_with_signal(photo):
    clean = photo.astype(np.float32) / 255
    dark = darken(clean, 1.0, 0.5, 2.0)
    assert np.allclose(dark, 0.5 * clean**2, atol=1e-6)
    assert np.array_equal(add_lowlight(clean, 1.0, 0.5, 2.0), dark)  # no noise levels, no noise
    shot, read = 0.01, 1e-4
    noisy = np.stack([add_lowlight(clean, 1.0, 0.5, 2.0, shot, read, np.random.default_rng(s)) for s in range(40)])
    residual = noisy - dark
    inside = (dark > 0.05) & (dark < 0.4)  # away from clipping at 0
    low, high = inside & (dark < 0.12), inside & (dark > 0.25)
    for mask in (low, high):  # Poisson-Gaussian: variance = shot * y + read
        expected = (dark[mask] * shot + read).mean()
        assert abs(residual[:, mask].var() / expected - 1) < 0.1
    assert residual[:, high].var() > 2 * residual[:, low].var()


def test_lowlight_noise_levels_follow_brooks_line():
    levels = np.array([lowlight_noise_levels(np.random.default_rng(s)) for s in range(400)])
    shot, read = levels[:, 0], levels[:, 1]
    assert shot.min() >= 1e-4 and shot.max() <= 0.012
    slope = np.polyfit(np.log(shot), np.log(read), 1)[0]
    assert abs(slope - 2.18) < 0.15
    with pytest.raises(ValueError, match='shot noise range'):
        lowlight_noise_levels(np.random.default_rng(0), (0.0, 0.01))


def test_motion_kernel_is_a_normalised_path_of_the_given_length():
    points, shape = motion_trajectory(np.random.default_rng(3), 20.0, 0.005)
    assert np.isclose(np.abs(np.diff(points)).sum(), 20.0)
    assert set(shape) == {'centripetal', 'prob_big_shake', 'gaussian_shake', 'angle'}
    kernel = trajectory_kernel(points)
    assert kernel.dtype == np.float32 and kernel.shape[0] % 2 == 1 and kernel.shape[0] == kernel.shape[1]
    assert np.isclose(kernel.sum(), 1.0, atol=1e-5) and kernel.min() >= 0
    straight = trajectory_kernel(np.arange(11) + 0j)  # a horizontal 10 px path: one row of the kernel
    assert straight.shape == (13, 13) and np.count_nonzero(straight.sum(axis=1)) == 1
    again = random_motion_kernel(np.random.default_rng(3), 20.0, 0.005)[0]
    assert np.array_equal(kernel, again)


def test_motion_blur_keeps_flat_regions_and_blurs_edges(photo):
    flat = np.full((32, 32, 3), 0.4, np.float32)
    kernel = random_motion_kernel(np.random.default_rng(0), 15.0, 0.005)[0]
    assert np.allclose(add_motion_blur(flat, kernel), 0.4, atol=1e-5)
    blurred = add_motion_blur(photo, kernel)
    sharpness = [cv2.Laplacian(img.astype(np.float32), cv2.CV_32F).var() for img in (photo / 255.0, blurred)]
    assert sharpness[1] < 0.5 * sharpness[0]
    with pytest.raises(ValueError, match='odd square'):
        add_motion_blur(photo, np.ones((4, 4), np.float32) / 16)


def test_spec_errors_name_the_option():
    with pytest.raises(ValueError, match="unknown option.*'sigma'"):
        build_degradation({'type': 'lowlight', 'sigma': 3})
    with pytest.raises(ValueError, match="unknown option.*'kernel'"):
        build_degradation({'type': 'motion_blur', 'kernel': 3})
    with pytest.raises(ValueError, match='noise level range'):
        build_degradation({'type': 'lowlight', 'shot_noise': [0, 0.01], 'read_noise': 0.0})(
            np.zeros((8, 8, 3), np.uint8), np.random.default_rng(0))


def test_multi_degradation_dataset_synthesises_lowlight_and_blur(tmp_path, photo):
    clean = tmp_path / 'clean'
    clean.mkdir()
    for i in range(2):
        cv2.imwrite(str(clean / f'img{i}.png'), np.ascontiguousarray(np.roll(photo, 8 * i, axis=1)))
    sources = [{'name': 'dark', 'dataroot_gt': str(clean), 'degradation': {'type': 'lowlight'}},
               {'name': 'shake', 'dataroot_gt': str(clean), 'degradation': {'type': 'motion_blur'}},
               {'name': 'both', 'dataroot_gt': str(clean),
                'degradation': [{'type': 'motion_blur', 'length': [5, 10]}, {'type': 'lowlight'}]}]
    opt = {'sources': sources, 'phase': 'val', 'seed': 7}
    dataset, again = MultiDegradationDataset(opt), MultiDegradationDataset(opt)
    assert dataset.degradation_names == ['deblur', 'deblur+lowlight', 'lowlight']
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample['lq'].shape == sample['gt'].shape == (3, 64, 96)
        assert sample['lq'].min() >= 0 and sample['lq'].max() <= 1
        assert np.array_equal(sample['lq'].numpy(), again[index]['lq'].numpy())  # fixed per (seed, source, key)
    assert [dataset[i]['degradation'] for i in (0, 2, 4)] == ['lowlight', 'deblur', 'deblur+lowlight']
    assert dataset[0]['lq'].mean() < 0.6 * dataset[0]['gt'].mean()
    train = MultiDegradationDataset({**opt, 'phase': 'train', 'gt_size': 32})
    assert train[3]['lq'].shape == (3, 32, 32)
