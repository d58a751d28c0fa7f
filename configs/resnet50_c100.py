"""ResNet50 (CIFAR form) on CIFAR-100 with the paper's training setup."""
from n2nskip_jax.configs import default


def get_config():
  c = default.get_config()
  c.model, c.dataset, c.resnet_stem = 'resnet50', 'cifar100', 'cifar'
  return c
