"""Tiled inference and the Restorer Python API, with tiny real networks (no mocks)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import ndr_plugin
from ndr_plugin.archs.ndr_arch import NDRNet
from ndr_plugin.archs.ndr_modules import LowRankCPGate
from ndr_plugin.archs.restormer_blocks import MDTA
from ndr_plugin.restore.restorer import Restorer, load_network_g
from ndr_plugin.restore.tiling import TileSettings, tile_starts, tiled_forward
from skimage import data as skdata

TINY_NDR = dict(dim=8, num_blocks=[1, 1, 1, 1], heads=[1, 1, 1, 1], num_refinement_blocks=1, num_atoms=8,
                atom_dim=16, degradation_dim=8, cp_rank=4)
# Measured for TINY_NDR with random weights (seeds 0-4) on a 200x264 astronaut crop, tile 96, overlap 32, tiled vs
# whole-image output (peak 1, unclamped). Each tile with its own statistics: PSNR 49.8-59.2 dB, max |difference|
# <= 0.009. With one pass of image-level statistics: 60.5-69.7 dB, <= 0.0033. The bounds leave a margin for other
# seeds and platforms.
NDR_TILED_BOUNDS = {0: (45., 0.02), 1: (56., 0.006)}



class LocalNet(nn.Module):
    """Three 3x3 convolutions: receptive field radius 3 px, far below a quarter of the 32 px overlap."""

    def __init__(self, out_channels: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 8, 3, padding=1), nn.GELU(),
                                  nn.Conv2d(8, out_channels, 3, padding=1))

    def forward(self, x):
        return self.body(x)


class MultipleOf8Net(LocalNet):
    """A local network that only accepts multiples of 8 (like the official NDR code) and says so."""

    pad_multiple = 8

    def forward(self, x):
        if x.shape[-2] % 8 or x.shape[-1] % 8:
            raise RuntimeError(f'size {tuple(x.shape[-2:])} is not a multiple of 8')
        return nn.functional.pixel_shuffle(nn.functional.pixel_unshuffle(super().forward(x), 2), 2)


class GlobalChain(nn.Module):
    """An MDTA followed by a CP gate: two layers that reduce over every pixel, and nothing else beyond 3x3."""

    def __init__(self) -> None:
        super().__init__()
        self.attention = MDTA(3, 1, bias=True)
        self.gate = LowRankCPGate(3, rank=2)

    def forward(self, x):
        return self.gate(self.attention(x))


class ThirdsNet(nn.Module):
    """A CP gate on a grid of 3x3 cells: tiles are not whole numbers of cells, so statistics cannot be shared."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = LowRankCPGate(3, rank=2)

    def forward(self, x):
        cells = nn.functional.avg_pool2d(x, 3, ceil_mode=True)
        return nn.functional.interpolate(self.gate(cells), size=x.shape[-2:], mode='nearest') + x


class MemoryBudgetNet(LocalNet):
    """Raises torch.OutOfMemoryError, as an allocator would, when a forward gets more pixels than its budget."""

    def __init__(self, max_pixels: int) -> None:
        super().__init__()
        self.max_pixels = max_pixels
        self.sizes_tried = []

    def forward(self, x):
        self.sizes_tried.append(tuple(x.shape[-2:]))
        if x.shape[-2] * x.shape[-1] > self.max_pixels:
            raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')
        return super().forward(x)


def _image_tensor(height: int, width: int) -> torch.Tensor:
    img = skdata.astronaut()[:height, :width].astype(np.float32) / 255.
    return torch.from_numpy(img.transpose(2, 0, 1).copy())[None]


def test_tile_starts_cover_exactly():
    assert tile_starts(100, 128, 96) == [0]
    assert tile_starts(300, 128, 96) == [0, 96, 172]
    assert tile_starts(224, 128, 96) == [0, 96]
    for length in range(64, 400, 37):
        starts = tile_starts(length, 64, 48)
        assert starts[0] == 0 and starts[-1] + 64 == length
        assert all(b - a <= 48 for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize('size, tile, overlap', [((203, 317), 64, 32), ((200, 264), 96, 32), ((129, 131), 128, 40),
                                                 ((90, 70), 512, 32)])
def test_tiled_equals_whole_for_local_network(size, tile, overlap):
    torch.manual_seed(0)
    net = LocalNet(out_channels=4).eval()  # a different output channel count is fine
    x = _image_tensor(*size)
    with torch.no_grad():
        whole = net(x)
    tiled = tiled_forward(net, x, TileSettings(tile, overlap))
    assert tiled.shape == whole.shape
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)


