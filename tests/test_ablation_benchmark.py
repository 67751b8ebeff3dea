"""benchmarks/ablation.py: resumable jobs, paired seeds, stale results recomputed, intervals computed right."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'benchmarks'))
from ablation_table import interval, summarize  # noqa: E402


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / 'benchmarks' / 'ablation.py'), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd)


def test_interval_is_the_student_t_interval_by_hand():
    mean, low, high = interval([1.0, 2.0, 4.0])
    sd = math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert mean == pytest.approx(7 / 3) and low == pytest.approx(7 / 3 - half) and high == pytest.approx(7 / 3 + half)
    assert interval([0.5]) == (0.5, 0.5, 0.5)


def _result(variant: str, seed: int, psnr: float, digest: str = 'd0') -> dict:
    scores = {'A': {'psnr': psnr, 'psnr_aio': psnr, 'psnr_ndr': psnr}, 'B': {'psnr': 2 * psnr, 'psnr_aio': 2 * psnr,
                                                                                'psnr_ndr': 2 * psnr}}
    return {'variant': variant, 'seed': seed, 'parameters': 10, 'restoration_updates': 5, 'degradation_updates': 5,
            'train_seconds': 1.0, 'data_digest': digest, 'scores': scores, 'settings': {'iters': 5}}


def test_paired_differences_and_unpairable_runs():
    inputs = {'A': {'psnr': 1.0, 'psnr_aio': 1.0, 'psnr_ndr': 1.0}, 'B': {'psnr': 1.0, 'psnr_aio': 1.0,
                                                                          'psnr_ndr': 1.0}}
    saved = [_result('no_ndr', 0, 20.0), _result('no_ndr', 1, 22.0), _result('full', 0, 20.5), _result('full', 1, 22.5)]
    report = summarize(saved, inputs)
    diff = report['variants']['full']['paired_difference']['psnr_aio']
    assert diff['A'] == (pytest.approx(0.5), pytest.approx(0.5), pytest.approx(0.5))  # the same gain with both seeds
    assert diff['average'][0] == pytest.approx(0.75)
    assert report['variants']['full']['psnr']['psnr_aio']['A'] == (pytest.approx(21.5), pytest.approx(math.sqrt(2)))
    with pytest.raises(ValueError, match='different training batches with seed 1'):
        summarize(saved[:3] + [_result('full', 1, 22.5, digest='other')], inputs)
    with pytest.raises(ValueError, match='different settings'):
        summarize(saved[:3] + [{**_result('full', 1, 22.5), 'settings': {'iters': 6}}], inputs)


def test_study_runs_resumes_and_recomputes_stale_jobs(tmp_path, shared_data):
    photos = tmp_path / 'photos'
    photos.mkdir()
    for path in sorted((shared_data / 'CBSD432_minus_Rain100L').glob('*.jpg'))[:3]:
        shutil.copy(path, photos / path.name)
    common = ['--variants', 'no_ndr', 'full', '--seeds', '0', '--patches', '1', '--max-images', '1', '--jobs', '1',
              '--train-data', str(photos), '--real-data', str(shared_data), '--workdir', str(tmp_path / 'work'),
              '--out', str(tmp_path / 'out')]
    first = _run([*common, '--iters', '2'], tmp_path)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    assert '2 job(s) to run' in first.stdout
    saved = {p.name: json.loads(p.read_text()) for p in (tmp_path / 'work' / 'results').glob('*.json')}
    assert set(saved) == {'no_ndr_seed0.json', 'full_seed0.json'}
    assert saved['full_seed0.json']['data_digest'] == saved['no_ndr_seed0.json']['data_digest']
    assert (saved['full_seed0.json']['restoration_updates'], saved['full_seed0.json']['degradation_updates']) == (2, 2)
    reference = saved['no_ndr_seed0.json']
    assert (reference['restoration_updates'], reference['degradation_updates']) == (2, 0)
    table = (tmp_path / 'out' / 'ablation.md').read_text()
    assert '| full | 1 |' in table and '| degraded input |' in table

    again = _run([*common, '--iters', '2'], tmp_path)
    assert again.returncode == 0 and '0 job(s) to run' in again.stdout
    stale = _run([*common, '--iters', '3'], tmp_path)
    assert stale.returncode == 0, stale.stderr[-3000:]
    assert 'made with other settings; it will be recomputed' in stale.stdout and '2 job(s) to run' in stale.stdout
    report = json.loads((tmp_path / 'out' / 'ablation.json').read_text())
    assert report['settings']['iters'] == 3 and report['variants']['full']['restoration_updates'] == 3
