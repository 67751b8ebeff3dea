"""Prepare standard restoration datasets as BasicSR LMDBs. Run ``python datasets_prep/prepare.py --help``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

from ndr_plugin.data.prepare_cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
