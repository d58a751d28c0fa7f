"""The training loop: init -> prune -> train (pmapped) -> evaluate, resumable via orbax.

    summary = train.train_and_evaluate(config, workdir)          # prunes by the config
    summary = train.train_and_evaluate(config, workdir, masks)   # trains the given masks

In the shape of the Flax examples: :func:`create_train_state` (the pruned network and the
execution plan it trains with), :func:`restore_or_start` (a :class:`Start`), the loop
(:func:`train_loop`, one epoch at a time), :func:`evaluate` and :func:`summarize`.

Writes the run directory (:mod:`n2nskip_jax.rundir`): ``config.json``, ``checkpoints/<step>``,
``metrics.jsonl``, ``tensorboard/`` and, at the end, ``summary.json``.
"""
import dataclasses
import json
import os
import time
from typing import Any

import jax
import numpy as np
from absl import logging
from flax import jax_utils
from jax.experimental import multihost_utils

from n2nskip_jax import data as data_lib
from n2nskip_jax import (execution, network, preemption, pruning, resources, rundir, runlock,
                         sparsity)
from n2nskip_jax.checkpoints import Checkpoints
from n2nskip_jax.config import validate
from n2nskip_jax.errors import Diverged, Interrupted, Preempted, UserError, writing
from n2nskip_jax.layers import BN_MOMENTUM
from n2nskip_jax.logs import logging_for_runs
from n2nskip_jax.metrics import MetricsWriter, write_hparams, write_json
from n2nskip_jax.progress import Progress
from n2nskip_jax.steps import AXIS, TrainState, create_optimizer, learning_rate_schedule
from n2nskip_jax.steps import replicate


def shard(batch: dict) -> dict:
  """``(local_batch, ...) -> (local_devices, local_batch / local_devices, ...)``."""
  n = jax.local_device_count()
  return jax.tree.map(lambda x: x.reshape((n, -1, *x.shape[1:])), batch)


def snip_batch(data, size: int) -> dict:
  """The first ``size`` examples of epoch 0 (the SNIP saliency batch)."""
  parts, have = [], 0
  for b in data.train_batches(0, 0):
    parts.append(b)
    have += len(b['label'])
    if have >= size:
      break
  return {k: np.concatenate([p[k] for p in parts])[:size] for k in ('image', 'label')}


def evaluate(p_eval_step, p_state, data) -> dict:
  """Test loss and accuracy over the whole test split."""
  totals = {'loss': 0.0, 'correct': 0.0, 'count': 0.0}
  for batch in data.eval_batches():
    sums = jax_utils.unreplicate(p_eval_step(p_state, shard(batch)))
    totals = {k: totals[k] + float(sums[k]) for k in totals}
  return {'test_loss': totals['loss'] / totals['count'],
          'test_accuracy': totals['correct'] / totals['count']}


# --- the train state ----------------------------------------------------------------------------

def create_train_state(config, data, masks=None) -> tuple[TrainState, execution.Plan]:
  """``(state, plan)`` at initialization: the network pruned by the config (or carrying the
  user's ``masks``), its initial variables as :func:`network.initial_variables` builds them,
  and the execution plan for those masks, whose model is the state's ``apply_fn``."""
  _, variables = network.init(config, data.num_classes, data.input_shape, bn_axis_name=AXIS)
  if masks is None:
    masks = _prune(config, data, variables)
  else:
    _check_masks(masks, variables['masks'])
  variables = network.initial_variables(config, variables, masks, data.num_classes,
                                        data.input_shape)[1]
  plan = execution.plan(config, variables['masks'])
  return _train_state(config, data, variables, _apply_fn(config, data, plan)), plan


def _prune(config, data, variables) -> dict:
  """The config's masks, scored with the layers the run trains with (the plan's formulations;
  no by-nonzeros tables yet), the same on every host."""
  batch = snip_batch(data, config.pruning.snip_batch_size) if pruning.needs_batch(config) else None
  masks = pruning.prune(config, variables, batch, input_shape=data.input_shape,
                        layers=execution.plan(config, {}).layers())
  if jax.process_count() > 1:  # every host must train the same sparse network
    masks = multihost_utils.broadcast_one_to_all(masks)
  return masks


