"""Images/s and step time of the pmapped train step: masked model vs its plain-Flax twin.

    python benchmarks/train_throughput.py --model=resnet50 --batch=128
    python benchmarks/train_throughput.py --model=mlp --density=0.05 --skip=n2nskip
    python benchmarks/train_throughput.py --model=vgg19 --vgg_head=cifar --batch=32 --conv_impl=xla
    python benchmarks/train_throughput.py --model=resnet50 --batch=32 --density=0.05 \
        --pruning_execution=dense

Prints one JSON object per variant. ``masked`` runs every masked layer as the training loop
does, by its execution plan (``n2nskip_jax.execution``): multiplying its kernel by its mask each
step, or by its nonzeros (``--pruning_execution``, ``--execution``: ``execution.sequential``,
``execution.skip``; ``auto`` on the CPU backend runs kernels of at most 8 % nonzeros by their
nonzeros; ``--conv_impl``: ``execution.conv``); ``plain`` is the same architecture built from
``flax.linen.Dense``/``Conv`` with the core step.
"""
import argparse

import jax
import jax.numpy as jnp
import numpy as np
from common import device_info, emit, timed

from n2nskip_jax.configs import default
from n2nskip_jax import execution, network, pruning, sparsity, steps
from n2nskip_jax.models import create_model
from n2nskip_jax.steps import AXIS, TrainState, create_optimizer, replicate

INPUTS = {'mlp': (32, 32, 3), 'vgg19': (32, 32, 3), 'resnet50': (32, 32, 3)}


def make_config(args):
  c = default.get_config()
  c.model, c.width_multiplier, c.half_precision = args.model, args.width, args.bf16
  c.vgg_head = args.vgg_head
  if args.density < 1:
    c.pruning.method, c.pruning.density = 'rp', args.density
  c.skip.kind = args.skip
  c.execution.conv = args.conv_impl
  c.execution.skip = args.execution
  c.execution.sequential = args.pruning_execution
  return c


def make_step(config, plain: bool, batch: int):
  """A closure running one pmapped train step on a fixed random batch, and the variables.
  ``step.lower()`` lowers that step for the current state (for XLA's cost and memory
  analyses)."""
  shape = INPUTS[config.model]
  _, variables = network.init(config, 10, shape)
  masks = pruning.prune(config, variables)
  variables = pruning.apply_masks(variables, masks)
  if plain:
    model, masks = create_model(config, 10, bn_axis_name=AXIS, plain=True), {}
    p_train_step = steps.p_train_step
  else:
    plan = execution.plan(config, masks)
    model, (p_train_step, _) = plan.model(config, 10, bn_axis_name=AXIS), plan.steps()
  state = TrainState.create(apply_fn=model.apply, params=variables['params'],
                            tx=create_optimizer(config, 100),
                            batch_stats=variables.get('batch_stats', {}), masks=masks)
  n = jax.local_device_count()
  rng = np.random.default_rng(0)
  data = {'image': jnp.asarray(rng.normal(size=(n, batch // n, *shape)), jnp.float32),
          'label': jnp.asarray(rng.integers(0, 10, (n, batch // n)), jnp.int32)}
  holder = {'state': replicate(state)}

  def step():
    holder['state'], metrics = p_train_step(holder['state'], data)
    return metrics

  # The pmapped step lowers to the very program it ran, so a persistent compilation cache
  # serves its compile again; a plan's step by nonzeros is a closure over its tables: jit it.
  lowerable = p_train_step if hasattr(p_train_step, 'lower') else jax.jit(p_train_step)
  step.lower = lambda: lowerable.lower(holder['state'], data)
  return step, variables


def bench(config, plain: bool, batch: int, warmup: int, iters: int) -> dict:
  step, variables = make_step(config, plain, batch)
  seconds = timed(step, warmup, iters)
  return {'benchmark': 'train_throughput', 'framework': 'jax', 'model': config.model, 'variant':
          'plain' if plain else 'masked', 'skip': config.skip.kind, 'density': config.pruning.density,
          'width_multiplier': config.width_multiplier, 'bf16': config.half_precision,
          'conv_impl': config.execution.conv, 'execution': config.execution.skip,
          'pruning_execution': config.execution.sequential,
          'batch': batch, 'step_ms': 1e3 * seconds, 'images_per_s': batch / seconds,
          'params_total': sparsity.count(variables['params']), **device_info()}


def parser(description: str) -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=description)
  p.add_argument('--model', default='resnet50', choices=sorted(INPUTS))
  p.add_argument('--batch', type=int, default=128)
  p.add_argument('--width', type=float, default=1.0, help='width multiplier')
  p.add_argument('--vgg_head', default='paper', choices=['paper', 'cifar'])
  p.add_argument('--density', type=float, default=1.0, help='< 1 prunes randomly (rp)')
  p.add_argument('--skip', default='none', choices=['none', 'n2nskip', 'resskip'])
  p.add_argument('--bf16', action='store_true')
  p.add_argument('--conv_impl', default='auto', choices=['auto', 'xla', 'patches'])
  p.add_argument('--execution', default='auto', choices=['auto', 'dense', 'sparse'],
                 help='skip layers: dense-shaped, or by their nonzeros')
  p.add_argument('--pruning_execution', default='auto', choices=['auto', 'dense', 'sparse'],
                 help='the other masked layers: dense-shaped, or by their nonzeros')
  p.add_argument('--variants', default='masked,plain',
                 help="comma-separated, of 'masked' and 'plain' (plain only without skips)")
  p.add_argument('--warmup', type=int, default=2)
  p.add_argument('--iters', type=int, default=10)
  return p


def main():
  args = parser(__doc__.splitlines()[0]).parse_args()
  config = make_config(args)
  variants = args.variants.split(',')
  if not set(variants) <= {'masked', 'plain'}:
    raise SystemExit(f"--variants={args.variants!r}: expected 'masked', 'plain' or both")
  for variant in variants:
    if variant == 'masked' or args.skip == 'none':
      emit(bench(config, variant == 'plain', args.batch, args.warmup, args.iters))


if __name__ == '__main__':
  main()
