"""``ndr-reproduce``: data, training, test and comparison table of one benchmark setting in one resumable command
(see :mod:`ndr_plugin.reproduce.cli`)."""
from ndr_plugin.reproduce.cli import main

__all__ = ['main']
