"""The training loop: init -> prune -> train (pmapped) -> evaluate, resumable via orbax.

    summary = train.train_and_evaluate(config, workdir)          # prunes by the config
    summary = train.train_and_evaluate(config, workdir, masks)   # trains the given masks

Writes the run directory (:mod:`n2nskip_jax.rundir`): ``config.json``, ``checkpoints/<step>``,
``metrics.jsonl``, ``tensorboard/`` and, at the end, ``summary.json``.
"""
import json
import os
import time

import jax
import numpy as np
from absl import logging
from flax import jax_utils
from jax.experimental import multihost_utils

from n2nskip_jax import data as data_lib
from n2nskip_jax import (execution, network, preemption, pruning, resources, rundir, runlock,
                         sparsity)
from n2nskip_jax.config import logging_for_runs, validate
from n2nskip_jax.errors import Diverged, Interrupted, Preempted, UserError, writing
from n2nskip_jax.layers import BN_MOMENTUM
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
  totals = {'loss': 0.0, 'correct': 0.0, 'count': 0.0}
  for batch in data.eval_batches():
    sums = jax_utils.unreplicate(p_eval_step(p_state, shard(batch)))
    totals = {k: totals[k] + float(sums[k]) for k in totals}
  return {'test_loss': totals['loss'] / totals['count'],
          'test_accuracy': totals['correct'] / totals['count']}


def _check_masks(masks, template) -> None:
  """The user's masks must have the model's mask paths and shapes, and be 0/1."""
  got, want = jax.tree.structure(masks), jax.tree.structure(template)
  if got != want:
    raise UserError(f'masks: expected the model\'s mask tree {want}, got {got}')
  for m, t in zip(jax.tree.leaves(masks), jax.tree.leaves(template)):
    if np.shape(m) != np.shape(t) or not np.isin(np.asarray(m), (0, 1)).all():
      raise UserError(f'masks: expected 0/1 arrays shaped like the kernels ({np.shape(t)}), '
                      f'got shape {np.shape(m)}')


def _initial_state(config, data, masks=None, prune: bool = True) -> TrainState:
  """The train state at initialization: pruned by the config (or carrying the user's
  ``masks``), or all ones as the template a checkpoint is restored into (``prune=False``)."""
  model, variables = network.init(config, data.num_classes, data.input_shape, bn_axis_name=AXIS)
  if masks is not None:
    _check_masks(masks, variables['masks'])
  elif prune:
    batch = snip_batch(data, config.pruning.snip_batch_size) if pruning.needs_batch(config) else None
    # Saliency by the layers the run trains with (the plan's formulations: no tables yet).
    masks = pruning.prune(config, variables, batch, input_shape=data.input_shape,
                          layers=execution.plan(config, {}).layers())
    if jax.process_count() > 1:  # every host must train the same sparse network
      masks = multihost_utils.broadcast_one_to_all(masks)
  if masks is not None:
    variables = network.trained_weights(config, variables, data.num_classes, data.input_shape)
    variables = pruning.apply_config_masks(config, variables, masks)
  return TrainState.create(apply_fn=model.apply, params=variables['params'],
                           tx=create_optimizer(config, data.steps_per_epoch),
                           batch_stats=variables.get('batch_stats', {}), masks=variables['masks'])


