"""The paper's Fig. 6 grid: VGG19 (paper head) on CIFAR-10, no skips vs N2NSkip vs ResSkip
over compression rates 5x-50x, for RP and CSP, 5 seeds, plus the dense baseline: 125 runs.

2x (density 0.5) is left out: with half of the budget on skips, N2NSkip would need 34.9M skip
weights and VGG19's 3x3 skip layers hold 16.7M (the study refuses such a grid up front).

    python -m n2nskip_jax.study --config configs/studies/paper_fig6.py --dry_run
"""
from n2nskip_jax.configs import vgg19_c10
from n2nskip_jax.configs.studies.common import study


def get_config(arg: str | None = None):
  """The study; ``get_config('base')`` returns its base run config alone."""
  c = study(vgg19_c10.get_config(),
            {'pruning.method': ('rp', 'csp'), 'pruning.density': (0.2, 0.1, 0.05, 0.02),
             'skip.kind': ('none', 'n2nskip', 'resskip')})
  return c.base if arg == 'base' else c
