"""Prepare standard restoration datasets as BasicSR LMDBs: the documented entry, same as ``ndr-prepare``.

Run ``python datasets_prep/prepare.py --help`` after installing the plugin (``make install`` or ``pip install -e .``).
"""
import sys

try:
    from ndr_plugin.prepare.cli import main
except ImportError as err:
    sys.exit(f'datasets_prep/prepare.py: ndr_plugin is not installed in this Python ({err}); run `make install` '
             'and use .venv/bin/python, or `pip install -e .`')

if __name__ == '__main__':
    sys.exit(main())
