"""Model registry: builds the Flax module a config describes, and describes its structure.

One table, :data:`MODELS`, maps each ``config.model`` to its :class:`ModelSpec`, whose
functions live in the model's own module (``mlp.py``, ``vgg.py``, ``resnet.py``): a new model
is its module and one line of the table. Everything that needs to know a model's layers asks
here: :func:`structure` (its ordered unit groups and the kernels or identities joining them,
skips included), :func:`reference` (the network density is counted against),
:func:`max_skip_span` and :func:`is_skip_path`.
"""
import copy
import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp
from flax import traverse_util

from n2nskip_jax import checks
from n2nskip_jax.models import inits, mlp, resnet, vgg
from n2nskip_jax.models.mlp import MLP
from n2nskip_jax.models.resnet import ResNet
from n2nskip_jax.models.skips import INPUT, SHARED_BUDGET_KINDS, SKIP_KINDS, Edge, is_skip_path
from n2nskip_jax.models.vgg import VGG


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """One model of :data:`MODELS`.

  Attributes:
    build: ``(config, num_classes, dtype, bn_axis_name, layers) -> nn.Module``: the module of
      ``config`` for ``num_classes`` outputs, computing in ``dtype``, its BatchNorm (if any)
      averaged over the pmap axis ``bn_axis_name``, built from the module classes ``layers``
      (its :attr:`layers` among ``create_model``'s).
    edges: ``(config, built) -> [Edge]``: its structure (:func:`structure`), ``built`` the
      paths of the layers that hold a kernel.
    max_skip_span: ``config -> int``: the largest ``skip.span`` it has layers for.
    layers: the layer arguments its module takes, of ``conv``, ``dense``, ``norm`` and ``pool``.
    images: it takes ``(height, width, channels)`` images (an image data set).
    check_config: ``config -> None``: checks of the keys this model alone constrains.
  """
  build: Callable[..., nn.Module]
  edges: Callable[[Any, set], list[Edge]]
  max_skip_span: Callable[[Any], int]
  layers: tuple[str, ...]
  images: bool
  check_config: Callable[[Any], None] = lambda config: None


MODELS = {
    'mlp': ModelSpec(mlp.build, mlp.edges, mlp.max_skip_span, ('dense',), images=False),
    'vgg19': ModelSpec(vgg.build, vgg.edges, vgg.max_skip_span, ('conv', 'dense', 'norm', 'pool'),
                       images=True),
    'resnet50': ModelSpec(resnet.build, resnet.edges, resnet.max_skip_span,
                          ('conv', 'dense', 'norm'), images=True, check_config=resnet.check_config),
}


def spec(config) -> ModelSpec:
  """The :class:`ModelSpec` of ``config.model`` (a ``ConfigError`` for a model not in the table)."""
  checks.choice(config, 'model', MODELS)
  return MODELS[config.model]


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
      models' argument names (``conv``, ``dense``, ``norm``, ``pool``; each model takes those of
      its :attr:`ModelSpec.layers`): how the execution plan runs the same variables faster.
  """
  model_spec = spec(config)
  layers = {k: v for k, v in (PLAIN if plain else layers or {}).items() if k in model_spec.layers}
  dtype = jnp.bfloat16 if config.half_precision else None
  model = model_spec.build(config, num_classes, dtype, bn_axis_name, layers)
  return _INTERNED.setdefault(model, model)


PLAIN = {'conv': nn.Conv, 'dense': nn.Dense}
# Equal modules are returned as one object, so that ``model.apply`` (a static field of the
# train state) compares equal across runs of one process and jitted steps are reused.
_INTERNED: dict = {}


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


def structure(config, masks) -> list[Edge]:
  """The model's junctions in order (see :class:`Edge`), skip layers included.

  ``masks``: the model's ``masks`` collection (a tree of its kernels' paths), which also says
  where a ResSkip is an identity: no layer was built for it (the model projects only where the
  shapes differ).
  """
  built = {p[:-1] for p in traverse_util.flatten_dict(masks)}
  return spec(config).edges(config, built)


def check_config(config) -> None:
  """Checks the model and skip keys (the data set's fit to the model: ``config.validate``)."""
  checks.choice(config, 'model', MODELS)
  checks.choice(config, 'resnet_stem', resnet.STEMS)
  checks.choice(config, 'vgg_head', vgg.HEADS)
  checks.choice(config, 'init', inits.INITS)
  checks.check(config, 'width_multiplier', lambda v: checks.is_number(v) and v > 0, 'a number > 0')
  checks.check(config, 'mlp_hidden', lambda v: len(v) > 0 and all(
      checks.is_int(w) and w > 0 for w in v), 'a non-empty sequence of positive integers')
  checks.boolean(config, 'half_precision')
  checks.choice(config, 'skip.kind', SKIP_KINDS)
  checks.boolean(config, 'skip.affine')
  checks.check(config, 'skip.kernel_size', lambda v: checks.is_int(v) and v > 0 and v % 2 == 1,
               'an odd integer >= 1')
  depth = max_skip_span(config)
  checks.check(config, 'skip.span', lambda v: checks.is_int(v) and 1 <= v <= depth,
               f'an integer in [1, {depth}] for model={config.model!r}')
  spec(config).check_config(config)


def feeds_batch_norm(kernel) -> bool:
  """Whether BatchNorm follows the layer of ``kernel`` (a kernel or its mask): every conv of
  these models is bias-free and normalized (VGG19's, ResNet50's, skips and projections
  included); no dense layer is (the MLP, VGG19's and ResNet50's classifiers)."""
  return len(kernel.shape) == 4


def max_skip_span(config) -> int:
  """The largest ``skip.span`` the model has layers for (ResNet50's skips span one block)."""
  return spec(config).max_skip_span(config)


__all__ = ['MLP', 'VGG', 'ResNet', 'MODELS', 'SHARED_BUDGET_KINDS', 'SKIP_KINDS', 'INPUT', 'Edge',
           'ModelSpec', 'check_config', 'create_model', 'feeds_batch_norm', 'is_skip_path',
           'max_skip_span', 'reference', 'spec', 'structure', 'without_skips']
