"""``make demo`` / ``python -m ndr_plugin.demo``: NDR learns to restore, on any machine, with no data set downloaded.

1. :mod:`.photos` builds small train and test LMDBs from colour photographs that ship with scikit-image and
   matplotlib's sample photograph (left out where matplotlib is not installed). Some photographs are held out for
   testing. Noise, rain, haze and downsampling are synthesised with :mod:`ndr_plugin.data.degradation_specs`, seeded.
2. :mod:`.options` writes the option files of a tiny NDRNet (or a baseline, ``--model``); :mod:`.cli` trains it with
   NDRModel in ``alternate`` mode through ``ndr_plugin.train``, i.e. BasicSR's own training loop.
3. :mod:`.cli` tests it through ``ndr_plugin.test`` (BasicSR's test loop), which saves the restored images.
4. :mod:`.report` scores the degraded inputs and the saved outputs against the clean images and writes:
   - ``results/<name>/report.md``, a table per degradation and level;
   - ``results/<name>/metrics.json``, the same numbers;
   - ``results/<name>/grid.png``, degraded | restored | clean, one row per degradation.
5. Optional: with ``--real-data DIR``, :mod:`.real_benchmarks` adds the same table on real benchmark pairs, marked
   as images from outside the training set. DIR must hold these subfolders (their file naming is in
   :mod:`.real_benchmarks` and in ``--help``): ``CBSD68/``, ``Rain100L_pairs/{gt,rainy}/``,
   ``RainL_train_sample/{gt,rainy}/``, ``SOTS_outdoor_sample/{gt,hazy}/``, ``Set5/image_SRF_2/``. Without it the
   report says how to add that table.

Everything is seeded, so the data and the report are reproducible (BasicSR's CPU training is deterministic for a
given thread count).
"""
from ndr_plugin.demo.cli import main, run
from ndr_plugin.demo.options import (BASELINES, TINY_DEGRADATION_NET, TINY_NDRNET, test_options, train_options,
                                     write_yaml)
from ndr_plugin.demo.photos import TEST_SETS, build_data
from ndr_plugin.demo.real_benchmarks import REAL_SETS, check_real_root, real_pairs, score_real

__all__ = ['BASELINES', 'REAL_SETS', 'TEST_SETS', 'TINY_DEGRADATION_NET', 'TINY_NDRNET', 'build_data',
           'check_real_root', 'main', 'real_pairs', 'run', 'score_real', 'test_options', 'train_options',
           'write_yaml']
