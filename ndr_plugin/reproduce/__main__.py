import sys

from ndr_plugin.reproduce.cli import main

sys.exit(main())
