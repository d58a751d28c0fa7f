"""Pruning at initialization: exact budgets, SNIP against autodiff, Eq. 2, determinism."""
import functools

import jax
import numpy as np
import pytest
from conftest import TINY_MODELS, make_config
from flax import traverse_util

from n2nskip_jax import methods, models, network, pruning, saliency, sparsity
from n2nskip_jax.errors import ConfigError
from n2nskip_jax.models import create_model
from n2nskip_jax.losses import cross_entropy


MODELS = TINY_MODELS


def batch_for(shape, n=16, seed=0):
  rng = np.random.default_rng(seed)
  return {'image': rng.normal(size=(n, *shape)).astype(np.float32),
          'label': rng.integers(0, 10, n).astype(np.int32)}


@functools.lru_cache(maxsize=None)
def initialized(model, kind, seed=0):
  """Variables and the SNIP network's apply, once per (model, skip kind, seed)."""
  overrides, shape = MODELS[model]
  config = make_config(**overrides, skip__kind=kind, seed=seed)
  _, variables = network.init(config, 10, shape)
  return variables, create_model(models.reference(config) if kind == 'n2nskip' else config, 10).apply


def pruned(model, method, density, kind='none', seed=0, **extra):
  overrides, shape = MODELS[model]
  config = make_config(**overrides, pruning__method=method, pruning__density=density,
                       skip__kind=kind, seed=seed, **extra)
  variables, apply_fn = initialized(model, kind, seed)
  masks = pruning.prune(config, variables, batch_for(shape), input_shape=shape)
  return config, variables, masks


# Every method and skip kind on the MLP. On the conv nets, the scored methods at one density
# (their scores and initializations cost most); ResSkip with the unscored methods only, and
# ResNet50 with SynFlow (its BatchNorm in eval mode) as the one scored method: CSP and GraSP
# through BatchNorm are the VGG19 cases.
SCORED = ('magnitude', 'csp', 'grasp', 'synflow')
CASES = [(m, method, d, kind) for m in MODELS for method in ('rp', 'structured', *SCORED)
         for d in (0.1, 0.0337) for kind in ('none', 'n2nskip', 'resskip')
         if not ((method in SCORED or m == 'resnet50') and d != 0.1)
         and not (m != 'mlp' and kind == 'resskip' and method in ('csp', 'grasp', 'synflow'))
         and not (m == 'resnet50' and (kind == 'resskip' or method in ('csp', 'grasp')
                                       or (method, kind) == ('synflow', 'none')))]


@pytest.mark.parametrize('model,method,density,kind', CASES)
def test_nonzero_count_equals_budget_exactly(model, method, density, kind):
  config, variables, masks = pruned(model, method, density, kind)
  n_ref = sparsity.reference_weights(masks)
  reference = network.abstract(
      make_config(**MODELS[model][0]), 10, MODELS[model][1])[1]['masks']
  assert n_ref == sparsity.count(reference)  # N_ref counted on the network without skips
  budget = round(density * n_ref)
  assert sparsity.nonzero(masks) == budget
  assert all(set(np.unique(m)) <= {0.0, 1.0} for m in jax.tree.leaves(masks))
  if kind == 'n2nskip':
    assert sparsity.nonzero(masks, skip=True) == round(0.5 * budget)
    assert sparsity.nonzero(masks, skip=False) == budget - round(0.5 * budget)


@pytest.mark.parametrize('fraction', [0.0, 0.25, 0.7])
def test_skip_fraction_splits_the_budget(fraction):
  _, _, masks = pruned('mlp', 'rp', 0.2, 'n2nskip', skip__fraction=fraction)
  budget = round(0.2 * sparsity.reference_weights(masks))
  assert sparsity.nonzero(masks, skip=True) == round(fraction * budget)
  assert sparsity.nonzero(masks) == budget


@pytest.mark.parametrize('model,method', [
    ('mlp', 'rp'), ('mlp', 'magnitude'), ('mlp', 'csp'), ('mlp', 'structured'), ('mlp', 'synflow'),
    ('vgg19', 'rp'), ('vgg19', 'csp'), ('resnet50', 'rp'), ('resnet50', 'magnitude')])
