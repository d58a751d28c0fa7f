"""Orbax checkpoints of everything a run needs to resume bit-for-bit.

A checkpoint holds the train state (params, BatchNorm statistics, optimizer state, step, and
the masks, stored under their own key ``masks``) and the run's base PRNG key. Data order and
augmentation are pure functions of ``(seed, step)`` (see :mod:`n2nskip_jax.data`), so nothing
else is needed. Orbax writes to a temporary folder and renames it when complete, so a run
killed mid-save leaves the previous checkpoint intact.
"""
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization


def _payload(state, rng) -> dict:
  state_dict = serialization.to_state_dict(state)
  masks = state_dict.pop('masks')
  return jax.device_get({'state': state_dict, 'masks': masks, 'rng': np.asarray(rng)})


class Checkpoints:
  """Saves and restores ``(state, rng)`` under ``directory/<step>``; ``state`` is a
  :class:`n2nskip_jax.steps.TrainState` (masks included), ``rng`` a raw ``uint32`` key."""

  def __init__(self, directory: str, max_to_keep: int | None = None):
    self.manager = ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, rng) -> None:
    if step in self.manager.all_steps():
      return
    self.manager.save(step, args=ocp.args.StandardSave(_payload(state, rng)))

  def restore(self, step: int, state, rng):
    """Restores into the structure of ``state``; returns ``(state, rng)``."""
    got = self.manager.restore(step, args=ocp.args.StandardRestore(_payload(state, rng)))
    restored = serialization.from_state_dict(state, {**got['state'], 'masks': got['masks']})
    return restored, got['rng']

  def read(self, step: int) -> dict:
    """The checkpoint at ``step`` as saved, without a target structure (numpy arrays)."""
    return self.manager.restore(step, args=ocp.args.StandardRestore())

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
