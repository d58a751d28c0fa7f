"""Magnitude, SynFlow and GraSP against independent computations; the shuffle/reinit controls."""
import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_config
from flax import traverse_util
from jax.flatten_util import ravel_pytree
from test_pruning import MODELS, batch_for, pruned

from n2nskip_jax import data, methods, models, network, pruning, saliency, sparsity
from n2nskip_jax.losses import cross_entropy


LINEAR_MLP = dict(model='mlp', mlp_hidden=(12, 9, 7), dataset='mnist1d')


def _linear_mlp(seed=0, **extra):
  """A small MLP with its biases zeroed: ``R = 1^T |W_4| |W_3| |W_2| |W_1| 1``."""
  config = make_config(**LINEAR_MLP, pruning__method='synflow', seed=seed, **extra)
  _, variables = network.init(config, 10, (40,))
  params = {p: np.zeros_like(v) if p[-1] == 'bias' else v
            for p, v in traverse_util.flatten_dict(variables['params']).items()}
  return config, {**variables, 'params': traverse_util.unflatten_dict(params)}


def _kernel_list(variables):
  params = variables['params']
  return [np.abs(np.asarray(params[name]['kernel'], np.float64))
          for name in ('dense1', 'dense2', 'dense3', 'head')]


def test_synflow_scores_equal_path_counts_in_numpy():
  config, variables = _linear_mlp()
  scores = methods.Scoring(config, variables, input_shape=(40,)).synflow(
      traverse_util.flatten_dict(jax.tree.map(np.ones_like, variables['masks'])))
  kernels = _kernel_list(variables)
  for l, name in enumerate(('dense1', 'dense2', 'dense3', 'head')):
    into = np.ones(40)  # paths from the input into each input unit of layer l
    for k in kernels[:l]:
      into = into @ k
    out_of = np.ones(10)  # paths from each output unit of layer l to the outputs
    for k in reversed(kernels[l + 1:]):
      out_of = k @ out_of
    expected = kernels[l] * into[:, None] * out_of[None, :]
    np.testing.assert_allclose(scores[(name, 'kernel')], expected, rtol=1e-10)


def test_synflow_on_a_conv_net_equals_autodiff_of_r_in_the_weights():
  overrides, shape = MODELS['vgg19']
  config = make_config(**overrides, pruning__method='synflow')
  _, variables = network.init(config, 10, shape)
  masks = traverse_util.flatten_dict(jax.tree.map(np.ones_like, variables['masks']))
  scores = methods.Scoring(config, variables, input_shape=shape).synflow(masks)
  model = models.create_model(config, 10)
  with jax.enable_x64(True):
    positive = jax.tree.map(lambda v: jnp.abs(jnp.asarray(v, jnp.float64)), variables)

    def r(params):  # R as a function of the weights themselves
      return jnp.sum(model.apply({**positive, 'params': params}, jnp.ones((1, *shape)),
                                 train=False))

    grads = traverse_util.flatten_dict(jax.grad(r)(positive['params']))
    params = traverse_util.flatten_dict(positive['params'])
    for p in masks:
      np.testing.assert_allclose(scores[p], np.asarray(params[p] * grads[p]), rtol=1e-9)
  assert np.isfinite(sum(float(s.sum()) for s in scores.values()))


def test_synflow_one_round_is_single_shot_and_the_schedule_ends_on_the_budget():
  config, variables = _linear_mlp(pruning__synflow_iterations=1, pruning__density=0.2)
  masks = pruning.prune(config, variables, input_shape=(40,))
  flat = traverse_util.flatten_dict(variables['masks'])
  scores = methods.Scoring(config, variables, input_shape=(40,)).synflow(
      {p: np.ones_like(m) for p, m in flat.items()})
  budget = round(0.2 * sparsity.count(variables['masks']))
  expected = methods.top_k(scores, {p: m.shape for p, m in flat.items()}, budget, np.float64)
  for p, m in traverse_util.flatten_dict(masks).items():
    np.testing.assert_array_equal(m, expected[p])
  schedule = methods.synflow_budgets(1000, 37, 100)
  assert schedule[-1] == 37 and len(schedule) == 100
  assert all(a >= b for a, b in zip([1000, *schedule], schedule))
  assert schedule[49] == round(1000 * 0.037 ** 0.5)


