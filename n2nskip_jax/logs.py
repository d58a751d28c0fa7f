"""The logging the runs use: absl's INFO progress lines without orbax's per-checkpoint chatter,
process-wide for the command-line tools (:func:`setup_logging`), inside a block for the library
(:func:`logging_for_runs`), which leaves the process's logging as it found it."""
import contextlib
import logging as std_logging

from absl import logging

__all__ = ['log_handlers', 'logging_for_runs', 'setup_logging']


def _not_orbax(record) -> bool:
  """Hides orbax's per-checkpoint chatter and JAX's harmless note that there is no TPU."""
  return 'orbax' not in record.pathname and 'libtpu' not in str(record.msg)


def setup_logging() -> None:
  """INFO progress lines from absl (also in a notebook), without orbax's per-checkpoint
  chatter: for the command-line tools (process-wide); the library uses :func:`logging_for_runs`."""
  logging.set_verbosity(logging.INFO)
  for handler in log_handlers():
    if _not_orbax not in handler.filters:
      handler.addFilter(_not_orbax)


def log_handlers() -> list:
  """absl's handler and the root logger's handlers."""
  return [logging.get_absl_handler(), *std_logging.getLogger().handlers]


@contextlib.contextmanager
def logging_for_runs():
  """:func:`setup_logging` inside the block; absl's verbosity and the handlers' filters as they
  were after it."""
  verbosity = logging.get_verbosity()
  added = [h for h in log_handlers() if _not_orbax not in h.filters]
  setup_logging()
  try:
    yield
  finally:
    logging.set_verbosity(verbosity)
    for handler in added:
      handler.removeFilter(_not_orbax)
