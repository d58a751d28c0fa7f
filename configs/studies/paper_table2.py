"""The paper's ImageNet grid: ResNet50 (ImageNet stem) x {RP, N2NSkip-RP, CSP, N2NSkip-CSP}
x {50, 30, 20} % density x 5 seeds, plus the dense baseline: 65 runs.

ImageNet must be prepared for tfds in ``--config.base.data_dir`` (see the README).

    python -m n2nskip_jax.study --config configs/studies/paper_table2.py --dry_run
"""
from n2nskip_jax.configs import resnet50_imagenet
from n2nskip_jax.configs.studies.common import study


def get_config(arg: str | None = None):
  """The study; ``get_config('base')`` returns its base run config alone."""
  c = study(resnet50_imagenet.get_config(),
            {'pruning.method': ('rp', 'csp'), 'pruning.density': (0.5, 0.3, 0.2),
             'skip.kind': ('none', 'n2nskip')})
  return c.base if arg == 'base' else c
