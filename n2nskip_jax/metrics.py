"""Metrics to ``metrics.jsonl`` (one JSON object per line) and TensorBoard event files, and
the strict, atomic JSON writer every result file of the project goes through."""
import json
import os

import tensorboardX

from n2nskip_jax import checks
from n2nskip_jax.errors import writing


def write_json(path: str, obj) -> None:
  """Writes ``obj`` as strict JSON (no NaN literals) to a temporary file, then renames it into
  place, so a reader never sees a torn file."""
  tmp = f'{path}.{os.getpid()}.tmp'  # processes of one multi-process run share the folder
  with writing(path):
    with open(tmp, 'w') as f:
      json.dump(obj, f, indent=2, allow_nan=False)
    os.replace(tmp, path)


METRICS_FILE = 'metrics.jsonl'


def read_metrics(path: str) -> list[dict]:
  """The records of a ``metrics.jsonl`` file (none if it does not exist); a line torn by a
  kill during a write is skipped."""
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return records


class MetricsWriter:
  """Appends scalars per step. On resume at ``resume_step``, lines written after that step
  by the interrupted run are dropped first, so the file never repeats a step."""

  def __init__(self, workdir: str, resume_step: int = 0, enabled: bool = True):
    self.enabled = enabled
    if not enabled:
      return
    self.path = os.path.join(workdir, METRICS_FILE)
    if os.path.exists(self.path):
      kept = [r for r in read_metrics(self.path) if r.get('step', resume_step + 1) <= resume_step]
      with open(self.path, 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in kept)
    # TensorBoard hides the interrupted run's events after the resumed step.
    self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard'),
                                          purge_step=resume_step + 1 if resume_step else None)

  def write(self, step: int, **scalars) -> None:
    """Appends ``scalars`` at ``step`` to ``metrics.jsonl`` and TensorBoard (a write that fails
    names the step and the file: :func:`errors.writing`)."""
    if not self.enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    with writing(f'the metrics of step {step} to {self.path} and TensorBoard'):
      with open(self.path, 'a') as f:
        f.write(json.dumps({'step': step, **scalars}, allow_nan=False) + '\n')
      for k, v in scalars.items():
        self._tb.add_scalar(k, v, step)
      self._tb.flush()

  def close(self) -> None:
    """Closes the TensorBoard writer (``metrics.jsonl`` is closed after every write)."""
    if self.enabled:
      self._tb.close()


def write_hparams(workdir: str, config, results: dict) -> None:
  """The run's config keys (flattened: ``pruning.density``; tuples as text) as TensorBoard
  hyperparameters with ``results`` (``test_accuracy``...) as their metrics, in
  ``tensorboard/hparams``: TensorBoard's HParams tab then compares runs by any key."""
  hparams = {key: value if isinstance(value, (bool, int, float, str)) else str(value)
             for key, value in checks.leaves(config.to_dict())}
  metrics = {f'hparams/{k}': float(v) for k, v in results.items()}
  with writing(f'the hyperparameters to {workdir}/tensorboard/hparams'):
    with tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard')) as tb:
      tb.add_hparams(hparams, metrics, name='hparams')
