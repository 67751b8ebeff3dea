"""Five-task and composite kinds on miniature copies of GoPro, LOL and CDD-11 as distributed, composite-synth and the
generic paired kind: read back through BasicSR and MultiDegradationDataset, split checks, bad layouts."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

import ndr_plugin  # noqa: F401  (compat layer before basicsr)
from basicsr.data.paired_image_dataset import PairedImageDataset
from ndr_plugin.data.dataset_files import BadInputError
from ndr_plugin.data.multi_degradation_dataset import MultiDegradationDataset
from ndr_plugin.prepare.cli import main
from ndr_plugin.prepare.kinds import prepare

PHOTOS = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]


def tiny(index: int, shift: int = 0) -> np.ndarray:
    """A 24x32 BGR crop of a skimage photograph; ``shift`` makes a visibly different partner."""
    img = PHOTOS[index % len(PHOTOS)][40 + 8 * index:64 + 8 * index, 60 + shift:92 + shift, ::-1]
    return np.ascontiguousarray(img)


def write(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def read_pairs(folder: Path) -> list[dict]:
    opt = {'dataroot_gt': str(folder / 'gt.lmdb'), 'dataroot_lq': str(folder / 'lq.lmdb'), 'io_backend':
           {'type': 'lmdb'}, 'phase': 'val', 'scale': 1}
    dataset = PairedImageDataset(opt)
    return sorted((dataset[i] for i in range(len(dataset))), key=lambda s: s['gt_path'])


def as_bgr(tensor) -> np.ndarray:
    return np.round(tensor.numpy().transpose(1, 2, 0)[..., ::-1] * 255).astype(np.uint8)


def manifest(folder: Path) -> dict:
    return json.loads((folder / 'lq.lmdb' / 'manifest.json').read_text())


@pytest.fixture
def gopro(tmp_path) -> Path:
    """GOPRO_Large/train/<sequence>/{blur,blur_gamma,sharp}/NNNNNN.png; frame names repeat across sequences."""
    for s, sequence in enumerate(('GOPR0372_07_00', 'GOPR0374_11_00')):
        for f in range(2):
            folder = tmp_path / 'GOPRO_Large' / 'train' / sequence
            write(folder / 'sharp' / f'{f:06d}.png', tiny(2 * s + f))
            write(folder / 'blur' / f'{f:06d}.png', cv2.blur(tiny(2 * s + f), (5, 1)))
            write(folder / 'blur_gamma' / f'{f:06d}.png', cv2.blur(tiny(2 * s + f), (1, 5)))
    return tmp_path / 'GOPRO_Large'


def test_gopro_keys_are_unique_across_sequences_and_pairs_round_trip(gopro, tmp_path):
    with pytest.warns(UserWarning, match='found 4 images, the standard GoPro train has 2103'):
        results = prepare('deblur-train', [gopro], tmp_path / 'out', workers=1, progress=False)
    assert results[0]['records'] == 4
    samples = read_pairs(tmp_path / 'out')
    assert [s['gt_path'] for s in samples] == ['blur_GOPR0372_07_00_000000', 'blur_GOPR0372_07_00_000001',
                                               'blur_GOPR0374_11_00_000000', 'blur_GOPR0374_11_00_000001']
    sample = samples[2]
    source = gopro / 'train' / 'GOPR0374_11_00'
    assert np.array_equal(as_bgr(sample['gt']), cv2.imread(str(source / 'sharp' / '000000.png')))
    assert np.array_equal(as_bgr(sample['lq']), cv2.imread(str(source / 'blur' / '000000.png')))
    record = manifest(tmp_path / 'out')['records'][2]
    assert record['degradation'] == 'deblur'
    assert record['source']['lq']['file'] == 'GOPR0374_11_00/blur/000000.png'
    with pytest.warns(UserWarning):
        prepare('deblur-train', [gopro / 'train'], tmp_path / 'gamma', workers=1, progress=False,
                blur_variant='blur_gamma')
    gamma = read_pairs(tmp_path / 'gamma')[2]
    assert np.array_equal(as_bgr(gamma['lq']), cv2.imread(str(source / 'blur_gamma' / '000000.png')))
    header = json.loads((tmp_path / 'gamma' / 'gt.lmdb' / 'manifest.json').read_text())
    assert 'blur_gamma' in json.dumps(header)


def test_gopro_bad_layouts_give_named_errors(gopro, tmp_path, capsys):
    sequence = gopro / 'train' / 'GOPR0372_07_00'
    write(sequence / 'blur' / '000009.png', tiny(0))  # no sharp partner
    with pytest.raises(BadInputError, match='missing pair partner: no clean image named 000009'):
        prepare('deblur-train', [gopro], tmp_path / 'a', workers=1, progress=False)
    write(sequence / 'sharp' / '000009.png', cv2.resize(tiny(0), (16, 12)))  # partner of another size
    with pytest.warns(UserWarning), pytest.raises(BadInputError, match=r'size 32x24 differs from its clean partner'):
        prepare('deblur-train', [gopro], tmp_path / 'b', workers=1, progress=False)
    with pytest.warns(UserWarning):  # --skip-bad leaves it out and lists it
        result = prepare('deblur-train', [gopro], tmp_path / 'c', workers=1, progress=False, skip_bad=True)[0]
    assert result['records'] == 4 and result['skipped'][0]['file'].endswith('blur/000009.png')
    for name in ('000000.png', '000001.png', '000009.png'):
        (sequence / 'sharp' / name).unlink()
    (sequence / 'sharp').rmdir()
    assert main(['deblur', '--split', 'train', '--src', str(gopro), '--out', str(tmp_path / 'd'), '--quiet']) == 2
    err = capsys.readouterr().err
    assert 'missing folder' in err and 'GOPR0372_07_00/sharp' in err
    with pytest.raises(ValueError, match='--blur-variant is for deblur'):
        prepare('lowlight-train', [gopro], tmp_path / 'e', workers=1, progress=False, blur_variant='blur_gamma')


def test_lol_train_and_test_through_basicsr_and_multi_degradation_dataset(tmp_path):
    lol = tmp_path / 'LOLdataset'
    for split, names in (('our485', (2, 5, 7)), ('eval15', (1, 22))):
        for i, n in enumerate(names):
            write(lol / split / 'high' / f'{n}.png', tiny(i))
            write(lol / split / 'low' / f'{n}.png', (tiny(i) // 6).astype(np.uint8))
    with pytest.warns(UserWarning, match='the standard LOL-v1 eval15 has 15'):
        prepare('lowlight-test', [lol], tmp_path / 'test', workers=1, progress=False)
    assert sorted(p.name for p in (tmp_path / 'test').iterdir()) == ['gt', 'gt.lmdb', 'lq', 'lq.lmdb']
    assert [s['gt_path'] for s in read_pairs(tmp_path / 'test')] == ['lowlight_0001', 'lowlight_0022']
    with pytest.warns(UserWarning, match='the standard LOL-v1 our485 has 485'):
        prepare('lowlight-train', [lol / 'our485'], tmp_path / 'train', workers=1, progress=False)
    dataset = MultiDegradationDataset({'sources': [{'name': 'lol', 'dataroot_gt': str(tmp_path / 'train/gt.lmdb'),
                                                    'dataroot_lq': str(tmp_path / 'train/lq.lmdb'), 'ratio': 20}],
                                       'phase': 'train', 'gt_size': 16})
    assert len(dataset) == 60 and dataset[0]['degradation'] == 'lol' and dataset[0]['lq'].shape == (3, 16, 16)
    (lol / 'eval15' / 'high').rename(lol / 'eval15' / 'normal')
    with pytest.raises(FileNotFoundError, match='missing folder .*high'):
        prepare('lowlight-test', [lol], tmp_path / 'bad', workers=1, progress=False)


def test_cdd11_one_output_pair_per_combination(tmp_path):
    cdd = tmp_path / 'CDD-11_test'
    for n in range(2):
        write(cdd / 'clear' / f'{n:06d}.png', tiny(n))
        for k, combination in enumerate(('low', 'haze', 'low_haze')):
            write(cdd / combination / f'{n:06d}.png', np.clip(tiny(n).astype(int) + 20 * k - 30, 0, 255).astype(
                np.uint8))
    with pytest.warns(UserWarning) as caught:
        results = prepare('composite-test', [cdd], tmp_path / 'out', workers=1, progress=False)
    messages = ' | '.join(str(w.message) for w in caught)
    assert 'missing 8: rain, snow, low_rain' in messages and 'CDD-11 test (per combination) has 200' in messages
    assert [r['job'] for r in results] == ['haze', 'low', 'low_haze']
    for combination in ('haze', 'low', 'low_haze'):
        samples = read_pairs(tmp_path / 'out' / combination)
        assert [s['gt_path'] for s in samples] == [f'{combination}_000000', f'{combination}_000001']
        assert np.array_equal(as_bgr(samples[1]['lq']), cv2.imread(str(cdd / combination / '000001.png')))
        assert np.array_equal(as_bgr(samples[1]['gt']), cv2.imread(str(cdd / 'clear' / '000001.png')))
        assert manifest(tmp_path / 'out' / combination)['records'][0]['degradation'] == combination
        assert (tmp_path / 'out' / combination / 'lq' / f'{combination}_000000.png').is_file()
    (cdd / 'haze' / '000001.png').unlink()
    with pytest.warns(UserWarning), pytest.raises(BadInputError, match='no degraded image for this clean image'):
        prepare('composite-test', [cdd], tmp_path / 'bad', workers=1, progress=False)


def test_composite_synth_is_reproducible_and_labelled(tmp_path):
    clean = tmp_path / 'clean'
    for n in range(3):
        write(clean / f'im{n}.png', tiny(n))
    kwargs = dict(combos=['noise+rain', 'haze+noise', 'sr+noise'], sigmas=[25], scales=[2], progress=False)
    prepare('composite-synth', [clean], tmp_path / 'a', workers=1, seed=3, **kwargs)
    prepare('composite-synth', [clean], tmp_path / 'b', workers=2, seed=3, **kwargs)
    prepare('composite-synth', [clean], tmp_path / 'c', workers=1, seed=4, **kwargs)

    def data(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*.mdb')) if 'data' in p.name}

    assert sorted(p.name for p in (tmp_path / 'a').iterdir()) == ['haze_noise', 'rain_noise', 'sr_noise']
    assert data(tmp_path / 'a') == data(tmp_path / 'b') and data(tmp_path / 'a') != data(tmp_path / 'c')
    record = manifest(tmp_path / 'a' / 'rain_noise')['records'][0]
    assert record['degradation'] == 'derain+denoise_25' and record['params']['seed'] == 3
    assert manifest(tmp_path / 'a' / 'sr_noise')['records'][0]['degradation'] == 'sr_x2+denoise_25'
    sample = read_pairs(tmp_path / 'a' / 'haze_noise')[0]
    assert sample['gt_path'] == 'haze_noise_im0' and not np.array_equal(sample['lq'], sample['gt'])
    for combos, match in ((['rain+snow'], 'unknown step'), (['noise+noise'], 'names a step twice'),
                          (['noise+rain', 'rain+noise'], 'given twice'), ([], 'at least one --combo')):
        with pytest.raises(ValueError, match=match):
            prepare('composite-synth', [clean], tmp_path / 'bad', combos=combos, progress=False)
    assert not (tmp_path / 'bad').exists()


def test_generic_paired_kind_from_the_command_line(tmp_path, capsys):
    for n in range(2):
        write(tmp_path / 'input' / f'x{n}.png', tiny(n, shift=3))
        write(tmp_path / 'target' / f'x{n}.png', tiny(n))
    argv = ['paired', '--split', 'test', '--lq', str(tmp_path / 'input'), '--gt', str(tmp_path / 'target'),
            '--out', str(tmp_path / 'out'), '--workers', '1', '--quiet']
    assert main(argv) == 0
    assert [s['gt_path'] for s in read_pairs(tmp_path / 'out')] == ['paired_x0', 'paired_x1']
    write(tmp_path / 'input' / 'x7.png', tiny(0))
    argv[argv.index('--out') + 1] = str(tmp_path / 'out2')
    assert main(argv) == 2
    assert 'missing pair partner: no clean image named x7' in capsys.readouterr().err
