"""Orbax checkpoints of everything a run needs to resume bit-for-bit.

A checkpoint holds the train state (params, BatchNorm statistics, optimizer state, step, and
the masks, stored under their own key ``masks``) and the run's base PRNG key. Data order and
augmentation are pure functions of ``(seed, step)`` (see :mod:`n2nskip_jax.data`), so nothing
else is needed. Orbax writes to a temporary folder and renames it when complete, so a run
killed mid-save leaves the previous checkpoint intact. Saves are asynchronous: a save that
fails (a full disk) is found at the next step after it ends, and at the latest before the
next evaluation or save (:meth:`Checkpoints.check_saved`), and reported with the step it was
saving.
"""
import glob
import os
import shutil

import jax
from absl import logging
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization
from jax.experimental import multihost_utils

from n2nskip_jax.errors import UserError, writing


def _payload(state, rng) -> dict:
  state_dict = serialization.to_state_dict(state)
  masks = state_dict.pop('masks')
  return jax.device_get({'state': state_dict, 'masks': masks, 'rng': np.asarray(rng)})


class Checkpoints:
  """Saves and restores ``(state, rng)`` under ``directory/<step>``; ``state`` is a
  :class:`n2nskip_jax.steps.TrainState` (masks included), ``rng`` a raw ``uint32`` key."""

  def __init__(self, directory: str, max_to_keep: int | None = None):
    self.directory = os.path.abspath(directory)
    self._options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=self._options)
    self._saving: int | None = None  # the step of the save in flight, until checked

  def remove_unfinished(self) -> list[str]:
    """Removes the temporary folders of saves that never finished (``<step>.orbax-checkpoint-
    tmp-*``, left by a process killed while orbax wrote them) and returns their names; only
    process 0, and only while it holds the run's lock (a live save writes one)."""
    if jax.process_index() != 0:
      return []
    found = sorted(glob.glob(os.path.join(self.directory, '*.orbax-checkpoint-tmp*')))
    for path in found:
      shutil.rmtree(path, ignore_errors=True)
    if found:
      logging.info('Removed %d unfinished checkpoint folder%s: %s.', len(found),
                   's' * (len(found) != 1), ', '.join(os.path.basename(p) for p in found))
    return [os.path.basename(p) for p in found]

  def save(self, step: int, state, rng) -> None:
    """Starts writing ``(state, rng)`` at ``step`` in the background, once the save before it
    is checked (:meth:`check_saved`)."""
    self.check_saved(wait=True)
    if step in self.manager.all_steps():
      return
    self.manager.save(step, args=ocp.args.StandardSave(_payload(state, rng)))
    self._saving = step

  def check_saved(self, wait: bool = False) -> None:
    """Raises the error of the last save if it has ended without writing its step's folder
    (:class:`~n2nskip_jax.errors.DiskFull` for a full disk), naming that step; returns at once
    while it is still writing, unless ``wait``."""
    step = self._saving
    if step is None or (not wait and self.manager.is_saving_in_progress()):
      return
    self._saving = None
    what = f'the checkpoint of step {step} in {self.directory}'
    with writing(what):
      self.manager.wait_until_finished()  # raises the save's own error, where orbax kept it
    if jax.process_index() == 0 and not os.path.isdir(os.path.join(self.directory, str(step))):
      raise UserError(f'{what} was not written (see the log above); the checkpoints before it '
                      'are intact: rerun the same command to resume from the last of them')

  def restore(self, step: int, state, rng):
    """Restores into the structure of ``state``; returns ``(state, rng)``."""
    got = self.manager.restore(step, args=ocp.args.StandardRestore(_payload(state, rng)))
    restored = serialization.from_state_dict(
        state, {**got['state'], 'masks': got['masks']})
    return restored, got['rng']

  def read(self, step: int) -> dict:
    """The checkpoint at ``step`` as saved, without a target structure (numpy arrays)."""
    return self.manager.restore(step, args=ocp.args.StandardRestore())

  def restore_latest(self, state, rng):
    """``(step, state, rng)`` from the newest checkpoint that reads, or ``None``: one that
    fails is reported in one line and moved aside (:meth:`set_aside`). In a multi-process
    run, every process restores the step process 0 found (only process 0 moves folders)."""
    found = self._newest(lambda step: (step, *self.restore(step, state, rng)))
    if jax.process_count() == 1:
      return found
    mine = found[0] if found else -1
    agreed = int(multihost_utils.broadcast_one_to_all(np.int64(mine)))
    if agreed == mine:
      return found
    return (agreed, *self.restore(agreed, state, rng)) if agreed >= 0 else None

  def read_latest(self):
    """``(step, payload)`` of the newest checkpoint that reads (see :meth:`read`), or ``None``."""
    return self._newest(lambda step: (step, self.read(step)))

  def _newest(self, load):
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        return load(step)
      except Exception as e:  # noqa: BLE001 (orbax raises many kinds for a damaged step)
        self.set_aside(step, e)
    return None

  def set_aside(self, step: int, error: Exception) -> None:
    """Moves an unreadable ``<step>`` folder to ``corrupt-<step>`` (kept for inspection; a
    read-only directory is left as it is) and logs one line with the cause."""
    source = os.path.join(self.directory, str(step))
    target = os.path.join(self.directory, f'corrupt-{step}')
    cause = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    if jax.process_index() != 0:  # process 0 moves it; the others only skip it
      moved = 'skipped'
    else:
      try:
        os.rename(source, target if not os.path.exists(target) else f'{target}-{os.getpid()}')
        moved = f'moved to {target}'
      except OSError as e:
        moved = f'left in place ({e.strerror})'
    logging.warning('Checkpoint at step %d (%s) cannot be read: %s: %s; %s.', step, source,
                    type(error).__name__, cause, moved)
    # A failed restore can leave the manager expecting another layout: start a fresh one.
    self.manager.close()
    self.manager = ocp.CheckpointManager(self.directory, options=self._options)

  def close(self) -> None:
    self.check_saved(wait=True)
    self.manager.close()
