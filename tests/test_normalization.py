"""BatchNorm with the closed-form backward pass against Flax's, which JAX differentiates."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from n2nskip_jax.execution import batch_norm as normalization

SHAPE = (6, 5, 4, 8)


def _inputs(dtype=jnp.float32):
  k = jax.random.split(jax.random.PRNGKey(0), 4)
  x = (3 + 2 * jax.random.normal(k[0], SHAPE)).astype(dtype)
  params = {'scale': 1 + 0.3 * jax.random.normal(k[1], SHAPE[-1:]),
            'bias': 0.2 * jax.random.normal(k[2], SHAPE[-1:])}
  # A loss that is not linear in the output, so the gradient's three terms all matter.
  weights = jax.random.normal(k[3], SHAPE)
  return x, params, weights


def _loss_and_grads(module, x, params, weights, stats):
  def loss(x, params):
    y, updates = module.apply({'params': params, 'batch_stats': stats}, x,
                              mutable=['batch_stats'])
    return jnp.sum(jnp.tanh(y.astype(jnp.float32)) * weights), (y, updates['batch_stats'])
  return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(x, params)


def _flax_and_ours(**kwargs):
  options = dict(use_running_average=False, momentum=0.9, epsilon=1e-5, **kwargs)
  return nn.BatchNorm(**options), normalization.BatchNorm(**options)


def test_variables_are_flax_batch_norms():
  x, _, _ = _inputs()
  flax_bn, ours = _flax_and_ours()
  a, b = (m.init(jax.random.PRNGKey(1), x) for m in (flax_bn, ours))
  assert jax.tree.map(lambda v: (v.shape, v.dtype), a) == jax.tree.map(
      lambda v: (v.shape, v.dtype), b)
  jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_training_outputs_statistics_and_gradients_equal_flax(dtype):
  x, params, weights = _inputs(dtype)
  stats = {'mean': jnp.full(SHAPE[-1:], 0.5), 'var': jnp.full(SHAPE[-1:], 2.0)}
  results = [_loss_and_grads(m, x, params, weights, stats) for m in _flax_and_ours(dtype=dtype)]
  ((loss_a, (y_a, stats_a)), grads_a), ((loss_b, (y_b, stats_b)), grads_b) = results
  assert y_b.dtype == y_a.dtype == dtype
  tol = 1e-5 if dtype == jnp.float32 else 2e-2
  np.testing.assert_allclose(loss_b, loss_a, rtol=tol)
  np.testing.assert_allclose(y_b.astype(np.float32), y_a.astype(np.float32), atol=tol, rtol=tol)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-6), stats_a, stats_b)
  for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)):
    assert a.dtype == b.dtype
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    np.testing.assert_allclose(b, a, atol=tol * np.abs(a).max(), rtol=tol)


def test_statistics_averaged_over_a_named_axis_like_flax():
  """Under a named axis (``vmap`` here, ``pmap`` in training) the statistics and the
  gradient's sums run over every member's batch."""
  x, params, weights = _inputs()
  x, weights = x.reshape(2, 3, *SHAPE[1:]), weights.reshape(2, 3, *SHAPE[1:])
  stats = {'mean': jnp.zeros(SHAPE[-1:]), 'var': jnp.ones(SHAPE[-1:])}
  results = []
  for module in _flax_and_ours(axis_name='batch'):
    run = jax.vmap(lambda x, w, m=module: _loss_and_grads(m, x, params, w, stats),
                   axis_name='batch')
    results.append(run(x, weights))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, atol=1e-5, rtol=1e-5), *results)
  # The members' gradients differ (their own batches), their statistics do not.
  (_, (_, member_stats)), (d_x, _) = results[1]
  assert not np.allclose(d_x[0], d_x[1])
  np.testing.assert_allclose(member_stats['mean'][0], member_stats['mean'][1])


def test_gradient_through_the_returned_statistics():
  """The closed form also carries cotangents of ``mean`` and ``var`` (unused in training, but a
  differentiable function must not drop them): against JAX's derivative of the formula."""
  x, params, weights = _inputs()

  def reference(x, scale, bias):
    mean = x.mean((0, 1, 2))
    var = jnp.square(x).mean((0, 1, 2)) - jnp.square(mean)
    y = (x - mean) * jax.lax.rsqrt(var + 1e-5) * scale + bias
    return y, mean, var

  def loss(f, x, scale, bias):
    y, mean, var = f(x, scale, bias)
    return jnp.sum(jnp.tanh(y) * weights) + jnp.sum(mean ** 3) + jnp.sum(jnp.sqrt(var) * bias)

  ours = lambda x, s, b: normalization.normalize(x, s, b, 1e-5)
  args = (x, params['scale'], params['bias'])
  want = jax.grad(lambda *a: loss(reference, *a), argnums=(0, 1, 2))(*args)
  got = jax.grad(lambda *a: loss(ours, *a), argnums=(0, 1, 2))(*args)
  for a, b in zip(want, got):
    np.testing.assert_allclose(b, a, atol=1e-5 * np.abs(a).max(), rtol=1e-5)


def test_evaluation_uses_the_running_averages_like_flax():
  x, params, _ = _inputs()
  stats = {'mean': jnp.linspace(-1, 1, SHAPE[-1]), 'var': jnp.linspace(0.5, 2, SHAPE[-1])}
  outputs = [m.apply({'params': params, 'batch_stats': stats}, x)
             for m in _flax_and_ours() for m in [m.clone(use_running_average=True)]]
  np.testing.assert_array_equal(outputs[1], outputs[0])


def test_second_derivatives_by_reverse_mode_equal_the_formulas():
  """Hessian-vector products (grad of grad) pass through the closed form; forward mode does
  not (a custom VJP), which the README says."""
  x, params, weights = _inputs()
  v = jax.random.normal(jax.random.PRNGKey(5), SHAPE)

  def loss(normalize, x):
    return jnp.sum(jnp.tanh(normalize(x, params['scale'], params['bias'])) * weights)

  def formula(x, scale, bias):
    mean = x.mean((0, 1, 2))
    var = jnp.square(x).mean((0, 1, 2)) - jnp.square(mean)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * scale + bias

  ours = lambda x, s, b: normalization.normalize(x, s, b, 1e-5)[0]
  hvp = lambda f: jax.grad(lambda x: jnp.vdot(jax.grad(lambda x: loss(f, x))(x), v))(x)
  want, got = hvp(formula), hvp(ours)
  np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max(), rtol=1e-5)
  with pytest.raises(TypeError, match='forward-mode'):
    jax.jvp(lambda x: loss(ours, x), (x,), (v,))
