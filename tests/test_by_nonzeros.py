"""Masked layers run by their nonzeros (n2nskip_jax.execution.by_nonzeros and the plan's step):
same outputs, gradients and training trajectory as the dense masked path; pruned entries stay
exactly 0."""
import functools

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_config
from flax import traverse_util
from jax import lax

from n2nskip_jax import execution, network, pruning, rundir, steps, train
from n2nskip_jax.errors import ConfigError, UserError
from n2nskip_jax.execution import by_nonzeros, layers, native
from n2nskip_jax.execution import step as by_nonzeros_step
from n2nskip_jax.models import VGG
from n2nskip_jax.models.resnet import ResNet


NATIVE = native.available()


def random_mask(rng, shape, density):
  return (rng.random(shape) < density).astype(np.float32)


@pytest.mark.parametrize('size,channels,kernel,stride,padding,density', [
    (6, 5, 3, 1, 'SAME', 0.3), (7, 5, 3, 2, 'SAME', 0.3), (9, 4, 3, 4, [(1, 1), (1, 1)], 0.5),
    (8, 5, 1, 2, 'SAME', 0.5), (8, 3, 5, 8, 'SAME', 0.2), (6, 5, 3, 1, 'VALID', 0.3),
    (6, 5, 3, 1, 'SAME', 0.0), (5, 3, 3, 1, [(2, 0), (0, 1)], 0.5),
    (7, 3, 3, 2, [(0, 2), (3, 1)], 0.5)])
def test_sparse_conv_equals_masked_xla_conv_and_its_gradients(size, channels, kernel, stride,
                                                              padding, density):
  rng = np.random.default_rng(size * 10 + stride)
  x = jnp.asarray(rng.normal(size=(2, size, size + 1, channels)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(kernel, kernel, channels, 7)), jnp.float32)
  mask = random_mask(rng, w.shape, density)
  tables = by_nonzeros.nonzero_tables(mask)
  dense = lambda x, w: lax.conv_general_dilated(x, w * mask, (stride, stride), padding,
                                                dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  mine = jax.jit(lambda x, w: by_nonzeros.conv(x, by_nonzeros.weights_by_output(w, tables), tables,
                                               w.shape, (stride, stride), padding, NATIVE))
  np.testing.assert_allclose(mine(x, w), dense(x, w), rtol=1e-5, atol=1e-5)
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))
  (dx, dw), (dx_ref, dw_ref) = (jax.grad(loss(f), (0, 1))(x, w) for f in (mine, dense))
  np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dw, dw_ref, rtol=1e-5, atol=1e-5)
  assert np.all(np.asarray(dw)[mask == 0] == 0)  # pruned entries: exactly no gradient


def test_sparse_conv_in_bfloat16_accumulates_in_float32():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 6, 6, 64)), jnp.bfloat16)
  w = jnp.asarray(rng.normal(size=(3, 3, 64, 4)), jnp.float32)
  mask = random_mask(rng, w.shape, 0.5)
  tables = by_nonzeros.nonzero_tables(mask)
  y = by_nonzeros.conv(x, by_nonzeros.weights_by_output(w.astype(jnp.bfloat16), tables), tables,
                       w.shape, native=NATIVE)
  ref = lax.conv_general_dilated(x.astype(jnp.float32), w.astype(jnp.bfloat16).astype(
      jnp.float32) * mask, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  assert y.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(y, np.float32), ref, rtol=1e-2, atol=0.1)


