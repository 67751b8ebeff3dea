"""Command line of dataset preparation: ``ndr-prepare KIND --src DIR --out OUT [options]`` (the same as
``python datasets_prep/prepare.py ...`` and ``python -m ndr_plugin.prepare ...``)."""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from ndr_plugin.data.dataset_files import BadInputError
from ndr_plugin.data.lmdb_io import LmdbFormatError, check_lmdb
from ndr_plugin.prepare.kinds import KINDS, prepare
from ndr_plugin.prepare.package_photos import write_package_photos

__all__ = ['main', 'build_parser']

EXAMPLES = """\
examples:
  prepare.py denoise-train --src data/Train/Denoise --out datasets/aio3/denoise_train
  prepare.py denoise-test  --src data/test/CBSD68 --out datasets/aio3/cbsd68 --sigma 15 25 50 --seed 0
  prepare.py derain-train  --src data/Train/Derain --out datasets/aio3/derain_train
  prepare.py derain-test   --src data/test/Rain100L --out datasets/aio3/rain100l
  prepare.py dehaze-train  --src data/Train/Dehaze --out datasets/aio3/dehaze_train --workers 16
  prepare.py dehaze-test   --src data/test/SOTS/outdoor --out datasets/aio3/sots_outdoor
  prepare.py sr-train      --src DIV2K_train_HR --src Flickr2K_HR --out datasets/sr_train --crop-size 480
  prepare.py sr-test       --src data/test/Set5 --out datasets/sr/Set5 --scale 2 3 4
  prepare.py deblur-train    --src GOPRO_Large/train --out datasets/aio5/gopro_train
  prepare.py deblur-test     --src GOPRO_Large/test --out datasets/aio5/gopro_test
  prepare.py lowlight-train  --src LOLdataset/our485 --out datasets/aio5/lol_train
  prepare.py lowlight-test   --src LOLdataset/eval15 --out datasets/aio5/lol_test
  prepare.py composite-test  --src CDD-11_test --out datasets/cdd11/test
  prepare.py composite-synth --src data/test/CBSD68 --out datasets/mixed --combo haze+rain --combo sr+noise --seed 0
  prepare.py paired --split test --lq my_set/input --gt my_set/target --out datasets/my_set
  prepare.py package-photos --out datasets/compact/package_photos
  prepare.py clean-train   --src BSDS500_clean --src datasets/compact/package_photos --out datasets/compact/clean
  prepare.py check datasets/aio3/rain100l/gt.lmdb datasets/aio3/rain100l/lq.lmdb

Interrupted runs leave OUT/<name>.lmdb.partial; rerun the same command to resume.
"""


def build_parser() -> argparse.ArgumentParser:
    kinds = '\n'.join(f'  {k:<17}{v.description}' for k, v in KINDS.items())
    parser = argparse.ArgumentParser(
        prog='ndr-prepare',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=('Turn standard restoration datasets into BasicSR LMDBs (data.mdb, lock.mdb, meta_info.txt)\n'
                     'with a manifest.json (source files with SHA-256, degradation and parameters of every record,\n'
                     'counts checked against the standard splits).\n\n'
                     'KIND (TASK --split SPLIT is the same as TASK-SPLIT, e.g. "derain --split test"):\n'
                     f'{kinds}\n'
                     '  package-photos   the training photographs of scikit-image and matplotlib -> OUT/*.png\n'
                     '  check            verify LMDB folders given as paths: meta_info.txt matches the records'),
        epilog=EXAMPLES)
    parser.add_argument('kind', help='what to prepare (see above)')
    parser.add_argument('paths', nargs='*', help='LMDB folders (only for "check")')
    parser.add_argument('--src', action='append', help='source folder (repeat for several, e.g. BSD400 and WED)')
    parser.add_argument('--out', help='output folder')
    parser.add_argument('--split', choices=('train', 'test'), help='with a bare task name: denoise, derain, ...')
    parser.add_argument('--lq-dir', '--lq', help='degraded images folder (paired kinds; overrides layout detection)')
    parser.add_argument('--gt-dir', '--gt', help='clean images folder (paired kinds; overrides layout detection)')
    parser.add_argument('--blur-variant', choices=('blur', 'blur_gamma'), default='blur',
                        help="deblur kinds: GoPro input folder (default blur, the AIO-5 tables' input)")
    parser.add_argument('--combo', action='append', help='composite-synth: a combination of haze, rain, blur, sr, '
                        'lowlight, noise joined by + (repeat for several; applied in that order)')
    parser.add_argument('--sigma', type=float, nargs='+', help='denoise-test noise levels, 0-255 scale '
                        '(default 15 25 50)')
    parser.add_argument('--scale', type=int, nargs='+', help='sr-test scales (default 2 3 4)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the synthesised test degradations (default 0)')
    parser.add_argument('--quantize', choices=('round', 'truncate'), default='round',
                        help='denoise-test: how noisy values become 8-bit (truncate = AirNet/PromptIR uint8 cast)')
    parser.add_argument('--seeding', choices=('per-image', 'sequential'), default='per-image',
                        help='denoise-test: noise from a seed per image (default), or one np.random stream over the '
                        'sorted images, sigma after sigma (AirNet/PromptIR procedure)')
    parser.add_argument('--crop-multiple', type=int, help='test kinds: centre-crop images to a multiple of N '
                        '(16 = AirNet/PromptIR protocol)')
    parser.add_argument('--crop-size', type=int, help='training kinds: cut images into sub-images of this size')
    parser.add_argument('--crop-step', type=int, help='sub-image step (default crop-size/2)')
    parser.add_argument('--crop-thresh', type=int, default=0, help='keep a last border crop when more than this '
                        'many pixels remain (default 0)')
    parser.add_argument('--subset', choices=('standard', 'all'), default='standard',
                        help='training kinds with a standard list: keep only listed images (default) or all')
    parser.add_argument('--workers', type=int, default=os.cpu_count(), help='parallel processes (default: all cores)')
    parser.add_argument('--skip-bad', action='store_true', help='leave bad inputs out (listed in manifest.json) '
                        'instead of stopping')
    parser.add_argument('--compress-level', type=int, default=1, choices=range(10), metavar='0-9',
                        help='PNG compression level of the stored images (default 1, as BasicSR). 0 stores '
                             'them uncompressed and unfiltered: several times faster to decode when training, '
                             'for about 1.75x the disk space')
    parser.add_argument('--overwrite', action='store_true', help='replace existing outputs')
    parser.add_argument('--deep', action='store_true', help='check: also decode every record')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f'warning: {message}', file=sys.stderr)


