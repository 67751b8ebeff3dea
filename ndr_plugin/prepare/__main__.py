"""``python -m ndr_plugin.prepare``: the ``ndr-prepare`` command line."""
import sys

from ndr_plugin.prepare.cli import main

sys.exit(main())
