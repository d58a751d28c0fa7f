"""One masked conv, dense masked against by its nonzeros, over densities: where 'auto' switches.

    python benchmarks/sparse_crossover.py --densities=0.01,0.02,0.04
    python benchmarks/sparse_crossover.py --layers=main --densities=0.05,0.1,0.2

``--layers=skip``: ResNet50-C10's 3x3 skip-conv shapes; ``main``: main-path shapes of ResNet50-C10
(1x1 and 3x3 convs of a bottleneck) and VGG19 (a 3x3 conv at 4x4, the classifier's dense
layer as the 1x1 conv of a 1x1 map). Batch 32: forward, and forward plus backward (gradients
with respect to the input and the kernel), of the layers' dense path ``layers.dense_conv(x,
kernel * mask)`` (``execution.conv='auto'``: XLA's convolution, or the patches matmul on the CPU
backend for 1x1 kernels and maps of at most 16 positions) and of ``by_nonzeros.conv`` with the
mask's tables; RP masks. One JSON object per shape and density.
"""
import argparse

import jax
import jax.numpy as jnp
import numpy as np
from common import device_info, emit, timed
from n2nskip_jax.execution import by_nonzeros, layers, native

# (kernel size, input channels, output channels, input size, stride)
LAYERS = {
    'skip': ((3, 256, 256, 32, 1), (3, 256, 512, 32, 2), (3, 1024, 1024, 8, 1),
             (3, 2048, 2048, 4, 1)),
    'main': ((1, 256, 64, 32, 1), (3, 64, 64, 32, 1), (1, 64, 256, 32, 1), (1, 1024, 256, 8, 1),
             (3, 256, 256, 8, 1), (1, 256, 1024, 8, 1), (3, 512, 512, 4, 1), (1, 512, 512, 1, 1)),
}


def bench(shape, density: float, batch: int, iters: int) -> dict:
  size_k, cin, cout, size, stride = shape
  rng = np.random.default_rng(0)
  mask = (rng.random((size_k, size_k, cin, cout)) < density).astype(np.float32)
  kernel = jnp.asarray(rng.normal(size=mask.shape), jnp.float32)
  x = jnp.asarray(rng.normal(size=(batch, size, size, cin)), jnp.float32)
  tables = by_nonzeros.nonzero_tables(mask)
  strides = (stride, stride)
  # Each differentiated as the train step does: the dense kernel, or the weights at the nonzeros.
  convs = {'dense': (lambda x, k: layers.dense_conv(x, k * mask, strides, 'SAME', 'small_maps'), kernel),
           'sparse': (lambda x, w: by_nonzeros.conv(x, w, tables, mask.shape, strides,
                                                native=native.available()),
                      by_nonzeros.weights_by_output(kernel, tables))}
  record = {'benchmark': 'sparse_crossover', 'kernel_size': size_k, 'in': cin, 'out': cout,
            'size': size, 'stride': stride, 'batch': batch, 'density': density,
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
  p.add_argument('--layers', default='skip', choices=sorted(LAYERS))
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--iters', type=int, default=5)
  args = p.parse_args()
  for density in map(float, args.densities.split(',')):
    for shape in LAYERS[args.layers]:
      emit(bench(shape, density, args.batch, args.iters))


if __name__ == '__main__':
  main()
