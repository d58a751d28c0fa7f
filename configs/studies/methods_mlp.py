"""Does N2NSkip help every preliminary method? The paper's MLP shape on MNIST-1D.

{magnitude, SynFlow, GraSP} x {none, N2NSkip} x {10, 5, 2} % density x pruning.rescale
{False, True} x 5 seeds, plus the dense network: 185 runs of 30 epochs. The base run and
seeds are ``offline_mlp.py``'s, so its RP and CSP cells compare directly.

    python -m n2nskip_jax.study --config configs/studies/methods_mlp.py
"""
from n2nskip_jax.configs import quickstart
from n2nskip_jax.configs.studies.common import DENSE, study


def get_config(arg: str | None = None):
  """The study; ``get_config('base')`` returns its base run config alone."""
  base = quickstart.get_config()
  c = study(base, {'pruning.method': ('magnitude', 'synflow', 'grasp'),
                   'pruning.density': (0.1, 0.05, 0.02), 'pruning.rescale': (False, True),
                   'skip.kind': ('none', 'n2nskip')},
            extra=({**DENSE, 'pruning': {**DENSE['pruning'], 'rescale': False}},))
  return c.base if arg == 'base' else c
