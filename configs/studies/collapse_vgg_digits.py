"""The budget control and the paper's Fig. 6 on VGG19-BN (CIFAR head, width x0.125), digits32,
below the ceiling (``methods_vgg_digits.py``: CSP collapses there at 2 and 1 %).

{RP, CSP} x {2, 1} % density x skip.kind {none, n2nskip, resskip, sequential} x 5 seeds:
N2NSkip against the same budget spent on random extra sequential weights (``sequential``, the
control for collapse) and against ResSkip (Eq. 1, the paper's Fig. 6); beside them SynFlow
without skips (a method that keeps every layer) at both densities and the dense network:
95 runs of 15 epochs. ``skip.affine=False``: the skips' BatchNorms normalize without scale and
shift, so every arm trains exactly the budget's weights plus the same BatchNorm parameters.

    python -m n2nskip_jax.study --config configs/studies/collapse_vgg_digits.py
"""
from n2nskip_jax.configs.studies import offline_vgg_digits
from n2nskip_jax.configs.studies.common import DENSE, study


def get_config(arg: str | None = None):
  """The study; ``get_config('base')`` returns its base run config alone."""
  base = offline_vgg_digits.get_config('base')
  base.skip.affine = False
  synflow = tuple({'pruning': {'method': 'synflow', 'density': d}, 'skip': {'kind': 'none'}}
                  for d in (0.02, 0.01))
  c = study(base, {'pruning.method': ('rp', 'csp'), 'pruning.density': (0.02, 0.01),
                   'skip.kind': ('none', 'n2nskip', 'resskip', 'sequential')},
            extra=(*synflow, DENSE))
  return c.base if arg == 'base' else c
