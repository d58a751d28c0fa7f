"""Multi-process training for real: two processes on 127.0.0.1, one CPU device each."""
import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
from conftest import FAST_COMPILE, ROOT, read_jsonl, run_main

from n2nskip_jax import rundir

FLAGS = ['--config=configs/quickstart.py', '--config.dataset=digits', '--config.num_epochs=3',
         '--config.log_every_steps=2', '--config.checkpoint_every_steps=4']


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def launch(workdir, port, process_id, *extra):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '3',
         'PYTHONUNBUFFERED': '1',
         'XLA_FLAGS': f'{FAST_COMPILE} --xla_force_host_platform_device_count=1'}
  cmd = [sys.executable, os.path.join(ROOT, 'main.py'), *FLAGS, f'--workdir={workdir}',
         '--config.multihost=True', f'--config.coordinator_address=127.0.0.1:{port}',
         '--config.num_processes=2', f'--config.process_id={process_id}',
         '--config.heartbeat_timeout=10', *extra]
  return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def run_both(workdir, *extra):
  port = free_port()
  procs = [launch(workdir, port, i, *extra) for i in range(2)]
  outs = [p.communicate(timeout=300)[0] for p in procs]
  return [p.returncode for p in procs], outs


def test_two_processes_train_like_one_process_with_two_devices(tmp_path):
  single = run_main(*FLAGS, f'--workdir={tmp_path / "single"}', devices=2, wait=False)  # beside
  codes, outs = run_both(tmp_path / 'multi')
  assert codes == [0, 0], outs[0][-3000:] + outs[1][-3000:]
  assert all('processes 2' in o or 'Done: test accuracy' in o for o in outs)
  summary = json.loads((tmp_path / 'multi' / 'summary.json').read_text())
  assert summary['processes'] == 2 and summary['devices'] == 2
  output = single.communicate(timeout=600)[0]
  assert single.returncode == 0, output[-3000:]
  multi_loss = [m['train_loss'] for m in read_jsonl(tmp_path / 'multi' / 'metrics.jsonl') if 'train_loss' in m]
  single_loss = [m['train_loss'] for m in read_jsonl(tmp_path / 'single' / 'metrics.jsonl') if 'train_loss' in m]
  assert len(multi_loss) == len(single_loss) > 10
  np.testing.assert_allclose(multi_loss, single_loss, rtol=2e-4)
  _, multi = rundir.read_latest(str(tmp_path / 'multi'))
  _, one = rundir.read_latest(str(tmp_path / 'single'))
  for a, b in zip(jax.tree.leaves(multi['masks']), jax.tree.leaves(one['masks'])):
    np.testing.assert_array_equal(a, b)



def test_a_killed_process_fails_its_peer_in_bounded_time_and_both_resume(tmp_path):
  port = free_port()
  procs = [launch(tmp_path, port, i, '--config.num_epochs=30') for i in range(2)]
  deadline = time.time() + 120
  while time.time() < deadline and not (rundir.latest_step(str(tmp_path)) or 0) >= 8:
    time.sleep(0.1)
  procs[1].kill()
  procs[1].communicate()  # reaped, its pipe closed
  start = time.time()
  out = procs[0].communicate(timeout=120)[0]
  assert procs[0].returncode != 0 and time.time() - start < 60, out[-3000:]
  assert 'heartbeat' in out  # JAX's coordination service names the peer that stopped
  codes, outs = run_both(tmp_path, '--config.num_epochs=2')
  for i, o in enumerate(outs):
    (tmp_path / f'rerun{i}.log').write_text(o)
  assert codes == [0, 0], outs[0][-3000:] + outs[1][-3000:]
  assert all('Resuming from checkpoint at step' in o for o in outs), outs[0][-3000:]
