"""``ndr-export`` / ``python -m ndr_plugin.export``: a restoration network as an ONNX file for onnxruntime and others.

    ndr-export --weights net_g_latest.pth --opt options/ndr_allinone.yml --out ndr.onnx [--opset 18] [--fp16]

* Networks: ``NDRNet`` (every option) and the ``PromptIR`` baseline, loaded exactly as ``ndr-restore`` loads them
  (:mod:`ndr_plugin.restore.loading`: ``params_ema`` preferred, official checkpoints converted, ``--opt`` optional).
  TorchScript files are not offered: PyTorch deprecated TorchScript.
* One input ``image`` (1, C, H, W) in [0, 1] with dynamic height and width; one output ``restored`` of the same
  shape. The batch is one image, as ``ndr-restore`` runs them (the TorchScript exporter bakes a traced batch size into
  the attention reshapes). The padding to the network's size multiple (8) is part of the graph
  (:class:`PaddedNetwork`), so any image size works, padded exactly as the PyTorch forward pads it.
* The graph is traced with :func:`~ndr_plugin.archs.fast_paths.plain_operators`: our CPU fast paths (direct oneDNN
  calls, einsum, branches on memory layout) are PyTorch-specific, the plain operators map one to one onto ONNX.
* ``--fp16`` stores float16 weights, input and output (exported with the dynamo exporter only, see below).
* Before the file is written under its name, onnxruntime (CPU) runs it next to the PyTorch network on two image sizes
  (one not a multiple of 8) and the export fails if they differ by more than 1e-4 (float32) or 1e-2 (float16, against
  the float32 network); ``--no-verify`` skips this. The file is written to a temporary name and renamed.

Exporters (found on torch 2.14; both give the same graph semantics and pass the same parity checks):
``--exporter dynamo`` (default, ``torch.export``-based, the one PyTorch maintains) is much slower to export (tiny
NDRNet about 25 s against 2 s, paper-size NDRNet about 4.5 min against 8 s on a busy 2-core machine);
``--exporter torchscript`` (the legacy ``torch.onnx.export(dynamo=False)``, deprecated by PyTorch) is fast but turns a
float16 network into float32 weights on the CPU, so it is float32-only here.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ndr_plugin.archs.fast_paths import plain_operators
from ndr_plugin.restore.onnx_backend import import_optional

EXPORTABLE = ('NDRNet', 'PromptIR')
EXPORTERS = ('dynamo', 'torchscript')
MIN_OPSET = 18  # the dynamo exporter's operator library (onnxscript torchlib) targets opset 18 and newer
MAX_OPSET = {'dynamo': 23, 'torchscript': 20}  # torch 2.14: ONNX_MAX_OPSET, ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
DEFAULT_OPSET = 18
EXAMPLE_SIZE = (37, 53)  # traced example: not a multiple of 8, so the padding path is the one recorded
VERIFY_SIZES = ((37, 53), (64, 40))
TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2}
INPUT_NAME, OUTPUT_NAME = 'image', 'restored'


class ExportError(ValueError):
    """An option, network or file that cannot be exported; the message names it."""


def _pad_indices(length: int, multiple: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source rows (or columns) of a side padded to ``multiple``: (reflected, replicated, whether reflect fits).

    Index arithmetic instead of ``F.pad``, so that the choice between reflect and replicate (which
    :func:`~ndr_plugin.archs.arch_utils.pad_to_multiple` makes in Python) is a tensor in the graph, not a constant.
    """
    size = (length + multiple - 1) // multiple * multiple
    index = torch.arange(size, device=device)
    inside = index < length
    reflected = torch.where(inside, index, 2 * (length - 1) - index)
    replicated = torch.where(inside, index, length - 1)
    return reflected, replicated, reflected.min() >= 0


