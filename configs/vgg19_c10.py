"""VGG19-BN with the paper's 4096-4096 head on CIFAR-10 (set vgg_head='cifar' for 1 linear)."""
from n2nskip_jax.configs import default


def get_config():
  c = default.get_config()
  c.model, c.dataset, c.vgg_head = 'vgg19', 'cifar10', 'paper'
  return c