def _check(paths: list[str], deep: bool) -> int:
    status = 0
    for path in paths:
        try:
            keys = check_lmdb(path, deep=deep)
            print(f'ok: {path} ({len(keys)} records)')
        except LmdbFormatError as err:
            print(f'error: {err}', file=sys.stderr)
            status = 1
    return status


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Intermixed: options may come between the positional arguments ('check --deep PATH' as 'check PATH --deep').
    args = parser.parse_intermixed_args(argv)
    if args.kind == 'check':
        if not args.paths:
            parser.error('check needs at least one LMDB folder')
        return _check(args.paths, args.deep)
    if args.kind == 'package-photos':
        if not args.out or args.src or args.paths:
            parser.error('package-photos needs --out and nothing else')
        written = write_package_photos(args.out)
        print(f'package-photos: {len(written)} photographs -> {args.out}')
        return 0
    tasks = {k.rsplit('-', 1)[0] for k in KINDS}
    kind = f'{args.kind}-{args.split}' if args.split and args.kind in tasks else args.kind
    if kind not in KINDS:
        parser.error(f'unknown KIND {args.kind!r}' + (' (add --split train|test)' if args.split is None else ''))
    if args.paths:
        parser.error(f'unexpected arguments {args.paths}')
    if not args.out or not (args.src or (args.lq_dir and args.gt_dir)):
        parser.error(f'{kind} needs --out and --src (or --lq-dir and --gt-dir)')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('always', UserWarning)
            warnings.showwarning = _show_warning
            results = prepare(kind, args.src, args.out, sigmas=args.sigma, scales=args.scale, seed=args.seed,
                              workers=args.workers, skip_bad=args.skip_bad, subset=args.subset,
                              quantize=args.quantize, seeding=args.seeding, crop_multiple=args.crop_multiple,
                              crop_size=args.crop_size, crop_step=args.crop_step, crop_thresh=args.crop_thresh,
                              lq_dir=args.lq_dir, gt_dir=args.gt_dir, compress_level=args.compress_level,
                              overwrite=args.overwrite, progress=not args.quiet, blur_variant=args.blur_variant,
                              combos=args.combo)
    except BadInputError as err:
        print(f'error: {err}', file=sys.stderr)
        print('(finished work is kept: fix or remove the file, or add --skip-bad, and rerun the same command to '
              'resume)', file=sys.stderr)
        return 2
    except (FileNotFoundError, NotADirectoryError, FileExistsError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    for result in results:
        targets = ', '.join(result['targets'].values())
        if result['status'] == 'already complete':
            print(f'{result["job"]}: already complete ({targets})')
            continue
        print(f'{result["job"]}: {result["records"]} records -> {targets}')
        for item in result['skipped']:
            print(f'  skipped {item["file"]}: {item["reason"]}')
    return 0
