"""Is it the skips' placement, or only not collapsing? The paper's MLP shape on MNIST-1D, in the
cells where N2NSkip gains most (CSP and global magnitude leave layers empty or nearly so).

{CSP, magnitude} x {5, 2} % density x skip.kind {n2nskip, sequential} x skip.fraction
{0.25, 0.5, 0.75} x 10 seeds; ``sequential`` is the budget control: no skips, their share of
the budget given to random extra sequential weights among the positions the method pruned.
Beside them, for every seed: each method without skips at each density (skip.fraction plays
no part there), SynFlow without skips (a method that keeps every layer) and the dense network:
310 runs of 30 epochs, the base run of ``offline_mlp.py`` (rescale off: the paper's setting)
with ``skip.affine=False``: the skips have no biases, so every arm trains exactly the budget's
weights plus the same biases.

    python -m n2nskip_jax.study --config configs/studies/collapse_mlp.py
"""
from n2nskip_jax.configs import quickstart
from n2nskip_jax.configs.studies.common import DENSE, study


def get_config(arg: str | None = None):
  """The study; ``get_config('base')`` returns its base run config alone."""
  base = quickstart.get_config()
  base.skip.affine = False
  none = tuple({'pruning': {'method': method, 'density': density}, 'skip': {'kind': 'none'}}
               for method in ('csp', 'magnitude', 'synflow') for density in (0.05, 0.02))
  c = study(base, {'pruning.method': ('csp', 'magnitude'), 'pruning.density': (0.05, 0.02),
                   'skip.kind': ('n2nskip', 'sequential'), 'skip.fraction': (0.25, 0.5, 0.75)},
            seeds=tuple(range(10)), extra=(*none, DENSE))
  return c.base if arg == 'base' else c
