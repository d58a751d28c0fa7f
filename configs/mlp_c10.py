"""The paper's MLP 3072-512-256-128-64-10 on CIFAR-10 (flattened images)."""
from n2nskip_jax.configs import default


def get_config():
  c = default.get_config()
  c.model, c.dataset, c.mlp_hidden = 'mlp', 'cifar10', (512, 256, 128, 64)
  return c