def test_the_sequential_control_spends_the_skip_share_on_weights_the_method_pruned(model, method):
  """``skip.kind='sequential'``: N2NSkip's sequential mask (the method at the same budget and
  seed), plus exactly ``round(fraction * B)`` nonzeros where it has zeros; no skip layers."""
  fraction = 0.3
  config, _, control = pruned(model, method, 0.1, 'sequential', skip__fraction=fraction)
  _, _, n2nskip = pruned(model, method, 0.1, 'n2nskip', skip__fraction=fraction)
  control, n2nskip = traverse_util.flatten_dict(control), traverse_util.flatten_dict(n2nskip)
  assert not any(models.is_skip_path(p) for p in control)
  assert set(control) == {p for p in n2nskip if not models.is_skip_path(p)}
  budget = round(0.1 * sum(m.size for m in control.values()))
  assert sum(int(m.sum()) for m in control.values()) == budget
  extra = 0
  for p, m in control.items():
    assert set(np.unique(m)) <= {0.0, 1.0}
    assert np.all(m >= n2nskip[p]), p  # every weight the method kept is kept
    extra += int((m - n2nskip[p]).sum())
  assert extra == round(fraction * budget)
  b = pruning.budgets(config, traverse_util.unflatten_dict(control))
  assert (b['method'], b['top_up'], b['skip']) == (budget - extra, extra, 0)


def test_snip_scores_equal_w_times_grad_and_keep_global_top_k():
  config, variables, masks = pruned('vgg19', 'csp', 0.05)
  batch = batch_for(MODELS['vgg19'][1])
  model = create_model(config, 10)

  def loss(params):  # autodiff w.r.t. the kernels, masks all ones
    logits, _ = model.apply({**variables, 'params': params}, batch['image'], train=True,
                            mutable=['batch_stats'])
    return cross_entropy(logits, batch['label']).mean()

  grads = traverse_util.flatten_dict(jax.grad(loss)(variables['params']))
  params = traverse_util.flatten_dict(variables['params'])
  scores = traverse_util.flatten_dict(jax.device_get(
      saliency.snip(model.apply, variables, batch)))
  for p, s in scores.items():
    want = np.abs(params[p] * grads[p])
    np.testing.assert_allclose(s, want, rtol=1e-3, atol=1e-5 * want.max())  # float32 rounding
  flat_scores = np.concatenate([np.ravel(s) for s in scores.values()])
  flat_masks = np.concatenate([np.ravel(m) for m in traverse_util.flatten_dict(masks).values()])
  k = int(flat_masks.sum())
  kept, dropped = flat_scores[flat_masks == 1], flat_scores[flat_masks == 0]
  assert k == round(0.05 * flat_scores.size) and kept.min() >= dropped.max()


def test_n2nskip_csp_scores_the_reference_network():
  """The sequential masks of N2NSkip-CSP are SNIP's top-k of the network without skips."""
  config, _, masks = pruned('mlp', 'csp', 0.1, 'n2nskip')
  _, shape = MODELS['mlp']
  ref_config = make_config(**MODELS['mlp'][0], pruning__method='csp', pruning__density=0.05)
  _, ref_vars = network.init(ref_config, 10, shape)
  ref_masks = pruning.prune(ref_config, ref_vars, batch_for(shape))
  seq = {p: m for p, m in traverse_util.flatten_dict(masks).items() if 'skip' not in p[0]}
  budget = round(0.1 * sparsity.reference_weights(masks))
  assert budget - round(0.5 * budget) == sparsity.nonzero(ref_masks)  # same sequential budget
  for p, m in seq.items():
    np.testing.assert_array_equal(m, traverse_util.flatten_dict(ref_masks)[p])


def test_structured_masks_have_equal_fan_in_and_fan_out():
  rng = np.random.default_rng(0)
  m = methods.structured_mask(rng, (3, 3, 16, 32), 16 * 9 * 32 // 4 + 5)
  fan_in = m.reshape(-1, 32).sum(0)
  fan_out = m.reshape(-1, 32).sum(1)
  assert m.sum() == 16 * 9 * 32 // 4 + 5
  assert fan_in.max() - fan_in.min() <= 1 and fan_out.max() - fan_out.min() <= 1
  _, _, masks = pruned('mlp', 'structured', 0.1)
  for m in jax.tree.leaves(masks):
    fan_in = m.sum(0)
    assert fan_in.max() - fan_in.min() <= 1


def test_same_seed_same_masks_other_seed_differs():
  for method in ('rp', 'structured'):
    a = pruned('mlp', method, 0.1, 'n2nskip')[2]
    b = pruned('mlp', method, 0.1, 'n2nskip')[2]
    c = pruned('mlp', method, 0.1, 'n2nskip', seed=1)[2]  # seed changes init and masks
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert not all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(c)))


