"""Model registry: builds the Flax module a config describes."""
import flax.linen as nn
import jax.numpy as jnp

from n2nskip_jax.models.mlp import MLP
from n2nskip_jax.models.resnet import ResNet
from n2nskip_jax.models.skips import SKIP_KINDS, is_skip_path
from n2nskip_jax.models.vgg import VGG

MODELS = ('mlp', 'vgg19', 'resnet50')


def create_model(config, num_classes: int, *, bn_axis_name: str | None = None,
                 with_skips: bool = True, plain: bool = False) -> nn.Module:
  """Returns the model of ``config.model`` for ``num_classes`` outputs.

  Args:
    config: a validated config (see ``configs/default.py``).
    num_classes: classifier outputs.
    bn_axis_name: pmap axis over which BatchNorm averages batch statistics (``None``
      outside ``pmap``).
    with_skips: ``False`` builds the reference network (no skip layers, whatever
      ``config.skip.kind`` says), against which density is counted.
    plain: build with ``flax.linen.Dense``/``Conv`` instead of the masked layers (the
      unmasked twin used by benchmarks).
  """
  return _INTERNED.setdefault(*(_build(config, num_classes, bn_axis_name, with_skips, plain),) * 2)


# Equal modules are returned as one object, so that ``model.apply`` (a static field of the
# train state) compares equal across runs of one process and jitted steps are reused.
_INTERNED: dict = {}


def _build(config, num_classes, bn_axis_name, with_skips, plain) -> nn.Module:
  dtype = jnp.bfloat16 if config.half_precision else None
  kind = config.skip.kind if with_skips else 'none'
  layers = dict(conv=nn.Conv, dense=nn.Dense) if plain else {}
  if config.model == 'mlp':
    return MLP(hidden=tuple(config.mlp_hidden), num_classes=num_classes, skip_kind=kind,
               skip_span=config.skip.span, dtype=dtype, init_scheme=config.init,
               **({'dense': nn.Dense} if plain else {}))
  if config.model == 'vgg19':
    return VGG(num_classes=num_classes, head=config.vgg_head,
               width_multiplier=config.width_multiplier, skip_kind=kind,
               skip_span=config.skip.span, skip_kernel_size=config.skip.kernel_size,
               dtype=dtype, init_scheme=config.init, bn_axis_name=bn_axis_name, **layers)
  if config.model == 'resnet50':
    return ResNet(num_classes=num_classes, stem=config.resnet_stem,
                  width_multiplier=config.width_multiplier, skip_kind=kind,
                  skip_kernel_size=config.skip.kernel_size, dtype=dtype, init_scheme=config.init,
                  bn_axis_name=bn_axis_name, **layers)
  raise ValueError(f'model={config.model!r}; expected one of {MODELS}')


__all__ = ['MLP', 'VGG', 'ResNet', 'MODELS', 'SKIP_KINDS', 'create_model', 'is_skip_path']
