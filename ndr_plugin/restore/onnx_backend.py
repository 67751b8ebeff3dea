"""Restoring with onnxruntime: an exported ONNX file (``ndr-export``) behind the same image handling as PyTorch.

    >>> from ndr_plugin.restore.onnx_backend import OnnxRestorer
    >>> restorer = OnnxRestorer('ndr.onnx', tile=512)
    >>> clean = restorer.restore(photo)          # as Restorer.restore: dtype, channels, alpha and grayscale kept

:class:`OnnxRestorer` is a :class:`~ndr_plugin.restore.restorer.Restorer` whose network is an onnxruntime session
(:class:`OnnxNetwork`, a callable on tensors), so reading, splitting alpha and gray, tiling, checking and converting
back are the very same code. What differs:

* precision follows the file (``ndr-export --fp16`` or not); asking for another (``half=True`` or ``precision=`` naming
  another type) is an error, not a silent cast;
* tiles use their own statistics (``tile_passes=0``): the passes that share whole-image statistics between tiles
  (:mod:`ndr_plugin.restore.tiling`) hook into PyTorch modules and are not part of the exported graph, so
  ``tile_passes`` above 0 is an error;
* ``explain`` is not available (the graph returns the restored image only);
* devices: ``cpu`` (CPUExecutionProvider) and ``cuda[:<index>]`` when onnxruntime has its CUDAExecutionProvider
  (the ``onnxruntime-gpu`` package).

onnxruntime is optional: ``pip install 'ndr_plugin[onnx]'``.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from ndr_plugin.restore.precision import NAMES, PRECISIONS
from ndr_plugin.restore.restorer import Restorer, _tile_settings
from ndr_plugin.restore.tiling import TileSettings

BACKENDS = ('torch', 'onnxruntime')
ONNX_DTYPES = {'tensor(float)': torch.float32, 'tensor(float16)': torch.float16}


def import_optional(name: str, purpose: str, extra: str = 'onnx') -> ModuleType:
    """``import name``, or an ImportError that says what needs it and which extra of ndr_plugin installs it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ImportError(f"{purpose} needs the optional package {name!r}, which is not installed: pip install "
                          f"'ndr_plugin[{extra}]'") from None


def choose_backend(weights: str | Path, backend: str | None) -> str:
    """The backend for ``weights``: as given, else onnxruntime for ``.onnx`` files and torch otherwise."""
    is_onnx = Path(weights).suffix.lower() == '.onnx'
    if backend is None:
        return 'onnxruntime' if is_onnx else 'torch'
    if backend not in BACKENDS:
        raise ValueError(f'backend {backend!r}: choose one of {", ".join(BACKENDS)}')
    if is_onnx != (backend == 'onnxruntime'):
        wanted = 'an exported .onnx file' if backend == 'onnxruntime' else 'a PyTorch checkpoint (.pth)'
        raise ValueError(f'backend {backend} needs {wanted}, got {weights}'
                         + ('; export one with ndr-export' if backend == 'onnxruntime' else ''))
    return backend


def onnx_device(device: str | torch.device | None) -> torch.device:
    """A device as PyTorch spells it that this onnxruntime can run on; None: CUDA when onnxruntime has it."""
    ort = import_optional('onnxruntime', 'the onnxruntime backend')
    available = ort.get_available_providers()
    if device is None:
        return torch.device('cuda' if 'CUDAExecutionProvider' in available else 'cpu')
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f'device {device!r} is not a device name (expected cpu or cuda[:<index>]): {err}') from None
    if resolved.type == 'cpu' or (resolved.type == 'cuda' and 'CUDAExecutionProvider' in available):
        return resolved
    raise ValueError(f'device {device!r}: this onnxruntime {ort.__version__} offers {", ".join(available)}; use cpu '
                     '(or install onnxruntime-gpu for cuda)')


def execution_providers(device: torch.device) -> tuple[list[str], list[dict[str, Any]]]:
    """(onnxruntime providers, their options) for a device from :func:`onnx_device`; CPU is the fallback."""
    if device.type == 'cuda':
        return ['CUDAExecutionProvider', 'CPUExecutionProvider'], [{'device_id': device.index or 0}, {}]
    return ['CPUExecutionProvider'], [{}]


