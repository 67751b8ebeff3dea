"""Dataset preparation never gives silently wrong results: changed sources, bad parameters, nested outputs,
both orders of ``check --deep``, and truncated LMDB files (which used to kill the process with SIGBUS)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from ndr_plugin.data.lmdb_io import LmdbFormatError, check_lmdb
from ndr_plugin.prepare.cli import main
from ndr_plugin.prepare.kinds import prepare
from ndr_plugin.prepare.lmdb_writer import write_lmdb

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings('ignore:.*the standard CBSD68 has 68:UserWarning')


def _images(folder: Path, count: int = 3) -> list[Path]:
    folder.mkdir(parents=True)
    pictures = (skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket())
    paths = []
    for i, picture in enumerate(pictures[:count]):
        paths.append(folder / f'img{i}.png')
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(picture[:48, :64], cv2.COLOR_RGB2BGR))
    return paths


def _build(src: Path, out: Path, **kwargs) -> dict:
    with pytest.warns(UserWarning):  # the CBSD68 count warning, and the rebuild notice when the sources changed
        return prepare('denoise-test', [src], out, sigmas=[15], workers=1, progress=False, **kwargs)[0]


def _stored(out: Path) -> dict[str, np.ndarray]:
    return {p.stem: cv2.imread(str(p)) for p in (out / 'sigma15' / 'gt').iterdir()}


def test_changed_sources_are_rebuilt_never_reused(tmp_path):
    src = tmp_path / 'src'
    paths = _images(src)
    out = tmp_path / 'out'
    assert _build(src, out)['status'] == 'written'
    assert _build(src, out)['status'] == 'already complete'

    # Edited in place, same size, modification time put back: the content hash still tells.
    stat = paths[0].stat()
    edited = cv2.imread(str(paths[0]))[:, :, ::-1].copy()
    cv2.imwrite(str(paths[0]), edited)
    assert paths[0].stat().st_size == stat.st_size
    os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.warns(UserWarning, match=r'sources changed .*1 changed: .*img0.png.*rebuilding'):
        result = prepare('denoise-test', [src], out, sigmas=[15], workers=1, progress=False)[0]
    assert result['status'] == 'written'
    assert np.array_equal(_stored(out)['noise15_img0'], edited)

    _images(tmp_path / 'more', 4)[3].rename(src / 'img3.png')
    with pytest.warns(UserWarning, match=r'1 added: .*img3.png'):
        prepare('denoise-test', [src], out, sigmas=[15], workers=1, progress=False)
    paths[1].unlink()
    with pytest.warns(UserWarning, match=r'1 removed: img1.png'):
        prepare('denoise-test', [src], out, sigmas=[15], workers=1, progress=False)
    assert check_lmdb(out / 'sigma15' / 'gt.lmdb') == ['noise15_img0', 'noise15_img2', 'noise15_img3']
    assert sorted(_stored(out)) == ['noise15_img0', 'noise15_img2', 'noise15_img3']
    assert sorted(p.name for p in (out / 'sigma15').iterdir()) == ['gt', 'gt.lmdb', 'lq', 'lq.lmdb']


def test_a_fixed_skipped_file_is_taken_in(tmp_path):
    src = tmp_path / 'src'
    paths = _images(src)
    good = paths[2].read_bytes()
    paths[2].write_bytes(good[:200])
    assert [Path(s['file']).name for s in _build(src, tmp_path / 'out', skip_bad=True)['skipped']] == ['img2.png']
    assert _build(src, tmp_path / 'out', skip_bad=True)['status'] == 'already complete'
    paths[2].write_bytes(good)
    with pytest.warns(UserWarning, match=r'1 changed: .*img2.png'):
        result = prepare('denoise-test', [src], tmp_path / 'out', sigmas=[15], workers=1, skip_bad=True,
                         progress=False)[0]
    assert result['skipped'] == [] and result['records'] == 3


@pytest.mark.parametrize('option, value', [
    ('--sigma', 'nan'), ('--sigma', 'inf'), ('--sigma', '1e9'), ('--sigma', '0'), ('--scale', '0'),
    ('--crop-size', '-4'), ('--crop-step', '0'), ('--crop-thresh', '-1'), ('--crop-multiple', '0'), ('--seed', '-1'),
])
def test_bad_parameters_are_refused_before_anything_is_created(tmp_path, capsys, option, value):
    src = tmp_path / 'src'
    _images(src, 1)
    kind = {'--scale': 'sr-test', '--crop-size': 'sr-train', '--crop-step': 'sr-train',
            '--crop-thresh': 'sr-train'}.get(option, 'denoise-test')
    extra = ['--crop-size', '32'] if option in ('--crop-step', '--crop-thresh') else []
    out = tmp_path / 'out'
    assert main([kind, '--src', str(src), '--out', str(out), option, value, *extra, '--workers', '1',
                 '--quiet']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f'error: {option} must be'), err
    assert not out.exists()


@pytest.mark.parametrize('kind, option', [('sr-test', '--scale'), ('denoise-test', '--crop-multiple')])
def test_parameters_larger_than_the_image_name_the_file(tmp_path, capsys, kind, option):
    src = tmp_path / 'src'
    _images(src, 1)
    assert main([kind, '--src', str(src), '--out', str(tmp_path / 'out'), option, '1000', '--workers', '1',
                 '--quiet']) == 2
    assert f'img0.png: 64x48 is smaller than the {option[2:].replace("-", " ")} ({option}) 1000' in \
        capsys.readouterr().err


def test_check_accepts_options_before_paths(tmp_path, capsys):
    folder = write_lmdb(tmp_path / 'a.lmdb', [('k_0001', skimage.data.coffee()[:32, :32])])
    assert main(['check', '--deep', str(folder)]) == 0
    assert main(['check', str(folder), '--deep']) == 0
    assert capsys.readouterr().out.count('ok:') == 2


def test_out_inside_an_lmdb_folder_is_refused(tmp_path, capsys):
    src = tmp_path / 'src'
    _images(src, 1)
    folder = write_lmdb(tmp_path / 'a.lmdb', [('k_0001', skimage.data.coffee()[:32, :32])])
    for out in (folder, folder / 'nested'):
        with pytest.raises(ValueError, match=f'--out .* is inside the LMDB folder {folder}'):
            prepare('denoise-train', [src], out, workers=1, progress=False)
    assert main(['denoise-test', '--src', str(src), '--out', str(folder / 'x'), '--quiet']) == 2
    assert 'inside the LMDB folder' in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ['data.mdb', 'lock.mdb', 'manifest.json', 'meta_info.txt']


READ_THROUGH_DATASET = textwrap.dedent("""
    import sys
    import ndr_plugin
    from basicsr.data import build_dataset
    dataset = build_dataset({
        'name': 'truncated', 'type': 'MultiDegradationDataset', 'phase': 'train', 'scale': 1, 'gt_size': 32,
        'sources': [{'name': 'denoise', 'dataroot_gt': sys.argv[1], 'degradation': {'type': 'noise', 'sigmas': [15]}}]})
    dataset[0]
""")


def test_truncated_lmdb_is_an_error_not_a_crash(tmp_path):
    """Run in subprocesses: before the header check, every one of these died of SIGBUS (exit 135 / -7)."""
    rng = np.random.default_rng(0)
    items = [(f'k_{i:04d}', rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)) for i in range(40)]
    folder = write_lmdb(tmp_path / 'gt.lmdb', items)
    data = folder / 'data.mdb'
    os.truncate(data, data.stat().st_size // 2)
    with pytest.raises(LmdbFormatError, match='data.mdb: truncated'):
        check_lmdb(folder)
    commands = [[sys.executable, str(ROOT / 'datasets_prep' / 'prepare.py'), 'check', str(folder)],
                [sys.executable, str(ROOT / 'datasets_prep' / 'prepare.py'), 'check', '--deep', str(folder)],
                [sys.executable, '-c', READ_THROUGH_DATASET, str(folder)]]
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 1, (command, done.returncode, done.stderr[-2000:])
        assert f'{data}: truncated' in done.stderr
