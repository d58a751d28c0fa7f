"""The accelerator kit (benchmarks/accelerator.py) at toy sizes: every part reports, records are
well-formed, the budget skips with a reason, and failures are recorded rather than raised."""
import argparse
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, read_jsonl

sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
import accelerator  # noqa: E402
import accelerator_parts  # noqa: E402

COMMON = ('part', 'status', 'kit', 'tiny', 'jax', 'jaxlib', 'flax', 'commit', 'time')


def kit(out, *flags):
  return subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'accelerator.py'),
                         f'--out={out}', '--tiny', *flags], capture_output=True, text=True,
                        cwd=ROOT, env={**os.environ, 'JAX_PLATFORMS': 'cpu'}, timeout=900)


def test_every_part_reports_at_toy_sizes(tmp_path):
  # In one process (a dozen fewer JAX start-ups); the tests below launch parts as the kit does.
  r = kit(tmp_path, '--budget_s=1e9', '--in_process')  # no part skipped, however slow
  assert r.returncode == 0, r.stdout + r.stderr
  records = read_jsonl(tmp_path / 'records.jsonl')
  assert list(dict.fromkeys(x['part'] for x in records)) == list(accelerator_parts.PARTS)
  for x in records:
    assert all(k in x for k in COMMON), x
    assert x['status'] in accelerator.STATUSES and x['kit'] == 'accelerator' and x['tiny']
    assert x['device'] == 'cpu' and len(x['commit']) == 40
  ok = {x['part']: x for x in records if x['status'] == 'ok'}
  assert ok['environment']['apis_missing'] == [] and ok['environment']['jit_ok']
  assert ok['trajectory']['passed'] and ok['trajectory']['max_rel_diff'] < 1e-5  # same machine
  assert ok['learning']['passed'] and ok['learning']['test_accuracy'] > 0.5
  steps = [x for x in records if x['part'].startswith('throughput') and x['status'] == 'ok']
  assert {x['variant'] for x in steps} == set(accelerator_parts.VARIANTS)
  assert len(steps) == 5 * len(accelerator_parts.VARIANTS)
  for x in steps:
    assert x['step_ms'] > 0 and x['compile_s'] >= 0 and x['program_temp_bytes'] >= 0
    assert abs(x['images_per_s'] * x['step_ms'] / 1e3 - x['batch']) < 1e-6 * x['batch']
    assert abs(x['tflop_per_s'] * x['step_ms'] - x['gflop_per_step']) < 1e-9 * x['gflop_per_step']
  flops = {x['variant']: x['gflop_per_step'] for x in steps if x['part'] == 'throughput_vgg19_fp32'}
  assert flops['n2nskip_dense'] > flops['rp'] > 0  # the dense-shaped skips' work is counted
  assert ok['trajectory']['repeat_max_rel_diff'] == 0  # XLA:CPU sums in one order
  assert 0 < ok['loop']['loop_over_step']
  assert ok['heat']['nodes'] > 0 and ok['heat']['eigh_s'] > 0
  summary = (tmp_path / 'summary.md').read_text()
  assert all(f'## {part}' in summary for part in accelerator_parts.PARTS)
  assert sorted(os.listdir(tmp_path)) == ['parts.log', 'records.jsonl', 'summary.md']


def test_the_budget_skips_what_no_longer_fits_with_a_reason(tmp_path):
  # On a fake clock where each part takes exactly its estimate, whatever the machine's load.
  now = [0.0]
  estimate = lambda name: 0.05 * accelerator_parts.ESTIMATES_S[name]  # --tiny's estimates

  def launch(name, args, common, records, timeout):
    assert timeout == max(args.budget_s - now[0], estimate(name)) + args.grace_s
    now[0] += estimate(name)
    records.add(name, 'ok')

  names = ['environment', 'loop', 'trajectory', 'heat']
  budget = estimate('environment') + estimate('trajectory') + 0.5  # loop's is larger
  args = argparse.Namespace(out=str(tmp_path), tiny=True, budget_s=budget, grace_s=30,
                            parts=','.join(names), dry_run=False, commit='x' * 40,
                            in_process=False)
  assert accelerator.run_all(args, clock=lambda: now[0], launch=launch) == 0
  records = read_jsonl(tmp_path / 'records.jsonl')
  assert [(x['part'], x['status']) for x in records] == [
      ('environment', 'ok'), ('loop', 'skipped'), ('trajectory', 'ok'), ('heat', 'skipped')]
  assert f'budget_s={budget:g}' in records[1]['reason']
  assert accelerator.plan(['a', 'b', 'c'], {'a': 3, 'b': 5, 'c': 1}, 5) == [
      ('a', True), ('b', False), ('c', True)]


def test_a_failing_part_and_a_part_out_of_time_are_recorded(tmp_path):
  args = argparse.Namespace(out=str(tmp_path), tiny=True)
  common = {'kit': 'accelerator', 'tiny': True, **accelerator.versions(None)}
  records = accelerator.Records(str(tmp_path), common)
  accelerator._launch('no_such_part', args, common, records, timeout=300)
  accelerator._launch('environment', args, common, records, timeout=0.01)
  got = records.read()
  assert [(x['part'], x['status']) for x in got] == [('no_such_part', 'failed'),
                                                     ('environment', 'timeout')]
  assert 'KeyError' in got[0]['error'] and 'Traceback' in got[0]['traceback']


def test_the_cpu_reference_is_shipped_for_both_sizes_and_every_supported_jax():
  with open(accelerator_parts.REFERENCE) as f:
    reference = json.load(f)
  assert sorted(reference) == ['0.10', '0.11', '0.12']  # pyproject's jax range
  for minor, by_size in reference.items():
    for sizes in (accelerator_parts.TINY, accelerator_parts.FULL):
      got = by_size[sizes['name']]
      assert len(got['losses']) == sizes['trajectory']['steps'] and got['device'] == 'cpu'
      assert got['model'] == sizes['trajectory']['model']
      assert accelerator_parts.jax_minor(got['jax']) == minor
  assert accelerator_parts.reference_losses('tiny')['jax'].startswith(accelerator_parts.jax_minor())


@pytest.mark.parametrize('flag', ['--budget_s=0', '--parts=nonsense'])
def test_bad_flags_fail_in_one_line(tmp_path, flag):
  r = kit(tmp_path, flag, '--dry_run')
  assert r.returncode == 2 or r.returncode == 1, r.stderr
  assert 'Traceback' not in r.stderr and ('budget_s' in r.stderr or 'nonsense' in r.stderr)


def test_the_gpu_table_is_built_from_the_committed_records():
  records = read_jsonl(os.path.join(ROOT, 'benchmarks', 'results', 'accelerator_h100.jsonl'))
  assert {r['device'] for r in records} == {'NVIDIA H100 80GB HBM3'}
  assert {(r['jax'], r['commit'][:7]) for r in records} == {('0.11.2', '7a4a6ac')}
  with open(os.path.join(ROOT, 'docs', 'PERFORMANCE.md')) as f:
    assert accelerator.table(records) in f.read()
