"""The train and eval steps for a plan that runs some kernels by their nonzeros.

The core step's shape (``n2nskip_jax.steps.train_step``: loss_fn -> value_and_grad -> mean over
devices -> apply_gradients), with the kernels that have index tables (``tables``, from
``execution.plan``) read through their weights at the nonzeros. Such a kernel is not
differentiated as a dense array: its layer reads those weights perturbed
(``nn.Module.perturb``, :mod:`n2nskip_jax.execution.layers`), and the gradient with respect to
the perturbation is its gradient there, in table order; put in ascending order (its ``order``
table), it is compact, and the optimizer updates the nonzero entries only
(:func:`apply_gradients`). Exact: a pruned entry has zero weight, gradient and optimizer state,
and SGD's update keeps all three at zero.
"""
import jax
import jax.numpy as jnp
import optax
from flax import traverse_util
from jax import lax

from n2nskip_jax import steps
from n2nskip_jax.execution.by_nonzeros import NONZEROS, at_nonzeros

PERTURBATIONS = 'perturbations'  # nn.Module.perturb's collection
WHOLE = 'whole'  # an update_index leaf: the parameter is updated whole


def model_variables(state: steps.TrainState, tables, params=None) -> dict:
  """The core's variables plus the ``nonzeros`` collection of index tables."""
  return {**steps.model_variables(state, params), NONZEROS: tables}


def train_step(state: steps.TrainState, tables, batch):
  """One SGD step on this device's shard of the global batch (module docstring)."""
  index = update_index(state.params, tables)
  params = traverse_util.flatten_dict(state.params)
  # In the params' order, not a set's: the traced program, and so the persistent compilation
  # cache's key, must not depend on the process's string hashing.
  by_nonzeros = [p for p, i in traverse_util.flatten_dict(index).items() if not isinstance(i, str)]
  dense = {p: leaf for p, leaf in params.items() if p not in by_nonzeros}
  flat_tables = traverse_util.flatten_dict(tables)
  perturbations = {p: jnp.zeros(flat_tables[p + ('by_output',)].shape) for p in by_nonzeros}

  def loss_fn(dense, perturbations):
    variables = model_variables(state, tables, traverse_util.unflatten_dict({**params, **dense}))
    variables[PERTURBATIONS] = traverse_util.unflatten_dict(perturbations)
    return steps.train_loss(state, variables, batch)

  (loss, (logits, batch_stats)), (grads, in_table_order) = jax.value_and_grad(
      loss_fn, (0, 1), has_aux=True)(dense, perturbations)
  grads.update({p: g.reshape(-1)[flat_tables[p + ('order',)]] for p, g in in_table_order.items()})
  grads = device_mean(traverse_util.unflatten_dict(grads))
  state = apply_gradients(state, grads, index, batch_stats=batch_stats)
  return state, steps.train_metrics(logits, loss, batch)


def eval_step(state: steps.TrainState, tables, batch) -> dict:
  """``steps.eval_step`` with the kernels run by their nonzeros."""
  logits = state.apply_fn(model_variables(state, tables), batch['image'], train=False)
  return steps.eval_sums(logits, batch)


def device_mean(tree):
  """``lax.pmean(tree, AXIS)``; ``tree`` itself on one device, where XLA:CPU would still copy
  every leaf through an all-reduce (4-5 ms a step for ResNet50's or VGG19's gradients)."""
  return tree if lax.axis_size(steps.AXIS) == 1 else lax.pmean(tree, steps.AXIS)


def update_index(params, tables) -> dict:
  """Params-shaped: for each kernel run by its nonzeros, the flat indices of its nonzero
  entries in ascending order (its ``ascending`` table; the padding one past the end), and
  :data:`WHOLE` for every other parameter."""
  flat = traverse_util.flatten_dict(tables)
  return traverse_util.unflatten_dict(
      {path: flat.get(path + ('ascending',), WHOLE)
       for path in traverse_util.flatten_dict(params)})


def apply_gradients(state: steps.TrainState, grads, index, **changes) -> steps.TrainState:
  """``state.apply_gradients`` with the optimizer run over the entries in ``index`` only
  (:func:`update_index`; ``grads`` already taken at them): the same elementwise arithmetic on
  the nonzeros. Kernels and optimizer state stay dense-shaped, the nonzeros written back in
  place (the state is donated)."""
  opt_state = optax.tree_utils.tree_map_params(state.tx, _compact, state.opt_state, index)
  params = jax.tree.map(_compact, state.params, index)
  updates, opt_state = state.tx.update(grads, opt_state, params)
  params = optax.apply_updates(params, updates)
  opt_index = optax.tree_utils.tree_map_params(state.tx, lambda _, i: i, state.opt_state, index,
                                               transform_non_params=lambda _: WHOLE)
  return state.replace(step=state.step + 1,
                       params=jax.tree.map(_expand, state.params, params, index),
                       opt_state=jax.tree.map(_expand, state.opt_state, opt_state, opt_index),
                       **changes)


def _compact(leaf, index):
  return leaf if isinstance(index, str) else at_nonzeros(leaf, index)


def _expand(leaf, compact, index):
  if isinstance(index, str):
    return compact
  return jnp.ravel(leaf).at[index].set(compact, mode='drop').reshape(leaf.shape)


p_train_step = jax.pmap(train_step, axis_name=steps.AXIS, donate_argnums=(0,))
p_eval_step = jax.pmap(eval_step, axis_name=steps.AXIS)
