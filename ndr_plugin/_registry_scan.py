"""Imports every module of a subpackage whose name ends with a suffix, as BasicSR's own subpackages do."""
from __future__ import annotations

import importlib
import os
from types import ModuleType


def import_modules(package_name: str, package_file: str, suffix: str) -> list[ModuleType]:
    folder = os.path.dirname(os.path.abspath(package_file))
    names = sorted(f[:-3] for f in os.listdir(folder) if f.endswith(f'{suffix}.py'))
    return [importlib.import_module(f'{package_name}.{name}') for name in names]
