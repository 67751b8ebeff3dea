"""``ndr-restore`` / ``python -m ndr_plugin.restore``: restore a photo or a folder of photos.

    ndr-restore -i photo.jpg -o restored/          (the compact NDRNet that ships with ndr_plugin)
    ndr-restore -i photos/ -o restored/ --weights net_g_latest.pth --opt options/ndr_allinone.yml --recursive

* Without ``--weights``, the shipped compact NDRNet restores (:mod:`ndr_plugin.weights`; its model card says how it
  was trained and how well it does); the first output line names it.

* Reads PNG, JPEG, TIFF, BMP and WebP; 8-bit, 16-bit (PNG/TIFF) and float TIFF; RGB, RGBA and grayscale. JPEG EXIF
  orientation is applied, so the output is upright (and carries no EXIF).
* Each output keeps the input's file name, extension, bit depth and channel layout (grayscale stays grayscale, alpha is
  copied untouched, gray+alpha PNGs stay gray+alpha); a folder's sub-folder structure is kept under OUTDIR. JPEG
  inputs are written as JPEG at quality 95: choose a lossless input format if that matters.
* Never overwrites an input: the run stops before restoring anything if an output path would be an input file.
* Unreadable files are reported and skipped; so is an image whose output has NaN/Inf pixels (broken weights or
  input), which is never written. Float pixels outside [0, 1] are clipped, with a warning naming the file. Exit
  status: 0 when every image was restored, 1 when any failed (the others are still written), 2 for a usage error
  (bad arguments, device, weights or option file), found before any image is restored.
* Without ``--opt``, the network is described by the checkpoint itself, else by the option file BasicSR saved with
  the run (``experiments/<name>/*.yml`` for weights in ``experiments/<name>/models/``), else it is the paper-size
  NDRNet; the first output line says which.
* ``--tile`` (default 512, 0 = whole image) bounds memory; tiles shrink automatically if memory still runs out.
  A tile must exceed ``--tile-overlap`` by the network's size multiple (NDRNet: 8), e.g. at least 40 for the default
  overlap of 32.
  ``--tile-passes`` (default 1) first gathers whole-image statistics over the tiles, so that tiles do not each see
  only their own attention statistics and means.
* ``--backend onnxruntime`` (implied by ``.onnx`` weights from ``ndr-export``) runs the exported file with the same
  image handling and tiling (:mod:`ndr_plugin.restore.onnx_backend`): tiles use their own statistics (``--tile-passes``
  0, the default there; other values are an error), the precision is the file's (``--precision`` or ``--half`` naming
  another is an error), ``--opt`` and ``--explain`` are not available. Needs ``pip install 'ndr_plugin[onnx]'``.
* ``--precision auto`` (the default) runs the network in the fastest type the device runs natively: bfloat16 on CPUs
  with AVX-512 BF16 or AMX and on GPUs that support it, float16 on other GPUs, float32 otherwise
  (:mod:`ndr_plugin.restore.precision`); ``--precision fp32`` gives the machine-independent result that testing and
  validation report. ``--half`` is the old switch (float16 on CUDA, bfloat16 on CPU).
* ``--explain`` prints which NDR atoms each image used and the nearest reference degradation, and writes
  ``<stem>.explain.json`` next to the output.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from ndr_plugin.restore.tiling import TileSettings

DEFAULT_TILE = 512
# As ndr_plugin.restore.precision.PRECISIONS (not imported here: --help must not wait for torch).
PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')
TILE_FLAGS = ('--tile', '--tile-overlap', '--tile-passes')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='ndr-restore', description='Restore images with an NDR-Restore network.')
    parser.add_argument('-i', '--input', required=True, type=Path, help='an image file or a folder of images')
    parser.add_argument('-o', '--output', required=True, type=Path, help='output folder (created if missing)')
    parser.add_argument('--weights', type=Path, default=None,
                        help='checkpoint: BasicSR net_g_*.pth (params_ema preferred), an official NDR-Restore file '
                             'or an ONNX file (default: the compact NDRNet shipped with ndr_plugin, see its model '
                             'card in ndr_plugin/weights/MODEL_CARD.md)')
    parser.add_argument('--opt', type=Path, default=None,
                        help="option file whose network_g describes the network (default: the checkpoint's own, "
                             'else the paper-size NDRNet)')
    parser.add_argument('--tile', type=int, default=DEFAULT_TILE,
                        help=f'tile size in pixels, 0 for whole-image inference (default: {DEFAULT_TILE})')
    parser.add_argument('--tile-overlap', type=int, default=32, help='overlap between tiles in pixels (default: 32)')
    parser.add_argument('--tile-passes', type=int, default=None,
                        help='passes over the tiles that gather whole-image statistics first, so the tiled output '
                             'matches the whole-image output closely; each costs one more forward per tile, 0 lets '
                             'every tile use its own (default: 1; onnxruntime: 0, the only value it supports)')
    parser.add_argument('--backend', choices=('torch', 'onnxruntime'), default=None,
                        help='torch, or onnxruntime for an ONNX file from ndr-export (default: onnxruntime for '
                             '.onnx weights, else torch)')
    parser.add_argument('--device', default=None,
                        help='cpu, cuda, cuda:<index> or mps, as PyTorch spells it (default: cuda when available, '
                             'else cpu)')
    parser.add_argument('--precision', choices=PRECISIONS, default=None,
                        help='network precision: auto (default: bf16 on CPUs with AVX-512 BF16/AMX and on GPUs with '
                             'bfloat16, fp16 on other GPUs, else fp32), fp32, bf16 or fp16; onnxruntime: the file\'s')
    parser.add_argument('--half', action='store_true',
                        help='the old switch: float16 on CUDA, bfloat16 on CPU (not with --precision)')
    parser.add_argument('--recursive', action='store_true', help='also restore images in sub-folders')
    parser.add_argument('--explain', action='store_true',
                        help='report the NDR atoms used and the nearest known degradation (<stem>.explain.json)')
    return parser


def list_inputs(input_path: Path, output_dir: Path, recursive: bool) -> tuple[list[Path], Path]:
    """Image files to restore (sorted) and the folder their output paths are relative to."""
    from ndr_plugin.restore.image_io import IMAGE_EXTENSIONS
    if input_path.is_file():
        return [input_path], input_path.parent
    if not input_path.is_dir():
        raise ValueError(f'input {input_path} does not exist')
    output_dir = output_dir.resolve()
    # Outputs of an earlier run in a sub-folder of the input must not become inputs (OUTDIR == input is refused later).
    nested_output = output_dir if output_dir != input_path.resolve() else None
    candidates = input_path.rglob('*') if recursive else input_path.iterdir()
    files = sorted(p for p in candidates if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                   and nested_output not in p.resolve().parents)
    if not files:
        hint = '' if recursive else ' (use --recursive for sub-folders)'
        raise ValueError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) found in {input_path}{hint}')
    return files, input_path


def plan_outputs(inputs: list[Path], root: Path, output_dir: Path) -> list[Path]:
    """Output path of every input; refuses any output that is an input file."""
    outputs = [output_dir / path.relative_to(root) for path in inputs]
    resolved_inputs = {path.resolve() for path in inputs}
    clashes = [str(path) for path in outputs if path.resolve() in resolved_inputs]
    if clashes:
        raise ValueError(f'refusing to overwrite input image(s) {", ".join(clashes[:3])}'
                         f'{" ..." if len(clashes) > 3 else ""}: choose an output folder other than the input folder')
    return outputs


def restore_files(restorer, inputs: list[Path], outputs: list[Path], explain: bool) -> tuple[int, list[str], float]:
    """Restores every file; returns (number restored, failure messages, megapixels restored)."""
    from tqdm import tqdm

    from ndr_plugin.restore.explain import format_explanation
    from ndr_plugin.restore.image_io import ImageReadError, ImageWriteError, read_image, write_image
    done, failures, megapixels = 0, [], 0.
    for source, target in zip(tqdm(inputs, unit='image', desc='ndr-restore'), outputs):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                image = read_image(source)
                write_image(target, restorer.restore(image))
                if explain:
                    explanation = {'image': str(source), **restorer.explain(image)}
                    target.with_name(f'{target.stem}.explain.json').write_text(json.dumps(explanation, indent=2))
                    tqdm.write(format_explanation(source.name, explanation))
        except Exception as err:  # noqa: BLE001  (one bad file must not stop the batch; reported below)
            reason = str(err).removeprefix(f'{source}: ')
            failures.append(f'{source}: {reason}' if isinstance(err, (ImageReadError, ImageWriteError))
                            else f'{source}: {type(err).__name__}: {reason}')
            continue
        finally:
            for message in dict.fromkeys(str(w.message) for w in caught):  # once per image (explain re-reads it)
                tqdm.write(f'warning: {source}: {message}', file=sys.stderr)
        done += 1
        megapixels += image.shape[0] * image.shape[1] / 1e6
    return done, failures, megapixels


def check_arguments(args: argparse.Namespace) -> tuple[torch.device, TileSettings]:
    """(device, tile settings) from the arguments, checked before any file is read; settles ``args.backend``."""
    from ndr_plugin.restore.loading import resolve_device
    from ndr_plugin.restore.onnx_backend import choose_backend, onnx_device
    from ndr_plugin.restore.tiling import TileSettings
    if args.output.exists() and not args.output.is_dir():
        raise ValueError(f'-o/--output {args.output} is an existing file; give a folder (created if missing)')
    if args.weights is None:
        if args.backend == 'onnxruntime' or args.opt is not None:
            raise ValueError(f'{"--backend onnxruntime" if args.opt is None else "--opt"} needs --weights: the shipped '
                             'model is a PyTorch checkpoint that carries its own network options')
        args.backend = 'torch'
    else:
        args.backend = choose_backend(args.weights, args.backend)
    onnx = args.backend == 'onnxruntime'
    if onnx and (args.opt is not None or args.explain):
        raise ValueError(f'{"--opt" if args.opt is not None else "--explain"} needs the torch backend: the ONNX file '
                         'carries its network, and its graph returns the restored image only')
    try:
        device = onnx_device(args.device) if onnx else resolve_device(args.device)
    except ValueError as err:
        raise ValueError(f'--device: {err}') from None
    if args.half and args.precision is not None:
        raise ValueError(f'give either --half (the old switch) or --precision {args.precision}, not both')
    if not onnx:
        from ndr_plugin.restore.precision import NAMES, resolve_precision
        asked = args.precision or ('fp32' if args.half else 'auto')  # --half alone: the old switch
        args.precision = NAMES[resolve_precision(asked, device, args.half, option='--precision')]
        args.half = False  # folded into args.precision
    passes = (0 if onnx else 1) if args.tile_passes is None else args.tile_passes
    return device, TileSettings(args.tile, args.tile_overlap, passes, names=TILE_FLAGS)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        device, tile = check_arguments(args)
        inputs, root = list_inputs(args.input, args.output, args.recursive)
        outputs = plan_outputs(inputs, root, args.output)
        if args.backend == 'onnxruntime':
            from ndr_plugin.restore.onnx_backend import OnnxRestorer
            restorer = OnnxRestorer(args.weights, device=device, tile=tile, half=args.half,
                                    precision=args.precision, option='--precision')
        else:
            from ndr_plugin.restore.restorer import Restorer
            restorer = Restorer(args.weights, opt=args.opt, device=device, tile=tile, precision=args.precision)
    except Exception as err:  # noqa: BLE001  (bad arguments, weights or option file: a message, not a traceback)
        print(f'ndr-restore: error: {type(err).__name__}: {err}', file=sys.stderr)
        return 2
    print(f'Network: {restorer.network_source}.')
    start = time.perf_counter()
    done, failures, megapixels = restore_files(restorer, inputs, outputs, args.explain)
    elapsed = time.perf_counter() - start
    per_mp = f', {elapsed / megapixels:.2f} s per megapixel' if megapixels else ''
    print(f'Restored {done} of {len(inputs)} image(s) into {args.output} in {elapsed:.1f} s{per_mp} '
          f'({device}, {restorer.precision}, tile {tile.size or "off"}).')
    if failures:
        print(f'{len(failures)} failed:')
        for message in failures:
            print(f'  {message}')
    return 1 if failures else 0
