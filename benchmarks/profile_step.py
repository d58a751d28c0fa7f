"""Where the train step's time goes: a ``jax.profiler`` trace of it, summed by XLA operation.

    python benchmarks/profile_step.py --model=resnet50 --batch=32 --density=0.05
    python benchmarks/profile_step.py --model=resnet50 --batch=32 --density=0.05 \
        --skip=n2nskip --execution=sparse --top=20

Takes the model flags of ``train_throughput.py``. Traces ``--iters`` steps of the masked
model after ``--warmup`` steps and prints one JSON object per kind of XLA operation
taking at least 0.1 ms per step (a fusion's kind is its name without the number:
``ynn_fusion`` for the convolutions and matmuls, ``copy_bitcast_fusion`` for layout copies,
``while`` for loops...), the most expensive first, with milliseconds per step and how many
distinct operations of that kind ran; then the ``--top`` single operations. What an operation computes: run with
``XLA_FLAGS=--xla_dump_to=DIR`` and find its name in ``DIR/*after_optimizations.txt``.

Runs with glibc's default malloc (``N2NSKIP_MALLOC=0`` unless set; ``n2nskip_jax.execution.host_memory``):
with freed memory reused, the traced operations add up to about twice what they do with the
default (ResNet50 RP: 2561 against 1374 ms, for a step of about 1.0 s untraced), so a profile
keeps the default's smaller distortion: a page fault per 4 KiB that an operation writes first.
And with YNNPACK's convolutions, XLA:CPU's default (``N2NSKIP_XLA_FLAGS=0`` unless set;
``n2nskip_jax.xla_flags``): XLA's own convolutions, which the tools run, finish outside their
trace events (VGG19's dense step: 4 traced ms for its convolutions, in a step of about 235 ms),
so a profile would not see them.
"""
import collections
import glob
import gzip
import json
import os
import re
import tempfile

os.environ.setdefault('N2NSKIP_MALLOC', '0')  # before common.py sets up host memory
os.environ.setdefault('N2NSKIP_XLA_FLAGS', '0')  # and XLA's flags

import jax  # noqa: E402
from common import emit  # noqa: E402
from train_throughput import make_config, make_step, parser  # noqa: E402

# Trace events that are not one XLA operation: the executor, Python frames, waits, runtime steps
# (their names have spaces, '::' or '$'; XLA's operation names are like 'ynn_fusion.12').
OPERATION = re.compile(r'^[A-Za-z][\w\-]*(\.\d+)?$')
NOT_OPERATIONS = re.compile(r'^(PjitFunction|trace_to_jaxpr|ParseArguments|AllocateOutputBuffers)')


def operation_times(trace_dir: str, steps: int) -> collections.Counter:
  """Milliseconds per step of every XLA operation in the perfetto trace under ``trace_dir``."""
  path = glob.glob(f'{trace_dir}/**/*.trace.json.gz', recursive=True)[0]
  with gzip.open(path) as f:
    events = json.load(f)
  events = events['traceEvents'] if isinstance(events, dict) else events
  times = collections.Counter()
  for e in events:
    name = e.get('name', '')
    if e.get('ph') == 'X' and 'dur' in e and OPERATION.match(name) and not NOT_OPERATIONS.match(
        name):
      times[name] += e['dur'] / 1e3 / steps
  return times


def main():
  p = parser(__doc__.splitlines()[0])
  p.add_argument('--top', type=int, default=10, help='single operations to list')
  args = p.parse_args()
  step, _ = make_step(make_config(args), False, args.batch)
  for _ in range(args.warmup):
    jax.block_until_ready(step())
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(args.iters):
        jax.block_until_ready(step())
    times = operation_times(trace_dir, args.iters)
  kinds, counts = collections.Counter(), collections.Counter()
  for name, ms in times.items():
    kind = re.sub(r'\.\d+$', '', name)
    kinds[kind] += ms
    counts[kind] += 1
  base = {'benchmark': 'profile_step', 'model': args.model, 'skip': args.skip,
          'execution': args.execution, 'batch': args.batch}
  emit({**base, 'total_ms': round(sum(times.values()), 1)})
  for kind, ms in kinds.most_common():
    if ms >= 0.1:
      emit({**base, 'kind': kind, 'ms': round(ms, 1), 'operations': counts[kind]})
  for name, ms in times.most_common(args.top):
    emit({**base, 'operation': name, 'ms': round(ms, 1)})


if __name__ == '__main__':
  main()