def test_tiled_pads_to_the_network_multiple():
    torch.manual_seed(0)
    net = MultipleOf8Net().eval()
    x = _image_tensor(203, 150)
    with torch.no_grad():
        whole = net(nn.functional.pad(x, (0, 2, 0, 5), mode='reflect'))[..., :203, :150]
    tiled = tiled_forward(net, x, TileSettings(100, 32))  # rounded down to 96, cut from the image padded as a whole
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)
    small = x[..., :45, :61]  # smaller than a tile: reflect-padded to 48x64 like the whole image
    with torch.no_grad():
        expected = net(nn.functional.pad(small, (0, 3, 0, 3), mode='reflect'))[..., :45, :61]
    torch.testing.assert_close(tiled_forward(net, small, TileSettings(96, 32)), expected, rtol=0, atol=1e-6)


def test_out_of_memory_halves_the_tile():
    torch.manual_seed(0)
    net = MemoryBudgetNet(max_pixels=80 * 80).eval()
    x = _image_tensor(150, 230)
    tiled = tiled_forward(net, x, TileSettings(512, 32))
    assert (150, 230) in net.sizes_tried and (128, 128) in net.sizes_tried and max(net.sizes_tried[-1]) <= 64
    with torch.no_grad():
        torch.testing.assert_close(tiled, LocalNet.forward(net, x), rtol=0, atol=1e-6)
    net.sizes_tried.clear()
    with pytest.raises(torch.OutOfMemoryError):
        tiled_forward(net, x, TileSettings(256, 32), min_tile_size=128)
    assert max(net.sizes_tried[-1]) == 128
    with pytest.raises(torch.OutOfMemoryError):
        tiled_forward(net, x, None)  # no tile settings: a plain forward, no fallback


def test_other_errors_are_not_retried():
    net = MemoryBudgetNet(max_pixels=10 ** 6)
    with pytest.raises(RuntimeError, match='expected input'):
        tiled_forward(net, torch.rand(1, 5, 64, 64), TileSettings(32, 8))
    assert len(net.sizes_tried) == 1


def test_image_statistics_make_tiles_exact_for_layers_that_reduce_over_all_pixels():
    torch.manual_seed(0)
    net = GlobalChain().eval()
    x = _image_tensor(150, 230)
    with torch.no_grad():
        whole = net(x)
    errors = [(tiled_forward(net, x, TileSettings(64, 16, passes)) - whole).abs().max().item()
              for passes in (0, 1, 2)]
    assert errors[0] > 1e-3  # every tile with its own attention and means
    # One pass gives the attention the image's statistics, but the gate's were gathered behind per-tile attention;
    # a second pass fixes those too: two layers deep, two passes are exact.
    assert 1e-5 < errors[1] < errors[0] / 10 and errors[2] < 1e-6, errors
    assert net.attention.image_statistics is None and net.gate.image_statistics is None  # removed afterwards


def test_statistics_are_not_shared_when_tiles_do_not_fit_the_feature_grid():
    torch.manual_seed(0)
    net = ThirdsNet().eval()
    x = _image_tensor(150, 230)
    torch.testing.assert_close(tiled_forward(net, x, TileSettings(64, 16)),
                               tiled_forward(net, x, TileSettings(64, 16, 0)),
                               rtol=0, atol=0)


@pytest.mark.parametrize('passes', sorted(NDR_TILED_BOUNDS))
def test_tiled_ndrnet_within_measured_bound(passes):
    x = _image_tensor(200, 264)
    min_psnr, max_abs = NDR_TILED_BOUNDS[passes]
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = NDRNet(**TINY_NDR).eval()
        with torch.no_grad():
            whole = net(x)
        tiled = tiled_forward(net, x, TileSettings(96, 32, passes))
        difference = (tiled - whole).abs()
        psnr = -10 * torch.log10(difference.pow(2).mean()).item()
        assert difference.max().item() > 1e-5  # convolutions reach past the overlap: not exact (so this measures)
        assert psnr >= min_psnr and difference.max().item() <= max_abs, (seed, psnr)


