"""Errors that reach the user as one line and an exit code, never as a traceback."""
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
