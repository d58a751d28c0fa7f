"""Is N2NSkip's gain about which weights survive, or how many per layer? The controls of
Frankle et al. (ICLR 2021) on the MLP cells where N2NSkip helps most (``offline_mlp.py``,
``methods_mlp.py``): CSP and SynFlow at 2 %, magnitude at 5 %.

Each cell x {none, N2NSkip} x pruning.shuffle {False, True} x pruning.reinit {False, True}
x 3 seeds: 72 runs of 30 epochs, base and seeds as ``offline_mlp.py``. Shuffle keeps each
pruned layer's density and moves its weights; reinit keeps the masks and draws the weights
from another seed.

    python -m n2nskip_jax.study --config configs/studies/controls_mlp.py
"""
import itertools

from n2nskip_jax.configs import quickstart
from n2nskip_jax.configs.studies.common import study

CONTROLS = {'pruning.shuffle': (False, True), 'pruning.reinit': (False, True),
            'skip.kind': ('none', 'n2nskip')}


def get_config(arg: str | None = None):
  """The study; ``get_config('base')`` returns its base run config alone."""
  base = quickstart.get_config()
  magnitude = tuple({'pruning': {'method': 'magnitude', 'density': 0.05, 'shuffle': shuffle,
                                 'reinit': reinit}, 'skip': {'kind': kind}}
                    for shuffle, reinit, kind in itertools.product(*CONTROLS.values()))
  c = study(base, {'pruning.method': ('csp', 'synflow'), 'pruning.density': (0.02,),
                   **CONTROLS}, seeds=(0, 1, 2), extra=magnitude)
  return c.base if arg == 'base' else c