def test_synflow_rounds_never_revive_a_pruned_weight_and_differ_from_single_shot():
  config, variables = _linear_mlp(pruning__synflow_iterations=20, pruning__density=0.05)
  iterative = pruning.prune(config, variables, input_shape=(40,))
  single = pruning.prune(copy_with(config, pruning__synflow_iterations=1), variables,
                         input_shape=(40,))
  budget = round(0.05 * sparsity.count(variables['masks']))
  assert sparsity.nonzero(iterative) == sparsity.nonzero(single) == budget
  assert any(not np.array_equal(a, b) for a, b in
             zip(jax.tree.leaves(iterative), jax.tree.leaves(single)))


def copy_with(config, **overrides):
  out = copy.deepcopy(config)
  for key, value in overrides.items():
    group, name = key.split('__')
    out[group][name] = value
  return out


def test_grasp_hessian_gradient_equals_the_explicit_hessian_times_g():
  config = make_config(**{**LINEAR_MLP, 'mlp_hidden': (6, 5)})
  model, variables = network.init(config, 10, (40,))
  batch = batch_for((40,), n=8)
  kernels = {p: v for p, v in traverse_util.flatten_dict(variables['params']).items()
             if p[-1] == 'kernel'}
  flat, unravel = ravel_pytree(kernels)

  def loss(vector):
    params = {**traverse_util.flatten_dict(variables['params']), **unravel(vector)}
    logits = model.apply({**variables, 'params': traverse_util.unflatten_dict(params)},
                         batch['image'])
    return cross_entropy(logits / 3.0, batch['label']).mean()

  hessian = jax.jit(jax.hessian(loss))(flat)
  g = jax.grad(loss)(flat)
  got_g, hg = saliency.hessian_gradient(model.apply, variables, batch, 3.0)
  np.testing.assert_allclose(ravel_pytree(got_g)[0], g, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(ravel_pytree(hg)[0], hessian @ g, rtol=1e-4, atol=1e-7)


def test_grasp_keeps_the_budget_lowest_minus_w_hg():
  config, variables, masks = pruned('mlp', 'grasp', 0.05)
  batch = batch_for(MODELS['mlp'][1])
  model = models.create_model(config, 10)
  temperature = float(config.pruning.grasp_temperature)
  scores = saliency.grasp(model.apply, variables, batch, temperature)
  hg = jax.jit(saliency.hessian_gradient, static_argnums=0)(model.apply, variables, batch,
                                                            temperature)[1]
  params = traverse_util.flatten_dict(variables['params'])
  flat_masks = traverse_util.flatten_dict(masks)
  for p, s in scores.items():
    expected = -params[p] * hg[p]
    np.testing.assert_allclose(s, expected, atol=1e-5 * np.abs(expected).max())
  every = np.concatenate([np.asarray(scores[p]).ravel() for p in flat_masks])
  kept = np.concatenate([flat_masks[p].ravel() for p in flat_masks]) > 0
  assert kept.sum() == round(0.05 * sparsity.reference_weights(masks))
  assert every[kept].max() <= every[~kept].min()  # the highest scores are removed


class _Weights:
  def __init__(self, weights):
    self._weights = weights

  def weights(self):
    return self._weights


def test_magnitude_keeps_the_top_k_absolute_weights_ties_by_position():
  weights = {('a', 'kernel'): np.array([[0.5, -2.0], [1.0, -1.0]]),
             ('b', 'kernel'): np.array([[1.0, 0.1, -3.0]])}
  shapes = {p: w.shape for p, w in weights.items()}
  masks = methods.magnitude_masks(shapes, 4, None, _Weights(weights))
  # |w| in position order: .5 2 1 1 | 1 .1 3 -> 3, 2, then the first two of the three 1s.
  np.testing.assert_array_equal(masks[('a', 'kernel')], [[0, 1], [1, 1]])
  np.testing.assert_array_equal(masks[('b', 'kernel')], [[0, 0, 1]])


@pytest.mark.parametrize('method', ['magnitude', 'grasp', 'synflow'])
def test_n2nskip_sequential_masks_are_the_methods_on_the_reference_network(method):
  config, variables, masks = pruned('vgg19', method, 0.1, 'n2nskip')
  budget = round(0.1 * sparsity.reference_weights(masks))
  sequential = budget - round(config.skip.fraction * budget)
  reference = copy_with(config, skip__kind='none',
                        pruning__density=sequential / sparsity.reference_weights(masks))
  shape = MODELS['vgg19'][1]
  ref_masks = pruning.prune(reference, models.without_skips(variables), batch_for(shape),
                            input_shape=shape)
  assert sparsity.nonzero(ref_masks) == sequential
  flat = traverse_util.flatten_dict(masks)
  for p, m in traverse_util.flatten_dict(ref_masks).items():
    np.testing.assert_array_equal(flat[p], m, err_msg=str(p))


def test_shuffle_keeps_each_layers_count_and_moves_the_weights():
  config, variables, masks = pruned('vgg19', 'csp', 0.05)
  _, _, shuffled = pruned('vgg19', 'csp', 0.05, pruning__shuffle=True)
  for p, m in traverse_util.flatten_dict(masks).items():
    s = traverse_util.flatten_dict(shuffled)[p]
    assert s.sum() == m.sum(), p
    if 0 < m.sum() < m.size:
      assert not np.array_equal(s, m), p


def test_reinit_keeps_the_masks_and_redraws_the_surviving_weights(tmp_path):
  from n2nskip_jax import train
  config = make_config(**LINEAR_MLP, pruning__method='rp', pruning__density=0.1)
  dataset = data.load(config)
  plain = train.create_train_state(config, dataset)[0]
  redrawn = train.create_train_state(copy_with(config, pruning__reinit=True), dataset)[0]
  for m, r in zip(jax.tree.leaves(plain.masks), jax.tree.leaves(redrawn.masks)):
    np.testing.assert_array_equal(m, r)
  for p, w in traverse_util.flatten_dict(plain.params).items():
    r = traverse_util.flatten_dict(redrawn.params)[p]
    if p[-1] == 'kernel':
      mask = np.asarray(traverse_util.flatten_dict(plain.masks)[p])
      assert np.all(np.asarray(r)[mask == 0] == 0)
      assert not np.allclose(np.asarray(r)[mask > 0], np.asarray(w)[mask > 0])


def test_snip_is_another_name_for_csp():
  assert methods.METHODS['snip'] is methods.METHODS['csp']
  assert methods.METHODS['csp'].fn is methods.snip_masks
  assert pruning.needs_batch(make_config(pruning__method='snip'))


def test_the_analysis_of_a_reinit_run_starts_from_the_weights_it_trained(tmp_path):
  """``load_run(..., 'initial')`` and the trained run's initial state are the same weights, for
  a ``pruning.reinit`` run with rescaling too; its reference is the re-drawn dense network."""
  from n2nskip_jax import train
  from n2nskip_jax.connectivity import analysis
  config = make_config(**LINEAR_MLP, pruning__method='rp', pruning__density=0.2,
                       pruning__reinit=True, pruning__rescale=True, skip__kind='n2nskip',
                       num_epochs=1, eval_every_epochs=1)
  train.train_and_evaluate(config, str(tmp_path))
  _, params, masks, reference = analysis.load_run(str(tmp_path), 'initial')
  started = train.create_train_state(config, data.load(config), masks)[0]
  flat = traverse_util.flatten_dict
  assert flat(params).keys() == flat(started.params).keys()
  for p, w in flat(started.params).items():
    np.testing.assert_array_equal(flat(params)[p], w, err_msg=str(p))
  spec = data.spec(config)
  redrawn = network.trained_weights(config, network.init(config, *spec)[1], *spec)['params']
  not_redrawn = network.init(config, *spec)[1]['params']
  for p, w in flat(reference).items():
    np.testing.assert_array_equal(w, flat(redrawn)[p])
    assert p[-1] != 'kernel' or not np.array_equal(w, flat(not_redrawn)[p])
