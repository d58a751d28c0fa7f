"""One 3x3 skip conv, dense masked against by its nonzeros, over densities: where 'auto' switches.

    python benchmarks/sparse_crossover.py --densities=0.01,0.02,0.04

ResNet50-C10's skip-conv shapes (batch 32): forward, and forward plus backward (gradients with
respect to the input and the kernel), of the layers' dense path ``layers.dense_conv(x, kernel *
mask)`` (``conv_impl='auto'``: XLA's convolution, or the patches matmul on the CPU backend for
the 4x4 maps) and of ``sparse.conv`` with the mask's tables; RP masks. One JSON object per
shape and density.
"""
import argparse

import jax
import jax.numpy as jnp
import numpy as np
from common import device_info, emit, timed
from n2nskip_jax import layers, sparse

# (input channels, output channels, input size, stride): ResNet50-C10 skip convs.
SHAPES = ((256, 256, 32, 1), (256, 512, 32, 2), (1024, 1024, 8, 1), (2048, 2048, 4, 1))


def bench(shape, density: float, batch: int, iters: int) -> dict:
  cin, cout, size, stride = shape
  rng = np.random.default_rng(0)
  mask = (rng.random((3, 3, cin, cout)) < density).astype(np.float32)
  kernel = jnp.asarray(rng.normal(size=mask.shape), jnp.float32)
  x = jnp.asarray(rng.normal(size=(batch, size, size, cin)), jnp.float32)
  tables = sparse.nonzero_tables(mask)
  strides = (stride, stride)
  # Each differentiated as the train step does: the dense kernel, or the weights at the nonzeros.
  convs = {'dense': (lambda x, k: layers.dense_conv(x, k * mask, strides, 'SAME'), kernel),
           'sparse': (lambda x, w: sparse.conv(x, w, tables, mask.shape, strides),
                      sparse.nonzero_weights(kernel, tables))}
  record = {'benchmark': 'sparse_crossover', 'in': cin, 'out': cout, 'size': size,
            'stride': stride, 'batch': batch, 'density': density,
            'longest_output_row': int(tables['by_output'].shape[1]), **device_info()}
  for name, (f, k) in convs.items():
    fwd = jax.jit(f)
    grad = jax.jit(jax.grad(lambda x, k: 0.5 * jnp.sum(f(x, k) ** 2), (0, 1)))
    record[f'{name}_fwd_ms'] = 1e3 * timed(lambda: fwd(x, k), 1, iters)
    record[f'{name}_fwd_bwd_ms'] = 1e3 * timed(lambda: grad(x, k), 1, iters)
  return record


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--densities', default='0.0038,0.01,0.02,0.04',
                 help='comma-separated; 0.0038 is N2NSkip-RP ResNet50 skips at 5 %')
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--iters', type=int, default=5)
  args = p.parse_args()
  for density in map(float, args.densities.split(',')):
    for shape in SHAPES:
      emit(bench(shape, density, args.batch, args.iters))


if __name__ == '__main__':
  main()