def test_tables_list_every_nonzero_once_per_grouping():
  mask = random_mask(np.random.default_rng(0), (3, 3, 6, 5), 0.2)
  tables = by_nonzeros.nonzero_tables(mask)
  _, _, ci, co = np.unravel_index(np.arange(mask.size), mask.shape)
  for name, channel in (('by_output', co), ('by_input', ci)):
    table = tables[name]
    listed = table[table >= 0]
    np.testing.assert_array_equal(np.sort(listed), np.flatnonzero(mask))
    rows = np.nonzero(table >= 0)[0]
    np.testing.assert_array_equal(channel[listed], rows)  # each row is one channel's entries
    assert table.shape[1] == max(np.bincount(channel[np.flatnonzero(mask)], minlength=len(table)))
  slots = tables['slots_by_input']
  assert np.all((slots >= 0) == (tables['by_input'] >= 0))
  np.testing.assert_array_equal(tables['by_output'].ravel()[slots[slots >= 0]],
                                tables['by_input'][slots >= 0])  # the same entry, both ways
  ascending, order, rank = tables['ascending'], tables['order'], tables['rank']
  nonzeros = np.count_nonzero(mask)
  np.testing.assert_array_equal(ascending[:nonzeros], np.flatnonzero(mask))
  assert np.all(ascending[nonzeros:] == mask.size)  # the padding, last, one past the end
  flat = tables['by_output'].ravel()
  np.testing.assert_array_equal(np.where(flat >= 0, flat, mask.size)[order], ascending)
  np.testing.assert_array_equal(order[rank], np.arange(flat.size))  # inverse permutations


def mlp_masks(**overrides):
  config = make_config(model='mlp', dataset='mnist1d', skip__kind='n2nskip', pruning__method='rp',
                       pruning__density=0.2, **overrides)
  _, variables = network.init(config, 10, (40,))
  return config, pruning.prune(config, variables)


def test_sparse_execution_picks_skip_layers_by_setting_and_density():
  config, masks = mlp_masks(execution__sequential='dense')
  skips = {p for p in traverse_util.flatten_dict(masks) if p[0].startswith('skip')}
  config.execution.skip = 'dense'
  assert execution.plan(config, masks, 'cpu').tables == {}
  config.execution.skip = 'sparse'
  chosen = traverse_util.flatten_dict(execution.plan(config, masks, 'cpu').tables, sep=None)
  assert {p[:-1] for p in chosen} == skips  # every skip kernel, no sequential one
  config.execution.skip = 'auto'
  flat = traverse_util.flatten_dict(masks)
  thin, full = sorted(skips)[:2]  # one skip kernel below the threshold, one above
  flat[thin] = (np.arange(flat[thin].size) % 100 == 0).reshape(flat[thin].shape).astype(np.float32)
  flat[full] = np.ones_like(flat[full])
  chosen = traverse_util.flatten_dict(
      execution.plan(config, traverse_util.unflatten_dict(flat), 'cpu').tables, sep=None)
  chosen = {p[:-1] for p in chosen}
  assert thin in chosen and full not in chosen
  assert chosen == {p for p in skips if flat[p].mean() <= by_nonzeros.auto_max_density()}


def test_sparse_execution_picks_the_other_pruned_layers_by_their_own_setting():
  config, masks = mlp_masks(execution__skip='dense')
  flat = traverse_util.flatten_dict(masks)
  sequential = {p for p in flat if not p[0].startswith('skip')}
  config.execution.sequential = 'sparse'
  chosen = traverse_util.flatten_dict(execution.plan(config, masks, 'cpu').tables, sep=None)
  assert {p[:-1] for p in chosen} == sequential
  config.execution.sequential = 'auto'  # the masks hold 20 %, over the threshold...
  assert execution.plan(config, masks, 'cpu').tables == {}
  thin, mid = sorted(sequential)[:2]  # ...but this one 1 %, and this one 5 %
  for path, every in ((thin, 100), (mid, 20)):
    flat[path] = (np.arange(flat[path].size) % every == 0).reshape(flat[path].shape)
  masks = traverse_util.unflatten_dict(jax.tree.map(lambda m: m.astype(np.float32), flat))
  chosen = {p[:-1] for p in traverse_util.flatten_dict(execution.plan(config, masks, 'cpu').tables,
                                                        sep=None)}
  assert chosen == ({thin, mid} if NATIVE else {thin})
  config.half_precision = True  # no native kernels in bfloat16: the scan's lower threshold
  chosen = {p[:-1] for p in traverse_util.flatten_dict(execution.plan(config, masks, 'cpu').tables,
                                                        sep=None)}
  assert chosen == {thin}


