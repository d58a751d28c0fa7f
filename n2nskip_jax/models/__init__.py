"""Model registry: builds the Flax module a config describes, and describes its structure.

Everything that needs to know a model's layers asks here: :func:`structure` (its ordered
unit groups and the kernels or identities joining them, skips included), :func:`reference`
(the network density is counted against), :func:`max_skip_span` and :func:`is_skip_path`.
"""
import copy
import math

import flax.linen as nn
import jax.numpy as jnp
from flax import traverse_util

from n2nskip_jax import checks, data
from n2nskip_jax.errors import ConfigError
from n2nskip_jax.models import inits, mlp, resnet, vgg
from n2nskip_jax.models.mlp import MLP
from n2nskip_jax.models.resnet import ResNet
from n2nskip_jax.models.skips import INPUT, SHARED_BUDGET_KINDS, SKIP_KINDS, Edge, is_skip_path
from n2nskip_jax.models.vgg import VGG

MODELS = ('mlp', 'vgg19', 'resnet50')


def create_model(config, num_classes: int, *, bn_axis_name: str | None = None,
                 plain: bool = False, layers: dict | None = None) -> nn.Module:
  """Returns the model of ``config.model`` for ``num_classes`` outputs.

  Args:
    config: a validated config (see ``configs/default.py``).
    num_classes: classifier outputs.
    bn_axis_name: pmap axis over which BatchNorm averages batch statistics (``None``
      outside ``pmap``).
    plain: build with ``flax.linen.Dense``/``Conv`` instead of the masked layers (the
      unmasked twin used by benchmarks).
    layers: module classes to build the model from instead of the masked layers, by the
      models' argument names (``conv``, ``dense``, ``norm``, ``pool``; an MLP takes ``dense``
      only): how the execution plan runs the same variables faster.
  """
  layers = dict(PLAIN if plain else layers or {})
  return _INTERNED.setdefault(*(_build(config, num_classes, bn_axis_name, layers),) * 2)


PLAIN = {'conv': nn.Conv, 'dense': nn.Dense}
# Equal modules are returned as one object, so that ``model.apply`` (a static field of the
# train state) compares equal across runs of one process and jitted steps are reused.
_INTERNED: dict = {}


def _build(config, num_classes, bn_axis_name, layers) -> nn.Module:
  dtype = jnp.bfloat16 if config.half_precision else None
  kind = config.skip.kind
  if config.model == 'mlp':
    return MLP(hidden=tuple(config.mlp_hidden), num_classes=num_classes, skip_kind=kind,
               skip_span=config.skip.span, skip_affine=config.skip.affine, dtype=dtype,
               init_scheme=config.init,
               **{k: v for k, v in layers.items() if k == 'dense'})
  if config.model == 'vgg19':
    return VGG(num_classes=num_classes, head=config.vgg_head,
               width_multiplier=config.width_multiplier, skip_kind=kind,
               skip_span=config.skip.span, skip_kernel_size=config.skip.kernel_size,
               skip_affine=config.skip.affine, dtype=dtype, init_scheme=config.init,
               bn_axis_name=bn_axis_name, **layers)
  if config.model == 'resnet50':
    return ResNet(num_classes=num_classes, stem=config.resnet_stem,
                  width_multiplier=config.width_multiplier, skip_kind=kind,
                  skip_kernel_size=config.skip.kernel_size, skip_affine=config.skip.affine,
                  dtype=dtype, init_scheme=config.init,
                  bn_axis_name=bn_axis_name, **{k: v for k, v in layers.items() if k != 'pool'})
  raise ValueError(f'model={config.model!r}; expected one of {MODELS}')


def reference(config):
  """The reference network's config: the dense-shaped sequential model, no skip layers.
  Density is counted against it (``B = round(density * N_ref)``)."""
  ref = copy.deepcopy(config)
  ref.skip.kind = 'none'
  return ref


def without_skips(variables):
  """The reference network's share of a model's variables: every collection minus the skip
  layers (the dense sequential layers are initialized identically in both)."""
  return {col: traverse_util.unflatten_dict(
      {p: v for p, v in traverse_util.flatten_dict(tree).items() if not is_skip_path(p)})
          for col, tree in variables.items()}


def structure(config) -> list[Edge]:
  """The model's junctions in order (see :class:`Edge`), skip layers included."""
  shape = data.spec(config)[1]
  if config.model == 'mlp':
    return mlp.edges(tuple(config.mlp_hidden), config.skip.kind, config.skip.span, math.prod(shape))
  if config.model == 'vgg19':
    return vgg.edges(config.vgg_head, config.width_multiplier, config.skip.kind, config.skip.span,
                     shape[-1])
  if config.model == 'resnet50':
    return resnet.edges(config.skip.kind)
  raise ValueError(f'model={config.model!r}; expected one of {MODELS}')


def check_config(config) -> None:
  """Checks the model and skip keys (``data.check_config`` first: ``dataset`` is read)."""
  checks.choice(config, 'model', MODELS)
  checks.choice(config, 'resnet_stem', resnet.STEMS)
  checks.choice(config, 'vgg_head', vgg.HEADS)
  checks.choice(config, 'init', inits.INITS)
  checks.check(config, 'width_multiplier', lambda v: checks.is_number(v) and v > 0, 'a number > 0')
  checks.check(config, 'mlp_hidden', lambda v: len(v) > 0 and all(
      checks.is_int(w) and w > 0 for w in v), 'a non-empty sequence of positive integers')
  checks.boolean(config, 'half_precision')
  if config.model != 'mlp' and config.dataset not in data.IMAGE_DATASETS:
    raise ConfigError('dataset', config.dataset,
                      f'an image data set {data.IMAGE_DATASETS} for model={config.model!r} '
                      "(use model='mlp' for 'mnist1d' and 'digits')")
  checks.choice(config, 'skip.kind', SKIP_KINDS)
  checks.boolean(config, 'skip.affine')
  checks.check(config, 'skip.kernel_size', lambda v: checks.is_int(v) and v > 0 and v % 2 == 1,
               'an odd integer >= 1')
  depth = max_skip_span(config)
  checks.check(config, 'skip.span', lambda v: checks.is_int(v) and 1 <= v <= depth,
               f'an integer in [1, {depth}] for model={config.model!r}')
  if config.model == 'resnet50':
    checks.check(config, 'skip.span', lambda v: v == 3, '3 for resnet50 (one skip per bottleneck)')
    checks.check(config, 'skip.kind', lambda v: v != 'resskip',
                 "'none' or 'n2nskip' for resnet50 (it already has residual shortcuts)")


def feeds_batch_norm(kernel) -> bool:
  """Whether BatchNorm follows the layer of ``kernel`` (a kernel or its mask): every conv of
  these models is bias-free and normalized (VGG19's, ResNet50's, skips and projections
  included); no dense layer is (the MLP, VGG19's and ResNet50's classifiers)."""
  return len(kernel.shape) == 4


def max_skip_span(config) -> int:
  """The largest ``skip.span`` the model has layers for (ResNet50's skips span one block)."""
  if config.model == 'mlp':
    return len(config.mlp_hidden)
  return len(vgg.conv_plan(vgg.VGG19_LAYERS, 1)[0]) if config.model == 'vgg19' else 3


__all__ = ['MLP', 'VGG', 'ResNet', 'MODELS', 'SHARED_BUDGET_KINDS', 'SKIP_KINDS', 'INPUT', 'Edge',
           'check_config', 'create_model', 'feeds_batch_norm', 'is_skip_path', 'max_skip_span',
           'reference', 'structure', 'without_skips']
