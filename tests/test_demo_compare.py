"""The embedded demo end to end at a few iterations (its full run is `make demo`), a baseline demo run on the same
data, `ndr-compare` on both, and the checks of the opt-in real-benchmark folder (`--real-data DIR`)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ndr_plugin.demo import REAL_SETS, TEST_SETS, check_real_root, main


def run_demo(tmp_path, env, *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, '-m', 'ndr_plugin.demo', '--iters', '4', '--patches-per-photo', '2', '--variants', '1',
            '--real-max', '1', *extra]
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope='module')
def demo_runs(tmp_path_factory, shared_data):
    import os
    env = dict(os.environ, OMP_NUM_THREADS='2', PYTHONUNBUFFERED='1')
    tmp_path = tmp_path_factory.mktemp('demo')
    ndr = run_demo(tmp_path, env, '--real-data', str(shared_data))
    baseline = run_demo(tmp_path, env, '--model', 'no_ndr')
    return tmp_path, ndr, baseline


def test_demo_writes_report_metrics_and_grid(demo_runs):
    root, proc, _ = demo_runs
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    results = root / 'results' / 'ndr_demo'
    metrics = json.loads((results / 'metrics.json').read_text())
    for test_set in TEST_SETS:
        assert set(metrics[test_set]) >= {'input_psnr', 'output_psnr', 'input_ssim', 'output_ssim'}
    assert metrics['real_images_outside_training_set'], 'real benchmark pairs were not scored'
    report = (results / 'report.md').read_text()
    assert 'outside the training set' in report and all(t in report for t in TEST_SETS)
    assert (results / 'grid.png').stat().st_size > 10_000
    assert proc.stdout.strip().splitlines()[-3].startswith('Report: ')
    # The test went through BasicSR's test loop, which saved every restored image.
    saved = list((results / 'visualization').rglob('*_restored.png'))
    assert len(saved) == 4 * len(TEST_SETS)
    # Same seed, same demo data: the second run reused the LMDBs (byte-identical recipe).
    assert (root / 'datasets' / 'ndr_demo' / 'demo_data.json').is_file()


def test_compare_table_from_demo_and_baseline_runs(demo_runs):
    root, ndr, baseline = demo_runs
    assert baseline.returncode == 0, baseline.stdout[-4000:] + baseline.stderr[-4000:]
    assert 'Demo data: reusing' in baseline.stdout
    out = root / 'table.md'
    proc = subprocess.run([sys.executable, '-m', 'ndr_plugin.compare', str(root / 'results' / 'ndr_demo'),
                           str(root / 'results' / 'ndr_demo_no_ndr'), '--protocol', 'aio', '--size', '64',
                           '--repeats', '1', '--out', str(out)], cwd=root, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = out.read_text()
    assert 'ndr_demo ' in table and 'ndr_demo_no_ndr' in table
    for test_set in TEST_SETS:
        assert f'{test_set} PSNR/SSIM' in table
    rows = [line for line in table.splitlines() if line.startswith('| ndr_demo')]
    assert len(rows) == 2 and all('-/-' not in row for row in rows)
    assert out.with_suffix('.csv').is_file()


def test_demo_without_real_data_says_how_to_add_the_table(demo_runs):
    root, _, baseline = demo_runs
    assert baseline.returncode == 0, baseline.stdout[-4000:] + baseline.stderr[-4000:]
    assert 'real_images_outside_training_set' not in json.loads(
        (root / 'results' / 'ndr_demo_no_ndr' / 'metrics.json').read_text())
    report = (root / 'results' / 'ndr_demo_no_ndr' / 'report.md').read_text()
    assert 'Not scored in this run' in report and '`--real-data DIR`' in report


def test_real_data_folder_missing_a_subfolder_is_named_before_training(tmp_path, capsys):
    for subfolders in REAL_SETS.values():
        for sub in subfolders:
            (tmp_path / sub).mkdir(parents=True, exist_ok=True)
    check_real_root(tmp_path)
    (tmp_path / 'SOTS_outdoor_sample' / 'hazy').rmdir()
    with pytest.raises(FileNotFoundError, match=r'missing subfolder\(s\) SOTS_outdoor_sample/hazy \('):
        check_real_root(tmp_path)
    # The command line stops at once (no data built, nothing trained) with the same message.
    with pytest.raises(SystemExit) as exit_info:
        main(['--real-data', str(tmp_path), '--data-root', str(tmp_path / 'demo_data')])
    assert exit_info.value.code == 2
    assert 'SOTS_outdoor_sample/hazy' in capsys.readouterr().err
    assert not (tmp_path / 'demo_data').exists()


def test_demo_help_lists_the_real_data_subfolders(capsys):
    with pytest.raises(SystemExit):
        main(['--help'])
    help_text = capsys.readouterr().out
    for sub in ('CBSD68/', 'Rain100L_pairs/gt/', 'RainL_train_sample/rainy/', 'SOTS_outdoor_sample/hazy/',
                'Set5/image_SRF_2/'):
        assert sub in help_text