def test_optimizer_over_the_nonzeros_equals_the_dense_update():
  config, masks = mlp_masks()
  config.execution.skip = 'sparse'
  _, variables = network.init(config, 10, (40,))
  variables = pruning.apply_masks(variables, masks)
  state = steps.TrainState.create(apply_fn=None, params=variables['params'],
                                  tx=steps.create_optimizer(config, 10), batch_stats={},
                                  masks=masks)
  tables = execution.plan(config, masks, 'cpu').tables
  index = by_nonzeros_step.update_index(state.params, tables)
  assert sum(not isinstance(i, str) for i in jax.tree.leaves(index)) == sum(
      p[-1] == 'by_output' for p in traverse_util.flatten_dict(tables))  # skips only
  dense = sparse_state = state
  rng, flat_masks = np.random.default_rng(0), traverse_util.flatten_dict(masks)
  for _ in range(3):  # momentum builds up: the update reads the optimizer state too
    grads = traverse_util.unflatten_dict({  # as the masked model's: zero at pruned entries
        path: rng.normal(size=p.shape).astype(np.float32) * flat_masks.get(path, 1)
        for path, p in traverse_util.flatten_dict(state.params).items()})
    # Op by op, so that both run the same float operations (jitted, XLA may fuse them apart).
    dense = dense.apply_gradients(grads=grads)
    sparse_state = by_nonzeros_step.apply_gradients(
        sparse_state, jax.tree.map(by_nonzeros_step._compact, grads, index), index)
  for a, b in zip(jax.tree.leaves((dense.params, dense.opt_state, dense.step)),
                  jax.tree.leaves((sparse_state.params, sparse_state.opt_state,
                                   sparse_state.step))):
    np.testing.assert_array_equal(a, b)


