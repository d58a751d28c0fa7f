"""Builds a study config from plain Python values (see ``n2nskip_jax/study/grid.py``)."""
import ml_collections

# The dense baseline, run for every seed of a study.
DENSE = {'pruning': {'method': 'dense', 'density': 1.0}, 'skip': {'kind': 'none'}}


def on_digits32(base):
  """``base`` trained on digits32 (1437 train / 360 test images) as the convolutional studies
  train it: 15 epochs, the learning rate decayed every 5, evaluated every 3, one checkpoint."""
  base.dataset = 'digits32'
  base.num_epochs, base.lr_decay_epochs = 15, 5
  base.eval_every_epochs, base.log_every_steps = 3, 50
  base.max_checkpoints_to_keep = 1
  return base


def study(base, axes: dict, seeds=(0, 1, 2, 3, 4), extra=(DENSE,), analyze: bool = True):
  """A study config: ``axes`` maps dotted run-config keys to tuples of values
  (``{'pruning.density': (0.1, 0.05)}``), nested into the ConfigDict the runner reads."""
  c = ml_collections.ConfigDict()
  c.base = base
  c.axes = ml_collections.ConfigDict()
  for key, values in axes.items():
    *groups, leaf = key.split('.')
    node = c.axes
    for g in groups:
      if g not in node:
        node[g] = ml_collections.ConfigDict()
      node = node[g]
    node[leaf] = tuple(values)
  c.seeds = tuple(seeds)
  c.extra = tuple(extra)
  c.analyze = analyze                     # F(t*), F(inf) of every run at initialization
  return c
