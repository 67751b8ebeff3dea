"""Training-speed changes that must not change results: the allocator setting NDRModel applies on the CPU
(``train.keep_freed_memory``) and the pixels-major q @ k^T of MDTA whose gradients keep the channels-last layout."""
from __future__ import annotations

import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import ndr_plugin  # noqa: F401  (compat + registration before BasicSR)
from basicsr.models import build_model
from ndr_plugin.archs.fast_paths import _PixelsMajorGram, channel_cosine_similarity, plain_operators
from ndr_plugin.archs.restormer_blocks import MDTA
from ndr_plugin.models.cpu_memory import apply_keep_freed_memory

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'benchmarks'))
from train_steps import NETWORKS, model_options  # noqa: E402

GLIBC = sys.platform == 'linux' and platform.libc_ver()[0] == 'glibc'

# Runs in a fresh interpreter: the setting is process-wide and cannot be undone.
ALLOCATOR_PROBE = textwrap.dedent('''
    import ctypes, resource, sys
    import torch
    from ndr_plugin.models.cpu_memory import keep_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ('arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks',
                                                         'fsmblks', 'uordblks', 'fordblks', 'keepcost')]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2

    def faults_of_two_fills():
        """mmapped bytes while a 64 MB tensor lives, and page faults of filling a second one after freeing it."""
        x = torch.ones(64 << 20, dtype=torch.uint8)
        mapped = libc.mallinfo2().hblkhd
        del x
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        y = torch.ones(64 << 20, dtype=torch.uint8)
        return mapped, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    default = faults_of_two_fills()
    applied = keep_freed_memory()
    faults_of_two_fills()  # grows the heap once
    kept = faults_of_two_fills()
    print(default[0], default[1], applied, kept[0], kept[1])
''')


@pytest.mark.skipif(not GLIBC, reason='train.keep_freed_memory changes glibc malloc settings only')
def test_keep_freed_memory_reuses_large_blocks_without_page_faults():
    out = subprocess.run([sys.executable, '-c', ALLOCATOR_PROBE], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout.split()
    default_mapped, default_faults, applied, kept_mapped, kept_faults = out
    pages = (64 << 20) // 4096
    assert int(default_mapped) >= 64 << 20 and int(default_faults) > pages // 2  # fresh pages every time
    assert applied == 'True'
    assert int(kept_mapped) < 64 << 20 and int(kept_faults) < pages // 20  # from the heap, and reused


def test_keep_freed_memory_option(tmp_path):
    network_g, network_deg = NETWORKS['tiny']
    model = build_model(model_options('joint', network_g, network_deg, str(tmp_path / 'off'),
                                      train={'keep_freed_memory': False}))
    assert model.keeps_freed_memory is False
    assert apply_keep_freed_memory(None, torch.device('cuda')) is False  # CUDA caches on its own
    with pytest.raises(ValueError, match="train.keep_freed_memory must be true or false, got 'yes'"):
        build_model(model_options('joint', network_g, network_deg, str(tmp_path / 'bad'),
                                  train={'keep_freed_memory': 'yes'}))
    if GLIBC:
        model = build_model(model_options('joint', network_g, network_deg, str(tmp_path / 'on')))
        assert model.keeps_freed_memory is True


def test_keep_freed_memory_is_checked_before_anything_is_built(tmp_path):
    import yaml
    from ndr_plugin.options import OptionError, check_option_file
    from tiny_data import tiny_train_options
    path = tiny_train_options(tmp_path, 'keep_typo', model_type='NDRModel')
    opt = yaml.safe_load(path.read_text())
    opt['train']['keep_freed_memory'] = 1
    path.write_text(yaml.safe_dump(opt))
    with pytest.raises(OptionError, match='keep_typo.yml: train.keep_freed_memory must be true or false, got 1'):
        check_option_file(str(path), training=True)


def pixels_major(b: int, heads: int, head_dim: int, hw: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A (b, heads, head_dim, hw) leaf whose head_dim axis is contiguous, as MDTA's q and k of channels-last input."""
    return torch.randn(b, hw, heads, head_dim, dtype=dtype).permute(0, 2, 3, 1).detach().requires_grad_()


def test_pixels_major_gram_gradients_are_exact_and_keep_the_layout():
    torch.manual_seed(0)
    q, k = pixels_major(2, 2, 3, 10), pixels_major(2, 2, 3, 10)
    assert torch.autograd.gradcheck(_PixelsMajorGram.apply, (q, k))
    _PixelsMajorGram.apply(q, k).square().sum().backward()
    for grad in (q.grad, k.grad):
        assert grad.stride(-2) == 1  # head_dim contiguous, like q and k
    q_ref, k_ref = q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
    (q_ref @ k_ref.transpose(-2, -1)).square().sum().backward()
    assert torch.allclose(q.grad, q_ref.grad) and torch.allclose(k.grad, k_ref.grad)


def test_pixels_major_gram_under_bf16_autocast_matches_float32():
    torch.manual_seed(0)
    q, k = pixels_major(1, 1, 8, 64, torch.float32), pixels_major(1, 1, 8, 64, torch.float32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert _PixelsMajorGram.apply(q, k).dtype == torch.bfloat16  # as q @ k^T under autocast
        similarity = channel_cosine_similarity(q, k)
    similarity.float().sum().backward()
    assert q.grad.dtype == torch.float32 and q.grad.stride(-2) == 1
    q_ref, k_ref = q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
    with plain_operators():
        channel_cosine_similarity(q_ref, k_ref).sum().backward()
    assert torch.allclose(q.grad, q_ref.grad, atol=0.05 * q_ref.grad.abs().max())


def test_mdta_input_gradient_stays_channels_last():
    torch.manual_seed(0)
    block = MDTA(16, 2, bias=False)
    x = torch.randn(2, 16, 8, 12).contiguous(memory_format=torch.channels_last).requires_grad_()
    block(x).square().sum().backward()
    assert x.grad.is_contiguous(memory_format=torch.channels_last)


def test_mdta_runs_on_the_meta_device():
    # Shape and MAC counting (benchmarks/arch_speed.py) run the networks on the meta device, which has no autocast.
    with torch.device('meta'):
        block = MDTA(16, 2, bias=False)
        x = torch.empty(1, 16, 8, 12).contiguous(memory_format=torch.channels_last)
        assert block(x).shape == (1, 16, 8, 12)


def test_cosine_similarity_stays_finite_under_float16_autocast():
    # q k^T summed over many pixels leaves float16's range (65504); under float16 autocast the similarity normalises
    # q and k first, as a float16 network does.
    q = torch.full((1, 1, 4, 16384), 50.0).permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)  # pixels-major
    with torch.autocast('cpu', dtype=torch.float16):
        similarity = channel_cosine_similarity(q, q)
    assert torch.isfinite(similarity).all() and torch.allclose(similarity.float(), torch.ones(1, 1, 4, 4), atol=1e-2)