def test_train_step_builds_no_dense_gradient_for_kernels_run_by_their_nonzeros():
  """Their gradient is taken at the nonzeros (the layers' perturbations): no scatter-add into
  a kernel-sized array anywhere in the step."""
  config, masks = mlp_masks(execution__skip='sparse')
  _, variables = network.init(config, 10, (40,), bn_axis_name=steps.AXIS)
  plan = execution.plan(config, masks, 'cpu')
  state = steps.TrainState.create(apply_fn=plan.model(config, 10, bn_axis_name=steps.AXIS).apply,
                                  params=variables['params'], tx=steps.create_optimizer(config, 10),
                                  batch_stats={}, masks=masks)
  batch = {'image': jnp.zeros((4, 40)), 'label': jnp.zeros((4,), jnp.int32)}
  jaxpr = jax.make_jaxpr(by_nonzeros_step.train_step, axis_env=[(steps.AXIS, 1)])(
      state, plan.tables, batch)
  sizes = {m.size for m in jax.tree.leaves(masks)}

  def scatter_adds(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == 'scatter-add':
        yield eqn.outvars[0].aval.size
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        yield from scatter_adds(sub)

  assert not sizes & set(scatter_adds(jaxpr.jaxpr))
  # The check can fail: differentiated as dense arrays, the same kernels get such scatter-adds.
  loss = lambda params: jnp.sum(state.apply_fn(
      by_nonzeros_step.model_variables(state, plan.tables, params), batch['image']))
  assert sizes & set(scatter_adds(jax.make_jaxpr(jax.grad(loss))(state.params).jaxpr))


PLAN_LAYERS = {'conv': functools.partial(layers.Conv, native=NATIVE),
               'dense': functools.partial(layers.Dense, native=NATIVE)}
CNNS = {  # 4 skips each: spanning poolings (stride-2 and stride-4 skip convs), or bottlenecks
    'vgg': lambda: VGG(head='cifar', layers=(8, 'M', 8, 8, 'M', 16, 16), skip_kind='n2nskip',
                       skip_span=2, **PLAN_LAYERS),
    'resnet': lambda: ResNet(stage_sizes=(1, 1, 1, 1), width_multiplier=0.125,
                             skip_kind='n2nskip', **PLAN_LAYERS)}


@pytest.mark.parametrize('cnn', sorted(CNNS))
@pytest.mark.parametrize('layers', ['skips', 'all'])
def test_n2nskip_cnn_by_nonzeros_equals_dense_masked_forward_and_gradients(cnn, layers):
  """A small VGG or ResNet with N2NSkip skips; its skip layers, or every masked layer (convs,
  projections and the classifier), run by their nonzeros."""
  model = CNNS[cnn]()
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 12, 12, 3)), jnp.float32)
  variables = jax.jit(lambda k: model.init(k, x, train=False))(jax.random.PRNGKey(0))
  rng = np.random.default_rng(1)
  masks = jax.tree.map(lambda m: random_mask(rng, m.shape, 0.3), variables['masks'])
  variables = pruning.apply_masks({**variables, 'masks': masks}, masks)
  sequential = 'sparse' if layers == 'all' else 'dense'
  nonzeros = execution.plan(
      make_config(execution__skip='sparse', execution__sequential=sequential), masks, 'cpu').tables
  kernels = len(jax.tree.leaves(masks)) if layers == 'all' else 4  # 4 skips
  assert len(traverse_util.flatten_dict(nonzeros, sep=None)) == 6 * kernels  # 6 tables each

  def run(extra):
    def loss(params):
      return jnp.sum(model.apply({**variables, 'params': params, **extra}, x, train=False) ** 2)
    return jax.jit(jax.value_and_grad(loss))(variables['params'])

  (loss_sparse, grads_sparse), (loss_dense, grads_dense) = run({'nonzeros': nonzeros}), run({})
  np.testing.assert_allclose(loss_sparse, loss_dense, rtol=1e-5)
  for path, g in traverse_util.flatten_dict(grads_sparse).items():
    ref = traverse_util.flatten_dict(grads_dense)[path]
    np.testing.assert_allclose(g, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_training_by_nonzeros_follows_the_dense_trajectory_and_resumes(tmp_path):
  """MLP N2NSkip-RP on MNIST-1D, every masked layer 'sparse' (one epoch, then resumed to two)
  against 'dense' (two epochs): the same losses and weights to float32 tolerance; masks
  unchanged and pruned weights exactly 0 in the checkpoint."""
  base = dict(model='mlp', dataset='mnist1d', skip__kind='n2nskip', pruning__method='rp',
              pruning__density=0.05, batch_size=500, log_every_steps=2, eval_every_epochs=1)
  dense = dict(execution__skip='dense', execution__sequential='dense')
  sparse_ = dict(execution__skip='sparse', execution__sequential='sparse')
  dense = train.train_and_evaluate(make_config(num_epochs=2, **dense, **base),
                                   str(tmp_path / 'dense'))
  train.train_and_evaluate(make_config(num_epochs=1, **sparse_, **base), str(tmp_path / 'sparse'))
  resumed = train.train_and_evaluate(make_config(num_epochs=2, **sparse_, **base),
                                     str(tmp_path / 'sparse'))
  assert resumed['steps'] == dense['steps']
  np.testing.assert_allclose(resumed['test_loss'], dense['test_loss'], rtol=1e-4)
  runs = {name: rundir.read_latest(str(tmp_path / name))[1] for name in ('dense', 'sparse')}
  masks = [traverse_util.flatten_dict(r['masks']) for r in runs.values()]
  params = [traverse_util.flatten_dict(r['state']['params']) for r in runs.values()]
  for path, mask in masks[0].items():
    np.testing.assert_array_equal(masks[1][path], mask)
    assert np.all(params[1][path][mask == 0] == 0)
    np.testing.assert_allclose(params[1][path], params[0][path], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize('key', sorted(execution.CHOICES))
def test_bad_execution_is_refused_with_the_key(key):
  from n2nskip_jax.config import validate
  with pytest.raises(ConfigError, match=r"execution\." + key + r"='fast'.*'auto'"):
    validate(make_config(**{f'execution__{key}': 'fast'}))


@pytest.mark.parametrize('old,new', [('conv_impl', 'execution.conv'),
                                     ('pruning.execution', 'execution.sequential'),
                                     ('skip.execution', 'execution.skip')])
def test_the_old_execution_keys_are_refused_with_the_new_names(old, new):
  from n2nskip_jax.config import validate
  config = make_config()
  group, _, key = old.rpartition('.')
  (config[group] if group else config)[key] = 'auto'
  with pytest.raises(UserError, match=f'config.{old} no longer exists: use config.{new}'):
    validate(config)
