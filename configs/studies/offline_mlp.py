"""Offline study: the paper's MLP shape on MNIST-1D (generated offline, no download).

{RP, CSP} x {none, N2NSkip, ResSkip} x {10, 5, 2} % density x pruning.rescale {False, True}
x 5 seeds, plus the dense network: 185 runs of 30 epochs (about 25 minutes on 2 CPU cores).

    python -m n2nskip_jax.study --config configs/studies/offline_mlp.py
"""
import ml_collections

from configs import quickstart


def get_config(arg: str | None = None):
  """The study; ``get_config('base')`` (``--config=...offline_mlp.py:base`` in ``main.py``)
  returns its base run config alone."""
  c = ml_collections.ConfigDict()
  c.base = quickstart.get_config()        # MLP 40-512-256-128-64-10, 30 epochs, lr halved /10
  c.axes = ml_collections.ConfigDict()
  c.axes.pruning = ml_collections.ConfigDict()
  c.axes.pruning.method = ('rp', 'csp')
  c.axes.pruning.density = (0.1, 0.05, 0.02)
  c.axes.pruning.rescale = (False, True)
  c.axes.skip = ml_collections.ConfigDict()
  c.axes.skip.kind = ('none', 'n2nskip', 'resskip')
  c.seeds = (0, 1, 2, 3, 4)
  c.extra = ({'pruning': {'method': 'dense', 'density': 1.0, 'rescale': False},
              'skip': {'kind': 'none'}},)
  c.analyze = True                        # F(t*), F(inf) of every run at initialization
  return c.base if arg == 'base' else c
