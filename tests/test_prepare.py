"""Dataset preparation: LMDB format read back by BasicSR, reproducibility, resuming, standard splits, bad inputs."""
import json
import shutil
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch

import ndr_plugin  # noqa: F401  (compat layer before basicsr)
from basicsr.data.paired_image_dataset import PairedImageDataset
from ndr_plugin.data.dataset_files import BadInputError
from ndr_plugin.data.lmdb_io import LmdbFormatError, check_lmdb
from ndr_plugin.prepare.lmdb_writer import LmdbSetWriter, image_entry, write_paired_lmdb
from ndr_plugin.prepare.cli import main
from ndr_plugin.prepare.kinds import prepare
from ndr_plugin.prepare.processing import subimage_boxes

def small_copies(src: Path, dst: Path, count: int, size=(96, 128)) -> list[Path]:
    """Crops of the first ``count`` images of ``src`` written as PNG into ``dst`` (keeps the tests fast)."""
    dst.mkdir(parents=True)
    out = []
    for path in sorted(src.iterdir())[:count]:
        img = cv2.imread(str(path))[:size[0], :size[1]]
        cv2.imwrite(str(dst / f'{path.stem}.png'), img)
        out.append(dst / f'{path.stem}.png')
    return out


def read_pairs(folder: Path, backend: str = 'lmdb') -> list[dict]:
    """All samples of BasicSR's own PairedImageDataset over a prepared folder."""
    if backend == 'lmdb':
        opt = {'dataroot_gt': str(folder / 'gt.lmdb'), 'dataroot_lq': str(folder / 'lq.lmdb')}
    else:
        opt = {'dataroot_gt': str(folder / 'gt'), 'dataroot_lq': str(folder / 'lq'), 'filename_tmpl': '{}'}
    dataset = PairedImageDataset({**opt, 'io_backend': {'type': backend}, 'phase': 'val', 'scale': 1})
    # BasicSR lists folders in os.scandir order; sort so LMDB and folder samples line up
    return sorted((dataset[i] for i in range(len(dataset))), key=lambda s: Path(s['gt_path']).stem)


def lmdb_bytes(folder: Path) -> dict[str, bytes]:
    return {f'{db.name}/{name}': (db / name).read_bytes() for db in sorted(folder.rglob('*.lmdb'))
            for name in ('data.mdb', 'meta_info.txt', 'manifest.json')}


@pytest.fixture(scope='module')
def cbsd(tmp_path_factory, shared_data) -> Path:
    return small_copies(shared_data / 'CBSD68', tmp_path_factory.mktemp('cbsd') / 'CBSD68', 4)[0].parent


def test_denoise_test_round_trip_through_basicsr(cbsd, tmp_path):
    with pytest.warns(UserWarning, match='found 4 images, the standard CBSD68 has 68'):
        results = prepare('denoise-test', [cbsd], tmp_path, sigmas=[15, 50], workers=1, progress=False)
    assert [r['job'] for r in results] == ['sigma15', 'sigma50']
    for sigma in (15, 50):
        folder = tmp_path / f'sigma{sigma}'
        samples = read_pairs(folder)
        disk = read_pairs(folder, 'disk')
        residuals, unclipped = [], []
        assert [s['gt_path'] for s in samples] == [f'noise{sigma}_{p.stem}' for p in sorted(cbsd.iterdir())]
        for sample, from_png, src in zip(samples, disk, sorted(cbsd.iterdir())):
            clean = cv2.cvtColor(cv2.imread(str(src)), cv2.COLOR_BGR2RGB).transpose(2, 0, 1) / 255.0
            assert np.allclose(sample['gt'].numpy(), clean, atol=1e-6)  # lossless
            assert np.array_equal(sample['lq'].numpy(), from_png['lq'].numpy())  # PNG folders hold the same pixels
            residuals.append((sample['lq'] - sample['gt']).numpy() * 255)
            unclipped.append(np.abs(sample['gt'].numpy() * 255 - 127.5) < 127.5 - 2 * sigma)
        residual = np.concatenate([r[m] for r, m in zip(residuals, unclipped)])
        assert abs(residual.std() / sigma - 1) < 0.1 and abs(residual.mean()) < 1  # away from clipping: N(0, sigma)
        meta = (folder / 'lq.lmdb' / 'meta_info.txt').read_text().splitlines()
        assert meta[0] == f'noise{sigma}_{sorted(cbsd.iterdir())[0].stem}.png (96,128,3) 1'
        manifest = json.loads((folder / 'lq.lmdb' / 'manifest.json').read_text())
        record = manifest['records'][0]
        assert record['degradation'] == f'denoise_{sigma}' and record['params']['sigma'] == sigma
        assert record['source']['gt']['file'] == sorted(cbsd.iterdir())[0].name
        assert len(record['source']['gt']['sha256']) == 64
        assert manifest['summary']['standard_split']['expected'] == 68
        assert set(p.name for p in folder.iterdir()) == {'gt', 'lq', 'gt.lmdb', 'lq.lmdb'}


