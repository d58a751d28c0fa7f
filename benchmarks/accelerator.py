"""The accelerator kit: everything a user needs to know about one GPU, in one command.

    python benchmarks/accelerator.py --out /tmp/kit --budget_s 800   # on an H100, ~13 minutes
    python benchmarks/accelerator.py --out /tmp/kit --tiny           # every part at toy sizes
    python benchmarks/accelerator.py --out /tmp/kit --dry_run        # which parts fit the budget

Parts, in order of value (``accelerator_parts.PARTS``): the environment (versions, the JAX
APIs the project calls); correctness (the first training losses against the CPU's, shipped in
``results/accelerator_reference.json``; a short N2NSkip-RP training that must learn); step
throughput of ResNet50-C10 and VGG19 (CIFAR head) at batch 128, float32 and bf16, for the
plain Flax twin, masked RP 5 % and N2NSkip-RP 5 % with skips dense-shaped and by their
nonzeros, and with 1x1 skips (each with XLA's FLOPs and program memory); the PyTorch peer (AMP bf16, channels_last); the training loop against the isolated
step; float64 ``eigh`` of the paper networks' channel graphs; then batch 512 and
``torch.compile``. Each part runs in a process of its own (unless ``--in_process``), so a
crash or an out-of-memory is recorded and the next part runs; the time budget
(``--budget_s``) runs the parts in order and skips, with a record saying so, any whose
estimate no longer fits.

Writes three files: ``records.jsonl`` (one JSON object per measurement, each with the part,
its status, the device, the jax/jaxlib/flax versions and the commit), ``parts.log`` (every
part's output) and ``summary.md`` (rewritten after every part, so it is there whatever stops
the run). Compiled programs are cached across the parts (``JAX_COMPILATION_CACHE_DIR``,
default a temporary folder): parts that build the same step compile it once.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RECORDS, SUMMARY, LOG = 'records.jsonl', 'summary.md', 'parts.log'
STATUSES = ('ok', 'failed', 'timeout', 'skipped', 'unavailable')


def versions(commit: str | None) -> dict:
  """Package versions, read without starting a JAX backend (the parts own the device)."""
  from importlib import metadata
  out = {}
  for name in ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'numpy', 'torch'):
    try:
      out[name.replace('-', '_')] = metadata.version(name)
    except metadata.PackageNotFoundError:
      out[name.replace('-', '_')] = None
  if commit is None:
    try:
      commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
      commit = 'unknown'
  return {**out, 'commit': commit}


class Records:
  """``records.jsonl`` under ``out``: every record gets the run's common fields."""

  def __init__(self, out: str, common: dict):
    self.path, self.common = os.path.join(out, RECORDS), common

  def add(self, part: str, status: str, **fields) -> None:
    record = {'part': part, 'status': status, **self.common, **fields,
              'time': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')

  def read(self) -> list[dict]:
    if not os.path.exists(self.path):
      return []
    with open(self.path) as f:
      return [json.loads(line) for line in f if line.strip()]


def run_part(name: str, args) -> None:
  """Runs one part in this process, appending its records (``--part``)."""
  import accelerator_parts as parts
  import jax
  sizes = parts.TINY if args.tiny else parts.FULL
  device = {'backend': jax.default_backend(), 'device': jax.devices()[0].device_kind}
  records = Records(args.out, {**json.loads(args.common), **device})
  try:
    for record in parts.PARTS[name](sizes):
      records.add(name, record.pop('status', 'ok'), **record)
  except Exception as e:  # recorded, and the kit goes on with the next part
    records.add(name, 'failed', error=f'{type(e).__name__}: {e}'[:2000],
                traceback=traceback.format_exc()[-4000:])
    raise SystemExit(1) from None


def plan(names, estimates: dict, budget_s: float) -> list[tuple[str, bool]]:
  """``(part, fits)`` in order: a part fits if the estimates so far, its own included, are
  within the budget (a part that does not fit is skipped; later, shorter ones may still fit)."""
  spent, out = 0.0, []
  for name in names:
    fits = spent + estimates[name] <= budget_s
    spent += estimates[name] if fits else 0
    out.append((name, fits))
  return out


def run_all(args, clock=time.monotonic, launch=None) -> int:
  """Runs the parts in order within ``args.budget_s`` as ``clock`` counts it, each by
  ``launch(name, args, common, records, timeout)`` (default: in a child process, or in this one
  with ``--in_process``); returns the exit code."""
  # Before JAX is imported (here, or in the parts' processes, which inherit it).
  os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='n2nskip-kit-'))
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
  import accelerator_parts as parts
  os.makedirs(args.out, exist_ok=True)
  names = args.parts.split(',') if args.parts else list(parts.PARTS)
  unknown = sorted(set(names) - set(parts.PARTS))
  if unknown:
    raise SystemExit(f'--parts: unknown {unknown}; choose from {list(parts.PARTS)}')
  scale = 0.05 if args.tiny else 1.0  # toy sizes on a CPU: seconds, not minutes
  estimates = {n: scale * parts.ESTIMATES_S[n] for n in names}
  if args.dry_run:
    for name, fits in plan(names, estimates, args.budget_s):
      print(f'{name:40s} ~{estimates[name]:5.0f} s  {"runs" if fits else "skipped (budget)"}')
    return 0
  common = {'kit': 'accelerator', 'tiny': args.tiny, **versions(args.commit)}
  records = Records(args.out, common)
  launch = launch or (_run_here if args.in_process else _launch)
  start = clock()
  for name in names:
    left = args.budget_s - (clock() - start)
    if estimates[name] > left:
      records.add(name, 'skipped', reason=f'estimated {estimates[name]:.0f} s, {left:.0f} s '
                  f'left of --budget_s={args.budget_s:g}')
      continue
    launch(name, args, common, records, timeout=max(left, estimates[name]) + args.grace_s)
    so_far = records.read()
    write_summary(args.out, so_far)
    print(f'[{clock() - start:6.0f} s] {name}: {so_far[-1]["status"]}', flush=True)
  so_far = records.read()
  write_summary(args.out, so_far)
  return 0 if all(r['status'] in ('ok', 'skipped', 'unavailable') for r in so_far) else 1


