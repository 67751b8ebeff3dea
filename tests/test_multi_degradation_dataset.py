"""MultiDegradationDataset and SynthesizedTestDataset with real BasicSR loaders, samplers and seeding."""
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch

import ndr_plugin  # noqa: F401  (compat layer before basicsr)
from basicsr.data import build_dataloader, build_dataset
from basicsr.data.data_sampler import EnlargedSampler
from basicsr.data.prefetch_dataloader import CPUPrefetcher
from basicsr.utils import set_random_seed
from ndr_plugin.data.lmdb_io import LmdbFormatError
from ndr_plugin.prepare.lmdb_writer import write_lmdb, write_paired_lmdb

GT_SIZE = 48


def _bgr(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


@pytest.fixture(scope='module')
def roots(tmp_path_factory) -> dict[str, Path]:
    """Small real sources: a clean LMDB (4 images), a paired LMDB (2 pairs), a clean folder (5 images)."""
    root = tmp_path_factory.mktemp('sources')
    pictures = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket(),
                skimage.data.camera()]
    clean = [(f'clean_{i:04d}', _bgr(p)[:80, :96]) for i, p in enumerate(pictures[:4])]
    write_lmdb(root / 'clean.lmdb', clean)
    rng = np.random.default_rng(0)
    pairs = []
    for i, p in enumerate(pictures[2:4]):
        gt = _bgr(p)[:64, :72]
        pairs.append((f'rain_{i:04d}', gt, np.clip(gt + rng.integers(0, 40, gt.shape[:2])[..., None], 0, 255)))
    write_paired_lmdb(root / 'paired', pairs, png=True)
    folder = root / 'folder'
    folder.mkdir()
    for i, p in enumerate(pictures):
        cv2.imwrite(str(folder / f'{i}.png'), _bgr(p)[:60, :60])
    return {'clean': root / 'clean.lmdb', 'gt': root / 'paired' / 'gt.lmdb', 'lq': root / 'paired' / 'lq.lmdb',
            'folder': folder, 'root': root}


def make(roots, **overrides) -> torch.utils.data.Dataset:
    opt = {
        'name': 'aio', 'type': 'MultiDegradationDataset', 'phase': 'train', 'scale': 1, 'gt_size': GT_SIZE,
        'use_hflip': True, 'use_rot': True,
        'sources': [
            {'name': 'denoise', 'dataroot_gt': str(roots['clean']), 'degradation': {'type': 'noise',
                                                                                     'sigmas': [15, 25, 50]},
             'ratio': 3},
            {'name': 'derain', 'dataroot_gt': str(roots['gt']), 'dataroot_lq': str(roots['lq']), 'ratio': 120},
            {'name': 'sr', 'dataroot_gt': str(roots['folder']), 'io_backend': {'type': 'disk'},
             'degradation': {'type': 'downsample', 'scales': [2, 3]}},
        ],
    }
    opt.update(overrides)
    return build_dataset(opt)


def test_samples_follow_the_contract(roots):
    dataset = make(roots)
    assert len(dataset) == 4 * 3 + 2 * 120 + 5
    assert dataset.degradation_names == ['denoise_15', 'denoise_25', 'denoise_50', 'derain', 'sr_x2', 'sr_x3']
    set_random_seed(0)
    for index in (0, 5, 12, 13, 200, len(dataset) - 1):
        sample = dataset[index]
        assert set(sample) == {'lq', 'gt', 'lq_path', 'gt_path', 'degradation', 'label'}
        assert sample['lq'].shape == sample['gt'].shape == (3, GT_SIZE, GT_SIZE)
        assert sample['lq'].dtype == torch.float32 and 0 <= sample['lq'].min() and sample['lq'].max() <= 1
        assert dataset.degradation_names[sample['label']] == sample['degradation']
        assert not torch.equal(sample['lq'], sample['gt'])
        source, _ = dataset.locate(index)
        assert sample['degradation'].startswith({'denoise': 'denoise_', 'derain': 'derain', 'sr': 'sr_x'}[source])
    assert dataset[12]['gt_path'] == 'rain_0000' and dataset[len(dataset) - 1]['gt_path'].endswith('4.png')


def test_paired_pixels_are_cropped_together(roots):
    """A paired sample is a crop of the stored pair: same place in LQ and GT, RGB order."""
    dataset = make(roots, use_hflip=False, use_rot=False)
    set_random_seed(3)
    sample = dataset[12]
    stored = {role: cv2.imread(str(roots['root'] / 'paired' / role / 'rain_0000.png')) for role in ('gt', 'lq')}
    crop_gt = np.round(sample['gt'].numpy().transpose(1, 2, 0)[..., ::-1] * 255).astype(np.uint8)
    crop_lq = np.round(sample['lq'].numpy().transpose(1, 2, 0)[..., ::-1] * 255).astype(np.uint8)
    match = cv2.matchTemplate(stored['gt'], crop_gt, cv2.TM_SQDIFF)
    y, x = np.unravel_index(np.argmin(match), match.shape)
    assert np.array_equal(stored['gt'][y:y + GT_SIZE, x:x + GT_SIZE], crop_gt)
    assert np.array_equal(stored['lq'][y:y + GT_SIZE, x:x + GT_SIZE], crop_lq)


