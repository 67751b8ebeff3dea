"""``python -m ndr_plugin.demo`` (what ``make demo`` runs)."""
import sys

from ndr_plugin.demo.cli import main

sys.exit(main())
