"""Offline study: the paper's MLP shape on MNIST-1D (generated offline, no download).

{RP, CSP} x {none, N2NSkip, ResSkip} x {10, 5, 2} % density x pruning.rescale {False, True}
x 5 seeds, plus the dense network: 185 runs of 30 epochs (about 25 minutes on 2 CPU cores).

    python -m n2nskip_jax.study --config configs/studies/offline_mlp.py
"""
from n2nskip_jax.configs import quickstart
from n2nskip_jax.configs.studies.common import DENSE, study


def get_config(arg: str | None = None):
  """The study; ``get_config('base')`` (``--config=...offline_mlp.py:base`` in ``main.py``)
  returns its base run config alone."""
  base = quickstart.get_config()          # MLP 40-512-256-128-64-10, 30 epochs, lr halved /10
  c = study(base, {'pruning.method': ('rp', 'csp'), 'pruning.density': (0.1, 0.05, 0.02),
                   'pruning.rescale': (False, True), 'skip.kind': ('none', 'n2nskip', 'resskip')},
            extra=({**DENSE, 'pruning': {**DENSE['pruning'], 'rescale': False}},))
  return c.base if arg == 'base' else c