def _run_here(name, args, common, records, timeout) -> None:
  """Runs part ``name`` in this process (``--in_process``): its output goes to the console; a
  failure is recorded (by the part: ``records`` is unused) and the kit goes on; there is no
  timeout."""
  del records, timeout
  with open(os.path.join(args.out, LOG), 'a') as log:
    log.write(f'\n===== {name} =====\n(run in the kit\'s process: its output went to the console)\n')
  try:
    run_part(name, argparse.Namespace(**{**vars(args), 'common': json.dumps(common)}))
  except SystemExit:
    pass  # recorded by run_part


def _launch(name, args, common, records, timeout: float) -> None:
  """Runs part ``name`` in a child process with ``timeout``; records a crash or a timeout."""
  cmd = [sys.executable, os.path.abspath(__file__), f'--part={name}', f'--out={args.out}',
         f'--common={json.dumps(common)}', *(['--tiny'] if args.tiny else [])]
  before = len(records.read())
  path = os.path.join(args.out, LOG)
  with open(path, 'a') as log:
    log.write(f'\n===== {name} =====\n')
    log.flush()
    start = log.tell()
    try:
      proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                            cwd=ROOT, env={**os.environ, 'PYTHONUNBUFFERED': '1'})
    except subprocess.TimeoutExpired:
      records.add(name, 'timeout', reason=f'still running after {timeout:.0f} s; its records '
                  'so far are kept')
      return
  if proc.returncode != 0 and not any(r['part'] == name and r['status'] == 'failed'
                                      for r in records.read()[before:]):
    with open(path) as f:
      f.seek(start)
      tail = f.read()[-3000:]
    records.add(name, 'failed', error=f'exit code {proc.returncode} (a crash: see {LOG})',
                log_tail=tail)


def write_summary(out: str, records: list[dict]) -> None:
  """``summary.md``: the device and versions, then each part's records as a table."""
  if not records:
    return
  first = next((r for r in records if 'device' in r), records[0])
  lines = ['# Accelerator kit', '',
           f'device: {first.get("device", "?")} ({first.get("backend", "?")}), jax '
           f'{first.get("jax")}, jaxlib {first.get("jaxlib")}, flax {first.get("flax")}, '
           f'torch {first.get("torch")}, commit {first.get("commit", "?")[:10]}, '
           f'{first["time"][:10]}{" (tiny)" if first.get("tiny") else ""}', '']
  skip = {'kit', 'tiny', 'jax', 'jaxlib', 'flax', 'optax', 'orbax_checkpoint', 'numpy', 'torch',
          'commit', 'device', 'backend', 'time', 'part', 'traceback', 'log_tail', 'apis_checked',
          'losses', 'cpu_losses'}
  for part in dict.fromkeys(r['part'] for r in records):
    rows = [r for r in records if r['part'] == part]
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in skip))
    lines += [f'## {part}', '', '| ' + ' | '.join(keys) + ' |', '|' + '---|' * len(keys)]
    lines += ['| ' + ' | '.join(_cell(r.get(k)) for k in keys) + ' |' for r in rows]
    lines.append('')
  with open(os.path.join(out, SUMMARY), 'w') as f:
    f.write('\n'.join(lines))


def _cell(value) -> str:
  if isinstance(value, float):
    return f'{value:.4g}'
  if value is None:
    return ''
  return str(value).replace('|', '/').replace('\n', ' ')[:120]


