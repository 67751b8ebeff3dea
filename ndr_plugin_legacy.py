"""Old module names that BasicSR 1.4.2 imports, served from where today's stack keeps the same code.

Used by the start-up hook (:mod:`ndr_plugin_hook`, before any ``import basicsr``) and by :mod:`ndr_plugin.compat`
(``ndr_plugin.apply()``). It is a top-level module that imports nothing of ours, so both can use it without importing
each other: the hook imports ``ndr_plugin`` once BasicSR is loaded, and ``ndr_plugin`` imports the compatibility layer.
Importing it costs nothing beyond :mod:`importlib` (no torch, no basicsr).
"""
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys

# Old module name -> where today's stack keeps the same code (torchvision 0.17 renamed the first; Python 3.12
# removed distutils, setuptools vendors it).
LEGACY_MODULE_ALIASES = {
    'torchvision.transforms.functional_tensor': 'torchvision.transforms._functional_tensor',
    'distutils': 'setuptools._distutils',
    'distutils.version': 'setuptools._distutils.version',
}


class _AliasLoader(importlib.abc.Loader):

    def __init__(self, target):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module):
        pass


class LegacyModuleFinder(importlib.abc.MetaPathFinder):
    """Serves removed modules under their old names, only when no other finder on ``sys.meta_path`` finds them."""

    def find_spec(self, fullname, path, target=None):
        alias = LEGACY_MODULE_ALIASES.get(fullname)
        if alias is None:
            return None
        try:
            if importlib.util.find_spec(alias.rpartition('.')[0]) is None:
                return None
        except (ImportError, ValueError):
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(alias), is_package=fullname == 'distutils')


def install_legacy_module_finder():
    """Append the alias finder once; last on the path, so a real old module always wins."""
    # By class name, not isinstance: a .pth line can run twice and a reloaded module brings a new class.
    if not any(type(f).__name__ == 'LegacyModuleFinder' for f in sys.meta_path):
        sys.meta_path.append(LegacyModuleFinder())
