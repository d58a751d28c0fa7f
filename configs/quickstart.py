"""Quickstart: N2NSkip-RP at 5 % density, the paper's MLP shape, on MNIST-1D.

MNIST-1D is generated offline by the mnist1d package. Half the budget goes to random skip
weights (span 3: input -> hidden 3, hidden 1 -> hidden 4), half to random sequential weights.
Run with --baseline to also train plain RP at the same density and compare. Trains in under
a minute on a 2-core CPU. MNIST-1D's published test accuracies: logistic regression 32 %,
MLP 68 %, CNN 94 %."""
from n2nskip_jax.configs import default


def get_config():
  c = default.get_config()
  c.model, c.dataset, c.mlp_hidden = 'mlp', 'mnist1d', (512, 256, 128, 64)
  c.num_epochs = 30
  c.lr_decay_epochs = 10
  c.eval_every_epochs = 5
  c.log_every_steps = 100
  c.pruning.method, c.pruning.density = 'rp', 0.05
  c.skip.kind, c.skip.fraction, c.skip.span = 'n2nskip', 0.5, 3
  return c
