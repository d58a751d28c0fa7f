"""One process trains a run directory at a time: the lock file ``<workdir>/lock`` names it.

A second process on a run being trained is refused at once (:class:`Held`, one line naming the
holder's host, pid and start time, and the lock file). A lock is stale, and is taken over with a
warning, when its process is gone (same host: no process with its pid, or one that started at
another time, :func:`process_start`, as after a container restart reuses pids), or when it
comes from another host and has not been refreshed for :data:`STALE_AFTER_S` seconds (the holder
refreshes it at every log step and checkpoint).
Multi-process runs take it in process 0 only; a process that holds it may take it again (a
study holds each run's lock while it trains and analyzes the run).

    with runlock.RunLock(workdir) as lock:
      lock.acquire()      # before the first read of checkpoints another process might rotate
      ...
      lock.refresh()      # now and then, while training
"""
import json
import os
import socket
import time

from absl import logging

from n2nskip_jax import preemption
from n2nskip_jax.errors import UserError

LOCK = 'lock'
STALE_AFTER_S = 30 * 60


class Held(UserError):
  """Another live process holds the run directory's lock."""

  def __init__(self, workdir: str, holder: dict):
    since = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holder.get('since', 0)))
    super().__init__(f'--workdir={workdir!r}: another process is training this run (host '
                     f'{holder.get("host")}, pid {holder.get("pid")}, since {since}); wait for '
                     f'it, or stop it and rerun (a lock whose process is gone is taken over). '
                     f'If that process has ended, remove {os.path.join(workdir, LOCK)}')
    self.holder = holder


def _read(path: str) -> dict | None:
  return _read_file(path)[0]


def _read_file(path: str) -> tuple[dict | None, int | None]:
  """The lock's holder (``None`` if unreadable) and the lock file's inode (``None`` if gone)."""
  try:
    with open(path) as f:
      inode = os.fstat(f.fileno()).st_ino
      try:
        return json.load(f), inode
      except ValueError:
        return None, inode
  except OSError:
    return None, None


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's process
    return True
  return True


def process_start(pid: int) -> str | None:
  """When process ``pid`` started, as this machine's kernel tells it: its boot id and the
  process's start time in clock ticks since boot (``/proc``); ``None`` where it cannot be read
  (no such process, no ``/proc``). Two processes with the same pid differ in it."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()  # after the command name, which may hold ')'
    with open('/proc/sys/kernel/random/boot_id') as f:
      return f'{f.read().strip()}:{fields[19]}'  # field 22 of proc(5), starttime
  except (OSError, IndexError):
    return None


def stale(path: str, holder: dict | None) -> bool:
  """Whether the lock at ``path`` (written by ``holder``) may be taken over."""
  if holder is None:  # unreadable: torn by a crash while it was written
    return True
  if holder.get('host') == socket.gethostname():
    pid = int(holder.get('pid', -1))
    if not _alive(pid):
      return True
    started, now = holder.get('started'), process_start(pid)
    return started is not None and now is not None and started != now  # the pid was reused
  try:
    return time.time() - os.path.getmtime(path) > STALE_AFTER_S
  except OSError:
    return True


class RunLock:
  """The lock of one run directory, taken by :meth:`acquire` and released on exit."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.workdir, self.enabled, self.held = workdir, enabled, False
    self.path = os.path.join(workdir, LOCK)

  def __enter__(self) -> 'RunLock':
    return self

  def __exit__(self, *exc) -> None:
    self.release()

  def acquire(self) -> None:
    """Takes the lock (creating ``workdir``), or raises :class:`Held`."""
    if not self.enabled or self.held:
      return
    os.makedirs(self.workdir, exist_ok=True)
    mine = f'{self.path}.{os.getpid()}'  # written whole, then linked: never seen half-written
    with open(mine, 'w') as f:
      json.dump({'host': socket.gethostname(), 'pid': os.getpid(), 'since': time.time(),
                 'started': process_start(os.getpid())}, f)
    try:
      while not self.held:
        try:
          os.link(mine, self.path)
          self.held = True
          preemption.at_early_exit(self.release)  # a signal before the first step
        except FileExistsError:
          holder, inode = _read_file(self.path)
          if self._outer(holder) is not None:
            return  # this process holds it already (a study's run): its first holder releases it
          if not stale(self.path, holder):
            raise Held(self.workdir, holder) from None
          self._take_over(holder, inode, f'{mine}.stale')
    finally:
      os.remove(mine)

  def _take_over(self, holder: dict | None, inode: int | None, aside: str) -> None:
    """Moves the stale lock (the file ``inode``, written by ``holder``) out of the way. When
    two processes take the same stale lock over, the slower one may move the faster one's new
    lock instead: it finds out (another inode or holder) and links that lock back. This
    narrows, but does not close, the window in which a third process could take the run at
    the same moment; staleness (a dead pid, or 30 idle minutes) makes that rare."""
    try:
      os.rename(self.path, aside)
    except FileNotFoundError:
      return
    moved, moved_inode = _read_file(aside)
    if (moved_inode, moved) != (inode, holder):  # another process's lock, taken since
      try:
        os.link(aside, self.path)
      except FileExistsError:
        pass
    else:
      logging.warning('Taking over the stale lock of %s (%s).', self.workdir, holder)
    os.remove(aside)

  @staticmethod
  def _outer(holder):
    """``holder`` if it is this process."""
    if holder and holder.get('host') == socket.gethostname() and holder.get('pid') == os.getpid():
      return holder
    return None

  def refresh(self) -> None:
    """Marks the lock as alive (its modification time) for processes on other hosts."""
    if self.held:
      try:
        os.utime(self.path)
      except FileNotFoundError:  # moved aside for an instant by a process taking over a stale lock
        pass

  def release(self) -> None:
    preemption.cancel_early_exit(self.release)
    if self.held:
      self.held = False
      if (_read(self.path) or {}).get('pid') == os.getpid():
        os.remove(self.path)