def _check_masks(masks, template) -> None:
  """The user's masks must have the model's mask paths and shapes, and be 0/1."""
  got, want = jax.tree.structure(masks), jax.tree.structure(template)
  if got != want:
    raise UserError(f'masks: expected the model\'s mask tree {want}, got {got}')
  for m, t in zip(jax.tree.leaves(masks), jax.tree.leaves(template)):
    if np.shape(m) != np.shape(t) or not np.isin(np.asarray(m), (0, 1)).all():
      raise UserError(f'masks: expected 0/1 arrays shaped like the kernels ({np.shape(t)}), '
                      f'got shape {np.shape(m)}')


def _apply_fn(config, data, plan: execution.Plan):
  """The state's ``apply_fn``: the plan's model, its BatchNorm averaged over the pmap axis."""
  return plan.model(config, data.num_classes, bn_axis_name=AXIS).apply


def _train_state(config, data, variables, apply_fn) -> TrainState:
  return TrainState.create(apply_fn=apply_fn, params=variables['params'],
                           tx=create_optimizer(config, data.steps_per_epoch),
                           batch_stats=variables.get('batch_stats', {}), masks=variables['masks'])


def _mask_warnings(config, masks, units: sparsity.Units) -> list[str]:
  """Warnings (logged, and kept in the summary) for masks that leave no path from the input
  to the output (layer collapse: the network cannot learn) or most hidden units dead. A
  sequential layer left empty while skips carry the signal around it is logged, not warned."""
  if config.pruning.method == 'dense':
    return []
  warnings = []
  empty = pruning.empty_layers(masks)
  if empty and not units.reachable_outputs:
    warnings.append(f'layer collapse: pruning left {", ".join(empty)} with no weight at all '
                    f'at density {config.pruning.density} and no path from the input to the '
                    'output; the network cannot learn')
  elif empty:
    logging.info('Pruning left %s with no weight; skip connections carry the signal around '
                 'it.', ', '.join(empty))
  dead, hidden = units.dead, units.hidden
  if dead > hidden / 2:
    warnings.append(f'{dead} of {hidden} hidden units ({dead / hidden:.0%}) have no input or '
                    f'no output at density {config.pruning.density}: most of the network is dead')
  for w in warnings:
    logging.warning(w)
  return warnings


# --- restore or start ---------------------------------------------------------------------------

@dataclasses.dataclass
class Start:
  """Where a run begins: its train ``state`` and execution ``plan`` (the state's ``apply_fn``
  is the plan's model), the base ``rng`` key, the ``step`` (0, or the restored checkpoint's),
  its opened ``checkpoints``, and what the masks are, counted once (the masks never change):
  their ``units`` (:func:`sparsity.units`), their per-layer table (``layers``:
  :func:`sparsity.layer_table`) and ``warnings``."""
  state: TrainState
  plan: execution.Plan
  rng: np.ndarray
  step: int
  checkpoints: Checkpoints
  units: sparsity.Units
  layers: list[dict]
  warnings: list[str]


def restore_or_start(config, data, workdir: str, masks, lock: runlock.RunLock,
                     shapes: dict) -> Start:
  """Restores the run from its newest readable checkpoint into the structure of ``shapes``
  (its variables' shapes: :func:`network.abstract`), or creates and prunes it. Nothing is
  written to ``workdir`` before the masks are checked, and its checkpoints are read only under
  the run's lock."""
  rng = np.asarray(jax.random.PRNGKey(config.seed))
  latest = rundir.latest_step(workdir)
  _check_not_past_the_end(config, data, workdir, latest)
  restored = _restore(config, data, workdir, masks, lock, rng, shapes) if latest else None
  if restored:
    step, state, rng, ckpt = restored
    plan = execution.plan(config, state.masks)
    state = state.replace(apply_fn=_apply_fn(config, data, plan))
  else:
    step, (state, plan) = 0, create_train_state(config, data, masks)
    ckpt = _open(workdir, config, lock)  # the masks are checked: the run's files may be written
  units = sparsity.units(config, state.masks)
  return Start(state, plan, rng, step, ckpt, units, sparsity.layer_table(state.masks),
               _mask_warnings(config, state.masks, units))


