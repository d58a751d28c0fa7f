"""Is N2NSkip's gain on a conv net about which weights survive, or how many per layer? The
controls of Frankle et al. (ICLR 2021) on two cells of ``methods_vgg_digits.py`` (VGG19-BN,
CIFAR head, width x0.125, digits32): CSP at 2 %, which collapses without skips and which
N2NSkip rescues, and SynFlow at 0.5 %, which trains without skips (the conv-net setting in
which Frankle et al. found shuffling harmless).

Each cell x {none, N2NSkip} x pruning.shuffle {False, True} x pruning.reinit {False, True}
x 3 seeds: 48 runs of 15 epochs, base and seeds as ``methods_vgg_digits.py``.

    python -m n2nskip_jax.study --config configs/studies/controls_vgg_digits.py
"""
import itertools

from n2nskip_jax.configs.studies import controls_mlp, offline_vgg_digits
from n2nskip_jax.configs.studies.common import study


def get_config(arg: str | None = None):
  """The study; ``get_config('base')`` returns its base run config alone."""
  base = offline_vgg_digits.get_config('base')
  synflow = tuple({'pruning': {'method': 'synflow', 'density': 0.005, 'shuffle': shuffle,
                               'reinit': reinit}, 'skip': {'kind': kind}}
                  for shuffle, reinit, kind in itertools.product(*controls_mlp.CONTROLS.values()))
  c = study(base, {'pruning.method': ('csp',), 'pruning.density': (0.02,),
                   **controls_mlp.CONTROLS}, seeds=(0, 1, 2), extra=synflow)
  return c.base if arg == 'base' else c
