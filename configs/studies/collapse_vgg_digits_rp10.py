"""The RP cells of ``collapse_vgg_digits`` at 10 seeds: VGG19-BN (CIFAR head, width x0.125) on
digits32, RP at 2 and 1 % density, skip.kind {none, n2nskip, resskip, sequential}.

With 5 seeds these cells spread by 12-29 points (a run trains or stays near chance) and every
comparison was inconclusive. This study is the same runs (the same base config, run names and
seeds 0-4) with seeds 5-9 added, 80 runs; Holm over its 10 comparisons (each skip kind
against none, N2NSkip against ResSkip and the control, at each density). Run it in the
``collapse_vgg_digits`` workdir, or in a new one holding copies of that study's RP run
folders, and only the new seeds train.

    python -m n2nskip_jax.study --config configs/studies/collapse_vgg_digits_rp10.py
"""
from n2nskip_jax.configs.studies import collapse_vgg_digits
from n2nskip_jax.configs.studies.common import study


def get_config(arg: str | None = None):
  """The study; ``get_config('base')`` returns its base run config alone."""
  base = collapse_vgg_digits.get_config('base')
  c = study(base, {'pruning.method': ('rp',), 'pruning.density': (0.02, 0.01),
                   'skip.kind': ('none', 'n2nskip', 'resskip', 'sequential')},
            seeds=range(10), extra=())
  return c.base if arg == 'base' else c