def _restore(config, data, workdir: str, masks, lock, rng, shapes):
  """``(step, state, rng, checkpoints)`` from the newest checkpoint that reads (its state's
  ``apply_fn`` unset), or ``None`` where none reads and ``config.restart_on_corrupt`` allows
  starting over. The structure restored into is zeros of ``shapes``: nothing is initialized
  (or compiled) only to be overwritten."""
  ckpt = _open(workdir, config, lock)
  zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
  found = ckpt.restore_latest(_train_state(config, data, zeros, None), rng)
  if found:
    step, state, rng = found
    logging.info('Resuming from checkpoint at step %d.', step)
    if masks is not None and not all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(masks), jax.tree.leaves(state.masks))):
      raise UserError('masks: differ from the masks this run was started with; use another workdir')
    return step, state, rng, ckpt
  if not config.restart_on_corrupt:
    raise UserError(f'no checkpoint in {ckpt.directory} can be read (set aside as corrupt-<step>); '
                    'rerun with --config.restart_on_corrupt=True to start the run over')
  logging.warning('No readable checkpoint: starting over (restart_on_corrupt=True).')
  return None


def _check_not_past_the_end(config, data, workdir: str, latest: int | None) -> None:
  steps_per_epoch = data.steps_per_epoch
  if latest and latest > config.num_epochs * steps_per_epoch:
    raise UserError(f'config.num_epochs={config.num_epochs}: {workdir} holds a checkpoint at '
                    f'step {latest} (epoch {latest // steps_per_epoch}); use num_epochs >= '
                    f'{-(-latest // steps_per_epoch)} or another workdir')


def _open(workdir: str, config, lock: runlock.RunLock) -> Checkpoints:
  """Takes the run's lock, writes its config (:func:`rundir.prepare`) and opens its checkpoints;
  saves that never finished are removed."""
  lock.acquire()
  rundir.prepare(workdir, config)
  ckpt = rundir.checkpoints(workdir, config.max_checkpoints_to_keep)
  ckpt.remove_unfinished()
  return ckpt


# --- the loop -----------------------------------------------------------------------------------

@dataclasses.dataclass
class Loop:
  """What one run's loop shares: its config, data and directory, the pmapped steps and the
  learning-rate schedule, the checkpoints, metrics writer, progress, stop requests and lock,
  the base ``rng``, and whether to wait for each step (:attr:`Plan.blocks_each_step`).
  ``compiling``: when the first step of this process was dispatched, until it is done."""
  config: Any
  data: Any
  workdir: str
  p_train_step: Any
  p_eval_step: Any
  lr: Any
  checkpoints: Checkpoints
  writer: MetricsWriter
  progress: Progress
  stop: preemption.StopRequests
  lock: runlock.RunLock
  rng: np.ndarray
  blocks_each_step: bool
  compiling: float | None = None

  def train_epoch(self, p_state, epoch: int, step: int):
    """Trains from ``step`` to the end of ``epoch``; logs, checkpoints and stops when a signal
    asks. Returns ``(p_state, step)``."""
    config, spe = self.config, self.data.steps_per_epoch
    for batch in self.data.train_batches(epoch, step - epoch * spe):
      p_state, metrics = self.p_train_step(p_state, shard(batch))
      self.stop.step_done()  # compiled and dispatched: a signal now waits for a checkpoint
      if self.blocks_each_step or self.compiling:
        jax.block_until_ready(metrics)
      step += 1
      self.progress.step(step)
      if self.compiling:
        logging.info('First step done in %.1f s, compiling included.',
                     time.time() - self.compiling)
        self.compiling = None
      # At every log step and at the end of every epoch, whatever log_every_steps says.
      if step % config.log_every_steps == 0 or step % spe == 0:
        self.log(epoch, step, jax_utils.unreplicate(metrics))
      self.checkpoints.check_saved()  # a save that failed stops the run here, naming its step
      saved = config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0
      if saved:
        self.save(step, p_state)
      if signum := self.stop.signal_at(step, config.log_every_steps):
        if not saved:
          self.save(step, p_state)
        self.last_good()  # written before the process exits
        raise Preempted(signum, step)
    return p_state, step

  def log(self, epoch: int, step: int, m: dict) -> None:
    """One log line and one metrics record; a non-finite loss stops the run."""
    config = self.config
    if not np.isfinite(m['loss']):
      raise self.diverged(step, 'loss')
    lr = self.lr(step - 1)
    self.progress.show(epoch=f'{epoch + 1}/{config.num_epochs}', loss=f"{m['loss']:.4f}")
    logging.info('epoch %d/%d step %d/%d loss %.4f acc %.4f lr %.4g %s', epoch + 1,
                 config.num_epochs, step, self.progress.total, m['loss'], m['accuracy'], lr,
                 self.progress.text())
    self.writer.write(step, train_loss=m['loss'], train_accuracy=m['accuracy'],
                      learning_rate=lr, **self.progress.rates())
    self.lock.refresh()

  def evaluate(self, p_state, epoch: int, step: int) -> dict:
    """Evaluates on the test split, once the last save is known to be written."""
    if jax.tree.leaves(p_state.batch_stats) and BN_MOMENTUM ** step > 0.01:
      logging.warning(
          "After %d steps, BatchNorm's running statistics, which the test numbers use, "
          'still weigh their initial values by %.0f %% (momentum %g a step): the test loss '
          'and accuracy of so short a run can be far off (the train loss uses batch '
          'statistics).', step, 100 * BN_MOMENTUM ** step, BN_MOMENTUM)
    self.checkpoints.check_saved(wait=True)  # no evaluation after a save that failed
    result = evaluate(self.p_eval_step, p_state, self.data)
    logging.info('epoch %d: test accuracy %.4f, loss %.4f', epoch + 1, result['test_accuracy'],
                 result['test_loss'])
    if not np.isfinite(result['test_loss']):
      raise self.diverged(step, 'test loss')
    self.writer.write(step, **result)
    return result

  def save(self, step: int, p_state) -> None:
    """Saves a checkpoint, never one holding non-finite values."""
    state = jax.device_get(jax_utils.unreplicate(p_state))
    if not all(np.all(np.isfinite(x)) for x in jax.tree.leaves((state.params, state.batch_stats))):
      raise self.diverged(step, 'weights')
    with (preemption.interrupt_after(),
          writing(f'the checkpoint of step {step} in {self.checkpoints.directory}')):
      self.checkpoints.save(step, state, self.rng)

  def diverged(self, step: int, what: str) -> Diverged:
    """The error for non-finite ``what`` at ``step``, naming the last checkpoint written."""
    return Diverged(step, self.last_good(), what)

  def last_good(self) -> int | None:
    """The newest checkpoint on disk once the saves in flight are written."""
    self.checkpoints.manager.wait_until_finished()
    return rundir.latest_step(self.workdir)


