"""The work a pruned network's masked layers hold: nonzeros, multiply-adds and output sizes.

    python benchmarks/nonzero_macs.py --model=resnet50 --density=0.05
    python benchmarks/nonzero_macs.py --model=resnet50 --density=0.05 --skip=n2nskip

Takes the model flags of ``train_throughput.py`` and prunes as it does (RP at ``--density``).
Prints one JSON object per group of masked layers (``sequential``, ``skip``, as
``sparsity.layer_table`` tells them apart): their nonzero weights, the multiply-adds of one
image's forward pass by those nonzeros (each nonzero times its layer's output positions), and
the elements their outputs hold per image, which every step writes and reads whatever the density. What
execution by nonzeros costs scales with the first two; BatchNorm, ReLU and the additions that
follow each layer scale with the third.
"""
import jax.numpy as jnp
import numpy as np
from common import emit
from flax import traverse_util
from train_throughput import INPUTS, make_config, parser

from n2nskip_jax import network, pruning, sparsity


def work(config) -> dict:
  """``{group: {'nonzeros', 'macs', 'output_elements'}}`` per image (module docstring)."""
  model, variables = network.init(config, 10, INPUTS[config.model])
  masks = pruning.prune(config, variables)
  image = jnp.zeros((1, *INPUTS[config.model]), jnp.float32)
  _, state = model.apply(variables, image, train=False, capture_intermediates=True,
                         mutable=['intermediates'])
  outputs = traverse_util.flatten_dict(state['intermediates'], sep='/')
  groups = {g: {'nonzeros': 0, 'macs': 0, 'output_elements': 0} for g in ('sequential', 'skip')}
  for row in sparsity.layer_table(masks):
    out = outputs[row['layer'] + '/__call__'][0]
    group = groups['skip' if row['skip'] else 'sequential']
    group['nonzeros'] += row['nonzero']
    group['macs'] += row['nonzero'] * int(np.prod(out.shape[1:-1]))  # positions: 1 if dense
    group['output_elements'] += int(out.size)
  return groups


def main():
  args = parser(__doc__.splitlines()[0]).parse_args()
  config = make_config(args)
  for group, counts in work(config).items():
    emit({'benchmark': 'nonzero_macs', 'model': config.model, 'skip': config.skip.kind,
          'density': config.pruning.density, 'group': group, **counts})


if __name__ == '__main__':
  main()
