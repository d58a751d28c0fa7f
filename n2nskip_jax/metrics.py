"""Metrics to ``metrics.jsonl`` (one JSON object per line) and TensorBoard event files, and
the strict, atomic JSON writer every result file of the project goes through."""
import json
import os

import tensorboardX


def write_json(path: str, obj) -> None:
  """Writes ``obj`` as strict JSON (no NaN literals) to a temporary file, then renames it into
  place, so a reader never sees a torn file."""
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2, allow_nan=False)
  os.replace(tmp, path)


class MetricsWriter:
  """Appends scalars per step. On resume at ``resume_step``, lines written after that step
  by the interrupted run are dropped first, so the file never repeats a step."""

  def __init__(self, workdir: str, resume_step: int = 0, enabled: bool = True):
    self.enabled = enabled
    if not enabled:
      return
    self.path = os.path.join(workdir, 'metrics.jsonl')
    if os.path.exists(self.path):
      with open(self.path) as f:
        kept = [line for line in f if line.strip() and json.loads(line)['step'] <= resume_step]
      with open(self.path, 'w') as f:
        f.writelines(kept)
    self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def write(self, step: int, **scalars) -> None:
    if not self.enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    with open(self.path, 'a') as f:
      f.write(json.dumps({'step': step, **scalars}) + '\n')
    for k, v in scalars.items():
      self._tb.add_scalar(k, v, step)
    self._tb.flush()

  def close(self) -> None:
    if self.enabled:
      self._tb.close()
