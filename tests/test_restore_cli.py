"""``ndr-restore`` on every input kind, with a tiny random NDRNet checkpoint; image I/O and EXIF orientation."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from ndr_plugin.archs.ndr_arch import NDRNet
from ndr_plugin.restore.image_io import ImageReadError, ImageWriteError, read_image, write_image
from ndr_plugin.restore.restorer import Restorer
from ndr_plugin.restore.cli import main
from skimage import data as skdata

TINY_NDR = dict(dim=8, num_blocks=[1, 1, 1, 1], heads=[1, 1, 1, 1], num_refinement_blocks=1, num_atoms=8,
                atom_dim=16, degradation_dim=8, cp_rank=4)
TILE = 64



@pytest.fixture(scope='module')
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp('model')
    torch.manual_seed(0)
    torch.save({'params': NDRNet(**TINY_NDR).state_dict()}, folder / 'net_g.pth')
    lines = ['network_g:', '  type: NDRNet'] + [f'  {key}: {value}' for key, value in TINY_NDR.items()]
    (folder / 'tiny.yml').write_text('\n'.join(lines) + '\n')
    # fp32: these tests compare the CLI's files bit for bit with Restorer's default (fp32) output.
    return ['--weights', str(folder / 'net_g.pth'), '--opt', str(folder / 'tiny.yml'), '--device', 'cpu',
            '--precision', 'fp32']


def _save_with_orientation(path, rgb: np.ndarray, orientation: int, **kwargs) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, exif=exif, **kwargs)


@pytest.fixture(scope='module')
def photo_folder(tmp_path_factory):
    """One image of every supported kind, a sub-folder, a corrupt file and a non-image file."""
    folder = tmp_path_factory.mktemp('photos')
    rgb = skdata.astronaut()[40:112, 150:246]  # 72x96
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    cv2.imwrite(str(folder / 'rgb8.png'), bgr)
    cv2.imwrite(str(folder / 'rgb16.png'), bgr.astype(np.uint16) * 256 + 100)
    _save_with_orientation(folder / 'phone.jpg', rgb, 6, quality=95)  # stored 72x96, displayed 96x72
    cv2.imwrite(str(folder / 'scan.tif'), bgr.astype(np.uint16) * 256)
    cv2.imwrite(str(folder / 'old.bmp'), bgr)
    cv2.imwrite(str(folder / 'web.webp'), bgr, [cv2.IMWRITE_WEBP_QUALITY, 101])  # > 100: lossless
    cv2.imwrite(str(folder / 'gray.png'), skdata.camera()[:72, :96])
    alpha = np.tile(np.linspace(0, 255, 96).astype(np.uint8), (72, 1))
    cv2.imwrite(str(folder / 'logo.png'), np.dstack([bgr, alpha]))
    (folder / 'nested').mkdir()
    cv2.imwrite(str(folder / 'nested' / 'deep.png'), bgr[::-1])
    (folder / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'not really an image')
    (folder / 'notes.txt').write_text('not an image, ignored')
    return folder


def test_read_image_applies_every_exif_orientation(tmp_path):
    rgb = skdata.astronaut()[:40, :60]
    for orientation in range(1, 9):
        path = tmp_path / f'o{orientation}.png'
        _save_with_orientation(path, rgb, orientation)
        expected = np.array(ImageOps.exif_transpose(Image.open(path)))
        assert np.array_equal(read_image(path), expected), orientation
        path = tmp_path / f'o{orientation}.jpg'  # JPEG: cv2 and Pillow may bundle different libjpeg versions
        _save_with_orientation(path, rgb, orientation, quality=95)
        expected = np.array(ImageOps.exif_transpose(Image.open(path))).astype(int)
        got = read_image(path).astype(int)
        assert got.shape == expected.shape and np.abs(got - expected).max() <= 2, orientation


def test_read_and_write_errors(tmp_path):
    with pytest.raises(ImageReadError, match='cannot read file'):
        read_image(tmp_path / 'missing.png')
    (tmp_path / 'empty.jpg').write_bytes(b'')
    with pytest.raises(ImageReadError, match='not a decodable image'):
        read_image(tmp_path / 'empty.jpg')
    with pytest.raises(ImageWriteError, match='cannot hold uint16'):
        write_image(tmp_path / 'deep.jpg', np.zeros((8, 8, 3), np.uint16))
    with pytest.raises(ImageWriteError, match='unsupported output format'):
        write_image(tmp_path / 'x.gif', np.zeros((8, 8, 3), np.uint8))


def test_folder_of_every_kind(photo_folder, model_files, tmp_path, capsys):
    out = tmp_path / 'out'
    code = main(['-i', str(photo_folder), '-o', str(out), '--recursive', '--tile', str(TILE), '--explain',
                 *model_files])
    printed = capsys.readouterr().out
    assert code == 1  # one corrupt file; the others are restored
    assert 'Restored 9 of 10 image(s)' in printed and 'broken.png: not a decodable image' in printed
    assert 's per megapixel' in printed and 'nearest degradation' in printed
    assert not (out / 'broken.png').exists() and not (out / 'notes.txt').exists()

    restorer = Restorer(model_files[1], opt=model_files[3], tile=TILE)
    for name in ('rgb8.png', 'rgb16.png', 'scan.tif', 'old.bmp', 'web.webp', 'gray.png', 'logo.png',
                 'nested/deep.png'):
        source, result = read_image(photo_folder / name), read_image(out / name)
        assert result.dtype == source.dtype and result.shape == source.shape, name
        assert np.array_equal(result, restorer.restore(source)), name  # lossless formats: bit-exact
    assert read_image(out / 'rgb16.png').dtype == np.uint16
    assert np.any(read_image(out / 'rgb16.png') % 257)  # real 16-bit values, not 8-bit ones scaled
    assert read_image(out / 'gray.png').ndim == 2
    assert np.array_equal(read_image(out / 'logo.png')[..., 3], read_image(photo_folder / 'logo.png')[..., 3])

    upright = np.array(ImageOps.exif_transpose(Image.open(photo_folder / 'phone.jpg')))
    assert upright.shape == (96, 72, 3) and read_image(out / 'phone.jpg').shape == upright.shape  # rotated upright

    explanation = json.loads((out / 'rgb8.explain.json').read_text())
    assert explanation['image'].endswith('rgb8.png') and len(explanation['atom_usage']) == 3
    assert (out / 'nested' / 'deep.explain.json').exists()


def test_never_overwrites_inputs(photo_folder, model_files, capsys):
    before = {p: p.read_bytes() for p in photo_folder.rglob('*') if p.is_file()}
    assert main(['-i', str(photo_folder), '-o', str(photo_folder), *model_files]) == 2
    assert main(['-i', str(photo_folder / 'rgb8.png'), '-o', str(photo_folder / '.' / 'nested' / '..'),
                 *model_files]) == 2
    assert capsys.readouterr().err.count('refusing to overwrite input') == 2
    assert before == {p: p.read_bytes() for p in photo_folder.rglob('*') if p.is_file()}


def test_output_inside_input_is_not_reread(photo_folder, model_files, tmp_path, capsys):
    folder = tmp_path / 'album'
    folder.mkdir()
    (folder / 'a.png').write_bytes((photo_folder / 'rgb8.png').read_bytes())
    for _ in range(2):
        assert main(['-i', str(folder), '-o', str(folder / 'restored'), '--recursive', '--tile', '0',
                     *model_files]) == 0
        assert 'Restored 1 of 1 image(s)' in capsys.readouterr().out
    assert (folder / 'restored' / 'a.png').exists() and not (folder / 'restored' / 'restored').exists()


def test_usage_errors_and_total_failure(photo_folder, model_files, tmp_path, capsys):
    assert main(['-i', str(tmp_path / 'nowhere'), '-o', str(tmp_path / 'o'), *model_files]) == 2
    assert main(['-i', str(photo_folder / 'rgb8.png'), '-o', str(tmp_path / 'o'), '--weights',
                 str(tmp_path / 'missing.pth')]) == 2
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert main(['-i', str(empty), '-o', str(tmp_path / 'o'), *model_files]) == 2
    err = capsys.readouterr().err
    assert 'does not exist' in err and 'Checkpoint not found' in err and 'no images' in err
    assert main(['-i', str(photo_folder / 'broken.png'), '-o', str(tmp_path / 'o'), *model_files]) == 1
    assert 'Restored 0 of 1 image(s)' in capsys.readouterr().out
    assert main(['-i', str(photo_folder / 'rgb8.png'), '-o', str(tmp_path / 'o'), '--tile-passes', '-1',
                 *model_files]) == 2
    assert '--tile-passes must be a non-negative integer, got -1' in capsys.readouterr().err


def test_module_entry_point(photo_folder, model_files, tmp_path, repo_root, subprocess_env):
    out = tmp_path / 'cli'
    result = subprocess.run([sys.executable, '-m', 'ndr_plugin.restore', '-i', str(photo_folder / 'rgb8.png'),
                             '-o', str(out), *model_files], cwd=repo_root, env=subprocess_env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 'Restored 1 of 1 image(s)' in result.stdout and (out / 'rgb8.png').exists()


# ----------------------------------------------------------------------------------------------------------------------
# No silent wrong results: every case fails loudly, names the file or option, and writes nothing
# ----------------------------------------------------------------------------------------------------------------------
def test_tile_below_the_limit_is_an_error_and_just_above_matches_whole(photo_folder, model_files, tmp_path, capsys):
    source = photo_folder / 'rgb8.png'
    assert main(['-i', str(source), '-o', str(tmp_path / 'small'), '--tile', '8', *model_files]) == 2
    assert '--tile 8 is too small for --tile-overlap 32' in capsys.readouterr().err
    assert main(['-i', str(source), '-o', str(tmp_path / 'small'), '--tile', '12', '--tile-overlap', '8',
                 *model_files]) == 2
    assert '--tile 12 is too small for --tile-overlap 8' in capsys.readouterr().err
    assert not (tmp_path / 'small').exists()
    for tile in ('40', '0'):
        assert main(['-i', str(source), '-o', str(tmp_path / tile), '--tile', tile, *model_files]) == 0
    tiled, whole = read_image(tmp_path / '40' / 'rgb8.png').astype(int), read_image(tmp_path / '0' / 'rgb8.png')
    assert np.abs(tiled - whole).max() <= 3 and np.abs(tiled - whole).mean() < 0.5


def test_nan_weights_fail_the_image_and_write_nothing(photo_folder, model_files, tmp_path, capsys):
    broken = {key: torch.full_like(value, float('nan')) for key, value in NDRNet(**TINY_NDR).state_dict().items()}
    torch.save({'params': broken}, tmp_path / 'nan.pth')
    args = ['--weights', str(tmp_path / 'nan.pth'), *model_files[2:]]
    assert main(['-i', str(photo_folder / 'rgb8.png'), '-o', str(tmp_path / 'out'), '--explain', *args]) == 1
    printed = capsys.readouterr().out
    assert 'Restored 0 of 1 image(s)' in printed
    assert f'{photo_folder / "rgb8.png"}: NonFiniteOutputError' in printed
    assert 'the checkpoint or input produced NaN/Inf' in printed and 'nan.pth' in printed
    assert not (tmp_path / 'out').exists() or not any((tmp_path / 'out').iterdir())


def test_float_tiff_above_one_warns_once_naming_the_file(model_files, tmp_path, capsys):
    image = skdata.astronaut()[:40, :48].astype(np.float32) / 255.
    image[0, 0] = 2.
    cv2.imwrite(str(tmp_path / 'hdr.tif'), np.ascontiguousarray(image[..., ::-1]))
    assert main(['-i', str(tmp_path / 'hdr.tif'), '-o', str(tmp_path / 'out'), '--explain', *model_files]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith('warning:')]
    assert len(warnings) == 1 and f'{tmp_path / "hdr.tif"}: float pixel values outside [0, 1]' in warnings[0]
    assert read_image(tmp_path / 'out' / 'hdr.tif').dtype == np.float32


def test_gray_alpha_png_stays_gray_alpha(model_files, tmp_path):
    gray = skdata.camera()[:40, :48]
    alpha = np.tile(np.linspace(0, 255, 48).astype(np.uint8), (40, 1))
    Image.fromarray(np.dstack([gray, alpha]), 'LA').save(tmp_path / 'badge.png')
    assert main(['-i', str(tmp_path / 'badge.png'), '-o', str(tmp_path / 'out'), *model_files]) == 0
    with Image.open(tmp_path / 'out' / 'badge.png') as restored:
        assert restored.mode == 'LA'
        assert np.array_equal(np.array(restored)[..., 1], alpha)


def test_output_that_is_an_existing_file_is_refused_first(photo_folder, tmp_path, capsys):
    existing = tmp_path / 'result.png'
    existing.write_bytes(b'keep me')
    # The weights do not exist either: the output is checked before anything is loaded.
    assert main(['-i', str(photo_folder / 'rgb8.png'), '-o', str(existing), '--weights', str(tmp_path / 'no.pth'),
                 '--opt', str(tmp_path / 'no.yml')]) == 2
    err = capsys.readouterr().err
    assert f'-o/--output {existing} is an existing file' in err and 'Checkpoint not found' not in err
    assert existing.read_bytes() == b'keep me'


@pytest.mark.parametrize('content, message', [
    (b'', 'is empty'), (bytes(range(256)) * 8, 'is not a PyTorch checkpoint'),
], ids=['empty', 'random-bytes'])
def test_weights_that_are_not_checkpoints_are_named(photo_folder, model_files, tmp_path, capsys, content, message):
    weights = tmp_path / 'weights.pth'
    weights.write_bytes(content)
    assert main(['-i', str(photo_folder / 'rgb8.png'), '-o', str(tmp_path / 'out'), '--weights', str(weights),
                 *model_files[2:]]) == 2
    err = capsys.readouterr().err
    assert f'{weights} {message}' in err and 'NDR_TRUST_CHECKPOINTS' not in err
    assert not (tmp_path / 'out').exists()


def test_run_weights_without_opt_use_the_run_option_file(photo_folder, model_files, tmp_path, capsys):
    models = tmp_path / 'experiments' / 'ndr_demo' / 'models'
    models.mkdir(parents=True)
    weights = models / 'net_g_latest.pth'
    weights.write_bytes(open(model_files[1], 'rb').read())
    source = ['-i', str(photo_folder / 'rgb8.png'), '--weights', str(weights), '--device', 'cpu']
    assert main([*source, '-o', str(tmp_path / 'a')]) == 2  # paper-size default: a short mismatch error
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'weights do not fit network_g' in err and 'key(s) missing' in err
    (models.parent / 'ndr_demo.yml').write_text(open(model_files[3]).read())
    assert main([*source, '-o', str(tmp_path / 'b')]) == 0
    out = capsys.readouterr().out
    assert f'Network: {models.parent / "ndr_demo.yml"} (the option file saved with the run)' in out
    assert (tmp_path / 'b' / 'rgb8.png').exists()


def test_device_is_checked(photo_folder, model_files, tmp_path, capsys):
    args = ['-i', str(photo_folder / 'rgb8.png'), '-o', str(tmp_path / 'out'), *model_files[:4]]
    assert main([*args, '--device', 'gpu']) == 2
    assert "--device: device 'gpu' is not a PyTorch device" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*args, '--device', 'cuda']) == 2
        assert "--device: device 'cuda' requested but CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()
