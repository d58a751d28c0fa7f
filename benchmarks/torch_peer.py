"""The PyTorch peer of ``train_throughput.py``: the same masked models and train step, eager.

    pip install -e '.[bench]'
    python benchmarks/torch_peer.py --model=resnet50 --batch=32 --density=0.05
    python benchmarks/torch_peer.py --model=vgg19 --vgg_head=cifar --channels_last --amp  # a GPU

Models as n2nskip_jax builds them (CIFAR-form ResNet50 v1.5, VGG19 with BatchNorm and either
head, the paper's MLP), every conv and linear kernel multiplied by a fixed binary mask in the
forward pass (``weight * mask``, RP: a global uniformly random subset at ``--density``); SGD
with momentum 0.9 and weight decay 5e-4, cross-entropy, on a fixed random batch. Prints one
JSON object per variant (``masked``, ``plain``) with the fields ``train_throughput.py`` prints.
Both run with the same host allocator settings (``common.py``: freed memory reused, unless
``N2NSKIP_MALLOC=0``; ``n2nskip_jax.execution.host_memory``).
"""
import argparse
import json

import torch
from common import timed
from torch import nn
from torch.nn import functional as F

from n2nskip_jax.execution import host_memory
from n2nskip_jax.models.vgg import VGG19_LAYERS


class Masked:
  """Adds a fixed binary ``mask`` buffer shaped like ``weight`` (never trained)."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.register_buffer('mask', torch.ones_like(self.weight))


class MaskedConv2d(Masked, nn.Conv2d):
  """``conv2d(x, weight * mask)``."""

  def forward(self, x):
    return self._conv_forward(x, self.weight * self.mask, self.bias)


class MaskedLinear(Masked, nn.Linear):
  """``linear(x, weight * mask)``."""

  def forward(self, x):
    return F.linear(x, self.weight * self.mask, self.bias)


class Bottleneck(nn.Module):
  def __init__(self, conv, cin, filters, stride):
    super().__init__()
    self.conv1, self.bn1 = conv(cin, filters, 1, bias=False), nn.BatchNorm2d(filters)
    self.conv2 = conv(filters, filters, 3, stride=stride, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(filters)
    self.conv3, self.bn3 = conv(filters, 4 * filters, 1, bias=False), nn.BatchNorm2d(4 * filters)
    self.proj = None
    if stride != 1 or cin != 4 * filters:
      self.proj = nn.Sequential(conv(cin, 4 * filters, 1, stride=stride, bias=False),
                                nn.BatchNorm2d(4 * filters))

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = F.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return F.relu(y + (x if self.proj is None else self.proj(x)))


def resnet50(conv, linear, num_classes=10, width=1.0):
  """ResNet50 v1.5, CIFAR stem (3x3, stride 1, no max-pool)."""
  w = max(1, int(64 * width))
  layers = [conv(3, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
  cin = w
  for i, blocks in enumerate((3, 4, 6, 3)):
    for b in range(blocks):
      layers.append(Bottleneck(conv, cin, w * 2**i, 2 if (i > 0 and b == 0) else 1))
      cin = 4 * w * 2**i
  return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear(cin, num_classes))


def vgg19(conv, linear, num_classes=10, width=1.0, head='cifar'):
  """VGG19 with BatchNorm; ``head``: ``'cifar'`` (one linear) or ``'paper'`` (7x7, 4096-4096)."""
  layers, cin = [], 3
  for c in VGG19_LAYERS:
    if c == 'M':
      layers.append(nn.MaxPool2d(2))
    else:
      c = max(1, int(c * width))
      layers += [conv(cin, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
      cin = c
  if head == 'cifar':
    return nn.Sequential(*layers, nn.Flatten(), linear(cin, num_classes))
  fc = max(1, int(4096 * width))
  return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(7), nn.Flatten(),
                       linear(49 * cin, fc), nn.ReLU(), linear(fc, fc), nn.ReLU(),
                       linear(fc, num_classes))


def mlp(linear, num_classes=10, hidden=(512, 256, 128, 64)):
  """The paper's MLP on flattened 32x32x3 inputs."""
  layers, fan_in = [nn.Flatten()], 3 * 32 * 32
  for h in hidden:
    layers += [linear(fan_in, h), nn.ReLU()]
    fan_in = h
  return nn.Sequential(*layers, linear(fan_in, num_classes))


def build(args, masked: bool) -> nn.Module:
  conv, linear = (MaskedConv2d, MaskedLinear) if masked else (nn.Conv2d, nn.Linear)
  if args.model == 'resnet50':
    return resnet50(conv, linear, width=args.width)
  if args.model == 'vgg19':
    return vgg19(conv, linear, width=args.width, head=args.vgg_head)
  return mlp(linear)


def random_prune(model: nn.Module, density: float, generator: torch.Generator) -> None:
  """RP: keeps a uniformly random ``density`` share of all masked kernels' entries."""
  masks = [m.mask for m in model.modules() if hasattr(m, 'mask')]
  total = sum(m.numel() for m in masks)
  keep = torch.zeros(total)
  keep[torch.randperm(total, generator=generator)[:round(density * total)]] = 1
  for m, part in zip(masks, keep.split([m.numel() for m in masks])):
    m.copy_(part.view_as(m))


def bench(args, masked: bool) -> dict:
  device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
  generator = torch.Generator().manual_seed(0)
  model = build(args, masked)
  if masked and args.density < 1:
    random_prune(model, args.density, generator)
  images = torch.randn(args.batch, 3, 32, 32, generator=generator)
  labels = torch.randint(0, 10, (args.batch,), generator=generator)
  fmt = torch.channels_last if args.channels_last else torch.contiguous_format
  model = model.to(device, memory_format=fmt).train()
  images, labels = images.to(device, memory_format=fmt), labels.to(device)
  opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
  forward = torch.compile(model) if args.compile else model

  def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
      loss = F.cross_entropy(forward(images), labels)
    loss.backward()
    opt.step()
    if device.type == 'cuda':
      torch.cuda.synchronize()

  seconds = timed(step, args.warmup, args.iters)
  return {'benchmark': 'train_throughput', 'framework': 'torch', 'torch': torch.__version__,
          'model': args.model, 'variant': 'masked' if masked else 'plain', 'skip': 'none',
          'density': args.density, 'width_multiplier': args.width,
          'channels_last': args.channels_last, 'amp_bf16': args.amp, 'compile': args.compile,
          'batch': args.batch, 'step_ms': 1e3 * seconds,
          'images_per_s': args.batch / seconds,
          'params_total': sum(p.numel() for p in model.parameters()),
          'backend': device.type, 'threads': torch.get_num_threads(),
          'reuse_freed_memory': host_memory.reuse_freed_memory(),
          'device': torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--model', default='resnet50', choices=['mlp', 'resnet50', 'vgg19'])
  p.add_argument('--batch', type=int, default=128)
  p.add_argument('--width', type=float, default=1.0, help='width multiplier')
  p.add_argument('--vgg_head', default='paper', choices=['paper', 'cifar'])
  p.add_argument('--density', type=float, default=1.0, help='< 1 prunes randomly (rp)')
  p.add_argument('--channels_last', action='store_true', help='NHWC memory format')
  p.add_argument('--amp', action='store_true', help='autocast to bfloat16 (mixed precision)')
  p.add_argument('--compile', action='store_true', help='torch.compile the model')
  p.add_argument('--warmup', type=int, default=2)
  p.add_argument('--iters', type=int, default=10)
  args = p.parse_args()
  for masked in (True, False):
    print(json.dumps(bench(args, masked)), flush=True)


if __name__ == '__main__':
  main()