def test_uncompressed_level_stores_plain_unfiltered_png_that_basicsr_reads(cbsd, tmp_path):
    """--compress-level 0: same pixels through BasicSR, larger records, and no PNG row filters (fast to decode)."""
    for level in (1, 0):
        with pytest.warns(UserWarning):
            prepare('denoise-test', [cbsd], tmp_path / f'level{level}', sigmas=[25], workers=1, compress_level=level,
                    progress=False)
    fast, default = read_pairs(tmp_path / 'level0' / 'sigma25'), read_pairs(tmp_path / 'level1' / 'sigma25')
    for a, b in zip(fast, default):
        assert torch.equal(a['gt'], b['gt']) and torch.equal(a['lq'], b['lq'])
    meta = (tmp_path / 'level0' / 'sigma25' / 'gt.lmdb' / 'meta_info.txt').read_text().splitlines()
    assert meta[0].endswith(' 0')
    gt = cv2.imread(str(sorted(cbsd.iterdir())[0]))
    png = image_entry(gt, compress_level=0)[0]
    assert len(png) > gt.size and np.array_equal(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), gt)
    # Each row of the decompressed image data starts with its filter type: 0 (None) on every row.
    raw = zlib.decompress(b''.join(_png_chunks(png, b'IDAT')))
    stride = gt.shape[1] * 3 + 1
    assert len(raw) == gt.shape[0] * stride and all(raw[row * stride] == 0 for row in range(gt.shape[0]))
    with pytest.raises(ValueError, match='compression level must be 0 to 9'):
        image_entry(gt, compress_level=10)


def _png_chunks(png: bytes, kind: bytes) -> list[bytes]:
    chunks, pos = [], 8
    while pos < len(png):
        length = int.from_bytes(png[pos:pos + 4], 'big')
        if png[pos + 4:pos + 8] == kind:
            chunks.append(png[pos + 8:pos + 8 + length])
        pos += 12 + length
    return chunks


def test_sequential_seeding_is_airnet_promptir_noise(cbsd, tmp_path):
    with pytest.warns(UserWarning):
        prepare('denoise-test', [cbsd], tmp_path, sigmas=[15, 25], seeding='sequential', quantize='truncate',
                crop_multiple=16, workers=1, progress=False)
    np.random.seed(0)  # what AirNet/PromptIR do once, then noise for every image at sigma 15, then at 25
    for sigma in (15, 25):
        for src in sorted(cbsd.iterdir()):
            clean = cv2.cvtColor(cv2.imread(str(src)), cv2.COLOR_BGR2RGB)  # as PIL loads it; 96x128: no crop needed
            noisy = np.clip(clean + np.random.randn(*clean.shape) * sigma, 0, 255).astype(np.uint8)
            ours = cv2.imread(str(tmp_path / f'sigma{sigma}' / 'lq' / f'noise{sigma}_{src.stem}.png'))
            assert np.array_equal(ours, noisy[..., ::-1])
    with pytest.warns(UserWarning):  # AirNet's crop_img: centred, remainder split with the smaller half first
        prepare('denoise-test', [cbsd], tmp_path / 'crop', sigmas=[15], crop_multiple=40, workers=1, progress=False)
    src = sorted(cbsd.iterdir())[0]
    gt = cv2.imread(str(tmp_path / 'crop' / 'sigma15' / 'gt' / f'noise15_{src.stem}.png'))
    assert np.array_equal(gt, cv2.imread(str(src))[8:88, 4:124])