class PaddedNetwork(nn.Module):
    """``net`` taking any H x W in the exported graph: pads as ``net.forward`` does, runs ``net``, crops.

    Reflect padding (bottom and right) to ``net.pad_multiple``, replicate when either side is too small to reflect,
    as :func:`~ndr_plugin.archs.arch_utils.pad_to_multiple`. The network's own padding then finds a multiple and does
    nothing, so the traced graph holds no size-dependent branch.

    Args:
        net (nn.Module): NDRNet or PromptIR.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.multiple = net.pad_multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        rows_reflected, rows_replicated, rows_fit = _pad_indices(h, self.multiple, x.device)
        cols_reflected, cols_replicated, cols_fit = _pad_indices(w, self.multiple, x.device)
        reflect = rows_fit & cols_fit
        rows = torch.where(reflect, rows_reflected, rows_replicated)
        cols = torch.where(reflect, cols_reflected, cols_replicated)
        return self.net(x.index_select(2, rows).index_select(3, cols))[..., :h, :w]


@dataclass
class ExportReport:
    """What was written: the file, the network, its source, the precision and the verified differences."""

    path: Path
    network: str
    source: str
    precision: str
    opset: int
    exporter: str
    seconds: float
    max_differences: dict[str, float]


def check_export_options(opset: int, fp16: bool, exporter: str) -> None:
    """Rejects an exporter, opset or precision this module cannot produce, before anything is loaded."""
    if exporter not in EXPORTERS:
        raise ExportError(f'--exporter {exporter!r}: choose one of {", ".join(EXPORTERS)}')
    if opset < MIN_OPSET:
        raise ExportError(f'--opset {opset} is too old: the export needs opset {MIN_OPSET} or newer (the dynamo '
                          f"exporter's operator library starts at {MIN_OPSET}); onnxruntime 1.14+ runs it")
    if opset > MAX_OPSET[exporter]:
        raise ExportError(f'--opset {opset} is newer than the {exporter} exporter of torch {torch.__version__} '
                          f'writes (at most {MAX_OPSET[exporter]})')
    if fp16 and exporter == 'torchscript':
        raise ExportError('--fp16 needs --exporter dynamo: the TorchScript exporter writes float32 weights for a '
                          'float16 network on the CPU')
    import_optional('onnx', 'ndr-export')
    if exporter == 'dynamo':
        import_optional('onnxscript', 'ndr-export (dynamo exporter)')


def network_input_channels(net: nn.Module) -> int:
    """Image channels the network takes (``in_channels`` for NDRNet, ``inp_channels`` for PromptIR)."""
    return getattr(net, 'in_channels', None) or net.inp_channels


def load_exportable(weights: str | Path, opt: str | Path | None) -> tuple[nn.Module, str]:
    """(network in eval mode, where its options came from); only NDRNet and PromptIR."""
    from ndr_plugin.restore.loading import load_network
    net, source = load_network(weights, opt)
    name = type(net).__name__
    if name not in EXPORTABLE:
        raise ExportError(f'{weights}: network_g type {name} (from {source}) cannot be exported; ndr-export '
                          f'supports {", ".join(EXPORTABLE)}')
    return net, source


def _trace(wrapper: nn.Module, example: torch.Tensor, path: Path, opset: int, exporter: str) -> None:
    """Writes the ONNX graph of ``wrapper`` to ``path`` with dynamic height and width (batch 1)."""
    with plain_operators(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # tracer warnings about the network's own (inactive) Python branches
        if exporter == 'dynamo':
            dims = {2: torch.export.Dim('height', min=1, max=65536), 3: torch.export.Dim('width', min=1, max=65536)}
            torch.onnx.export(wrapper, (example,), str(path), dynamo=True, opset_version=opset, verbose=False,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes={'x': dims})
        else:
            axes = {2: 'height', 3: 'width'}
            torch.onnx.export(wrapper, (example,), str(path), dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes})


def _add_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Stores ``metadata`` in the file (read back by :mod:`ndr_plugin.restore.onnx_backend`) and checks the model."""
    import onnx
    model = onnx.load(str(path))
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def verify_onnx(path: Path, net: nn.Module, sizes=VERIFY_SIZES, seed: int = 0) -> dict[str, float]:
    """Max abs difference between onnxruntime (CPU) and the float32 PyTorch network per size ``'HxW'``."""
    from ndr_plugin.restore.onnx_backend import OnnxNetwork
    onnx_net = OnnxNetwork(path, 'cpu')
    generator = torch.Generator().manual_seed(seed)
    differences = {}
    for h, w in sizes:
        x = torch.rand(1, network_input_channels(net), h, w, generator=generator)
        with torch.no_grad():
            expected = net.float()(x)
        differences[f'{h}x{w}'] = (onnx_net(x.to(onnx_net.dtype)).float() - expected).abs().max().item()
    return differences


