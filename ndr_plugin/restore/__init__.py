"""Restoring photos with a trained network: the :class:`Restorer` API, tiled inference, image files, ``--explain``
and the ``ndr-restore`` command line (:mod:`ndr_plugin.restore.cli`)."""
from ndr_plugin.restore.loading import load_network_g
from ndr_plugin.restore.restorer import NonFiniteOutputError, Restorer
from ndr_plugin.restore.tiling import TileSettings

__all__ = ['NonFiniteOutputError', 'Restorer', 'TileSettings', 'load_network_g']
