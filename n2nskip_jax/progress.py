"""Progress of a training loop: throughput and ETA for the log lines (as clu's
``ReportProgress`` in the Flax examples) and, on a terminal, a tqdm bar (images done, images
per second, ETA, epoch and loss) kept under the log lines. Anywhere else (a pipe, a SLURM
log, CI, a notebook) there is no bar: the periodic log lines are the progress."""
import logging as std_logging
import sys
import time

import tqdm


def hms(seconds: float) -> str:
  """``3725`` -> ``'1h02m05s'``."""
  s = int(round(seconds))
  return f'{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s'


class Progress:
  """Throughput and ETA of a loop of ``total`` steps of ``batch_size`` images, timed from the
  end of the first step this process runs, so compilation is excluded.

  Use as a context manager. When ``stream`` (default ``sys.stderr``) is a terminal and ``bar``
  is true, a bar is drawn from the first step on, and while the block runs everything written
  to standard error (log lines, warnings) is printed above it.
  """

  def __init__(self, total: int, start: int, batch_size: int, bar: bool = True, stream=None):
    self.total, self.batch_size = total, batch_size
    self._first = self._mark = None
    self._last = start
    self._stream = sys.stderr if stream is None else stream
    self._draws = bar and _is_terminal(self._stream)
    self._bar = None
    self._swapped = []

  def __enter__(self):
    if self._draws:
      above = _AboveBar(self._stream, self)
      self._swapped = [(h, h.stream) for h in _stream_handlers() if h.stream is self._stream]
      for handler, _ in self._swapped:
        handler.setStream(above)
      if sys.stderr is self._stream:
        sys.stderr = above
    return self

  def __exit__(self, *exc):
    if self._bar is not None:
      self._bar.close()
      self._bar = None
    for handler, stream in self._swapped:
      handler.setStream(stream)
    if isinstance(sys.stderr, _AboveBar) and sys.stderr.progress is self:
      sys.stderr = self._stream

  def step(self, step: int) -> None:
    """Step ``step`` has finished."""
    now = time.time()
    if self._first is None:
      self._first = self._mark = (step, now)
      if self._draws:
        self._bar = tqdm.tqdm(total=self.total, initial=step, file=self._stream, unit='img',
                              unit_scale=self.batch_size, dynamic_ncols=True, leave=False)
    self._last = step
    if self._bar is not None:
      self._bar.update(step - self._bar.n)

  def show(self, **fields) -> None:
    """Shows ``fields`` (e.g. ``epoch='3/15', loss=0.41``) after the bar, if there is one."""
    if self._bar is not None:
      self._bar.set_postfix(fields)

  def rates(self) -> dict:
    """``{'images_per_second': ...}`` since the previous call (empty before two steps ran)."""
    if self._mark is None or self._last <= self._mark[0]:
      return {}
    now = time.time()
    ips = (self._last - self._mark[0]) * self.batch_size / (now - self._mark[1])
    self._mark = (self._last, now)
    return {'images_per_second': ips}

  def text(self) -> str:
    """``'1234 img/s, ETA 0h01m05s'`` from the average since the first step."""
    if self._first is None or self._last <= self._first[0]:
      return ''
    per_step = (time.time() - self._first[1]) / (self._last - self._first[0])
    return (f'{self.batch_size / per_step:.0f} img/s, '
            f'ETA {hms(per_step * (self.total - self._last))}')


def _is_terminal(stream) -> bool:
  try:
    return stream.isatty()
  except (AttributeError, ValueError):  # no isatty, or closed
    return False


def _stream_handlers() -> list:
  """The logging handlers that write to a stream: absl's (the one it wraps) and the root
  logger's."""
  from absl import logging
  handlers = [logging.get_absl_handler().python_handler, *std_logging.getLogger().handlers]
  return [h for h in handlers if hasattr(h, 'setStream')]


class _AboveBar:
  """A text stream that clears the bar, writes, and draws the bar again."""

  def __init__(self, stream, progress: Progress):
    self.stream, self.progress = stream, progress

  def write(self, text: str) -> int:
    bar = self.progress._bar  # pylint: disable=protected-access
    if bar is None:
      return self.stream.write(text)
    bar.clear()
    written = self.stream.write(text)
    bar.refresh()
    return written

  def __getattr__(self, name):  # flush, isatty, fileno, encoding... of the terminal
    return getattr(self.stream, name)
