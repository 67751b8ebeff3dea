"""Registers every `*_loss.py` module of this folder in BasicSR's registry by importing it."""
from ndr_plugin._registry_scan import import_modules

_modules = import_modules(__name__, __file__, '_loss')
