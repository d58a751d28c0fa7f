"""The paper's Fig. 6 grid: VGG19 (paper head) on CIFAR-10, no skips vs N2NSkip vs ResSkip
over compression rates 5x-50x, for RP and CSP, 5 seeds, plus the dense baseline: 125 runs.

2x (density 0.5) is left out: with half of the budget on skips, N2NSkip would need 34.9M skip
weights and VGG19's 3x3 skip layers hold 16.7M (the study refuses such a grid up front).

    python -m n2nskip_jax.study --config configs/studies/paper_fig6.py --dry_run
"""
import ml_collections

from configs import vgg19_c10


def get_config(arg: str | None = None):
  """The study; ``get_config('base')`` returns its base run config alone."""
  c = ml_collections.ConfigDict()
  c.base = vgg19_c10.get_config()
  c.axes = ml_collections.ConfigDict()
  c.axes.pruning = ml_collections.ConfigDict()
  c.axes.pruning.method = ('rp', 'csp')
  c.axes.pruning.density = (0.2, 0.1, 0.05, 0.02)
  c.axes.skip = ml_collections.ConfigDict()
  c.axes.skip.kind = ('none', 'n2nskip', 'resskip')
  c.seeds = (0, 1, 2, 3, 4)
  c.extra = ({'pruning': {'method': 'dense', 'density': 1.0}, 'skip': {'kind': 'none'}},)
  c.analyze = True
  return c.base if arg == 'base' else c
