"""Errors that reach the user as one line and an exit code, never as a traceback."""
import contextlib
import errno
import signal
from typing import Any


class UserError(Exception):
  """A problem with the user's input: reported in one line, no traceback (exit 2)."""


class ConfigError(UserError):
  """An invalid config value: names the key, the value and what is allowed."""

  def __init__(self, key: str, value: Any, allowed: str):
    super().__init__(f'config.{key}={value!r}: expected {allowed}')
    self.key, self.value = key, value


class Diverged(Exception):
  """Training produced a non-finite loss or weights (exit 3)."""

  def __init__(self, step: int, last_good: int | None, what: str = 'loss'):
    where = (f'the last good checkpoint is at step {last_good}' if last_good
             else 'no checkpoint was written')
    super().__init__(f'training diverged: non-finite {what} at step {step}; {where}. '
                     'Lower --config.learning_rate (or check the data) and rerun.')
    self.step, self.last_good = step, last_good


class Interrupted(Exception):
  """Training was interrupted by the user (Ctrl-C, exit 130)."""

  def __init__(self, step: int, resume_step: int | None):
    where = (f'rerun the same command to resume from step {resume_step}' if resume_step
             else 'no checkpoint yet: rerunning the same command starts over')
    super().__init__(f'interrupted at step {step}; {where}.')


class Preempted(Exception):
  """A preemption signal (SIGTERM, SIGUSR1, SIGHUP) stopped training after a checkpoint at
  ``step``, or a study between two runs (``step`` is ``None``); exit 128 + the signal's number."""

  def __init__(self, signum: int, step: int | None):
    where = f'at step {step}; checkpoint written' if step is not None else 'between runs'
    super().__init__(f'stopped by {signal.Signals(signum).name} {where}; rerun the same command '
                     'to resume.')
    self.signum, self.step = signum, step


class DiskFull(UserError):
  """The disk filled while the run wrote ``what`` (exit 2); the checkpoints written before are
  intact, so a rerun with room again resumes from the last of them."""

  def __init__(self, what: str, error: Exception):
    detail = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    super().__init__(f'no space left on the device while writing {what} ({detail}); the '
                     'checkpoints written before are intact: free some space and rerun the same '
                     'command to resume.')


def out_of_space(error: BaseException | None) -> bool:
  """Whether ``error``, or an error it was raised from, says the disk or the quota is full
  (an ``OSError``; orbax passes tensorstore's as text)."""
  while error is not None:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    if any(text in str(error) for text in ('No space left on device', 'Disk quota exceeded')):
      return True
    error = error.__cause__ or error.__context__
  return False


@contextlib.contextmanager
def writing(what: str):
  """Turns a full disk inside the block into :class:`DiskFull` naming ``what``."""
  try:
    yield
  except DiskFull:
    raise
  except Exception as e:  # noqa: BLE001 (a full disk reaches us as many kinds)
    if out_of_space(e):
      raise DiskFull(what, e) from e
    raise