def test_crop_offsets_reach_the_last_row_and_column(tmp_path):
    """Offsets are uniform in [0, h - gt_size] inclusive (the official NDR/PromptIR crop misses the last one)."""
    size = 8
    rows, cols = np.mgrid[0:size + 1, 0:size + 1]
    img = np.dstack([rows * 20, cols * 20, np.zeros_like(rows)]).astype(np.uint8)  # BGR: B = row, G = column
    write_paired_lmdb(tmp_path / 'tiny', [('tiny_0000', img, img)])
    dataset = build_dataset({'name': 't', 'type': 'MultiDegradationDataset', 'phase': 'train', 'gt_size': size,
                             'use_hflip': False, 'use_rot': False,
                             'sources': [{'name': 'tiny', 'dataroot_gt': str(tmp_path / 'tiny' / 'gt.lmdb'),
                                          'dataroot_lq': str(tmp_path / 'tiny' / 'lq.lmdb')}]})
    set_random_seed(0)
    offsets = Counter()
    for _ in range(200):
        gt = dataset[0]['gt']  # RGB tensor: channel 2 holds the row index, channel 1 the column index
        offsets[(round(gt[2, 0, 0].item() * 255 / 20), round(gt[1, 0, 0].item() * 255 / 20))] += 1
    assert set(offsets) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert min(offsets.values()) > 25


def test_sampling_ratios_hold(roots):
    dataset = make(roots)
    expected = {'denoise': 12 / 257, 'derain': 240 / 257, 'sr': 5 / 257}
    sampler = EnlargedSampler(dataset, num_replicas=1, rank=0, ratio=40)
    sampler.set_epoch(3)
    drawn = Counter(dataset.locate(i)[0] for i in sampler)
    total = sum(drawn.values())
    for name, share in expected.items():
        assert abs(drawn[name] / total - share) < 0.002
    per_image = Counter(dataset.locate(i) for i in range(len(dataset)))
    assert per_image[('denoise', 0)] == 3 and per_image[('derain', 1)] == 120 and per_image[('sr', 4)] == 1
    uniform = Counter(dataset.locate(int(i))[0] for i in np.random.default_rng(0).integers(len(dataset), size=20000))
    for name, share in expected.items():
        assert abs(uniform[name] / 20000 - share) < 0.01


def _batches(roots, seed: int, workers: int, prefetch: str | None = None) -> list[dict]:
    dataset = make(roots)
    set_random_seed(seed)
    dataset[12]  # the main process holds the LMDBs open when the workers fork: they must still be able to open them
    sampler = EnlargedSampler(dataset, 1, 0, 1)
    loader_opt = {'phase': 'train', 'num_worker_per_gpu': workers, 'batch_size_per_gpu': 4, 'prefetch_mode': prefetch}
    loader = build_dataloader(dataset, loader_opt, num_gpu=0, dist=False, sampler=sampler, seed=seed)
    prefetcher = CPUPrefetcher(loader)
    return [prefetcher.next() for _ in range(3)]


def test_workers_and_seeding_reproduce_batches(roots):
    first = _batches(roots, seed=10, workers=2)
    second = _batches(roots, seed=10, workers=2, prefetch='cpu')
    other = _batches(roots, seed=11, workers=2)
    for a, b in zip(first, second):
        assert torch.equal(a['lq'], b['lq']) and torch.equal(a['gt'], b['gt'])
        assert a['degradation'] == b['degradation'] and torch.equal(a['label'], b['label'])
        assert a['lq'].shape == (4, 3, GT_SIZE, GT_SIZE)
    assert not all(torch.equal(a['lq'], c['lq']) for a, c in zip(first, other))


