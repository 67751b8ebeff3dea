"""NDR-Restore for BasicSR: neural degradation representation learning for all-in-one image restoration.

Importing this package first applies the BasicSR compatibility layer (:mod:`ndr_plugin.compat`), then registers every
arch, dataset, model, loss and metric of the plugin in BasicSR's registries.
"""
from ndr_plugin import compat

compat.apply()

from ndr_plugin import archs, data, losses, metrics, models  # noqa: E402,F401  (registration by import)
from ndr_plugin.version import __version__  # noqa: E402,F401

# Target of the option-file key ``ndr_plugin: !!python/name:ndr_plugin.REGISTERED``: resolving it imports this package
# (and so registers our classes) while BasicSR parses the YAML, before anything is built.
REGISTERED = True


def __getattr__(name: str):
    # The inference API pulls in image I/O; load it only when asked for.
    if name == 'Restorer':
        from ndr_plugin.restore import Restorer
        return Restorer
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
