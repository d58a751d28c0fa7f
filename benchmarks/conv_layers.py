"""One dense 3x3 convolution, forward and forward + backward: JAX as the tools run it, or PyTorch.

    python benchmarks/conv_layers.py                        # XLA's own convolutions (the tools')
    N2NSKIP_XLA_FLAGS=0 python benchmarks/conv_layers.py    # XLA:CPU's default: YNNPACK's
    python benchmarks/conv_layers.py --framework=torch      # PyTorch ('.[bench]' extra)

The 3x3 convs of VGG19 (CIFAR) and ResNet50-C10 on maps of more than 16 positions, where
``execution.layers.dense_conv`` runs XLA's convolution (``n2nskip_jax/execution/xla_flags.py`` says which code runs
it on CPU): batch 32, NHWC/HWIO in JAX, NCHW/OIHW in PyTorch. Forward + backward is the
gradient with respect to the input and the kernel. One JSON object per shape, median
milliseconds of ``--iters`` calls.
"""
import argparse

import jax
import jax.numpy as jnp
import numpy as np
from common import device_info, emit, timed
from n2nskip_jax.execution import layers

# (input size, input channels, output channels, stride)
SHAPES = ((32, 3, 64, 1), (32, 64, 64, 1), (16, 64, 128, 1), (16, 128, 128, 1), (8, 128, 256, 1),
          (8, 256, 256, 1), (32, 128, 128, 2), (16, 256, 256, 2))


def jax_timings(x, w, stride: int, iters: int) -> dict:
  def conv(x, w):
    return layers.dense_conv(x, w, (stride, stride), [(1, 1), (1, 1)], 'xla')

  x, w = jnp.asarray(x), jnp.asarray(w)
  fwd = jax.jit(conv)
  grad = jax.jit(jax.grad(lambda x, w: 0.5 * jnp.sum(conv(x, w) ** 2), (0, 1)))
  return {'fwd_ms': 1e3 * timed(lambda: fwd(x, w), 1, iters),
          'fwd_bwd_ms': 1e3 * timed(lambda: grad(x, w), 1, iters), **device_info()}


def torch_timings(x, w, stride: int, iters: int) -> dict:
  import torch  # its default threads, as benchmarks/torch_peer.py
  x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().requires_grad_(True)
  w = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous().requires_grad_(True)

  def conv():
    return torch.nn.functional.conv2d(x, w, stride=stride, padding=1)

  def fwd():
    with torch.no_grad():
      conv()

  def grad():
    torch.autograd.grad(0.5 * conv().square().sum(), (x, w))

  return {'fwd_ms': 1e3 * timed(fwd, 1, iters), 'fwd_bwd_ms': 1e3 * timed(grad, 1, iters),
          'torch': torch.__version__, 'threads': torch.get_num_threads()}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--framework', choices=('jax', 'torch'), default='jax')
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--iters', type=int, default=9)
  args = p.parse_args()
  rng = np.random.default_rng(0)
  for size, cin, cout, stride in SHAPES:
    x = rng.normal(size=(args.batch, size, size, cin)).astype(np.float32)
    w = (rng.normal(size=(3, 3, cin, cout)) / np.sqrt(9 * cin)).astype(np.float32)
    timings = (jax_timings if args.framework == 'jax' else torch_timings)(x, w, stride, args.iters)
    emit({'benchmark': 'conv_layers', 'framework': args.framework, 'size': size, 'in': cin,
          'out': cout, 'stride': stride, 'batch': args.batch, **timings})


if __name__ == '__main__':
  main()
