"""``python -m ndr_plugin.train -opt X.yml`` (also ``ndr-train``): BasicSR's training pipeline with our classes.

Differences from ``python -m basicsr.train``: ``experiments/``, ``tb_logger/`` and ``results/`` go under the current
directory (not site-packages); the option file is checked first; ``--auto_resume`` works on CPU and finds the
experiment's training states wherever the experiment root is; multi-process training also runs on CPU (gloo).
"""
from __future__ import annotations

import os
import os.path as osp
import sys
from typing import Any

import ndr_plugin  # noqa: F401  (compat layer + registration before BasicSR is used)
from ndr_plugin import checkpoints
from ndr_plugin.basicsr_cli import prepare_basicsr_argv


def _state_files_newest_first(state_dir: str) -> list[str]:
    from basicsr.utils import scandir
    if not osp.isdir(state_dir):
        return []
    iters = [int(name[:-len('.state')]) for name in scandir(state_dir, suffix='.state', recursive=False)
             if name[:-len('.state')].isdigit()]
    return [osp.join(state_dir, f'{i}.state') for i in sorted(iters, reverse=True)]


def _load_newest_complete_state(state_dir: str, map_location: str) -> tuple[str, dict[str, Any]] | None:
    """The newest training state that loads; a damaged one (a truncated copy, a full disk) is named and skipped.

    Reported on stderr only: BasicSR's logger must not be set up before ``train_pipeline`` gives it the log file.
    """
    for path in _state_files_newest_first(state_dir):
        try:
            return path, checkpoints.torch_load(path, map_location=map_location)
        except checkpoints.CheckpointError as err:
            print(f'--auto_resume: skipping {path}: {err}; trying the previous training state', file=sys.stderr)
    return None


def load_resume_state(opt: dict[str, Any]) -> dict[str, Any] | None:
    """BasicSR's ``load_resume_state`` that maps to CPU when the run is on CPU, loads with the safe loader and, under
    ``--auto_resume``, falls back to the newest training state that is complete."""
    import torch
    from basicsr.utils.misc import check_resume
    if opt.get('num_gpu', 0) != 0 and torch.cuda.is_available():
        map_location = f'cuda:{torch.cuda.current_device()}'
    else:
        map_location = 'cpu'
    if opt['auto_resume']:
        found = _load_newest_complete_state(opt['path']['training_states'], map_location)
        if found is None:
            return None
        opt['path']['resume_state'], resume_state = found
    elif opt['path'].get('resume_state'):
        resume_state = checkpoints.torch_load(opt['path']['resume_state'], map_location=map_location)
    else:
        return None
    check_resume(opt, resume_state['iter'])
    return resume_state


def main(argv: list[str] | None = None) -> None:
    import basicsr.train
    basicsr_argv, _, _ = prepare_basicsr_argv('ndr-train', 'Train with BasicSR and ndr_plugin.', True, argv)
    basicsr.train.load_resume_state = load_resume_state
    sys.argv = [sys.argv[0]] + basicsr_argv
    basicsr.train.train_pipeline(os.getcwd())


if __name__ == '__main__':
    main()
