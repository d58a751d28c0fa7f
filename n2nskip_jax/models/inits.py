"""Weight initialization: the paper's framework (PyTorch / torchvision) or Flax's defaults.

Pruned networks are very sensitive to the initial weight scale, so the default reproduces
the initializers of the networks the paper trained (``config.init='torch'``):

* conv kernels (VGG, ResNet, their skip and projection convs): torchvision's
  ``kaiming_normal_(mode='fan_out', nonlinearity='relu')``, i.e. ``N(0, 2 / fan_out)`` with
  ``fan_out = out_channels * kh * kw`` (an untruncated normal);
* VGG's linear layers: ``N(0, 0.01^2)`` weights, zero bias (torchvision's VGG);
* every other linear layer (the MLP and its skip layers, ResNet's classifier):
  ``nn.Linear``'s default, ``kaiming_uniform_(a=sqrt(5))`` = ``U(-1/sqrt(fan_in),
  1/sqrt(fan_in))`` for the weight and the same interval for the bias;
* BatchNorm: scale 1, bias 0 (Flax's default too).

``config.init='flax'`` keeps Flax's defaults: ``lecun_normal`` kernels, zero biases.
Each function returns keyword arguments for a layer (``kernel_init``, ``bias_init``); an
empty dict means "the layer's own default".
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

INITS = ('torch', 'flax')

# kaiming_normal_(mode='fan_out', nonlinearity='relu'): gain^2 = 2, variance 2 / fan_out.
_KAIMING_FAN_OUT = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
# kaiming_uniform_(a=sqrt(5)): gain^2 = 2 / (1 + 5) = 1/3, so U(+-sqrt(3 * (1/3) / fan_in)).
_LINEAR_DEFAULT = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def _fan_in_uniform(fan_in: int):
  """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``: ``nn.Linear``'s default bias."""
  bound = 1.0 / max(1, fan_in) ** 0.5

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def conv(init: str) -> dict:
  """Conv kernels (every model's convs, skip and projection convs included)."""
  return {'kernel_init': _KAIMING_FAN_OUT} if init == 'torch' else {}


def linear(init: str, fan_in: int) -> dict:
  """``nn.Linear``'s default: weights and bias ``U(+-1/sqrt(fan_in))``."""
  if init != 'torch':
    return {}
  return {'kernel_init': _LINEAR_DEFAULT, 'bias_init': _fan_in_uniform(fan_in)}


def vgg_linear(init: str) -> dict:
  """torchvision VGG's classifier layers: ``N(0, 0.01^2)`` weights, zero bias."""
  return {'kernel_init': nn.initializers.normal(0.01)} if init == 'torch' else {}