def test_exclude_keeps_layers_dense_within_budget():
  _, _, masks = pruned('mlp', 'rp', 0.1, pruning__exclude=('^head/',))
  flat = traverse_util.flatten_dict(masks)
  assert flat[('head', 'kernel')].all()
  assert sparsity.nonzero(masks) == round(0.1 * sparsity.reference_weights(masks))


def test_skip_budget_larger_than_skip_layers_is_rejected_before_compiling():
  config = make_config(**MODELS['mlp'][0], pruning__method='rp', pruning__density=0.9,
                       skip__kind='n2nskip', skip__fraction=0.9)
  masks = network.abstract(config, 10, MODELS['mlp'][1])[1]['masks']  # shapes only
  with pytest.raises(ConfigError, match=r'config.skip.fraction=0.9: expected at most 0\.\d+'):
    pruning.budgets(config, masks)


def tiny_pruned_mlp(kind, hidden, n_in, density, batch, seed):
  """A pruned, span-2 MLP with 2 outputs: ``(model, variables, masks, x)``."""
  config = make_config(model='mlp', mlp_hidden=hidden, skip__kind=kind, skip__span=2,
                       pruning__method='rp', pruning__density=density)
  model, variables = network.init(config, 2, (n_in,))
  masks = pruning.prune(config, variables)
  x = np.random.default_rng(seed).normal(size=(batch, n_in)).astype(np.float32)
  return model, pruning.apply_masks(variables, masks), masks, x


def relu(v):
  return np.maximum(v, 0)


def test_n2nskip_forward_matches_eq2_by_hand():
  """a^{l+k} = g(z^{l+k} + g(W_skip a^l)) on a tiny MLP with span 2."""
  model, variables, m, x = tiny_pruned_mlp('n2nskip', (5, 4, 3), 6, 0.6, batch=4, seed=3)
  p = variables['params']
  dense = lambda name, a: a @ (p[name]['kernel'] * m[name]['kernel']) + p[name]['bias']
  a1 = relu(dense('dense1', x))
  a2 = relu(dense('dense2', a1) + relu(dense('skip0_2', x)))
  a3 = relu(dense('dense3', a2) + relu(dense('skip1_3', a1)))
  np.testing.assert_allclose(model.apply(variables, x), dense('head', a3), rtol=1e-5, atol=1e-6)


