"""Train state, optimizer and the per-device train and eval steps (run under ``jax.pmap``).

The train state carries the masks; the step applies them in the forward pass and never
changes them (they are not parameters: no gradient, no optimizer state), so they are static
for the whole run. Gradients are averaged over the ``'batch'`` axis (:func:`device_mean`); BatchNorm
averages its batch statistics over the same axis (the models' ``bn_axis_name``), so every
replica holds identical parameters and statistics and the result does not depend on the
number of devices. For kernels run by their nonzeros, gradients are taken, averaged and the
optimizer updated at the nonzero entries only (:func:`train_step`, :func:`apply_gradients`).
"""
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import jax_utils, traverse_util
from flax.training import train_state
from jax import lax

from n2nskip_jax import sparse
from n2nskip_jax.losses import cross_entropy

AXIS = 'batch'
PERTURBATIONS = 'perturbations'  # nn.Module.perturb's collection


class TrainState(train_state.TrainState):
  """Flax's train state plus BatchNorm statistics, the static binary masks and the index
  tables of the layers that run by their nonzeros (``network.sparse_execution``; derived
  from the masks, so never checkpointed)."""
  batch_stats: Any
  masks: Any
  nonzeros: Any = None

  def variables(self, params=None) -> dict:
    """The model's variables (``params`` replaced if given)."""
    nonzeros = {'nonzeros': self.nonzeros} if self.nonzeros else {}
    return {'params': self.params if params is None else params,
            'batch_stats': self.batch_stats, 'masks': self.masks, **nonzeros}


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


def train_step(state: TrainState, batch) -> tuple[TrainState, dict]:
  """One SGD step on this device's shard of the global batch.

  A kernel run by its nonzeros is not differentiated as a dense array: its layer reads it
  through its weights at the nonzeros, perturbed (``layers``), and the gradient with respect to
  the perturbation is its gradient there, in table order; put in ascending order (its
  ``order`` table), it is compact as :func:`apply_gradients` takes it.
  """
  index = update_index(state.params, state.nonzeros)
  params = traverse_util.flatten_dict(state.params)
  by_nonzeros = {p for p, i in traverse_util.flatten_dict(index).items() if not isinstance(i, str)}
  dense = {p: leaf for p, leaf in params.items() if p not in by_nonzeros}
  tables = traverse_util.flatten_dict(state.nonzeros or {})
  perturbations = {p: jnp.zeros(tables[p + ('by_output',)].shape) for p in by_nonzeros}

  def loss_fn(dense, perturbations):
    variables = state.variables(traverse_util.unflatten_dict({**params, **dense}))
    if perturbations:
      variables[PERTURBATIONS] = traverse_util.unflatten_dict(perturbations)
    logits, updates = state.apply_fn(variables, batch['image'], train=True,
                                     mutable=['batch_stats'])
    loss = cross_entropy(logits, batch['label']).mean()
    return loss, (logits, updates.get('batch_stats', state.batch_stats))

  (loss, (logits, batch_stats)), (grads, in_table_order) = jax.value_and_grad(
      loss_fn, (0, 1), has_aux=True)(dense, perturbations)
  grads.update({p: g.reshape(-1)[tables[p + ('order',)]] for p, g in in_table_order.items()})
  grads = device_mean(traverse_util.unflatten_dict(grads))
  state = apply_gradients(state, grads, index, batch_stats=batch_stats)
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['label'])
  return state, lax.pmean({'loss': loss, 'accuracy': accuracy}, AXIS)


def device_mean(tree):
  """``lax.pmean(tree, AXIS)``; ``tree`` itself on one device, where XLA:CPU would still copy
  every leaf through an all-reduce (4-5 ms a step for ResNet50's or VGG19's gradients)."""
  return tree if lax.axis_size(AXIS) == 1 else lax.pmean(tree, AXIS)


def update_index(params, nonzeros) -> Any:
  """Params-shaped: for each kernel run by its nonzeros (``nonzeros``, see ``TrainState``), the
  flat indices of its nonzero entries in ascending order (its ``ascending`` table; the padding
  one past the end), and ``ALL`` for every other parameter."""
  tables = traverse_util.flatten_dict(nonzeros or {})
  return traverse_util.unflatten_dict(
      {path: tables.get(path + ('ascending',), ALL)
       for path in traverse_util.flatten_dict(params)})


def apply_gradients(state: TrainState, grads, index, **changes) -> TrainState:
  """``state.apply_gradients`` with the optimizer run over the entries in ``index`` only
  (:func:`update_index`; ``grads`` already taken at them). Exact: a pruned entry has zero
  weight, gradient and optimizer state, and SGD's update keeps all three at zero, so only the
  nonzeros change; their update is the same elementwise arithmetic. Kernels and optimizer
  state stay dense-shaped, the nonzeros written back in place (the state is donated)."""
  opt_state = optax.tree_utils.tree_map_params(state.tx, _compact, state.opt_state, index)
  params = jax.tree.map(_compact, state.params, index)
  updates, opt_state = state.tx.update(grads, opt_state, params)
  params = optax.apply_updates(params, updates)
  opt_index = optax.tree_utils.tree_map_params(state.tx, lambda _, i: i, state.opt_state, index,
                                               transform_non_params=lambda _: ALL)
  return state.replace(step=state.step + 1,
                       params=jax.tree.map(_expand, state.params, params, index),
                       opt_state=jax.tree.map(_expand, state.opt_state, opt_state, opt_index),
                       **changes)


ALL = 'all'  # an update_index leaf: the whole parameter


def _compact(leaf, index):
  return leaf if isinstance(index, str) else sparse.at_nonzeros(leaf, index)


def _expand(leaf, compact, index):
  if isinstance(index, str):
    return compact
  return jnp.ravel(leaf).at[index].set(compact, mode='drop').reshape(leaf.shape)


def eval_step(state: TrainState, batch) -> dict:
  """Sums of loss, correct predictions and examples over the batch (padding masked out)."""
  logits = state.apply_fn(state.variables(), batch['image'], train=False)
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