def export_onnx(weights: str | Path, out: str | Path, opt: str | Path | None = None, opset: int = DEFAULT_OPSET,
                fp16: bool = False, exporter: str = 'dynamo', verify: bool = True) -> ExportReport:
    """Exports the network of ``weights`` to ``out`` (see the module docstring); returns what was written.

    Raises:
        ExportError: unsupported exporter, opset, precision or network type, or a failed parity check.
        ValueError: weights that do not fit the network (from :mod:`ndr_plugin.restore.loading`).
        ImportError: onnx / onnxscript / onnxruntime missing (``pip install 'ndr_plugin[onnx]'``).
    """
    from ndr_plugin.version import __version__
    start = time.perf_counter()
    check_export_options(opset, fp16, exporter)
    out = Path(out)
    if out.is_dir():
        raise ExportError(f'--out {out} is a folder; give a file name such as {out / "ndr.onnx"}')
    net, source = load_exportable(weights, opt)
    dtype = torch.float16 if fp16 else torch.float32
    wrapper = PaddedNetwork(net.to(dtype=dtype)).eval()
    example = torch.rand(1, network_input_channels(net), *EXAMPLE_SIZE, dtype=dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f'.{out.name}.', suffix='.tmp', dir=out.parent)
    os.close(handle)
    temporary = Path(temporary)
    try:
        _trace(wrapper, example, temporary, opset, exporter)
        _add_metadata(temporary, {'ndr_plugin.network': type(net).__name__, 'ndr_plugin.source': source,
                                  'ndr_plugin.pad_multiple': str(net.pad_multiple),
                                  'ndr_plugin.precision': str(dtype).removeprefix('torch.'),
                                  'ndr_plugin.version': __version__})
        differences = verify_onnx(temporary, net) if verify else {}
        worst = max(differences.values(), default=0.)
        if worst > TOLERANCE[dtype]:
            raise ExportError(f'onnxruntime output differs from PyTorch by {worst:.3g} (sizes: '
                              f'{json.dumps(differences)}), over the {TOLERANCE[dtype]:g} allowed for {dtype}; '
                              f'try another --opset or --exporter')
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)
    return ExportReport(out, type(net).__name__, source, str(dtype).removeprefix('torch.'), opset, exporter,
                        time.perf_counter() - start, differences)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='ndr-export', description='Export an NDRNet or PromptIR checkpoint to ONNX.')
    parser.add_argument('--weights', required=True, type=Path, help='checkpoint (as for ndr-restore)')
    parser.add_argument('--opt', type=Path, default=None,
                        help="option file whose network_g describes the network (default: the checkpoint's own)")
    parser.add_argument('--out', required=True, type=Path, help='ONNX file to write (.onnx)')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET, help=f'ONNX opset (default: {DEFAULT_OPSET})')
    parser.add_argument('--fp16', action='store_true', help='float16 weights, input and output')
    parser.add_argument('--exporter', choices=EXPORTERS, default='dynamo',
                        help='dynamo (default) or the faster, deprecated, float32-only torchscript exporter')
    parser.add_argument('--no-verify', action='store_true', help='skip the onnxruntime vs PyTorch parity check')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.out.suffix.lower() != '.onnx':
        print(f'ndr-export: error: --out {args.out} must end in .onnx', file=sys.stderr)
        return 2
    try:
        report = export_onnx(args.weights, args.out, args.opt, args.opset, args.fp16, args.exporter,
                             verify=not args.no_verify)
    except Exception as err:  # noqa: BLE001  (bad arguments, weights or export: a message, not a traceback)
        print(f'ndr-export: error: {type(err).__name__}: {err}', file=sys.stderr)
        return 2
    checked = ', '.join(f'{size}: {diff:.2g}' for size, diff in report.max_differences.items()) or 'skipped'
    print(f'Wrote {report.path}: {report.network} ({report.source}), {report.precision}, opset {report.opset}, '
          f'{report.exporter} exporter, {report.seconds:.1f} s. onnxruntime vs PyTorch max abs difference: {checked}.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
