"""The paper's Table 1 grid (and its CIFAR-100 counterpart): for users with GPUs and the data.

CIFAR-10 and CIFAR-100 x VGG19 (paper head) and ResNet50 x {RP, N2NSkip-RP, CSP,
N2NSkip-CSP} x {10, 5, 2} % density x 5 seeds, plus the dense baselines: 260 runs of the
paper's 300 epochs (SGD, momentum 0.9, lr 0.05 halved every 30 epochs, wd 5e-4, batch 128).

    python -m n2nskip_jax.study --config configs/studies/paper_table1.py --dry_run
"""
import ml_collections

from configs import default


def get_config(arg: str | None = None):
  """The study; ``get_config('base')`` returns its base run config alone."""
  c = ml_collections.ConfigDict()
  c.base = default.get_config()           # the paper's training setup, vgg_head='paper'
  c.axes = ml_collections.ConfigDict()
  c.axes.dataset = ('cifar10', 'cifar100')
  c.axes.model = ('vgg19', 'resnet50')
  c.axes.pruning = ml_collections.ConfigDict()
  c.axes.pruning.method = ('rp', 'csp')
  c.axes.pruning.density = (0.1, 0.05, 0.02)
  c.axes.skip = ml_collections.ConfigDict()
  c.axes.skip.kind = ('none', 'n2nskip')
  c.seeds = (0, 1, 2, 3, 4)
  c.extra = ({'pruning': {'method': 'dense', 'density': 1.0}, 'skip': {'kind': 'none'},
              'model': 'vgg19', 'dataset': 'cifar10'},
             {'pruning': {'method': 'dense', 'density': 1.0}, 'skip': {'kind': 'none'},
              'model': 'resnet50', 'dataset': 'cifar10'},
             {'pruning': {'method': 'dense', 'density': 1.0}, 'skip': {'kind': 'none'},
              'model': 'vgg19', 'dataset': 'cifar100'},
             {'pruning': {'method': 'dense', 'density': 1.0}, 'skip': {'kind': 'none'},
              'model': 'resnet50', 'dataset': 'cifar100'})
  c.analyze = True
  return c.base if arg == 'base' else c
