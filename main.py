"""Trains a network: ``python main.py --config configs/X.py`` (flags and behaviour: the
``n2nskip-train`` command, ``n2nskip_jax/__main__.py``)."""
from n2nskip_jax.__main__ import entry

if __name__ == '__main__':
  entry()
