"""``python -m ndr_plugin.test -opt X.yml`` (also ``ndr-test``): BasicSR's test pipeline with our classes.

Results go to ``results/<name>/`` under the current directory (``python -m basicsr.test`` writes into site-packages).
"""
from __future__ import annotations

import os
import sys

import ndr_plugin  # noqa: F401  (compat layer + registration before BasicSR is used)
from ndr_plugin.basicsr_cli import prepare_basicsr_argv


def main(argv: list[str] | None = None) -> None:
    import basicsr.test
    basicsr_argv, opt_path, opt = prepare_basicsr_argv('ndr-test', 'Test with BasicSR and ndr_plugin.', False, argv)
    sys.argv = [sys.argv[0]] + basicsr_argv
    basicsr.test.test_pipeline(os.getcwd())
    keep_option_file_with_results(opt_path, opt['name'])


def keep_option_file_with_results(opt_path: str, name: str) -> None:
    """Copy the option file into ``results/<name>/`` (as training does for experiments), so that the results folder
    says how it was made and ``ndr-compare`` can rebuild its network."""
    from basicsr.utils.options import copy_opt_file
    results_root = os.path.join(os.getcwd(), 'results', name)
    if os.path.isdir(results_root):
        copy_opt_file(opt_path, results_root)


if __name__ == '__main__':
    main()