def test_same_seed_same_bytes_whatever_the_workers(cbsd, tmp_path):
    kwargs = dict(sigmas=[25], progress=False)
    with pytest.warns(UserWarning):
        prepare('denoise-test', [cbsd], tmp_path / 'one', workers=1, **kwargs)
        prepare('denoise-test', [cbsd], tmp_path / 'two', workers=2, **kwargs)
        prepare('denoise-test', [cbsd], tmp_path / 'seed1', workers=2, seed=1, **kwargs)
    one, two, other = (lmdb_bytes(tmp_path / name) for name in ('one', 'two', 'seed1'))
    assert one == two
    assert one['gt.lmdb/data.mdb'] == other['gt.lmdb/data.mdb']
    assert one['lq.lmdb/data.mdb'] != other['lq.lmdb/data.mdb']


def test_interrupted_run_never_looks_complete_and_resumes(cbsd, tmp_path):
    src = tmp_path / 'copy' / cbsd.name  # same folder name: the manifest records it
    shutil.copytree(cbsd, src)
    victim = sorted(src.iterdir())[2]
    good = victim.read_bytes()
    victim.write_bytes(good[:len(good) // 2])  # truncated
    with pytest.warns(UserWarning), pytest.raises(BadInputError, match=f'{victim.name}: .*truncated'):
        prepare('denoise-test', [src], tmp_path / 'out', sigmas=[15], workers=2, progress=False)
    target = tmp_path / 'out' / 'sigma15' / 'gt.lmdb'
    assert not target.exists() and target.with_name('gt.lmdb.partial').is_dir()
    with pytest.raises(LmdbFormatError, match='unfinished'):
        check_lmdb(target)
    victim.write_bytes(good)
    with pytest.warns(UserWarning):
        prepare('denoise-test', [src], tmp_path / 'out', sigmas=[15], workers=2, progress=False)
        prepare('denoise-test', [cbsd], tmp_path / 'fresh', sigmas=[15], workers=1, progress=False)
    assert lmdb_bytes(tmp_path / 'out') == lmdb_bytes(tmp_path / 'fresh')
    assert not target.with_name('gt.lmdb.partial').exists()
    with pytest.warns(UserWarning):
        again = prepare('denoise-test', [src], tmp_path / 'out', sigmas=[15], workers=1, progress=False)
    assert again[0]['status'] == 'already complete'
    with pytest.warns(UserWarning), pytest.raises(FileExistsError, match='different settings'):
        prepare('denoise-test', [src], tmp_path / 'out', sigmas=[15], seed=3, workers=1, progress=False)


def test_writer_skips_committed_tasks_and_gives_the_same_bytes(tmp_path):
    images = [(f'img_{i:04d}', skimage.data.astronaut()[i * 20:i * 20 + 40, :50]) for i in range(5)]

    def put(writer, index):
        key, img = images[index]
        writer.put_task(index, key, [(key, {'img': image_entry(img)}, {'n': index})])

    fresh = LmdbSetWriter({'img': tmp_path / 'fresh.lmdb'}, batch=2)
    for i in range(5):
        put(fresh, i)
    fresh.finish()
    crashed = LmdbSetWriter({'img': tmp_path / 'resumed.lmdb'}, batch=2)
    for i in range(3):
        put(crashed, i)
    crashed.abort()  # the third task was not committed yet
    resumed = LmdbSetWriter({'img': tmp_path / 'resumed.lmdb'}, batch=2)
    assert sorted(resumed.done) == ['img_0000', 'img_0001']
    for i in range(2, 5):
        put(resumed, i)
    resumed.finish()
    for name in ('data.mdb', 'meta_info.txt', 'manifest.json'):
        assert (tmp_path / 'fresh.lmdb' / name).read_bytes() == (tmp_path / 'resumed.lmdb' / name).read_bytes()


def test_paired_kinds_from_standard_layouts(tmp_path, shared_data):
    rain = shared_data / 'RainL_train_sample'
    with pytest.warns(UserWarning, match='missing 195: rainy/rain-10.png'):
        prepare('derain-train', [rain], tmp_path / 'rain', crop_size=160, crop_step=160, workers=2, progress=False)
    keys = check_lmdb(tmp_path / 'rain' / 'lq.lmdb')
    boxes = subimage_boxes(321, 481, 160, 160, 0)
    assert len(keys) == 5 * len(boxes)
    assert keys[0] == 'rain_0001_s000' and keys[-1] == f'rain_0005_s{len(boxes) - 1:03d}'
    sample = read_pairs(tmp_path / 'rain')[len(boxes) + 3]  # rain-2, fourth crop
    y, x = boxes[3]
    source = cv2.imread(str(rain / 'rainy' / 'rain-2.png'))[y:y + 160, x:x + 160]
    assert np.array_equal(np.round(sample['lq'].numpy() * 255).astype(np.uint8), source[..., ::-1].transpose(2, 0, 1))

    sots = shared_data / 'SOTS_outdoor_sample'
    with pytest.warns(UserWarning, match='found 5 images, the standard SOTS-outdoor has 500'):
        prepare('dehaze-test', [sots], tmp_path / 'haze', workers=1, progress=False)
    manifest = json.loads((tmp_path / 'haze' / 'lq.lmdb' / 'manifest.json').read_text())
    first = manifest['records'][0]
    assert first['key'] == 'haze_0001_0p8_0p2' and first['params'] == {'atmospheric_light': 0.8, 'beta': 0.2}
    assert first['source']['lq']['file'] == '0001_0.8_0.2.jpg' and first['source']['gt']['file'] == '0001.png'


def test_derain_test_reads_prenet_layout_as_distributed(tmp_path, shared_data):
    """Rain100L test as PReNet distributes it: clean norain-NNN.png on top, rainy/rain-NNN.png below."""
    src = shared_data / 'Rain100L_test'
    prepare('derain-test', [src], tmp_path / 'rain100l', workers=2, progress=False)
    keys = check_lmdb(tmp_path / 'rain100l' / 'lq.lmdb')
    assert keys == [f'rain_{n:04d}' for n in range(1, 101)]
    pairs = read_pairs(tmp_path / 'rain100l')
    for index in (0, 57):
        number = index + 1
        for role, path in (('gt', src / f'norain-{number:03d}.png'), ('lq', src / 'rainy' / f'rain-{number:03d}.png')):
            stored = np.round(pairs[index][role].numpy() * 255).astype(np.uint8)
            assert np.array_equal(stored, cv2.imread(str(path))[..., ::-1].transpose(2, 0, 1))
    manifest = json.loads((tmp_path / 'rain100l' / 'lq.lmdb' / 'manifest.json').read_text())
    assert manifest['records'][2]['source']['lq']['file'] == 'rain-003.png'
    assert manifest['records'][2]['source']['gt']['file'] == 'norain-003.png'

    # The same layout with a rainy image missing is refused, naming the clean file left alone.
    small = tmp_path / 'prenet'
    (small / 'rainy').mkdir(parents=True)
    img = skimage.data.coffee()[:100, :120]
    for n in (1, 2):
        cv2.imwrite(str(small / f'norain-{n:03d}.png'), img)
    cv2.imwrite(str(small / 'rainy' / 'rain-001.png'), img)
    with pytest.raises(BadInputError, match=r'norain-002.png: missing pair partner: no rainy image'):
        prepare('derain-test', [small], tmp_path / 'o', workers=1, progress=False)


def test_sr_test_matches_matlab_lr(tmp_path, shared_data):
    folder = shared_data / 'Set5' / 'image_SRF_4'
    src = tmp_path / 'Set5'
    src.mkdir()
    for hr in sorted(folder.glob('*_HR.png'))[:3]:
        shutil.copy(hr, src / hr.name.replace('_SRF_4_HR', ''))
    with pytest.warns(UserWarning, match='found 3 images, the standard Set5 has 5'):
        prepare('sr-test', [src], tmp_path / 'out', scales=[4], workers=1, progress=False)
    out = tmp_path / 'out' / 'x4'
    for key in check_lmdb(out / 'lr.lmdb'):
        ours = cv2.imread(str(out / 'lr' / f'{key}.png'))
        matlab = cv2.imread(str(folder / f'{key.removeprefix("srx4_")}_SRF_4_LR.png'))
        mse = np.mean((ours.astype(float) - matlab)**2)
        assert 10 * np.log10(255**2 / mse) > 50
        assert cv2.imread(str(out / 'lq' / f'{key}.png')).shape == cv2.imread(str(out / 'gt' / f'{key}.png')).shape


def test_standard_split_matching_and_subset(tmp_path, shared_data):
    bsd = shared_data / 'BSD_clean_sample'  # names 10081.jpg ... listed as a10081.jpg
    src = tmp_path / 'Denoise'
    shutil.copytree(bsd, src)
    cv2.imwrite(str(src / 'extra_photo.png'), skimage.data.coffee()[:64, :64])
    with pytest.warns(UserWarning, match=r'found 5 images.*missing 5140: 00001.bmp.*1 not in the standard list'):
        prepare('denoise-train', [src], tmp_path / 'std', workers=1, progress=False)
    assert check_lmdb(tmp_path / 'std' / 'gt.lmdb') == ['denoise_10081', 'denoise_12003', 'denoise_12074',
                                                        'denoise_14085']
    with pytest.warns(UserWarning):
        prepare('denoise-train', [src], tmp_path / 'all', subset='all', workers=1, progress=False)
    assert 'denoise_extra_photo' in check_lmdb(tmp_path / 'all' / 'gt.lmdb')
    (tmp_path / 'other').mkdir()
    (src / 'extra_photo.png').rename(tmp_path / 'other' / 'extra_photo.png')
    with pytest.raises(ValueError, match='none of the 1 images.*--subset all'):
        prepare('denoise-train', [tmp_path / 'other'], tmp_path / 'none', workers=1, progress=False)


def _bad_folder(root: Path) -> dict[str, Path]:
    root.mkdir()
    img = cv2.cvtColor(skimage.data.astronaut()[:64, :80], cv2.COLOR_RGB2BGR)
    files = {name: root / f'{name}.png' for name in ('good', 'gray', 'rgba', 'deep', 'corrupt', 'truncated')}
    cv2.imwrite(str(files['good']), img)
    cv2.imwrite(str(files['gray']), img[..., 1])
    cv2.imwrite(str(files['rgba']), np.dstack([img, np.full(img.shape[:2], 128, np.uint8)]))
    cv2.imwrite(str(files['deep']), img.astype(np.uint16) * 257 + 100)
    files['corrupt'].write_bytes(b'not an image at all' * 10)
    files['truncated'].write_bytes(files['good'].read_bytes()[:300])
    files['accent'] = root / 'caf\u00e9.png'
    cv2.imencode('.png', img)[1].tofile(str(files['accent']))
    return files


def test_bad_inputs_are_named_or_skipped(tmp_path):
    files = _bad_folder(tmp_path / 'src')
    with pytest.raises(BadInputError, match='caf\u00e9.png: file name is not ASCII'):
        prepare('denoise-test', [tmp_path / 'src'], tmp_path / 'a', sigmas=[15], workers=1, progress=False)
    files['accent'].unlink()
    with pytest.warns(UserWarning), pytest.raises(BadInputError, match='corrupt.png: cannot be decoded'):
        prepare('denoise-test', [tmp_path / 'src'], tmp_path / 'b', sigmas=[15], workers=1, progress=False)
    with pytest.warns(UserWarning):
        result = prepare('denoise-test', [tmp_path / 'src'], tmp_path / 'c', sigmas=[15], workers=2, skip_bad=True,
                         progress=False)[0]
    assert sorted(Path(s['file']).name for s in result['skipped']) == ['corrupt.png', 'truncated.png']
    manifest = json.loads((tmp_path / 'c' / 'sigma15' / 'gt.lmdb' / 'manifest.json').read_text())
    assert sorted(Path(s['file']).name for s in manifest['summary']['skipped']) == ['corrupt.png', 'truncated.png']
    conversions = {r['key']: r.get('conversion', {}).get('gt') for r in manifest['records']}
    assert conversions == {'noise15_deep': '16-bit to 8-bit (rounded value/257)', 'noise15_good': None,
                           'noise15_gray': 'grayscale copied to 3 channels', 'noise15_rgba': 'alpha dropped'}
    good = cv2.imread(str(files['good']))
    stored = {p.stem: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in (tmp_path / 'c' / 'sigma15' / 'gt').iterdir()}
    assert np.array_equal(stored['noise15_rgba'], good)
    assert np.array_equal(stored['noise15_gray'], np.repeat(good[..., 1:2], 3, axis=2))
    expected_deep = np.round((good.astype(np.float64) * 257 + 100) / 257).astype(np.uint8)
    assert np.array_equal(stored['noise15_deep'], expected_deep)


def test_bad_pairs_sizes_and_folders(tmp_path):
    rain = tmp_path / 'rain'
    (rain / 'rainy').mkdir(parents=True)
    (rain / 'gt').mkdir()
    img = skimage.data.coffee()[:100, :120]
    for name in ('1', '2'):
        cv2.imwrite(str(rain / 'gt' / f'{name}.png'), img)
    cv2.imwrite(str(rain / 'rainy' / '1.png'), img)
    cv2.imwrite(str(rain / 'rainy' / '3.png'), img)
    both = r'(?s)2 bad inputs.*3.png: missing pair partner.*2.png: missing pair partner'
    with pytest.raises(BadInputError, match=both):
        prepare('derain-test', [rain], tmp_path / 'o1', workers=1, progress=False)
    (rain / 'rainy' / '3.png').rename(rain / 'rainy' / '2.png')
    cv2.imwrite(str(rain / 'rainy' / '2.png'), img[:90])
    mismatch = r'2.png: size 120x90 differs .*2.png \(120x100\)'
    with pytest.warns(UserWarning), pytest.raises(BadInputError, match=mismatch):
        prepare('derain-test', [rain], tmp_path / 'o2', workers=1, progress=False)
    cv2.imwrite(str(rain / 'rainy' / '2.png'), img)
    with pytest.warns(UserWarning), pytest.raises(BadInputError, match='120x100 is smaller than the crop size 128'):
        prepare('derain-train', [rain], tmp_path / 'o3', subset='all', crop_size=128, workers=1, progress=False)
    with pytest.raises(FileNotFoundError, match='no images'):
        (tmp_path / 'empty').mkdir()
        prepare('denoise-test', [tmp_path / 'empty'], tmp_path / 'o4', workers=1, progress=False)
    with pytest.raises(FileNotFoundError, match='does not exist'):
        prepare('denoise-test', [tmp_path / 'missing'], tmp_path / 'o5', workers=1, progress=False)
    with pytest.raises(FileNotFoundError, match='cannot find the degraded/clean folders'):
        prepare('dehaze-test', [tmp_path / 'empty'], tmp_path / 'o6', workers=1, progress=False)


def test_in_memory_writer_and_meta_info_mismatch(tmp_path):
    rng = np.random.default_rng(0)
    clean = [skimage.data.astronaut()[:48, :64], skimage.data.coffee()[:48, :64]]
    items = [(f'demo_{i:04d}', img, np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8),
              {'degradation': 'denoise_20'}) for i, img in enumerate(clean)]
    paths = write_paired_lmdb(tmp_path / 'demo', items, png=True)
    samples = read_pairs(tmp_path / 'demo')
    for sample, (_, gt, lq, _) in zip(samples, items):
        assert np.array_equal(np.round(sample['gt'].numpy() * 255).astype(np.uint8), gt[..., ::-1].transpose(2, 0, 1))
        assert np.array_equal(np.round(sample['lq'].numpy() * 255).astype(np.uint8), lq[..., ::-1].transpose(2, 0, 1))
    meta = paths['gt'] / 'meta_info.txt'
    meta.write_text(meta.read_text() + 'demo_0009.png (48,64,3) 1\n')
    with pytest.raises(LmdbFormatError, match=r"listed but not stored: \['demo_0009'\]"):
        check_lmdb(paths['gt'])
    meta.write_text('demo_0000.png 48x64\n')
    with pytest.raises(LmdbFormatError, match='line 1'):
        check_lmdb(paths['gt'])
    with pytest.raises(ValueError, match='invalid LMDB key'):
        write_paired_lmdb(tmp_path / 'bad', [('a.b', clean[0], clean[0])])


def test_cli(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(['--help'])
    text = capsys.readouterr().out
    for kind in ('denoise-train', 'denoise-test', 'derain-train', 'derain-test', 'dehaze-train', 'dehaze-test',
                 'sr-train', 'sr-test', 'check'):
        assert kind in text
    assert main(['derain', '--split', 'test', '--src', str(tmp_path / 'nowhere'), '--out', str(tmp_path)]) == 2
    assert 'source folder does not exist' in capsys.readouterr().err
    write_paired_lmdb(tmp_path / 'ok', [('k_0001', skimage.data.coffee()[:32, :32], skimage.data.coffee()[:32, :32])])
    assert main(['check', str(tmp_path / 'ok' / 'gt.lmdb'), '--deep']) == 0
    assert 'ok:' in capsys.readouterr().out


def test_package_photos_and_clean_train_make_the_compact_recipe_data(tmp_path):
    from ndr_plugin.demo.photos import TEST_PHOTOS
    photos = tmp_path / 'photos'
    assert main(['package-photos', '--out', str(photos)]) == 0
    written = sorted(p.stem for p in photos.glob('*.png'))
    assert written and not set(written) & set(TEST_PHOTOS)  # the demo's held-out photographs stay out
    assert not list(photos.glob('.*'))  # no partial files left behind
    again = tmp_path / 'photos_again'
    main(['package-photos', '--out', str(again)])
    assert all((again / f'{n}.png').read_bytes() == (photos / f'{n}.png').read_bytes() for n in written)
    out = tmp_path / 'clean'
    [summary] = prepare('clean-train', [photos], out, workers=1, progress=False)
    assert summary['records'] == len(written)
    manifest = json.loads((out / 'gt.lmdb' / 'manifest.json').read_text())
    files = {r['source']['gt']['file']: r['source']['gt']['sha256'] for r in manifest['records']}
    assert set(files) == {f'{n}.png' for n in written}
    assert all(len(digest) == 64 for digest in files.values())
    assert check_lmdb(out / 'gt.lmdb')
