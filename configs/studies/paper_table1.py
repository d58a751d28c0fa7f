"""The paper's Table 1 grid (and its CIFAR-100 counterpart): for users with GPUs and the data.

CIFAR-10 and CIFAR-100 x VGG19 (paper head) and ResNet50 x {RP, N2NSkip-RP, CSP,
N2NSkip-CSP} x {10, 5, 2} % density x 5 seeds, plus the dense baselines: 260 runs of the
paper's 300 epochs (SGD, momentum 0.9, lr 0.05 halved every 30 epochs, wd 5e-4, batch 128).

    python -m n2nskip_jax.study --config configs/studies/paper_table1.py --dry_run
"""
from n2nskip_jax.configs import default
from n2nskip_jax.configs.studies.common import DENSE, study


def get_config(arg: str | None = None):
  """The study; ``get_config('base')`` returns its base run config alone."""
  base = default.get_config()             # the paper's training setup, vgg_head='paper'
  dense = tuple({**DENSE, 'model': m, 'dataset': d}
                for d in ('cifar10', 'cifar100') for m in ('vgg19', 'resnet50'))
  c = study(base, {'dataset': ('cifar10', 'cifar100'), 'model': ('vgg19', 'resnet50'),
                   'pruning.method': ('rp', 'csp'), 'pruning.density': (0.1, 0.05, 0.02),
                   'skip.kind': ('none', 'n2nskip')}, extra=dense)
  return c.base if arg == 'base' else c
