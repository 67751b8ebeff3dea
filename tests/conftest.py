"""Shared fixtures. Real benchmark images live in ../shared/data beside the repository; tests that need them skip
with a clear message when that folder is absent (as on a user's machine)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / 'shared' / 'data'


@pytest.fixture(scope='session')
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f'real benchmark images not found at {SHARED_DATA} (optional; see README)')
    return SHARED_DATA


@pytest.fixture(scope='session')
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for child Python processes: few threads, so parallel children do not oversubscribe the cores."""
    env = dict(os.environ)
    env.setdefault('OMP_NUM_THREADS', '1')
    env.setdefault('MKL_NUM_THREADS', '1')
    env['PYTHONUNBUFFERED'] = '1'
    return env


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks on two shared cores: one intra-op thread avoids OpenMP oversubscription stalls, which cost far
    more than the computation. Tests that want more threads set them themselves."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
