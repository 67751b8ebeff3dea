"""Start-up hook of ndr_plugin, loaded by ``ndr_plugin_hook.pth`` in site-packages.

It lets BasicSR's own, unmodified entry points (``python -m basicsr.train``, ``python basicsr/train.py`` from a BasicSR
checkout, ``basicsr/test.py``) use our classes: when a process imports ``basicsr``, the compatibility aliases are
already in place (so BasicSR 1.4.2 imports on torchvision >= 0.17 and Python >= 3.12), and as soon as ``basicsr`` has
finished importing, ``ndr_plugin`` is imported, which registers our archs, datasets, models, losses and metrics.

Cost for processes that never import BasicSR: two small objects added to ``sys.meta_path`` (this finder and the
legacy-module finder of :mod:`ndr_plugin_legacy`); nothing else is imported (torch included). Set
``NDR_PLUGIN_NO_HOOK=1`` to switch the hook off.
"""
import importlib
import importlib.abc
import importlib.util
import os
import sys

from ndr_plugin_legacy import install_legacy_module_finder


class _RegisterAfterBasicsrLoader(importlib.abc.Loader):
    """Runs BasicSR's own loader, then imports ndr_plugin so that its classes are registered."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        importlib.import_module('ndr_plugin')

    def __getattr__(self, name):
        return getattr(self.loader, name)


class BasicsrImportHook(importlib.abc.MetaPathFinder):
    """Finds ``basicsr`` with the other finders and wraps its loader (first import only)."""

    _searching = False

    def find_spec(self, fullname, path, target=None):
        if fullname != 'basicsr' or self._searching:
            return None
        self._searching = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._searching = False
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _RegisterAfterBasicsrLoader(spec.loader)
        return spec


def install():
    if os.environ.get('NDR_PLUGIN_NO_HOOK', '').strip() in ('1', 'true', 'yes'):
        return
    # A .pth line can run twice (venvs with a lib64 -> lib link), so the hook must be idempotent.
    if not any(type(f).__name__ == 'BasicsrImportHook' for f in sys.meta_path):
        sys.meta_path.insert(0, BasicsrImportHook())
    install_legacy_module_finder()


PTH_NAME = 'ndr_plugin_hook.pth'
PTH_LINE = 'import ndr_plugin_hook; ndr_plugin_hook.install()\n'


def pth_path():
    import sysconfig
    return os.path.join(sysconfig.get_paths()['purelib'], PTH_NAME)


def main(argv=None):
    """``ndr-install-hook [install|uninstall|status]``: manage the start-up file in this interpreter's site-packages.

    Needed after ``pip install -e .`` only: editable installs cannot place start-up files themselves.
    """
    import argparse
    import tempfile
    parser = argparse.ArgumentParser(prog='ndr-install-hook', description=main.__doc__)
    parser.add_argument('action', nargs='?', default='install', choices=['install', 'uninstall', 'status'])
    args = parser.parse_args(argv)
    path = pth_path()
    if args.action == 'status':
        print(f'{path}: {"installed" if os.path.isfile(path) else "not installed"}')
        return 0
    if args.action == 'uninstall':
        if os.path.isfile(path):
            os.remove(path)
        print(f'removed {path}')
        return 0
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix='.ndr_hook', dir=folder)
    with os.fdopen(fd, 'w') as f:
        f.write(PTH_LINE)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    print(f'installed {path}: importing basicsr now registers ndr_plugin')
    return 0


if __name__ == '__main__':
    sys.exit(main())
