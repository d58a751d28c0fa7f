"""n2nskip-jax against its PyTorch peer, side by side: alternating runs, one JSON line each,
then the ratio of the medians.

    pip install -e '.[bench]'
    python benchmarks/compare.py --model=vgg19 --vgg_head=cifar --batch=32 --density=0.05
    python benchmarks/compare.py --model=resnet50 --batch=32 --density=0.05 --rounds=2 --conv_impl=xla

Each round runs ``train_throughput.py`` then ``torch_peer.py`` as child processes with the
same model flags (flags this script does not know go to ``train_throughput.py``). The last
line is ``{"benchmark": "compare", ...}`` with, per variant (``masked``, ``plain``), the
median step time of each framework and ``jax_over_torch``, JAX's images/s over PyTorch's
(above 1: JAX is faster).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = ('model', 'batch', 'width', 'vgg_head', 'density', 'warmup', 'iters')


def run(script: str, flags: list[str]) -> list[dict]:
  """The JSON records a benchmark script prints (its other output passes through)."""
  out = subprocess.run([sys.executable, os.path.join(HERE, script), *flags], check=True,
                       stdout=subprocess.PIPE, text=True).stdout
  return [json.loads(line) for line in out.splitlines() if line.startswith('{')]


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--model', default='resnet50', choices=['mlp', 'resnet50', 'vgg19'])
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--width', type=float, default=1.0)
  p.add_argument('--vgg_head', default='cifar', choices=['paper', 'cifar'])
  p.add_argument('--density', type=float, default=0.05)
  p.add_argument('--warmup', type=int, default=2)
  p.add_argument('--iters', type=int, default=5)
  p.add_argument('--rounds', type=int, default=2, help='alternating runs of each framework')
  args, jax_only = p.parse_known_args()
  flags = [f'--{k}={getattr(args, k)}' for k in SHARED]
  times = {}
  for _ in range(args.rounds):
    for framework, script, extra in (('jax', 'train_throughput.py', jax_only),
                                     ('torch', 'torch_peer.py', [])):
      for record in run(script, flags + extra):
        record.setdefault('framework', framework)
        print(json.dumps(record), flush=True)
        times.setdefault(record['variant'], {}).setdefault(framework, []).append(record['step_ms'])
  result = {'benchmark': 'compare', **{k: getattr(args, k) for k in SHARED},
            'rounds': args.rounds, 'jax_flags': jax_only}
  for variant, by_framework in times.items():
    jax_ms, torch_ms = (statistics.median(by_framework[f]) for f in ('jax', 'torch'))
    result[variant] = {'jax_step_ms': jax_ms, 'torch_step_ms': torch_ms,
                       'jax_over_torch': torch_ms / jax_ms}
  print(json.dumps(result), flush=True)


if __name__ == '__main__':
  main()