class OnnxNetwork:
    """An exported network as a callable on (B, C, H, W) CPU tensors, with the attributes tiling reads.

    Args:
        path (str | Path): ONNX file written by ``ndr-export``.
        device (str | torch.device | None): ``cpu``, ``cuda[:<index>]``; None: CUDA when onnxruntime has it.
    """

    def __init__(self, path: str | Path, device: str | torch.device | None = 'cpu') -> None:
        ort = import_optional('onnxruntime', 'the onnxruntime backend')
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f'ONNX file not found: {self.path}')
        self.providers, options = execution_providers(onnx_device(device))
        try:
            self.session = ort.InferenceSession(str(self.path), providers=self.providers, provider_options=options)
        except Exception as err:  # noqa: BLE001  (onnxruntime raises its own exception types)
            raise ValueError(f'{self.path}: onnxruntime cannot load this file: {err}') from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].type not in ONNX_DTYPES:
            raise ValueError(f'{self.path}: expected one (B, C, H, W) float or float16 input as ndr-export writes, '
                             f'got {[(i.name, i.type, i.shape) for i in inputs]}')
        self.input_name = inputs[0].name
        self.dtype = ONNX_DTYPES[inputs[0].type]
        self.in_channels = inputs[0].shape[1]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        # Tiles are cut on the network's grid, as for the PyTorch network (the graph pads each tile itself anyway).
        self.pad_multiple = int(self.metadata.get('ndr_plugin.pad_multiple', 1))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().to('cpu', self.dtype).numpy())
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])

    def describe(self) -> str:
        network = self.metadata.get('ndr_plugin.network', 'network')
        return (f'ONNX file {self.path} ({network}, {str(self.dtype).removeprefix("torch.")}, onnxruntime '
                f'{self.providers[0]})')


def _check_precision(asked: str | None, file_dtype: torch.dtype, weights: str | Path, option: str) -> None:
    """An explicit precision must be the file's: onnxruntime runs the graph in the type it was exported in."""
    if asked is None or asked == 'auto' or asked == NAMES[file_dtype]:
        return
    if asked not in PRECISIONS:
        raise ValueError(f'{option} must be one of {PRECISIONS}, got {asked!r}')
    how = 'export it again with ndr-export --fp16' if asked == 'fp16' else (
        'export it again without --fp16' if asked == 'fp32' else 'use the torch backend (ONNX files are fp32 or fp16)')
    raise ValueError(f'{option} {asked}: {weights} is a {str(file_dtype).removeprefix("torch.")} file and onnxruntime '
                     'runs it as exported; '
                     f'{how}, or leave {option} at auto')


class OnnxRestorer(Restorer):
    """:class:`~ndr_plugin.restore.restorer.Restorer` running an exported ONNX file with onnxruntime.

    Args:
        weights (str | Path): ONNX file written by ``ndr-export``.
        device (str | torch.device | None): ``cpu`` or ``cuda[:<index>]`` (onnxruntime-gpu). Default: 'cpu'.
        tile (int | TileSettings | None): As for Restorer. Default: None (whole image).
        tile_overlap (int | None): As for Restorer. Default: 32.
        tile_passes (int | None): Must be 0 (or None): see the module docstring. Default: None.
        half (bool): Only True for a float16 file: precision follows the file. Default: False.
        precision (str | None): None or 'auto': the file's; 'fp32' / 'fp16' / 'bf16' must name the file's type (the
            graph runs as exported). Default: None.
        option (str): How the caller spells ``precision``, for the error message. Default: 'precision'.
    """

    def __init__(self, weights: str | Path, device: str | torch.device | None = 'cpu',
                 tile: int | TileSettings | None = None, tile_overlap: int | None = None,
                 tile_passes: int | None = None, half: bool = False, precision: str | None = None,
                 option: str = 'precision') -> None:
        passes = 0 if tile_passes is None and not isinstance(tile, TileSettings) else tile_passes
        self.tile = _tile_settings(tile, tile_overlap, passes)
        if self.tile.passes and not self.tile.whole_image:
            raise ValueError(f'{self.tile.names[2]} {self.tile.passes}: the onnxruntime backend cannot share '
                             'whole-image statistics between tiles (that pass is not part of the exported graph); '
                             f'use {self.tile.names[2]} 0 (each tile uses its own statistics) or the torch backend')
        self.weights = Path(weights)
        self.net = OnnxNetwork(weights, device)
        if half and self.net.dtype != torch.float16:
            raise ValueError(f'{weights} is a {str(self.net.dtype).removeprefix("torch.")} file and onnxruntime '
                             'runs it as exported; for float16 export it again with ndr-export --fp16')
        self.precision = NAMES[self.net.dtype]
        _check_precision(precision, self.net.dtype, weights, option)
        if isinstance(self.net.in_channels, int) and self.net.in_channels != 3:
            raise ValueError(f'{weights}: the network takes {self.net.in_channels} channels; restoring photos '
                             'needs 3 (RGB)')
        if not self.tile.whole_image:
            self.tile.size_for(self.net.pad_multiple)  # a tile too small for this network: fail now
        self.device = torch.device('cpu')  # tensors are handed to onnxruntime from host memory
        self.dtype = self.net.dtype
        self.network_source = self.net.describe()
        self._reference_signatures = None

    def explain(self, image: np.ndarray) -> dict[str, Any]:
        raise ValueError('explain needs the torch backend: the exported ONNX graph returns the restored image only')
