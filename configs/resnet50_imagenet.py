"""ResNet50 (ImageNet form: 7x7 stem, max-pool) on ImageNet2012.

The paper's generic setup (SGD 0.9, lr 0.05 halved every 30 epochs, wd 5e-4, batch 128,
300 epochs) is kept; a shorter schedule is one override away (--config.num_epochs=90).
ImageNet must be prepared by hand (see README)."""
from n2nskip_jax.configs import default


def get_config():
  c = default.get_config()
  c.model, c.dataset, c.resnet_stem = 'resnet50', 'imagenet2012', 'imagenet'
  c.shuffle_buffer = 10_000
  return c
