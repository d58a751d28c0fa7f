"""The training loop: init -> prune -> train (pmapped) -> evaluate, resumable via orbax.

    summary = train.train_and_evaluate(config, workdir)

Writes into ``workdir``: ``config.json``, ``checkpoints/<step>``, ``metrics.jsonl``,
``tensorboard/`` and, at the end, ``summary.json``.
"""
import json
import os
import time

import jax
import numpy as np
from absl import logging
from flax import jax_utils, traverse_util
from jax.experimental import multihost_utils

from n2nskip_jax import data as data_lib
from n2nskip_jax import network, pruning
from n2nskip_jax.checkpoints import Checkpoints
from n2nskip_jax.config import RESUMABLE_KEYS, UserError, changed_keys, validate
from n2nskip_jax.metrics import MetricsWriter, write_json
from n2nskip_jax.steps import AXIS, TrainState, create_optimizer, learning_rate_schedule
from n2nskip_jax.steps import p_eval_step, p_train_step


def prepare_workdir(workdir: str, config) -> None:
  """Creates ``workdir`` (checking it is writable) and pins the run's config in it.

  A rerun in the same workdir must use the same config, except for ``RESUMABLE_KEYS``.
  """
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, '.write_test')
    with open(probe, 'w') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as e:
    raise UserError(f'--workdir={workdir!r}: not a writable directory ({e.strerror})') from None
  path = os.path.join(workdir, 'config.json')
  current = json.loads(config.to_json())
  if os.path.exists(path):
    with open(path) as f:
      stored = json.load(f)
    changed = [k for k in changed_keys(stored, current) if k not in RESUMABLE_KEYS]
    if changed:
      raise UserError(f'--workdir={workdir!r} holds a run with a different config '
                      f'(keys {changed}); use another workdir or the original config.')
  with open(path, 'w') as f:
    json.dump(current, f, indent=2)


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


def evaluate(p_state, p_masks, data) -> dict:
  totals = {'loss': 0.0, 'correct': 0.0, 'count': 0.0}
  for batch in data.eval_batches():
    sums = jax_utils.unreplicate(p_eval_step(p_state, p_masks, shard(batch)))
    totals = {k: totals[k] + float(sums[k]) for k in totals}
  return {'test_loss': totals['loss'] / totals['count'],
          'test_accuracy': totals['correct'] / totals['count']}


