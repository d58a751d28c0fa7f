"""Progress of a training loop: throughput and ETA for the log lines (as clu's
``ReportProgress`` in the Flax examples) and, on a terminal, a tqdm bar (images done, images
per second, ETA, epoch and loss) kept under the log lines. Anywhere else (a pipe, a SLURM
log, CI, a notebook) there is no bar: the periodic log lines are the progress."""
import sys
import time

import tqdm

from n2nskip_jax import logs


def hms(seconds: float) -> str:
  """``3725`` -> ``'1h02m05s'``."""
  s = int(round(seconds))
  return f'{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s'


def counted(n: int, noun: str) -> str:
  """``1 run``, ``2 runs``: ``n`` and ``noun``, plural (an ``s`` added) unless ``n`` is 1."""
  return f'{n} {noun}{"s" * (n != 1)}'


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
    self._bar = self._above = None
    self._swapped = []

  def __enter__(self):
    if self._draws:
      self._above = _AboveBar(self._stream, self)
      self._swapped = [(h, h.stream) for h in _stream_handlers() if h.stream is self._stream]
      for handler, _ in self._swapped:
        handler.setStream(self._above)
      if sys.stderr is self._stream:
        sys.stderr = self._above
    return self

  def __exit__(self, *exc):
    if self._bar is not None:
      self._bar.close()
      self._bar = None
    if self._above is not None:
      self._above.flush_partial()
    for handler, stream in self._swapped:
      handler.setStream(stream)
    if sys.stderr is self._above:
      sys.stderr = self._stream

  def step(self, step: int) -> None:
    """Step ``step`` has finished."""
    now = time.time()
    if self._first is None:
      self._first = self._mark = (step, now)
      if self._draws:
        # Counted in images (tqdm's numeric unit_scale leaves `initial` unscaled in its rate);
        # smoothing=0: rate and ETA averaged since the first step (a step-to-step rate jumps).
        self._bar = tqdm.tqdm(total=self.total * self.batch_size, initial=step * self.batch_size,
                              file=self._stream, unit='img', unit_scale=True, smoothing=0,
                              dynamic_ncols=True, leave=False)
    self._last = step
    if self._bar is not None:
      self._bar.update(step * self.batch_size - self._bar.n)

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
  """The logging handlers that write to a stream (of absl's, the one it wraps)."""
  handlers = [getattr(h, 'python_handler', h) for h in logs.log_handlers()]
  return [h for h in dict.fromkeys(handlers) if hasattr(h, 'setStream')]


class _AboveBar:
  """A text stream that prints whole lines above the bar: text is kept until its line ends,
  then, under tqdm's lock (log lines may come from other threads), the bar is cleared, the
  lines written and the bar drawn again."""

  def __init__(self, stream, progress: Progress):
    self.stream, self.progress = stream, progress
    self._partial = ''

  def write(self, text: str) -> int:
    self._partial += text
    lines, newline, self._partial = self._partial.rpartition('\n')
    if newline:
      self._write_lines(lines + newline)
    return len(text)

  def flush_partial(self) -> None:
    """Writes a last line that has not ended (when the bar goes away)."""
    if self._partial:
      self._write_lines(self._partial)
      self._partial = ''

  def _write_lines(self, text: str) -> None:
    bar = self.progress._bar  # pylint: disable=protected-access
    if bar is None:
      self.stream.write(text)
      return
    with bar.get_lock():
      bar.clear(nolock=True)
      self.stream.write(text)
      bar.refresh(nolock=True)

  def __getattr__(self, name):  # flush, isatty, fileno, encoding... of the terminal
    return getattr(self.stream, name)
