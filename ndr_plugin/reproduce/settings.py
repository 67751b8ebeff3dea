"""The benchmark settings ``ndr-reproduce`` knows: raw folders under ``--data``, the ``ndr-prepare`` runs that turn
them into the LMDBs the option files read, and the option files of each model.

The raw layout follows the ``data/`` tree of AirNet/PromptIR (``Train/{Denoise,Derain,Dehaze}``, ``test/...``) with
GoPro, LOL-v1 and CDD-11 as distributed; the prepared LMDBs land where the option files expect them
(``datasets/...``, see README "Data").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ['PrepareStep', 'Setting', 'SETTINGS', 'MODELS', 'layout_help']

MODELS = ('ndr', 'promptir', 'no_ndr')


@dataclass(frozen=True)
class PrepareStep:
    """One ``ndr-prepare KIND --src DATA/<source>... --out WORK/<out>`` run; ``options`` are keywords of
    :func:`~ndr_plugin.prepare.kinds.prepare`."""
    kind: str
    sources: tuple[str, ...]
    out: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def marker(self) -> str:
        """Stage name; the same step in two settings (shared AIO-3 data) is done once."""
        return f'{self.kind}_{self.out.removeprefix("datasets/").replace("/", "_")}'

    def cli_args(self) -> list[str]:
        """The ``ndr-prepare`` options equivalent to :attr:`options` (for ``--dry-run`` and the logs)."""
        flags = {'sigmas': '--sigma', 'scales': '--scale', 'seed': '--seed', 'crop_size': '--crop-size',
                 'subset': '--subset'}
        args: list[str] = []
        for key, value in self.options:
            args.append(flags[key])
            args += [str(v) for v in value] if isinstance(value, tuple) else [str(value)]
        return args


@dataclass(frozen=True)
class Setting:
    """One table: its data, the training option file of each model, and the test option file."""
    name: str
    title: str
    steps: tuple[PrepareStep, ...]
    train_options: dict[str, str]   # model -> option file, relative to options/
    test_options: str               # written for every model with that model's network_g


_AIO3_TRAIN = (
    PrepareStep('denoise-train', ('Train/Denoise',), 'datasets/aio3/denoise_train'),
    PrepareStep('derain-train', ('Train/Derain',), 'datasets/aio3/derain_train'),
    PrepareStep('dehaze-train', ('Train/Dehaze',), 'datasets/aio3/dehaze_train'),
)
# Same command in aio3 and aio5 (aio5 tests sigma 25 only), so the two settings share one output.
_AIO3_TEST = (
    PrepareStep('denoise-test', ('test/CBSD68',), 'datasets/aio3/cbsd68', (('sigmas', (15, 25, 50)), ('seed', 0))),
    PrepareStep('derain-test', ('test/Rain100L',), 'datasets/aio3/rain100l'),
    PrepareStep('dehaze-test', ('test/SOTS/outdoor',), 'datasets/aio3/sots_outdoor'),
)
_SR = (
    PrepareStep('sr-train', ('Train/SR/DIV2K_train_HR', 'Train/SR/Flickr2K_HR'), 'datasets/sr_train',
                (('crop_size', 480),)),
) + tuple(PrepareStep('sr-test', (f'test/{name}',), f'datasets/sr/{name}', (('scales', (2, 3, 4)),))
          for name in ('Set5', 'Set14', 'BSD100', 'Urban100'))
_AIO5 = (
    PrepareStep('deblur-train', ('GOPRO_Large/train',), 'datasets/aio5/gopro_train'),
    PrepareStep('lowlight-train', ('LOLdataset/our485',), 'datasets/aio5/lol_train'),
    PrepareStep('deblur-test', ('GOPRO_Large/test',), 'datasets/aio5/gopro_test'),
    PrepareStep('lowlight-test', ('LOLdataset/eval15',), 'datasets/aio5/lol_test'),
)
_CDD11 = (
    PrepareStep('composite-train', ('CDD-11_train',), 'datasets/cdd11/train'),
    PrepareStep('composite-test', ('CDD-11_test',), 'datasets/cdd11/test'),
)

SETTINGS: dict[str, Setting] = {
    'aio3': Setting('aio3', 'AIO-3: noise sigma 15/25/50, Rain100L, SOTS-outdoor', _AIO3_TRAIN + _AIO3_TEST,
                    {'ndr': 'ndr_allinone.yml', 'promptir': 'baselines/promptir_allinone.yml',
                     'no_ndr': 'baselines/ndr_ablation_no_ndr.yml'}, 'test_ndr_allinone.yml'),
    'aio3-sr': Setting('aio3-sr', 'AIO-3 plus downsampling x2/x3/x4 (the NDR paper\'s fourth degradation)',
                       _AIO3_TRAIN + _AIO3_TEST + _SR, {'ndr': 'ndr_allinone_4deg.yml'},
                       'test_ndr_allinone_4deg.yml'),
    'aio5': Setting('aio5', 'AIO-5: SOTS-outdoor, Rain100L, CBSD68 sigma 25, GoPro, LOL-v1',
                    _AIO3_TRAIN + _AIO3_TEST + _AIO5,
                    {'ndr': 'ndr_allinone_5task.yml', 'promptir': 'baselines/promptir_5task.yml',
                     'no_ndr': 'baselines/ndr_ablation_no_ndr_5task.yml'}, 'test_ndr_allinone_5task.yml'),
    'composite': Setting('composite', 'CDD-11: 11 combinations of low light, haze, rain and snow', _CDD11,
                         {'ndr': 'ndr_composite.yml', 'promptir': 'baselines/promptir_composite.yml',
                          'no_ndr': 'baselines/ndr_ablation_no_ndr_composite.yml'}, 'test_ndr_composite.yml'),
}

_LAYOUT = """\
expected raw data under --data DIR (the AirNet/PromptIR data/ tree; GoPro, LOL-v1, CDD-11 as distributed):
  Train/Denoise/            BSD400 + WED clean images (any subfolders)       aio3 aio3-sr aio5
  Train/Derain/{rainy,gt}/  Rain100L training pairs rain-N.png/norain-N.png  aio3 aio3-sr aio5
  Train/Dehaze/             RESIDE OTS synthetic/partK/ID_A_beta.jpg, original/ID.jpg
  test/CBSD68/              68 clean images (noise is added by ndr-prepare, seed 0)
  test/Rain100L/            100 test pairs (rainy/ + gt/, or input/ + target/)
  test/SOTS/outdoor/        500 pairs (hazy/ID_A_beta.jpg + gt/ID.png)
  Train/SR/{DIV2K_train_HR,Flickr2K_HR}/, test/{Set5,Set14,BSD100,Urban100}/   aio3-sr only
  GOPRO_Large/{train,test}/<sequence>/{blur,sharp}/   LOLdataset/{our485,eval15}/{low,high}/   aio5 only
  CDD-11_train/, CDD-11_test/   clear/ + low/ haze/ ... low_haze_snow/ (same file names)     composite only
Published splits: 5,144 / 200 / 72,135 training images, 68 / 100 / 500 test images, GoPro 2,103 / 1,111,
LOL-v1 485 / 15; ndr-prepare compares your copy with them and the table lists every difference."""


def layout_help() -> str:
    return _LAYOUT
