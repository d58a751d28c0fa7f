"""Offline convolutional study: VGG19-BN (CIFAR head, width x0.125) on digits32.

digits32 is scikit-learn's 8x8 digits upsampled to 32x32x3 (ships in a package, no
download). {RP, CSP} x {none, N2NSkip} x {10, 5, 2} % density x 3 seeds, plus the dense
network: 39 runs of 15 epochs (about 30 minutes on 2 CPU cores).

    python -m n2nskip_jax.study --config configs/studies/offline_vgg_digits.py
"""
from n2nskip_jax.configs import default
from n2nskip_jax.configs.studies.common import on_digits32, study


def get_config(arg: str | None = None):
  """The study; ``get_config('base')`` returns its base run config alone."""
  base = on_digits32(default.get_config())
  base.model, base.vgg_head, base.width_multiplier = 'vgg19', 'cifar', 0.125
  c = study(base, {'pruning.method': ('rp', 'csp'), 'pruning.density': (0.1, 0.05, 0.02),
                   'skip.kind': ('none', 'n2nskip')}, seeds=(0, 1, 2))
  return c.base if arg == 'base' else c
