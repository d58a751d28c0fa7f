"""Preemption signals are recorded, not fatal, inside stop_requests; several processes agree."""
import os
import signal

import jax
import numpy as np
import pytest
from jax.experimental import multihost_utils

from n2nskip_jax import preemption


def test_signals_are_recorded_inside_the_block_and_handlers_restored_after():
  before = {s: signal.getsignal(s) for s in preemption.SIGNALS}
  with preemption.stop_requests() as stop:
    assert stop.signum is None and stop.signal_at(7, every=5) is None
    os.kill(os.getpid(), signal.SIGUSR1)  # would end the process outside the block
    with preemption.stop_requests() as inner:  # a study's run shares the study's requests
      assert inner is stop
      os.kill(os.getpid(), signal.SIGTERM)
    assert stop.signum == signal.SIGUSR1  # the first one received
    assert stop.signal_at(7, every=5) == signal.SIGUSR1  # one process: after any step
  assert {s: signal.getsignal(s) for s in preemption.SIGNALS} == before


def test_several_processes_stop_together_at_a_multiple_of_every(monkeypatch):
  gathered = []

  def allgather(x):  # this process's flag, and a peer that received SIGTERM
    gathered.append(int(x))
    return np.array([int(x), signal.SIGTERM], np.int32)
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  monkeypatch.setattr(multihost_utils, 'process_allgather', allgather)
  stop = preemption.StopRequests()
  assert stop.signal_at(7, every=5) is None and gathered == []  # no collective between
  assert stop.signal_at(10, every=5) == signal.SIGTERM and gathered == [0]


def test_ctrl_c_inside_interrupt_after_waits_for_the_end_of_the_block():
  before = signal.getsignal(signal.SIGINT)
  finished = []
  try:
    with preemption.interrupt_after():
      os.kill(os.getpid(), signal.SIGINT)  # e.g. while orbax starts its writer threads
      finished.append(True)
  except KeyboardInterrupt:
    assert finished == [True]  # the block ran to its end first
  else:
    raise AssertionError('the deferred Ctrl-C was lost')
  assert signal.getsignal(signal.SIGINT) is before
  with preemption.interrupt_after():  # no Ctrl-C: nothing raised
    pass


EARLY = """
import hashlib, os, signal, sys, time
from n2nskip_jax import preemption
preemption.exit_before_steps()
case = sys.argv[1]
from n2nskip_jax import runlock
lock = runlock.RunLock(sys.argv[2])
lock.acquire()  # released on an early exit too
with preemption.stop_requests() if case != 'outside' else open(os.devnull) as stop:
  if case == 'stepped':
    stop.step_done()  # a training step has run: the signal waits for a step's end
  print('ready', flush=True)
  # A long call that holds the main thread in C (as XLA's compile or initialization does), so
  # Python's own handlers cannot run until it returns: minutes of key stretching.
  hashlib.pbkdf2_hmac('sha256', b'x', b'y', 10 ** 9 if case != 'stepped' else 1)
  time.sleep(0.5)
  print('returned', getattr(stop, 'signum', None), flush=True)
"""


@pytest.mark.parametrize('case', ['outside', 'before_a_step', 'stepped'])
def test_a_signal_before_the_first_step_ends_the_process_at_once_with_its_line(case, tmp_path):
  import subprocess
  import sys
  proc = subprocess.Popen([sys.executable, '-c', EARLY, case, str(tmp_path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  assert proc.stdout.readline() == 'ready\n'
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)  # the long call alone would take minutes
  if case == 'stepped':  # recorded for the loop, which stops after a checkpoint
    assert proc.returncode == 0 and out == f'returned {int(signal.SIGTERM)}\n', err
  else:
    assert proc.returncode == 128 + signal.SIGTERM and out == '', err
    assert err == ('error: stopped by SIGTERM before training began; nothing to save; rerun '
                   'the same command to start (or resume) the run.\n')
    assert not (tmp_path / 'lock').exists()  # os._exit skips Python's clean-up: released first


BOTH = """
import os, threading, time
from n2nskip_jax import preemption
end = os._exit
os._exit = lambda code: (time.sleep(0.5), end(code))  # the other caller has time to write
both = threading.Barrier(2)
def watcher():
  both.wait()
  preemption._exit_now(15)
threading.Thread(target=watcher).start()
both.wait()
preemption._exit_now(15)
"""


def test_a_signal_seen_by_the_handler_and_the_watcher_ends_the_process_once():
  # One signal reaches _exit_now twice when the main thread runs Python: from its handler and
  # from the watcher thread that reads the wakeup pipe. The message must be written once.
  import subprocess
  import sys
  r = subprocess.run([sys.executable, '-c', BOTH], capture_output=True, text=True, timeout=120)
  assert r.returncode == 128 + 15 and r.stderr.count('stopped by SIGTERM') == 1, r.stderr
