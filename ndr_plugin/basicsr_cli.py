"""What ``python -m ndr_plugin.train`` and ``python -m ndr_plugin.test`` share."""
from __future__ import annotations

import argparse
import sys

from ndr_plugin.options import OptionError, check_option_file


def basicsr_argument_parser(prog: str, description: str, training: bool) -> argparse.ArgumentParser:
    """The command line of BasicSR's own scripts (parsed again by BasicSR itself)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument('-opt', required=True, help='path to the YAML option file')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='job launcher: none (one process), pytorch (torchrun) or slurm')
    if training:
        parser.add_argument('--auto_resume', action='store_true',
                            help='continue from the newest training state of this experiment, if any')
        parser.add_argument('--debug', action='store_true', help="BasicSR's debug mode (name prefixed with debug_)")
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument('--force_yml', nargs='+', default=None,
                        help="override existing options, BasicSR syntax: 'train:ema_decay=0.999'")
    return parser


def prepare_basicsr_argv(prog: str, description: str, training: bool,
                         argv: list[str] | None) -> tuple[list[str], str, dict]:
    """Check arguments and option file; return the argv BasicSR's ``parse_options`` will read, the option file's
    path and its options."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = basicsr_argument_parser(prog, description, training).parse_args(argv)
    try:
        opt = check_option_file(args.opt, training=training)
    except OptionError as err:
        print(f'{prog}: error: {err}', file=sys.stderr)
        raise SystemExit(2) from None
    # torchrun passes --local-rank; BasicSR 1.4.2 only knows --local_rank.
    return [a.replace('--local-rank', '--local_rank') for a in argv], args.opt, opt
