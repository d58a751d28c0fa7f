"""Does N2NSkip help below the ceiling? VGG19-BN (CIFAR head, width x0.125) on digits32 at
densities where the dense-equivalent gap is real (``offline_vgg_digits.py`` saturates at 10
and 5 %).

{RP, CSP, SynFlow} x {none, N2NSkip} x {2, 1, 0.5} % density x pruning.rescale {False, True}
x 3 seeds, plus the dense network: 111 runs of 15 epochs.

    python -m n2nskip_jax.study --config configs/studies/methods_vgg_digits.py
"""
from n2nskip_jax.configs.studies import offline_vgg_digits
from n2nskip_jax.configs.studies.common import DENSE, study


def get_config(arg: str | None = None):
  """The study; ``get_config('base')`` returns its base run config alone."""
  base = offline_vgg_digits.get_config('base')
  c = study(base, {'pruning.method': ('rp', 'csp', 'synflow'),
                   'pruning.density': (0.02, 0.01, 0.005), 'pruning.rescale': (False, True),
                   'skip.kind': ('none', 'n2nskip')}, seeds=(0, 1, 2),
            extra=({**DENSE, 'pruning': {**DENSE['pruning'], 'rescale': False}},))
  return c.base if arg == 'base' else c
