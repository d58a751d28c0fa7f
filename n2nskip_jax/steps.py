"""Train state, optimizer and the per-device train and eval steps (run under ``jax.pmap``).

The step is the Flax ImageNet example's: ``loss_fn`` -> ``jax.value_and_grad`` -> ``lax.pmean``
-> ``apply_gradients``. The train state carries the masks; the model applies them in the
forward pass (``kernel * mask``) and the step never changes them (they are not parameters: no
gradient, no optimizer state), so they are static for the whole run. A pruned weight's
gradient is 0 (it is multiplied by its mask) and so are its weight decay and momentum, so it
stays exactly 0. Gradients are averaged over the ``'batch'`` axis; BatchNorm averages its batch
statistics over the same axis (the models' ``bn_axis_name``), so every replica holds identical
parameters and statistics and the result does not depend on the number of devices.
"""
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import jax_utils
from flax.training import train_state
from jax import lax

from n2nskip_jax.losses import cross_entropy

AXIS = 'batch'


class TrainState(train_state.TrainState):
  """Flax's train state plus BatchNorm statistics and the static binary masks."""
  batch_stats: Any
  masks: Any


def model_variables(state: TrainState, params=None) -> dict:
  """The model's variables (``params`` replaced if given)."""
  return {'params': state.params if params is None else params,
          'batch_stats': state.batch_stats, 'masks': state.masks}


def learning_rate_schedule(config, steps_per_epoch: int) -> optax.Schedule:
  """``lr * factor ** floor(epoch / lr_decay_epochs)`` (paper: 0.05 halved every 30 epochs)."""
  return _schedule(config.learning_rate, config.lr_decay_epochs * steps_per_epoch,
                   config.lr_decay_factor)


def create_optimizer(config, steps_per_epoch: int) -> optax.GradientTransformation:
  """SGD with momentum and coupled weight decay (``g + wd * w``, as PyTorch's SGD).

  Equal hyperparameters give the same object, so runs in one process (a study's cells)
  share the train state's static fields and reuse the compiled step.
  """
  return _sgd(config.weight_decay, config.momentum, config.learning_rate,
              config.lr_decay_epochs * steps_per_epoch, config.lr_decay_factor)


@functools.lru_cache(maxsize=None)
def _schedule(lr, decay_steps, factor) -> optax.Schedule:
  return optax.exponential_decay(lr, decay_steps, factor, staircase=True)


@functools.lru_cache(maxsize=None)
def _sgd(weight_decay, momentum, lr, decay_steps, factor) -> optax.GradientTransformation:
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.sgd(_schedule(lr, decay_steps, factor), momentum=momentum))


def train_loss(state: TrainState, variables: dict, batch):
  """``(loss, (logits, batch_stats))``: the mean cross-entropy of the model in training mode
  with ``variables`` on ``batch``, its logits and the updated BatchNorm statistics (the state's
  for a model without BatchNorm). The body of every train step's ``loss_fn``."""
  logits, updates = state.apply_fn(variables, batch['image'], train=True, mutable=['batch_stats'])
  loss = cross_entropy(logits, batch['label']).mean()
  return loss, (logits, updates.get('batch_stats', state.batch_stats))


def train_step(state: TrainState, batch) -> tuple[TrainState, dict]:
  """One SGD step on this device's shard of the global batch."""
  def loss_fn(params):
    return train_loss(state, model_variables(state, params), batch)

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  grads = lax.pmean(grads, AXIS)
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  return state, train_metrics(logits, loss, batch)


def train_metrics(logits, loss, batch) -> dict:
  """The step's loss and accuracy, averaged over the devices."""
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['label'])
  return lax.pmean({'loss': loss, 'accuracy': accuracy}, AXIS)


def eval_step(state: TrainState, batch) -> dict:
  """Sums of loss, correct predictions and examples over the batch (padding masked out)."""
  return eval_sums(state.apply_fn(model_variables(state), batch['image'], train=False), batch)


def eval_sums(logits, batch) -> dict:
  w = batch['mask']
  sums = {'loss': jnp.sum(cross_entropy(logits, batch['label']) * w),
          'correct': jnp.sum((jnp.argmax(logits, -1) == batch['label']) * w),
          'count': jnp.sum(w)}
  return lax.psum(sums, AXIS)


p_train_step = jax.pmap(train_step, axis_name=AXIS, donate_argnums=(0,))
p_eval_step = jax.pmap(eval_step, axis_name=AXIS)
# Donating its input: the replicated copy it lays out again is freed, not kept beside it.
_p_identity = jax.pmap(lambda tree: tree, axis_name=AXIS, donate_argnums=(0,))


def replicate(tree):
  """``tree`` on every local device, laid out as :data:`p_train_step` lays out its outputs.
  ``flax.jax_utils.replicate`` alone gives arrays whose sharding names another mesh axis, and
  ``pmap`` compiled the train step a second time for the first step's outputs (7 s for
  ResNet50's dense step on CPU, 18 s by its nonzeros)."""
  return _p_identity(jax_utils.replicate(tree))
