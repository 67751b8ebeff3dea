"""``python -m ndr_plugin.restore``: the ``ndr-restore`` command line."""
import sys

from ndr_plugin.restore.cli import main

sys.exit(main())