def _initial_state(config, data, prune: bool = True):
  """Model, initial train state and masks: pruned at initialization, or all ones as the
  template a checkpoint is restored into (``prune=False``)."""
  model, variables = network.init(config, data.num_classes, data.input_shape, bn_axis_name=AXIS)
  masks = variables['masks']
  if prune:
    batch = snip_batch(data, config.pruning.snip_batch_size) if config.pruning.method == 'csp' else None
    masks = network.prune(config, variables, batch, data.num_classes)
    if jax.process_count() > 1:  # every host must train the same sparse network
      masks = multihost_utils.broadcast_one_to_all(masks)
  variables = network.apply_masks(variables, masks, rescale=config.pruning.rescale)
  state = TrainState.create(apply_fn=model.apply, params=variables['params'],
                            tx=create_optimizer(config, data.steps_per_epoch),
                            batch_stats=variables.get('batch_stats', {}))
  return state, masks


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains ``config`` in ``workdir``, resuming from its latest checkpoint; returns the summary."""
  if config.multihost:
    jax.distributed.initialize()
  validate(config, jax.device_count(), jax.process_count())
  is_main = jax.process_index() == 0
  network.check_budget(config)  # budget errors before anything is compiled
  prepare_workdir(workdir, config)
  data = data_lib.load(config, jax.process_index(), jax.process_count())
  if data.steps_per_epoch == 0:
    raise UserError(f'config.batch_size={config.batch_size}: larger than the training set')
  rng = np.asarray(jax.random.PRNGKey(config.seed))
  ckpt = Checkpoints(os.path.join(workdir, 'checkpoints'), config.max_checkpoints_to_keep)
  step = ckpt.latest_step() or 0
  state, masks = _initial_state(config, data, prune=not step)
  if step:
    state, masks, rng = ckpt.restore(step, state, masks, rng)
    logging.info('Resuming from checkpoint at step %d.', step)
  budget = pruning.budgets(config, masks) if config.pruning.method != 'dense' else None
  layers = network.layer_table(masks)
  logging.info('Masked layers (density against each layer):\n%s', network.format_layers(layers))
  if budget:
    logging.info('Budget: %d of %d reference weights (density %g) = %d sequential + %d skip.',
                 budget['total'], budget['reference'], config.pruning.density,
                 budget['sequential'], budget['skip'])

  steps_per_epoch, total = data.steps_per_epoch, config.num_epochs * data.steps_per_epoch
  lr = learning_rate_schedule(config, steps_per_epoch)
  writer = MetricsWriter(workdir, step, enabled=is_main)
  p_state, p_masks = jax_utils.replicate(state), jax_utils.replicate(masks)
  block = jax.default_backend() == 'cpu'  # see DESIGN.md: async collectives on fake CPU devices
  start_time, first_step = time.time(), step
  final, final_step = None, None
  for epoch in range(step // steps_per_epoch, config.num_epochs):
    for batch in data.train_batches(epoch, step - epoch * steps_per_epoch):
      p_state, metrics = p_train_step(p_state, p_masks, shard(batch))
      if block:
        jax.block_until_ready(metrics)
      step += 1
      if step == first_step + 1:  # throughput is measured from here on, compilation excluded
        tick, tick_step = time.time(), step
      if step % config.log_every_steps == 0 or step == total:
        m = jax_utils.unreplicate(metrics)
        scalars = {'train_loss': m['loss'], 'train_accuracy': m['accuracy'],
                   'learning_rate': lr(step - 1)}
        if step > tick_step:
          scalars['images_per_second'] = (step - tick_step) * config.batch_size / (time.time() - tick)
          tick, tick_step = time.time(), step
        logging.info('epoch %d/%d step %d/%d loss %.4f acc %.4f lr %.4g %s', epoch + 1,
                     config.num_epochs, step, total, m['loss'], m['accuracy'], lr(step - 1),
                     f"{scalars['images_per_second']:.0f} img/s" if 'images_per_second' in scalars else '')
        writer.write(step, **scalars)
      if config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0:
        ckpt.save(step, jax_utils.unreplicate(p_state), masks, rng)
    if (epoch + 1) % config.eval_every_epochs == 0 or epoch + 1 == config.num_epochs:
      result = evaluate(p_state, p_masks, data)
      logging.info('epoch %d: test accuracy %.4f, loss %.4f', epoch + 1,
                   result['test_accuracy'], result['test_loss'])
      writer.write(step, **result)
      final, final_step = result, step
    ckpt.save(step, jax_utils.unreplicate(p_state), masks, rng)
  ckpt.close()
  writer.close()

  if final_step != step:  # resumed a finished run: nothing was evaluated above
    final = evaluate(p_state, p_masks, data)
  state = jax.device_get(jax_utils.unreplicate(p_state))
  summary = {
      **final,
      'steps': int(state.step),
      'epochs': config.num_epochs,
      'devices': jax.device_count(),
      'processes': jax.process_count(),
      'params_total': network.count(state.params),
      'params_prunable_reference': pruning.count_reference_weights(masks),
      'params_nonzero': _nonzero_weights(state.params, masks),
      'params_nonzero_sequential': network.nonzero(masks, skip=False),
      'params_nonzero_skip': network.nonzero(masks, skip=True),
      'dead_units': network.dead_units(config, state.params, masks),
      'budget': budget,
      'layers': layers,
      'train_seconds': time.time() - start_time,
      'config': json.loads(config.to_json()),
  }
  if is_main:
    write_json(os.path.join(workdir, 'summary.json'), summary)
  logging.info('Done: test accuracy %.4f after %d steps; %d nonzero prunable weights '
               '(reference network: %d).', summary['test_accuracy'], summary['steps'],
               summary['params_nonzero'], summary['params_prunable_reference'])
  return summary


def _nonzero_weights(params, masks) -> int:
  """Nonzero entries of ``kernel * mask`` over all masked kernels."""
  flat_params = traverse_util.flatten_dict(params)
  return sum(int(np.count_nonzero(flat_params[p] * m))
             for p, m in traverse_util.flatten_dict(masks).items())