# ----------------------------------------------------------------------------------------------------------------------
# Restorer
# ----------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def tiny_checkpoint(tmp_path_factory):
    """(checkpoint path, option file path, the network) for a tiny random NDRNet."""
    folder = tmp_path_factory.mktemp('restorer')
    torch.manual_seed(0)
    net = NDRNet(**TINY_NDR).eval()
    torch.save({'params': net.state_dict()}, folder / 'net_g.pth')
    lines = ['network_g:', '  type: NDRNet'] + [f'  {key}: {value}' for key, value in TINY_NDR.items()]
    (folder / 'tiny.yml').write_text('\n'.join(lines) + '\n')
    return folder / 'net_g.pth', folder / 'tiny.yml', net


def test_restorer_is_exported_lazily():
    assert ndr_plugin.Restorer is Restorer


def test_restore_uint8_rgb_matches_the_network(tiny_checkpoint):
    weights, opt, net = tiny_checkpoint
    image = skdata.astronaut()[:72, :96]
    restored = Restorer(weights, opt=opt).restore(image)
    with torch.no_grad():
        expected = net(torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / 255.)[None])
    expected = (expected[0].clamp(0, 1).numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
    assert restored.dtype == np.uint8 and restored.shape == image.shape
    assert np.abs(restored.astype(int) - expected.astype(int)).max() <= 1  # float rounding at .5 boundaries


def test_restore_keeps_dtype_layout_and_alpha(tiny_checkpoint):
    weights, opt, _ = tiny_checkpoint
    restorer = Restorer(weights, opt=opt, tile=48, tile_overlap=16)
    rgb8 = skdata.chelsea()[:64, :80]
    reference = restorer.restore(rgb8).astype(np.float32) / 255.
    rgb16 = rgb8.astype(np.uint16) * 257
    out16 = restorer.restore(rgb16)
    assert out16.dtype == np.uint16 and np.abs(out16 / 65535. - reference).max() < 1.5 / 255
    float_out = restorer.restore(rgb8.astype(np.float64) / 255.)
    assert float_out.dtype == np.float64 and np.abs(float_out - reference).max() < 0.6 / 255
    alpha = np.random.default_rng(0).integers(0, 256, rgb8.shape[:2], dtype=np.uint8)
    rgba = restorer.restore(np.dstack([rgb8, alpha]))
    assert rgba.shape == (64, 80, 4) and np.array_equal(rgba[..., 3], alpha)
    assert np.array_equal(rgba[..., :3], restorer.restore(rgb8))
    gray = skdata.camera()[:64, :80]
    gray_out = restorer.restore(gray)
    assert gray_out.shape == gray.shape and gray_out.dtype == np.uint8
    assert restorer.restore(gray[..., None]).shape == (64, 80, 1)
    with pytest.raises(TypeError, match='dtype int32'):
        restorer.restore(gray.astype(np.int32))
    with pytest.raises(ValueError, match='shape'):
        restorer.restore(np.zeros((8, 8, 5), np.uint8))


def test_checkpoint_formats(tiny_checkpoint, tmp_path):
    weights, opt, net = tiny_checkpoint
    torch.manual_seed(1)
    ema = NDRNet(**TINY_NDR).state_dict()
    both = tmp_path / 'both.pth'
    torch.save({'params': net.state_dict(), 'params_ema': ema}, both)
    loaded = load_network_g(both, opt)
    assert all(torch.equal(loaded.state_dict()[k], ema[k]) for k in ema)  # params_ema preferred
    embedded = tmp_path / 'embedded.pth'
    torch.save({'params': net.state_dict(), 'network_options': {'type': 'NDRNet', **TINY_NDR}}, embedded)
    assert load_network_g(embedded).ndr.atoms.shape == (8, 16)
    bare = tmp_path / 'bare.pth'
    torch.save(net.state_dict(), bare)
    assert load_network_g(bare, {'type': 'NDRNet', **TINY_NDR}).ndr.atoms.shape == (8, 16)
    with pytest.raises(ValueError, match='bare.pth: weights do not fit network_g'):
        load_network_g(bare)  # paper-size default does not fit the tiny weights
    with pytest.raises(ValueError, match="no 'network_g'"):
        load_network_g(bare, {'name': 'x'})
    with pytest.raises(FileNotFoundError):
        load_network_g(tmp_path / 'missing.pth', opt)


def test_official_checkpoint_converted_on_the_fly(tmp_path):
    from official_reference import tiny_official
    torch.manual_seed(0)
    official = tiny_official().eval()
    path = tmp_path / 'model_L.pth'
    torch.save(official.state_dict(), path)  # plain state_dict, no 'params' wrapper, as released
    image = skdata.coffee()[:64, :96]
    restored = Restorer(path).restore(image.astype(np.float32) / 255.)
    with torch.no_grad():  # the official network reads BGR
        bgr = torch.from_numpy(image[..., ::-1].transpose(2, 0, 1).astype(np.float32) / 255.)[None]
        expected = official.restoration_process(bgr)[0].clamp(0, 1).numpy().transpose(1, 2, 0)[..., ::-1]
    np.testing.assert_allclose(restored, expected, atol=1e-4)


def test_half_precision_on_cpu_uses_bfloat16(tiny_checkpoint):
    weights, opt, _ = tiny_checkpoint
    restorer = Restorer(weights, opt=opt, half=True)
    assert next(restorer.net.parameters()).dtype == torch.bfloat16
    image = skdata.astronaut()[:64, :64]
    full = Restorer(weights, opt=opt).restore(image).astype(np.float32)
    assert np.abs(restorer.restore(image).astype(np.float32) - full).mean() < 2.


def test_explain_reports_atom_usage(tiny_checkpoint):
    from ndr_plugin.restore.explain import REFERENCE_DEGRADATIONS, format_explanation
    weights, opt, _ = tiny_checkpoint
    restorer = Restorer(weights, opt=opt, tile=64)
    image = skdata.astronaut()[:100, :140]
    explanation = restorer.explain(image)
    assert set(explanation['similarity']) == set(REFERENCE_DEGRADATIONS)
    assert explanation['nearest_degradation'] == max(explanation['similarity'], key=explanation['similarity'].get)
    usage = np.array(explanation['atom_usage'])
    assert usage.shape == (3, TINY_NDR['num_atoms']) and np.allclose(usage.sum(axis=1), 1, atol=1e-5)
    references = restorer._reference_signatures
    assert restorer.explain(image) == explanation and restorer._reference_signatures is references  # cached
    assert 'nearest degradation' in format_explanation('photo.png', explanation)


# ----------------------------------------------------------------------------------------------------------------------
# One tile setting, checked once; nothing wrong returned silently
# ----------------------------------------------------------------------------------------------------------------------
def test_tile_settings_are_checked_in_one_place():
    assert TileSettings(None) == TileSettings(0) and TileSettings(0).whole_image
    with pytest.raises(ValueError, match='tile 8 is too small for tile_overlap 32'):
        TileSettings(8)
    with pytest.raises(ValueError, match='tile_passes must be a non-negative integer'):
        TileSettings(64, 16, -1)
    with pytest.raises(ValueError, match='tile_overlap must be a non-negative integer'):
        TileSettings(64, 1.5)
    # Past the overlap check, the network's multiple decides: 8 - 4 leaves no whole stride of 8.
    with pytest.raises(ValueError, match=r'tile 8 is too small for tile_overlap 4: .* tile >= 16'):
        TileSettings(8, 4).size_for(8)
    assert TileSettings(41, 32).size_for(8) == 40 and TileSettings(40, 32).smallest_size(8) == 40


def test_blend_layout_without_weight_is_refused():
    from ndr_plugin.restore.tiling import check_coverage
    check_coverage([0, 8], 16, 24, 8)
    with pytest.raises(RuntimeError, match='zero blend weight'):
        check_coverage([0, 8], 8, 16, 4)  # stride = tile: the zero margins of the window cover nothing else


def test_restorer_tile_just_above_the_limit_matches_whole_and_below_is_an_error(tiny_checkpoint):
    weights, opt, _ = tiny_checkpoint
    with pytest.raises(ValueError, match='tile 8 is too small for tile_overlap 32'):
        Restorer(weights, opt=opt, tile=8)
    with pytest.raises(ValueError, match='tile 12 is too small for tile_overlap 8'):
        Restorer(weights, opt=opt, tile=12, tile_overlap=8)  # rounded to 8 for NDRNet: no stride left
    image = skdata.astronaut()[:72, :96]
    whole = Restorer(weights, opt=opt).restore(image).astype(int)
    tiled = Restorer(weights, opt=opt, tile=TileSettings(40, 32)).restore(image).astype(int)
    assert np.abs(tiled - whole).max() <= 3 and np.abs(tiled - whole).mean() < 0.5


def test_restorer_keywords_have_one_spelling(tiny_checkpoint):
    weights, opt, _ = tiny_checkpoint
    with pytest.raises(TypeError, match="'statistics_passes' is now 'tile_passes'"):
        Restorer(weights, opt=opt, tile=64, statistics_passes=1)
    with pytest.raises(TypeError, match='inside TileSettings'):
        Restorer(weights, opt=opt, tile=TileSettings(64), tile_overlap=16)
    restorer = Restorer(weights, opt=opt, tile=64, tile_overlap=16, tile_passes=0)
    assert restorer.tile == TileSettings(64, 16, 0)


def test_device_strings_are_checked():
    from ndr_plugin.restore.loading import resolve_device
    assert resolve_device('cpu') == torch.device('cpu')
    with pytest.raises(ValueError, match="device 'gpu' is not a PyTorch device"):
        resolve_device('gpu')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda:1' requested but CUDA is not available"):
            resolve_device('cuda:1')


def test_non_finite_output_is_an_error_not_a_black_image(tiny_checkpoint, tmp_path):
    from ndr_plugin.restore.restorer import NonFiniteOutputError
    _, opt, net = tiny_checkpoint
    broken = {key: torch.full_like(value, float('nan')) if value.is_floating_point() else value
              for key, value in net.state_dict().items()}
    torch.save({'params': broken}, tmp_path / 'nan.pth')
    with pytest.raises(NonFiniteOutputError, match=r'the checkpoint or input produced NaN/Inf \(weights: .*nan\.pth'):
        Restorer(tmp_path / 'nan.pth', opt=opt).restore(skdata.astronaut()[:32, :32])


def test_float_input_outside_unit_range_warns_and_nan_input_is_an_error(tiny_checkpoint):
    weights, opt, _ = tiny_checkpoint
    restorer = Restorer(weights, opt=opt)
    image = skdata.astronaut()[:32, :32].astype(np.float32) / 255.
    image[0, 0, 0] = 1.5
    with pytest.warns(UserWarning, match=r'outside \[0, 1\] \(min 0, max 1.5\) are clipped'):
        restorer.restore(image)
    image[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match='contains NaN or Inf'):
        restorer.restore(image)


def test_gray_alpha_stays_gray_alpha(tiny_checkpoint):
    weights, opt, _ = tiny_checkpoint
    restorer = Restorer(weights, opt=opt)
    gray = skdata.camera()[:40, :48]
    alpha = np.random.default_rng(0).integers(0, 256, gray.shape, dtype=np.uint8)
    out = restorer.restore(np.dstack([gray, alpha]))
    assert out.shape == (40, 48, 2) and np.array_equal(out[..., 1], alpha)
    assert np.array_equal(out[..., 0], restorer.restore(gray))


def test_run_option_file_is_used_and_a_mismatch_is_short(tiny_checkpoint, tmp_path):
    weights, opt, _ = tiny_checkpoint
    models = tmp_path / 'experiments' / 'tiny_run' / 'models'
    models.mkdir(parents=True)
    (models / 'net_g_latest.pth').write_bytes(weights.read_bytes())
    with pytest.raises(ValueError) as info:
        load_network_g(models / 'net_g_latest.pth')  # no option file anywhere: the paper-size default
    message = str(info.value)
    assert 'net_g_latest.pth: weights do not fit network_g' in message and '\n' not in message
    assert 'key(s) missing from the checkpoint' in message and len(message) < 1500
    (models.parent / 'tiny_run.yml').write_text(opt.read_text())
    restorer = Restorer(models / 'net_g_latest.pth')
    assert 'tiny_run.yml (the option file saved with the run)' in restorer.network_source
    assert restorer.net.ndr.atoms.shape == (8, 16)
