"""``ndr-reproduce``: the whole chain (check, prepare, train, test, table) on a miniature raw tree with --tiny, stage
markers that make a rerun skip finished work, --dry-run, and the option files it derives for every setting."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

import ndr_plugin  # noqa: F401  (registration, so the derived networks can be built)
from basicsr.archs import build_network
from ndr_plugin.reproduce import option_files
from ndr_plugin.reproduce.cli import main
from ndr_plugin.reproduce.settings import SETTINGS
from reproduce_tree import aio3_tree


def _reproduce(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'ndr_plugin.reproduce'] + args, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)


def test_tiny_aio3_runs_end_to_end_and_a_rerun_skips_finished_stages(tmp_path, subprocess_env):
    tree = aio3_tree(tmp_path / 'data')
    args = ['aio3', '--data', str(tree), '--tiny', '--work', str(tmp_path / 'work')]
    start = time.monotonic()
    first = _reproduce(args, tmp_path, subprocess_env)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert time.monotonic() - start < 120
    table = (tmp_path / 'work' / 'tables' / 'aio3.md').read_text()
    for text in ('This reproduction, aio protocol', 'This reproduction, basicsr protocol', 'test_NDR_AIO3_alternate',
                 'CBSD68_sigma15 PSNR/SSIM', 'SOTS_outdoor PSNR/SSIM', 'PromptIR README', '31.51/0.910',
                 'the standard CBSD68 has 68', '| ndr |'):
        assert text in table, text
    assert (tmp_path / 'work' / 'tables' / 'aio3_aio.csv').is_file()
    weights = tmp_path / 'work' / 'experiments' / 'NDR_AIO3_alternate' / 'models' / 'net_g_latest.pth'
    trained_at = weights.stat().st_mtime_ns

    again = _reproduce(args, tmp_path, subprocess_env)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    assert '[run] aio3/' not in again.stdout  # the prepared data is checked again (unchanged), nothing else runs
    for stage in ('aio3/train_ndr', 'aio3/test_ndr', 'aio3/table'):
        assert f'[done] {stage}' in again.stdout
    assert weights.stat().st_mtime_ns == trained_at

    # A changed source image: the dataset is rebuilt, and the model trained on the old data is refused, not reused.
    source = sorted((tree / 'test' / 'CBSD68').iterdir())[0]
    image = cv2.imread(str(source))
    cv2.imwrite(str(source), 255 - image)
    changed = _reproduce(args, tmp_path, subprocess_env)
    assert changed.returncode == 2, changed.stdout[-4000:] + changed.stderr[-4000:]
    assert 'changed since the models and tables' in changed.stderr
    assert weights.stat().st_mtime_ns == trained_at


def test_dry_run_prints_every_command_and_runs_nothing(tmp_path, capsys):
    work = tmp_path / 'work'
    assert main(['aio5', '--data', str(tmp_path / 'nowhere'), '--dry-run', '--gpus', '4', '--work', str(work)]) == 0
    out = capsys.readouterr().out
    assert 'ndr-prepare deblur-train --src ' in out and 'GOPRO_Large/train' in out
    assert 'ndr-prepare lowlight-test' in out and 'LOLdataset/eval15' in out
    assert 'torchrun --standalone --nproc_per_node=4 -m ndr_plugin.train -opt' in out and '--auto_resume' in out
    assert 'ndr-test -opt' in out and 'ndr-compare' in out
    assert not work.exists()


def test_missing_raw_folders_are_all_named_before_anything_runs(tmp_path, capsys):
    (tmp_path / 'data').mkdir()
    assert main(['composite', '--data', str(tmp_path / 'data'), '--tiny', '--work', str(tmp_path / 'work')]) == 2
    err = capsys.readouterr().err
    assert 'CDD-11_train' in err and 'CDD-11_test' in err and 'ndr-reproduce --help' in err
    assert not (tmp_path / 'work' / 'datasets').exists()


def test_a_model_without_option_file_for_the_setting_is_refused(tmp_path, capsys):
    assert main(['aio3-sr', '--data', str(tmp_path), '--model', 'promptir', '--dry-run']) == 2
    assert 'no option file for the aio3-sr setting; available: ndr' in capsys.readouterr().err


@pytest.mark.parametrize('setting', sorted(SETTINGS))
def test_derived_option_files_read_the_prepared_data_and_build_tiny(setting, tmp_path):
    options = option_files.default_options_dir()
    prepared = {str(tmp_path / step.out) for step in SETTINGS[setting].steps}
    for model, relative in SETTINGS[setting].train_options.items():
        trained = option_files.training_options(options, relative, tmp_path, tiny=True)
        tested = option_files.test_options(options, SETTINGS[setting].test_options, trained, tmp_path, tiny=True)
        assert tested['network_g'] == trained['network_g'] and trained['train']['total_iter'] < 10
        assert tested['path']['pretrain_network_g'].startswith(str(tmp_path / 'experiments' / trained['name']))
        for opt in (trained, tested):
            for dataset in opt['datasets'].values():
                for entry in dataset.get('sources') or [dataset]:
                    root = entry['dataroot_gt']
                    assert any(root.startswith(p + '/') for p in prepared), (model, root)
        assert sum(p.numel() for p in build_network(dict(trained['network_g'])).parameters()) < 500_000
