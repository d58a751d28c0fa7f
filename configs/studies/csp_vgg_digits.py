"""CSP (SNIP) on VGG19-BN (CIFAR head, width x0.125), digits32, above the density where it
collapses: does N2NSkip help a network that learns?

CSP empties a layer of VGG19 at 2 % and below (``methods_vgg_digits``, ``collapse_vgg_digits``),
so every gain found there is over a network at chance. Here CSP keeps 5 and 3 % of the
weights, skip.kind {none, n2nskip, sequential} (the budget control), 10 seeds: 60 runs,
``skip.affine=False`` as in ``collapse_vgg_digits`` (every arm trains exactly the budget's
weights plus the same BatchNorm parameters). Holm over its 6 comparisons (N2NSkip and the
control against none, N2NSkip against the control, at each density).

    python -m n2nskip_jax.study --config configs/studies/csp_vgg_digits.py
"""
from n2nskip_jax.configs.studies import collapse_vgg_digits
from n2nskip_jax.configs.studies.common import study


def get_config(arg: str | None = None):
  """The study; ``get_config('base')`` returns its base run config alone."""
  base = collapse_vgg_digits.get_config('base')
  c = study(base, {'pruning.method': ('csp',), 'pruning.density': (0.05, 0.03),
                   'skip.kind': ('none', 'n2nskip', 'sequential')}, seeds=range(10), extra=())
  return c.base if arg == 'base' else c
