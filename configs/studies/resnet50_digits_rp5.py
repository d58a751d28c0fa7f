"""The ResNet50 cells a claim rests on, at 10 seeds: RP at 5 % on digits32, without skips, with
N2NSkip, and without skips with the fair rescale for a BatchNorm network (classifier only).

``resnet50_digits`` (5 seeds) found its cells bimodal (a run trains or stays at chance), too
few seeds for a verdict; this study is the same runs (the same base config, run names and
seeds 0-4) with seeds 5-9 added, 30 runs. Run it in the ``resnet50_digits`` workdir, or in a
new one holding copies of that study's RP 5 % run folders, and only the new seeds train.

    python -m n2nskip_jax.study --config configs/studies/resnet50_digits_rp5.py
"""
from n2nskip_jax.configs.studies import resnet50_digits
from n2nskip_jax.configs.studies.common import study


def get_config(arg: str | None = None):
  """The study; ``get_config('base')`` returns its base run config alone."""
  base = resnet50_digits.get_config('base')
  fair_rescale = {'pruning': {'method': 'rp', 'density': 0.05, 'rescale': True,
                              'rescale_normalized': False}, 'skip': {'kind': 'none'}}
  c = study(base, {'pruning.method': ('rp',), 'pruning.density': (0.05,),
                   'skip.kind': ('none', 'n2nskip')}, seeds=range(10), extra=(fair_rescale,))
  return c.base if arg == 'base' else c