def train_loop(loop: Loop, state: TrainState, step: int) -> tuple[TrainState, dict]:
  """Trains ``state`` from ``step`` to ``config.num_epochs`` on the local devices, evaluating
  every ``eval_every_epochs`` and at the end and checkpointing every epoch; returns the trained
  state (on the host) and the last evaluation (of a run already finished: evaluated here)."""
  config, result = loop.config, None
  p_state = replicate(state)
  if step < loop.progress.total:
    logging.info('Compiling the train step; the first step waits for it.')
    loop.compiling = time.time()
  try:
    for epoch in range(step // loop.data.steps_per_epoch, config.num_epochs):
      p_state, step = loop.train_epoch(p_state, epoch, step)
      if (epoch + 1) % config.eval_every_epochs == 0 or epoch + 1 == config.num_epochs:
        result = loop.evaluate(p_state, epoch, step)
      loop.save(step, p_state)
    if result is None:  # resumed a finished run: nothing was evaluated above
      result = evaluate(loop.p_eval_step, p_state, loop.data)
  except KeyboardInterrupt:
    raise Interrupted(step, loop.last_good()) from None
  finally:
    with writing(f'the checkpoints in {loop.checkpoints.directory}'):  # the saves in flight
      loop.checkpoints.close()
    loop.writer.close()
  return jax.device_get(jax_utils.unreplicate(p_state)), result


# --- the run ------------------------------------------------------------------------------------

def summarize(config, state, result: dict, start: Start, budget: dict | None,
              seconds: float) -> dict:
  """The run's ``summary.json``: the last evaluation, the counts (:mod:`sparsity`; the dead
  units, per-layer table and warnings from ``start``), the budget, the time trained and the
  config."""
  return {
      **result,
      'steps': int(state.step),
      'epochs': config.num_epochs,
      'devices': jax.device_count(),
      'processes': jax.process_count(),
      'params_total': sparsity.count(state.params),
      'params_prunable_reference': sparsity.reference_weights(state.masks),
      'params_nonzero': sparsity.nonzero_weights(state.params, state.masks),
      'params_nonzero_sequential': sparsity.nonzero(state.masks, skip=False),
      'params_nonzero_skip': sparsity.nonzero(state.masks, skip=True),
      'params_skip_extra': sparsity.skip_extra_params(state.params),
      'dead_units': start.units.dead,
      'budget': budget,
      'warnings': start.warnings,
      'layers': start.layers,
      'train_seconds': seconds,
      'config': json.loads(config.to_json()),
  }


def train_and_evaluate(config, workdir: str, masks=None) -> dict:
  """Trains ``config`` in ``workdir``, resuming from its latest checkpoint; returns the summary.

  Args:
    config: a run config (``configs/default.py``); validated first.
    workdir: the run directory.
    masks: the ``masks`` collection to train (e.g. from :func:`pruning.prune`); ``None``
      prunes by ``config.pruning``. On resume they must equal the checkpoint's masks.

  The model trains as ``config.execution`` says (:mod:`n2nskip_jax.execution`). Progress is
  logged at INFO through absl (the process's logging settings are restored on return).

  Raises:
    UserError: a config, data or run directory the run cannot use (nothing is written to
      ``workdir`` before the config, the data and the masks have been checked).
    Diverged: a non-finite loss or weights (checked at every log step and before every
      checkpoint); no summary is written.
    Interrupted: Ctrl-C; says from which step a rerun resumes.
    Preempted: SIGTERM, SIGUSR1 or SIGHUP (:mod:`n2nskip_jax.preemption`): raised after the
      current step is checkpointed.
    runlock.Held: another live process is training in ``workdir``
      (:mod:`n2nskip_jax.runlock`); no checkpoint is read and nothing written.
    DiskFull: no space left while writing; names what; the checkpoints before are intact.
  """
  with (logging_for_runs(), preemption.stop_requests() as stop,
        runlock.RunLock(workdir) as lock, writing(f'the run directory {workdir}')):
    return _train_and_evaluate(config, workdir, masks, stop, lock)


def _train_and_evaluate(config, workdir: str, masks, stop, lock) -> dict:
  if config.multihost:
    execution.distributed.initialize(config)  # checks the keys it reads first
  validate(config, jax.device_count(), jax.process_count())
  is_main = lock.enabled = jax.process_index() == 0  # one lock per run
  # Before anything is allocated or compiled: a size that cannot fit, a budget that cannot train.
  spec = data_lib.spec(config)
  model, shapes = network.abstract(config, *spec)
  resources.check(config, model, shapes, spec.input_shape, jax.device_count())
  budget = pruning.check_budget(config, shapes['masks'])
  rundir.check_writable(workdir)
  logging.info('Run directory: %s', workdir)
  data = data_lib.load(config, jax.process_index(), jax.process_count())
  if data.steps_per_epoch == 0:
    raise UserError(f'config.batch_size={config.batch_size}: larger than the training set')
  start = restore_or_start(config, data, workdir, masks, lock, shapes)
  _log_budget(config, start, budget)
  total = config.num_epochs * data.steps_per_epoch
  started = time.time()
  with Progress(total, start.step, config.batch_size, bar=is_main) as progress:
    loop = Loop(config, data, workdir, *start.plan.steps(),
                learning_rate_schedule(config, data.steps_per_epoch), start.checkpoints,
                MetricsWriter(workdir, start.step, enabled=is_main), progress, stop, lock,
                start.rng, start.plan.blocks_each_step)
    state, result = train_loop(loop, start.state, start.step)
  summary = summarize(config, state, result, start, budget, time.time() - started)
  if is_main:
    write_hparams(workdir, config, {k: summary[k] for k in ('test_accuracy', 'test_loss',
                                                            'params_nonzero', 'dead_units')})
    write_json(os.path.join(workdir, rundir.SUMMARY), summary)
  logging.info('Done: test accuracy %.4f after %d steps; %d nonzero prunable weights '
               '(reference network: %d).', summary['test_accuracy'], summary['steps'],
               summary['params_nonzero'], summary['params_prunable_reference'])
  return summary


def _log_budget(config, start: Start, budget: dict | None) -> None:
  """Logs the per-layer table and the budget."""
  logging.info('Masked layers (density against each layer):\n%s',
               sparsity.format_layers(start.layers))
  if budget:
    logging.info('Budget: %d of %d reference weights (density %g) = %d sequential%s + %d skip; '
                 'outside it, the skips\' biases and BatchNorm parameters: %d.',
                 budget['total'], budget['reference'], config.pruning.density,
                 budget['sequential'], f' ({budget["top_up"]} of them random extra)'
                 if budget['top_up'] else '', budget['skip'],
                 sparsity.skip_extra_params(start.state.params))
