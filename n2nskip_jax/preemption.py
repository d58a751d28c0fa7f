"""Preemption: SIGTERM, SIGUSR1 and SIGHUP stop training at the end of a step, after a checkpoint.

A cluster's scheduler ends a job with SIGTERM and, a grace period later, SIGKILL (Kubernetes,
SLURM); ``sbatch --signal=USR1@120`` adds SIGUSR1 two minutes before the time limit. Within
:func:`stop_requests` these signals are recorded instead of ending the process, and the
training loop asks :meth:`StopRequests.signal_at` after every step. SIGINT (Ctrl-C) keeps its own
meaning: stop now, resume from the last checkpoint.

Before the first step, there is nothing to checkpoint: from the first instruction of the
command-line tools (:func:`exit_before_steps`), the same signals end the process at once, while
it loads data, initializes, prunes or compiles, even inside a long call into XLA, with one line
(``stopped by SIGTERM before training began; ...``) and exit code 128 + the signal's number.

    with preemption.stop_requests() as stop:
      for ...:                          # training steps
        if signum := stop.signal_at(step, every=config.log_every_steps):
          ...                           # checkpoint at this step, then raise errors.Preempted
"""
import contextlib
import os
import signal
import sys
import threading

import numpy as np

SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP)


class StopRequests:
  """The first of :data:`SIGNALS` this process received, if any (``signum``)."""

  def __init__(self):
    self.signum: int | None = None
    self.stepped = False  # a training step has run: a signal now waits for a step's checkpoint

  def step_done(self) -> None:
    """Marks that a training step has been run (compiled and dispatched): from now on a signal
    waits for the loop to checkpoint a step instead of ending the process at once."""
    self.stepped = True

  def _record(self, signum, frame) -> None:
    del frame
    if self.signum is None:
      self.signum = signum

  def signal_at(self, step: int, every: int) -> int | None:
    """The signal to stop on after ``step``, or ``None``.

    A single process decides alone after every step. Several processes decide together after
    every ``every``-th step (each calls this after the same steps): all stop there if any of
    them received a signal, so they checkpoint the same step.
    """
    import jax
    if jax.process_count() == 1:
      return self.signum
    if step % every:
      return None
    from jax.experimental import multihost_utils
    received = multihost_utils.process_allgather(np.int32(self.signum or 0))
    return int(np.max(received)) or None


_ACTIVE: list[StopRequests] = []


@contextlib.contextmanager
def _handling(signals, handler):
  """``handler`` for ``signals`` inside the block, their previous handlers restored on exit;
  yields whether it was installed: outside the main thread, where Python cannot install
  handlers, the block runs as is."""
  if threading.current_thread() is not threading.main_thread():
    yield False
    return
  previous = {s: signal.signal(s, handler) for s in signals}
  try:
    yield True
  finally:
    for s, old in previous.items():
      signal.signal(s, old)


@contextlib.contextmanager
def stop_requests():
  """Yields this process's :class:`StopRequests`, with :data:`SIGNALS` recorded into it for the
  duration of the block; their previous handlers are restored on exit. Nested blocks share the
  outermost one (a study's runs: a signal between two runs stops the study). Outside the main
  thread, where Python cannot install handlers, nothing is recorded."""
  if _ACTIVE:
    yield _ACTIVE[0]
    return
  requests = StopRequests()
  with _handling(SIGNALS, requests._record) as installed:
    if not installed:  # not shared: a block on the main thread must install its own
      yield requests
      return
    _ACTIVE.append(requests)
    try:
      yield requests
    finally:
      _ACTIVE.pop()


@contextlib.contextmanager
def interrupt_after():
  """Defers Ctrl-C (SIGINT) to the end of the block, e.g. around a checkpoint save: a
  KeyboardInterrupt raised inside orbax's save (while it starts its writer threads) escaped as
  a traceback, or was lost."""
  received = []
  with _handling((signal.SIGINT,), lambda *_: received.append(True)):
    yield
  if received:
    raise KeyboardInterrupt


EARLY_MESSAGE = ('stopped by {name} before training began; nothing to save; rerun the same '
                 'command to start (or resume) the run.')


_AT_EARLY_EXIT: list = []


def at_early_exit(fn) -> None:
  """Runs ``fn()`` (e.g. a run lock's release) if a signal ends the process before the first
  step (:func:`exit_before_steps`), which skips Python's own clean-up."""
  _AT_EARLY_EXIT.append(fn)


def cancel_early_exit(fn) -> None:
  """Undoes :func:`at_early_exit` for ``fn``."""
  if fn in _AT_EARLY_EXIT:
    _AT_EARLY_EXIT.remove(fn)


_EXITING = threading.Lock()


def _exit_now(signum: int) -> None:
  """Runs the :func:`at_early_exit` functions, then ends the process with
  :data:`EARLY_MESSAGE` and 128 + ``signum``. One signal can reach it twice, from the handler
  (when the main thread runs Python) and from the watcher thread: the first caller ends the
  process, a second waits for that."""
  if not _EXITING.acquire(blocking=False):
    threading.Event().wait()
  for fn in list(_AT_EARLY_EXIT):
    try:
      fn()
    except Exception:  # noqa: BLE001 (the process ends either way)
      pass
  sys.stderr.write(f'error: {EARLY_MESSAGE.format(name=signal.Signals(signum).name)}\n')
  sys.stderr.flush()
  os._exit(128 + signum)


def _early(signum, frame) -> None:
  """The handler outside :func:`stop_requests` blocks: no training loop to stop at a step."""
  del frame
  _exit_now(signum)


def exit_before_steps() -> None:
  """From now on, a signal of :data:`SIGNALS` that arrives before a training step has run in
  this process ends it at once (:func:`_exit_now`); once steps run, :func:`stop_requests`
  applies. Python runs signal handlers between bytecodes of the main thread, which a long call
  into XLA (an initialization, a compilation) holds for minutes: so the signal's number also
  goes to a pipe (``signal.set_wakeup_fd``) that a watcher thread reads at once. Call it first
  thing, on the main thread (the command-line tools do); elsewhere it does nothing."""
  if threading.current_thread() is not threading.main_thread():
    return
  read, write = os.pipe()
  os.set_blocking(write, False)
  for s in SIGNALS:
    signal.signal(s, _early)
  signal.set_wakeup_fd(write, warn_on_full_buffer=False)
  threading.Thread(target=_watch, args=(read,), daemon=True, name='early-signals').start()


def _watch(read: int) -> None:
  while data := os.read(read, 64):
    for signum in data:
      if signum in SIGNALS and not (_ACTIVE and _ACTIVE[0].stepped):
        _exit_now(signum)
