"""The paper's ImageNet grid: ResNet50 (ImageNet stem) x {RP, N2NSkip-RP, CSP, N2NSkip-CSP}
x {50, 30, 20} % density x 5 seeds, plus the dense baseline: 65 runs.

ImageNet must be prepared for tfds in ``--config.base.data_dir`` (see the README).

    python -m n2nskip_jax.study --config configs/studies/paper_table2.py --dry_run
"""
import ml_collections

from configs import resnet50_imagenet


def get_config(arg: str | None = None):
  """The study; ``get_config('base')`` returns its base run config alone."""
  c = ml_collections.ConfigDict()
  c.base = resnet50_imagenet.get_config()
  c.axes = ml_collections.ConfigDict()
  c.axes.pruning = ml_collections.ConfigDict()
  c.axes.pruning.method = ('rp', 'csp')
  c.axes.pruning.density = (0.5, 0.3, 0.2)
  c.axes.skip = ml_collections.ConfigDict()
  c.axes.skip.kind = ('none', 'n2nskip')
  c.seeds = (0, 1, 2, 3, 4)
  c.extra = ({'pruning': {'method': 'dense', 'density': 1.0}, 'skip': {'kind': 'none'}},)
  c.analyze = True
  return c.base if arg == 'base' else c
