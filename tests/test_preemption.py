"""Preemption signals are recorded, not fatal, inside stop_requests; several processes agree."""
import os
import signal

import jax
import numpy as np
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
