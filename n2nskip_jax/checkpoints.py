"""Orbax checkpoints of everything a run needs to resume bit-for-bit.

A checkpoint holds the train state (params, BatchNorm statistics, optimizer state, step),
the masks and the run's base PRNG key. Data order and augmentation are pure functions of
``(seed, step)`` (see :mod:`n2nskip_jax.data`), so nothing else is needed. Orbax writes
to a temporary folder and renames it when complete, so a run killed mid-save leaves the
previous checkpoint intact.
"""
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization


class Checkpoints:
  """Saves and restores ``(state, masks, rng)`` under ``directory/<step>``; ``rng`` is a raw
  ``uint32`` key as made by ``jax.random.PRNGKey``."""

  def __init__(self, directory: str, max_to_keep: int):
    self.manager = ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, masks, rng) -> None:
    if step in self.manager.all_steps():
      return
    payload = {'state': serialization.to_state_dict(state), 'masks': masks, 'rng': rng}
    self.manager.save(step, args=ocp.args.StandardSave(jax.device_get(payload)))

  def restore(self, step: int, state, masks, rng):
    """Restores into the structure of ``state``/``masks``; returns ``(state, masks, rng)``."""
    target = jax.device_get({'state': serialization.to_state_dict(state), 'masks': masks,
                             'rng': np.asarray(rng)})
    got = self.manager.restore(step, args=ocp.args.StandardRestore(target))
    return serialization.from_state_dict(state, got['state']), got['masks'], got['rng']

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