def _initialize_distributed(config) -> None:
  """Joins a multi-process run: ``config.coordinator_address``, ``num_processes`` and
  ``process_id`` where set, else what JAX reads from the cluster's environment. On CPU the
  processes' collectives go through gloo. A process that loses a peer for
  ``heartbeat_timeout`` seconds stops instead of waiting forever."""
  if jax.distributed.is_initialized():
    return
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  given = {'coordinator_address': config.coordinator_address or None,
           'num_processes': config.num_processes or None,
           'process_id': config.process_id if config.process_id >= 0 else None}
  jax.distributed.initialize(**{k: v for k, v in given.items() if v is not None},
                             heartbeat_timeout_seconds=config.heartbeat_timeout)
  logging.info('Process %d of %d, %d local of %d devices.', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def _mask_warnings(config, masks) -> list[str]:
  """Warnings (logged, and kept in the summary) for masks that leave no path from the input
  to the output (layer collapse: the network cannot learn) or most hidden units dead. A
  sequential layer left empty while skips carry the signal around it is logged, not warned."""
  warnings = []
  empty = pruning.empty_layers(masks)
  if empty and not sparsity.reachable_outputs(config, masks):
    warnings.append(f'layer collapse: pruning left {", ".join(empty)} with no weight at all '
                    f'at density {config.pruning.density} and no path from the input to the '
                    'output; the network cannot learn')
  elif empty:
    logging.info('Pruning left %s with no weight; skip connections carry the signal around '
                 'it.', ', '.join(empty))
  dead, hidden = sparsity.dead_units(config, masks), sparsity.hidden_units(config, masks)
  if dead > hidden / 2:
    warnings.append(f'{dead} of {hidden} hidden units ({dead / hidden:.0%}) have no input or '
                    f'no output at density {config.pruning.density}: most of the network is dead')
  for w in warnings:
    logging.warning(w)
  return warnings


def _start(config, data, workdir, masks, rng, lock):
  """``(state, rng, step, checkpoints, warnings)``: restored from the newest readable
  checkpoint, or initialized and pruned. Nothing is written to ``workdir`` before the masks
  are checked, and its checkpoints are read only under the run's lock."""
  check = lambda s: _mask_warnings(config, s.masks) if config.pruning.method != 'dense' else []
  total = config.num_epochs * data.steps_per_epoch
  latest = rundir.latest_step(workdir)
  if latest and latest > total:
    raise UserError(f'config.num_epochs={config.num_epochs}: {workdir} holds a checkpoint at '
                    f'step {latest} (epoch {latest // data.steps_per_epoch}); use num_epochs >= '
                    f'{-(-latest // data.steps_per_epoch)} or another workdir')
  if latest:
    lock.acquire()
    rundir.prepare(workdir, config)
    ckpt = _checkpoints(workdir, config)
    found = ckpt.restore_latest(_initial_state(config, data, prune=False), rng)
    if found:
      step, state, rng = found
      logging.info('Resuming from checkpoint at step %d.', step)
      if masks is not None and not all(np.array_equal(a, b) for a, b in zip(
          jax.tree.leaves(masks), jax.tree.leaves(state.masks))):
        raise UserError('masks: differ from the masks this run was started with; use another workdir')
      return state, rng, step, ckpt, check(state)
    if not config.restart_on_corrupt:
      raise UserError(f'no checkpoint in {ckpt.directory} can be read (set aside as corrupt-<step>); '
                      'rerun with --config.restart_on_corrupt=True to start the run over')
    logging.warning('No readable checkpoint: starting over (restart_on_corrupt=True).')
  state = _initial_state(config, data, masks)
  warnings = check(state)
  lock.acquire()
  rundir.prepare(workdir, config)
  return state, rng, 0, _checkpoints(workdir, config), warnings


def _checkpoints(workdir: str, config):
  """The run's checkpoints, opened under its lock: saves that never finished are removed."""
  ckpt = rundir.checkpoints(workdir, config.max_checkpoints_to_keep)
  ckpt.remove_unfinished()
  return ckpt


def _save(ckpt, workdir: str, step: int, p_state, rng) -> None:
  """Saves a checkpoint, never one holding non-finite values."""
  state = jax.device_get(jax_utils.unreplicate(p_state))
  if not all(np.all(np.isfinite(x)) for x in jax.tree.leaves((state.params, state.batch_stats))):
    raise Diverged(step, _last_good(ckpt, workdir), 'weights')
  with preemption.interrupt_after(), writing(f'the checkpoint of step {step} in {ckpt.directory}'):
    ckpt.save(step, state, rng)


def _last_good(ckpt, workdir: str) -> int | None:
  """The newest checkpoint on disk once the saves in flight are written."""
  ckpt.manager.wait_until_finished()
  return rundir.latest_step(workdir)


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
    validate(config)  # the process keys, before they are used
    _initialize_distributed(config)
  validate(config, jax.device_count(), jax.process_count())
  is_main = lock.enabled = jax.process_index() == 0  # one lock per run
  # Before anything is allocated or compiled: a size that cannot fit, a budget that cannot train.
  spec = data_lib.spec(config)
  resources.check(config, *spec, jax.device_count())
  budget = pruning.check_budget(config, *spec)
  rundir.check_writable(workdir)
  logging.info('Run directory: %s', workdir)
  data = data_lib.load(config, jax.process_index(), jax.process_count())
  if data.steps_per_epoch == 0:
    raise UserError(f'config.batch_size={config.batch_size}: larger than the training set')
  rng = np.asarray(jax.random.PRNGKey(config.seed))
  state, rng, step, ckpt, warnings = _start(config, data, workdir, masks, rng, lock)
  plan = execution.plan(config, state.masks)
  state = state.replace(apply_fn=plan.model(config, data.num_classes, bn_axis_name=AXIS).apply)
  p_train_step, p_eval_step = plan.steps()
  layers = sparsity.layer_table(state.masks)
  logging.info('Masked layers (density against each layer):\n%s', sparsity.format_layers(layers))
  if budget:
    logging.info('Budget: %d of %d reference weights (density %g) = %d sequential%s + %d skip; '
                 'outside it, the skips\' biases and BatchNorm parameters: %d.',
                 budget['total'], budget['reference'], config.pruning.density,
                 budget['sequential'], f' ({budget["top_up"]} of them random extra)'
                 if budget['top_up'] else '', budget['skip'],
                 sparsity.skip_extra_params(state.params))

  steps_per_epoch, total = data.steps_per_epoch, config.num_epochs * data.steps_per_epoch
  lr = learning_rate_schedule(config, steps_per_epoch)
  writer = MetricsWriter(workdir, step, enabled=is_main)
  p_state = replicate(state)
  uses_batch_norm = bool(jax.tree.leaves(state.batch_stats))
  block = jax.default_backend() == 'cpu'  # docs/DESIGN.md, section 4: collectives on fake CPU devices
  start_time = time.time()
  final, final_step = None, None
  compiling = time.time() if step < total else None
  if compiling:
    logging.info('Compiling the train step; the first step waits for it.')
  with Progress(total, step, config.batch_size, bar=is_main) as progress:
    try:
      for epoch in range(step // steps_per_epoch, config.num_epochs):
        for batch in data.train_batches(epoch, step - epoch * steps_per_epoch):
          p_state, metrics = p_train_step(p_state, shard(batch))
          stop.step_done()  # compiled and dispatched: a signal now waits for a checkpoint
          if block or compiling:
            jax.block_until_ready(metrics)
          step += 1
          progress.step(step)
          if compiling:
            logging.info('First step done in %.1f s, compiling included.', time.time() - compiling)
            compiling = None
          # At every log step and at the end of every epoch, whatever log_every_steps says.
          if step % config.log_every_steps == 0 or step % steps_per_epoch == 0:
            m = jax_utils.unreplicate(metrics)
            if not np.isfinite(m['loss']):
              raise Diverged(step, _last_good(ckpt, workdir))
            scalars = {'train_loss': m['loss'], 'train_accuracy': m['accuracy'],
                       'learning_rate': lr(step - 1), **progress.rates()}
            progress.show(epoch=f'{epoch + 1}/{config.num_epochs}', loss=f"{m['loss']:.4f}")
            logging.info('epoch %d/%d step %d/%d loss %.4f acc %.4f lr %.4g %s', epoch + 1,
                         config.num_epochs, step, total, m['loss'], m['accuracy'], lr(step - 1),
                         progress.text())
            writer.write(step, **scalars)
            lock.refresh()
          ckpt.check_saved()  # a save that failed stops the run here, naming its step
          saved = config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0
          if saved:
            _save(ckpt, workdir, step, p_state, rng)
          if signum := stop.signal_at(step, config.log_every_steps):
            if not saved:
              _save(ckpt, workdir, step, p_state, rng)
            _last_good(ckpt, workdir)  # written before the process exits
            raise Preempted(signum, step)
        if (epoch + 1) % config.eval_every_epochs == 0 or epoch + 1 == config.num_epochs:
          if uses_batch_norm and BN_MOMENTUM ** step > 0.01:
            logging.warning(
                "After %d steps, BatchNorm's running statistics, which the test numbers use, "
                'still weigh their initial values by %.0f %% (momentum %g a step): the test loss '
                'and accuracy of so short a run can be far off (the train loss uses batch '
                'statistics).', step, 100 * BN_MOMENTUM ** step, BN_MOMENTUM)
          ckpt.check_saved(wait=True)  # no evaluation after a save that failed
          result = evaluate(p_eval_step, p_state, data)
          logging.info('epoch %d: test accuracy %.4f, loss %.4f', epoch + 1,
                       result['test_accuracy'], result['test_loss'])
          if not np.isfinite(result['test_loss']):
            raise Diverged(step, _last_good(ckpt, workdir), 'test loss')
          writer.write(step, **result)
          final, final_step = result, step
        _save(ckpt, workdir, step, p_state, rng)
    except KeyboardInterrupt:
      raise Interrupted(step, _last_good(ckpt, workdir)) from None
    finally:
      with writing(f'the checkpoints in {ckpt.directory}'):  # the saves still in flight
        ckpt.close()
      writer.close()

  if final_step != step:  # resumed a finished run: nothing was evaluated above
    final = evaluate(p_eval_step, p_state, data)
  state = jax.device_get(jax_utils.unreplicate(p_state))
  summary = {
      **final,
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
      'dead_units': sparsity.dead_units(config, state.masks),
      'budget': budget,
      'warnings': warnings,
      'layers': layers,
      'train_seconds': time.time() - start_time,
      'config': json.loads(config.to_json()),
  }
  if is_main:
    write_hparams(workdir, config, {k: summary[k] for k in ('test_accuracy', 'test_loss',
                                                            'params_nonzero', 'dead_units')})
    write_json(os.path.join(workdir, rundir.SUMMARY), summary)
  logging.info('Done: test accuracy %.4f after %d steps; %d nonzero prunable weights '
               '(reference network: %d).', summary['test_accuracy'], summary['steps'],
               summary['params_nonzero'], summary['params_prunable_reference'])
  return summary