def test_bad_options_and_data_are_named(roots, tmp_path):
    base = {'name': 'x', 'dataroot_gt': str(roots['clean']), 'degradation': {'type': 'noise'}}
    cases = [
        ({**base, 'datarot_lq': 'typo'}, ValueError, r"source 'x': unknown option\(s\) \['datarot_lq'\]"),
        ({**base, 'dataroot_gt': str(tmp_path / 'nope.lmdb')}, FileNotFoundError,
         r"source 'x': dataroot_gt does not exist: .*nope.lmdb"),
        ({**base, 'degradation': {'type': 'snow'}}, ValueError, r"source 'x': unknown degradation type 'snow'"),
        ({'name': 'x', 'dataroot_gt': str(roots['clean'])}, ValueError, "neither 'dataroot_lq'"),
        ({**base, 'ratio': 0.5}, ValueError, 'ratio must be an integer >= 1'),
        ({**base, 'dataroot_lq': str(roots['lq'])}, ValueError, r'keys of .*clean.lmdb and .*lq.lmdb differ'),
    ]
    for source, error, message in cases:
        with pytest.raises(error, match=message):
            make(roots, sources=[source])
    with pytest.raises(ValueError, match=r"repeated: \['x'\]"):
        make(roots, sources=[base, base])
    with pytest.raises(ValueError, match="'sources'"):
        make(roots, sources=[])

    broken = tmp_path / 'broken.lmdb'
    write_lmdb(broken, [('b_0000', skimage.data.coffee()[:60, :60])])
    (broken / 'meta_info.txt').write_text('b_0000.png (60,60,3) 1\nb_0001.png (60,60,3) 1\n')
    with pytest.raises(LmdbFormatError, match=r"source 'x': .*broken.lmdb: meta_info.txt does not match"):
        make(roots, sources=[{**base, 'dataroot_gt': str(broken)}])

    small = make(roots, gt_size=90)
    with pytest.raises(ValueError, match=r"source 'denoise': image clean_0000 is 96x80, smaller than gt_size 90"):
        small[0]

    gt_dir, lq_dir = tmp_path / 'gt', tmp_path / 'lq'
    gt_dir.mkdir()
    lq_dir.mkdir()
    cv2.imwrite(str(gt_dir / 'a.png'), skimage.data.coffee()[:64, :64])
    cv2.imwrite(str(lq_dir / 'a.png'), skimage.data.coffee()[:60, :64])
    mismatched = make(roots, sources=[{'name': 'pairs', 'dataroot_gt': str(gt_dir), 'dataroot_lq': str(lq_dir)}])
    with pytest.raises(ValueError, match=r"LQ .*a.png is 64x60 but GT .*a.png is 64x64"):
        mismatched[0]
    (lq_dir / 'a.png').unlink()
    with pytest.raises(ValueError, match=r'a.png: .*missing pair partner'):
        make(roots, sources=[{'name': 'pairs', 'dataroot_gt': str(gt_dir), 'dataroot_lq': str(lq_dir)}])


def test_synthesized_test_dataset_is_fixed_per_image(roots):
    opt = {'name': 'cbsd', 'type': 'SynthesizedTestDataset', 'phase': 'val', 'dataroot_gt': str(roots['folder']),
           'degradation': {'type': 'noise', 'sigmas': [25]}, 'seed': 0, 'crop_multiple': 16}
    dataset = build_dataset(opt)
    first = [dataset[i] for i in range(len(dataset))]
    again = [dataset[i] for i in reversed(range(len(dataset)))][::-1]
    for a, b in zip(first, again):
        assert torch.equal(a['lq'], b['lq']) and a['degradation'] == 'denoise_25' and a['label'] == 0
        assert a['gt'].shape == (3, 48, 48)  # 60 centre-cropped to a multiple of 16
    reseeded = build_dataset({**opt, 'seed': 1})
    assert not torch.equal(reseeded[0]['lq'], first[0]['lq'])
    residual = torch.cat([(s['lq'] - s['gt']).flatten() for s in first]) * 255
    assert 20 < residual.std() < 26  # float noise, clipped at 0 and 1


def test_validation_phase_gives_whole_images_degraded_the_same_way_each_time(roots):
    dataset = make(roots, phase='val')
    first, again = dataset[0], dataset[0]
    assert first['gt'].shape == (3, 80, 96) and torch.equal(first['lq'], again['lq'])
    assert not torch.equal(make(roots, phase='val', seed=1)[0]['lq'], first['lq'])


def test_validation_images_from_a_folder_do_not_depend_on_where_it_lies(tmp_path):
    from ndr_plugin.data.multi_degradation_dataset import MultiDegradationDataset
    crops = [_bgr(skimage.data.astronaut())[i * 40:i * 40 + 48, :64] for i in range(2)]
    outputs = []
    for place in ('here', 'moved/elsewhere'):
        folder = tmp_path / place / 'clean'
        folder.mkdir(parents=True)
        for i, crop in enumerate(crops):
            cv2.imwrite(str(folder / f'img{i}.png'), crop)
        dataset = MultiDegradationDataset({'phase': 'val', 'seed': 3, 'sources': [
            {'name': 'noise', 'dataroot_gt': str(folder), 'degradation': {'type': 'noise', 'sigmas': [25]}}]})
        outputs.append([dataset[i]['lq'].numpy() for i in range(len(dataset))])
    assert all(np.array_equal(a, b) for a, b in zip(*outputs))
