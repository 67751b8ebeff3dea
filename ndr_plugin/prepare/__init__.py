"""Dataset preparation: turns benchmark folders and clean photographs into BasicSR LMDBs with manifests.

Offline only; training reads the result through :mod:`ndr_plugin.data`. Command line: ``ndr-prepare`` (also
``python -m ndr_plugin.prepare`` and ``python datasets_prep/prepare.py``), see :mod:`ndr_plugin.prepare.cli`.
"""
