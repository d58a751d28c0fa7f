"""The progress bar: drawn on a terminal only, with log lines printed whole above it, and
every stream put back afterwards."""
import io
import logging as std_logging
import sys

import pytest
from absl import logging

from n2nskip_jax.progress import Progress, hms


class Terminal(io.StringIO):

  def isatty(self):
    return True


@pytest.fixture
def stderr(monkeypatch):
  """Installs a fake standard error: ``sys.stderr`` and a root logging handler writing to it
  (as absl's handler does in a command-line run)."""
  root = std_logging.getLogger()
  handlers = []

  def install(stream):
    monkeypatch.setattr(sys, 'stderr', stream)
    handlers.append(std_logging.StreamHandler(stream))
    root.addHandler(handlers[-1])
    return stream
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.INFO)
  yield install
  logging.set_verbosity(verbosity)
  for handler in handlers:
    root.removeHandler(handler)


def _run(steps: int, log_every: int):
  with Progress(steps, 0, batch_size=4) as progress:
    for step in range(1, steps + 1):
      progress.step(step)
      if step % log_every == 0:
        logging.info('logged at step %d', step)
        progress.show(loss=f'{1 / step:.4f}')
  return progress


def test_a_terminal_gets_a_bar_with_images_eta_and_loss_under_whole_log_lines(stderr):
  terminal = stderr(Terminal())
  handler = std_logging.getLogger().handlers[-1]
  _run(steps=12, log_every=5)
  out = terminal.getvalue()
  assert '/48' in out and 'img/s' in out, out  # 12 steps of 4 images
  assert 'loss=0.2000' in out, out  # shown after step 5's log line
  logged = [line for line in out.split('\n') if 'logged at step' in line]
  assert len(logged) == 2, out
  for line in logged:  # the bar cleared first: the line starts at column 0 and holds no bar
    text = line.split('\r')[-1]
    assert text.endswith(('logged at step 5', 'logged at step 10')) and '%|' not in text, repr(line)
  assert sys.stderr is terminal and handler.stream is terminal  # put back


def test_prints_to_stderr_stay_whole_and_every_stream_is_put_back_after_an_error(stderr):
  terminal = stderr(Terminal())
  handler = std_logging.getLogger().handlers[-1]
  try:
    with Progress(10, 0, batch_size=4) as progress:
      for step in range(1, 6):
        progress.step(step)
      print('a warning', 'in parts', file=sys.stderr)  # written as several pieces
      sys.stderr.write('a line left open')
      raise RuntimeError('in the loop')
  except RuntimeError:
    pass
  assert sys.stderr is terminal and handler.stream is terminal
  lines = terminal.getvalue().split('\n')
  assert any(line.split('\r')[-1] == 'a warning in parts' for line in lines), lines
  assert terminal.getvalue().endswith('a line left open')  # written when the bar went away


def test_a_pipe_gets_only_the_log_lines(stderr):
  pipe = stderr(io.StringIO())
  _run(steps=12, log_every=5)
  out = pipe.getvalue()
  assert 'img/s' not in out and '\r' not in out, out
  assert out.count('logged at step') == 2
  assert sys.stderr is pipe


def test_no_bar_where_not_asked_even_on_a_terminal(stderr):
  terminal = stderr(Terminal())
  with Progress(10, 0, batch_size=4, bar=False) as progress:  # e.g. not the main process
    for step in range(1, 11):
      progress.step(step)
    assert sys.stderr is terminal
  assert terminal.getvalue() == ''


def test_throughput_and_eta_exclude_the_first_step():
  progress = Progress(10, 2, batch_size=8, bar=False)
  assert progress.text() == '' and progress.rates() == {}
  progress.step(3)  # the compiling step: the clock starts after it
  assert progress.text() == ''
  progress.step(5)
  assert progress.rates()['images_per_second'] > 0
  assert progress.text().endswith(tuple(f'ETA {hms(s)}' for s in range(0, 5)))


def test_hms():
  assert hms(3725) == '1h02m05s' and hms(0.4) == '0h00m00s'


def test_counts_are_plural_except_one():
  from n2nskip_jax import progress
  assert [progress.counted(n, 'run') for n in (0, 1, 2)] == ['0 runs', '1 run', '2 runs']