def test_resskip_forward_matches_eq1_by_hand():
  """a^{l+k} = g(z^{l+k} + a^l): identity where widths match, projection otherwise."""
  model, variables, _, x = tiny_pruned_mlp('resskip', (4, 4, 3), 4, 0.7, batch=3, seed=4)
  p = variables['params']
  dense = lambda name, a: a @ p[name]['kernel'] + p[name].get('bias', 0)
  a1 = relu(dense('dense1', x))
  a2 = relu(dense('dense2', a1) + x)                  # widths 4 -> 4: identity
  a3 = relu(dense('dense3', a2) + dense('skip1_3', a1))  # 4 -> 3: projection
  assert 'skip0_2' not in p
  np.testing.assert_allclose(model.apply(variables, x), dense('head', a3), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('kind', ['none', 'n2nskip'])
def test_rescale_restores_per_unit_fan_in_variance_and_keeps_the_count(kind):
  config = make_config(model='mlp', mlp_hidden=(512, 256, 128, 64), pruning__method='rp',
                       pruning__density=0.05, skip__kind=kind)
  _, variables = network.init(config, 10, (40,))
  masks = pruning.prune(config, variables)
  plain = traverse_util.flatten_dict(pruning.apply_masks(variables, masks)['params'])
  scaled = traverse_util.flatten_dict(
      pruning.apply_masks(variables, masks, rescale=True)['params'])
  flat_masks = traverse_util.flatten_dict(masks)
  assert sum(np.count_nonzero(w) for p, w in scaled.items() if p[-1] == 'kernel') == \
      pruning.budgets(config, masks)['total']
  x = np.random.default_rng(0).normal(size=(4096, 512))
  for path, m in flat_masks.items():
    kernel = np.asarray(traverse_util.flatten_dict(variables['params'])[path])
    m = np.asarray(m)
    surviving = m.sum(0)
    expected = np.where(surviving > 0, np.sqrt(m.shape[0] / np.maximum(surviving, 1)), 0)
    np.testing.assert_allclose(scaled[path], kernel * m * expected, rtol=1e-6)
    if path == ('dense2', 'kernel'):  # pre-activation variance per unit, on unit-variance input
      alive = surviving > 0
      var = lambda w: (x @ np.asarray(w, np.float64))[:, alive].var(0).mean()
      dense_var = var(kernel)
      assert var(scaled[path]) == pytest.approx(dense_var, rel=0.15)
      assert var(plain[path]) == pytest.approx(m.mean() * dense_var, rel=0.3)  # density x dense


@pytest.mark.parametrize('affine', [True, False])
def test_the_skips_parameters_outside_the_budget_counted_by_hand(affine):
  """N2NSkip adds trainable parameters beyond its kernels: with span 3, the MLP 64-48-32-16 gets
  two skips, input -> dense3 and dense1 -> dense4 (32 + 16 biases); VGG19 x1/8 (the studies' width) gets a skip into
  each conv j = 3..16, each normalized by a BatchNorm with a scale and a shift per channel.
  ``skip.affine=False`` adds none, and keeps only the kernels' count apart from the
  network without skips."""
  vgg_widths = [8, 8, 16, 16, 32, 32, 32, 32] + [64] * 8  # VGG19's conv widths, x1/8
  cases = {'mlp': (TINY_MODELS['mlp'], 32 + 16),
           'vgg19': ((dict(model='vgg19', vgg_head='cifar', width_multiplier=1 / 8),
                      (32, 32, 3)), 2 * sum(vgg_widths[2:]))}  # 1,344
  for model, ((overrides, shape), by_hand) in cases.items():
    config = make_config(**overrides, skip__kind='n2nskip', skip__affine=affine)
    variables = network.abstract(config, 10, shape)[1]
    extra = sparsity.skip_extra_params(variables['params'])
    assert extra == (by_hand if affine else 0), model
    without = network.abstract(make_config(**overrides), 10, shape)[1]
    assert (sparsity.count(variables['params']) - sparsity.count(without['params'])
            == sparsity.skip_weights(variables['masks']) + extra), model


def test_rescaling_only_unnormalized_kernels_changes_no_output_that_batch_norm_fixes():
  """On VGG19, the fan-in rescale of a kernel BatchNorm follows changes no output in training
  mode but through BatchNorm's epsilon (only the head's does): rescale_normalized=False
  rescales the head alone and gives the logits of rescaling everything; the convs keep their
  unscaled weights. (Where a unit's pre-activation variance is near epsilon, as in the tiny
  ResNet50's 1x1 maps, the scale does change outputs.)"""
  model = 'vgg19'
  config, variables, masks = pruned(model, 'rp', 0.1)
  overrides, shape = MODELS[model]
  batch = batch_for(shape)
  apply = create_model(config, 10).apply
  def logits(**rescale):
    v = pruning.apply_masks(variables, masks, **rescale)
    return np.asarray(apply(v, batch['image'], train=True, mutable=['batch_stats'])[0]), v
  everything, all_v = logits(rescale=True)
  head_only, head_v = logits(rescale=True, rescale_normalized=False)
  plain, plain_v = logits(rescale=False)
  # Equal but for BatchNorm's epsilon, against the head's own rescale, which moves them a lot.
  assert np.abs(head_only - everything).max() < 0.01 * np.abs(plain - everything).max()
  flat = lambda v: traverse_util.flatten_dict(v['params'])
  for p, w in flat(head_v).items():
    if p[-1] == 'kernel':
      feeds = models.feeds_batch_norm(w)
      assert feeds == (p[-2] != 'head'), p
      np.testing.assert_array_equal(w, (flat(plain_v) if feeds else flat(all_v))[p])