NAMES = {'resnet50': 'ResNet50-C10', 'vgg19': 'VGG19 (CIFAR head)', 'plain': 'plain twin',
         'rp': 'masked RP 5 %', 'n2nskip_dense': 'N2NSkip-RP, skips dense-shaped',
         'n2nskip_sparse': 'N2NSkip-RP, skips by nonzeros',
         'n2nskip_dense_k1': 'N2NSkip-RP, 1x1 skips dense-shaped'}


def table(records: list[dict]) -> str:
  """The GPU table of docs/PERFORMANCE.md from the kit's records: per model and precision,
  each variant's images/s (step ms; compile s; the process's peak GiB so far), N2NSkip-RP's
  step over RP's (the faster skip path), and the PyTorch peer's AMP images/s (plain, masked)."""
  steps = [r for r in records if r['part'].startswith('throughput') and r['status'] == 'ok'
           and r['batch'] == 128]
  variants = list(dict.fromkeys(r['variant'] for r in steps))
  torch = {(r['model'], r['variant']): r['images_per_s'] for r in records
           if r['part'] == 'torch_amp' and r['status'] == 'ok'}
  head = ['model, precision', *(NAMES.get(v, v) for v in variants), 'N2NSkip-RP / RP step',
          'PyTorch AMP bf16: plain, masked RP']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for part in dict.fromkeys(r['part'] for r in steps):
    rows = {r['variant']: r for r in steps if r['part'] == part}
    first = next(iter(rows.values()))
    cells = [f'{r["images_per_s"]:,.0f}/s ({r["step_ms"]:.1f} ms; {r["compile_s"]:.0f} s; '
             f'{r["peak_bytes_in_use"] / 2**30:.1f} GiB)' if r else ''
             for r in map(rows.get, variants)]
    skips = [rows[v]['step_ms'] for v in ('n2nskip_dense', 'n2nskip_sparse') if v in rows]
    ratio = f'{min(skips) / rows["rp"]["step_ms"]:.2f}x' if skips and 'rp' in rows else ''
    peer = [torch.get((first['model'], v)) for v in ('plain', 'masked')]
    peer = ', '.join(f'{x:,.0f}/s' for x in peer if x) if first['bf16'] else ''
    name = f'{NAMES.get(first["model"], first["model"])}, {"bf16" if first["bf16"] else "float32"}'
    lines.append('| ' + ' | '.join([name, *cells, ratio, peer]) + ' |')
  return '\n'.join(lines)


def record_reference(args) -> None:
  """Writes the CPU's first losses for both sizes into ``results/accelerator_reference.json``,
  under the installed jax's minor release (the others' entries are kept)."""
  import accelerator_parts as parts
  import jax
  with open(parts.REFERENCE) as f:
    by_minor = json.load(f)
  by_minor[parts.jax_minor()] = {
      sizes['name']: {'losses': parts.trajectory_losses(sizes['trajectory']),
                      'device': jax.devices()[0].device_kind, **sizes['trajectory'],
                      **versions(args.commit)} for sizes in (parts.TINY, parts.FULL)}
  with open(parts.REFERENCE, 'w') as f:
    json.dump(dict(sorted(by_minor.items())), f, indent=1)


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--out', required=True, help='folder for records.jsonl, summary.md and logs')
  p.add_argument('--budget_s', type=float, default=420, help='seconds for all parts together')
  p.add_argument('--grace_s', type=float, default=30,
                 help='seconds a part may run past the budget before it is stopped')
  p.add_argument('--tiny', action='store_true', help='every part at toy sizes (a CPU, < 1 min)')
  p.add_argument('--in_process', action='store_true',
                 help='run every part in this process (quicker at toy sizes, and a debugger '
                 'reaches the parts); no timeout, and a crash stops the kit')
  p.add_argument('--parts', default='', help='comma-separated part names (default: all)')
  p.add_argument('--dry_run', action='store_true', help='print which parts fit; run nothing')
  p.add_argument('--commit', default=None, help='the commit to record (default: git rev-parse)')
  p.add_argument('--table', default='', metavar='RECORDS',
                 help="print the GPU table of docs/PERFORMANCE.md from a records.jsonl, and exit")
  p.add_argument('--record_reference', action='store_true',
                 help="write the CPU's losses to results/accelerator_reference.json")
  p.add_argument('--part', default='', help=argparse.SUPPRESS)   # the child process's part
  p.add_argument('--common', default='{}', help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.budget_s <= 0 or args.grace_s < 0:
    p.error(f'--budget_s={args.budget_s:g} must be > 0 and --grace_s={args.grace_s:g} >= 0')
  if args.table:
    with open(args.table) as f:
      print(table([json.loads(line) for line in f if line.strip()]))
    return 0
  sys.path.insert(0, HERE)
  if args.part:
    run_part(args.part, args)
    return 0
  if args.record_reference:
    record_reference(args)
    return 0
  return run_all(args)


if __name__ == '__main__':
  sys.exit(main())
