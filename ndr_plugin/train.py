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
from ndr_plugin import compat
from ndr_plugin.cli_common import prepare_basicsr_argv


def load_resume_state(opt: dict[str, Any]) -> dict[str, Any] | None:
    """BasicSR's ``load_resume_state`` that maps to CPU when the run is on CPU and loads with the safe loader."""
    import torch
    from basicsr.utils import scandir
    from basicsr.utils.misc import check_resume
    resume_state_path = None
    if opt['auto_resume']:
        state_dir = opt['path']['training_states']
        if osp.isdir(state_dir):
            iters = [int(name[:-len('.state')]) for name in scandir(state_dir, suffix='.state', recursive=False)
                     if name[:-len('.state')].isdigit()]
            if iters:
                resume_state_path = osp.join(state_dir, f'{max(iters)}.state')
                opt['path']['resume_state'] = resume_state_path
    elif opt['path'].get('resume_state'):
        resume_state_path = opt['path']['resume_state']
    if resume_state_path is None:
        return None
    if opt.get('num_gpu', 0) != 0 and torch.cuda.is_available():
        map_location = f'cuda:{torch.cuda.current_device()}'
    else:
        map_location = 'cpu'
    resume_state = compat.torch_load(resume_state_path, map_location=map_location)
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
