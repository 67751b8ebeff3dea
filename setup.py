"""Packaging for ndr_plugin.

Install order (BasicSR 1.4.2 is a source-only package whose build wants torch, see README):
    pip install torch torchvision setuptools
    pip install --no-build-isolation basicsr==1.4.2
    pip install -e .
"""
import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HOOK_PTH = 'ndr_plugin_hook.pth'
HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPyWithStartupHook(build_py):
    """Also places ``ndr_plugin_hook.pth`` at the top of the install, where site.py runs it at start-up.

    Editable installs (``pip install -e .``) do not carry such files; there ``ndr-install-hook`` (or
    ``python -m ndr_plugin_hook install``) writes the same file, and ``make`` runs it.
    """

    def run(self):
        super().run()
        self.copy_file(os.path.join(HERE, HOOK_PTH), os.path.join(self.build_lib, HOOK_PTH), preserve_mode=0)

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, HOOK_PTH)]

    def get_output_mapping(self):
        mapping = super().get_output_mapping()
        mapping[os.path.join(self.build_lib, HOOK_PTH)] = os.path.join(HERE, HOOK_PTH)
        return mapping


def read_version():
    scope = {}
    with open(os.path.join(HERE, 'ndr_plugin', 'version.py'), encoding='utf-8') as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='ndr_plugin',
    version=read_version(),
    description='NDR-Restore (neural degradation representation, all-in-one image restoration) for BasicSR',
    long_description=open(os.path.join(HERE, 'README.md'), encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['ndr_plugin', 'ndr_plugin.*']),
    py_modules=['ndr_plugin_hook', 'ndr_plugin_legacy'],
    include_package_data=True,
    package_data={'ndr_plugin': ['prepare/splits/*.txt', 'prepare/splits/*.md', 'weights/*.pth', 'weights/*.json',
                                 'weights/*.md']},
    install_requires=[
        'torch>=1.13',
        'torchvision',
        'basicsr==1.4.2',
        'opencv-python',
        'Pillow',  # EXIF orientation of JPEG inputs (ndr_plugin.restore.image_io)
        'lmdb',
        'pyyaml',
        'numpy',
        'tqdm',
        'scikit-image',
        'tensorboard',
        'matplotlib',  # its sample photograph (grace_hopper) is one of the demo's training images
        'setuptools',
    ],
    extras_require={
        'onnx': ['onnx', 'onnxruntime', 'onnxscript'],  # ndr-export, ndr-restore --backend onnxruntime
        'spandrel': ['spandrel'],  # ndr_plugin.spandrel_support
        'test': ['pytest', 'onnx', 'onnxruntime', 'onnxscript', 'spandrel'],
    },
    entry_points={
        'console_scripts': [
            'ndr-train=ndr_plugin.train:main',
            'ndr-test=ndr_plugin.test:main',
            'ndr-restore=ndr_plugin.restore.cli:main',
            'ndr-export=ndr_plugin.export:main',
            'ndr-prepare=ndr_plugin.prepare.cli:main',
            'ndr-demo=ndr_plugin.demo:main',
            'ndr-compare=ndr_plugin.compare:main',
            'ndr-reproduce=ndr_plugin.reproduce:main',
            'ndr-install-hook=ndr_plugin_hook:main',
        ],
    },
    cmdclass={'build_py': BuildPyWithStartupHook},
)
