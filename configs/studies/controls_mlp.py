"""Is N2NSkip's gain about which weights survive, or how many per layer? The controls of
Frankle et al. (ICLR 2021) on the MLP cells where N2NSkip helps (``methods_mlp.py``,
``offline_mlp.py``).

{CSP, magnitude, SynFlow} x {5, 2} % density x {none, N2NSkip} x pruning.shuffle {False, True}
x pruning.reinit {False, True} x 3 seeds: 144 runs of 30 epochs, base and seeds as
``offline_mlp.py``. Shuffle keeps each pruned layer's density and moves its weights; reinit
keeps the masks and draws the weights from another seed.

    python -m n2nskip_jax.study --config configs/studies/controls_mlp.py
"""
from configs import quickstart
from configs.studies.common import study


def get_config(arg: str | None = None):
  """The study; ``get_config('base')`` returns its base run config alone."""
  base = quickstart.get_config()
  c = study(base, {'pruning.method': ('csp', 'magnitude', 'synflow'),
                   'pruning.density': (0.05, 0.02), 'pruning.shuffle': (False, True),
                   'pruning.reinit': (False, True), 'skip.kind': ('none', 'n2nskip')},
            seeds=(0, 1, 2), extra=())
  return c.base if arg == 'base' else c
