"""Config keys by their dotted names (``'pruning.density'``): reading them and checking them.

Each module checks the keys it reads (its ``check_config``) with these helpers;
``config.validate`` runs every module's check. An error names the key, the value and what is
allowed, e.g. ``config.pruning.density=1.5: expected a number in (0, 1]``."""
import math
import re

from n2nskip_jax.errors import ConfigError

# Keys that no longer exist, and the keys of the group `execution` that replaced them: refused
# by `execution.check_config`, named by the command line's hint (`cli`), and left out of a run
# directory's name and hash (`rundir`, which hashes them at their default, 'auto'). Here, not in
# `execution`, so that the core reads them without importing that package.
RENAMED = {'conv_impl': 'execution.conv', 'pruning.execution': 'execution.sequential',
           'skip.execution': 'execution.skip'}


def value(config, key: str):
  """``config``'s value at the dotted ``key`` (a ``KeyError`` if it has no such key)."""
  node = config
  for part in key.split('.'):
    node = node[part]
  return node


def leaves(tree, prefix: str = ''):
  """Yields ``(dotted key, value)`` for every leaf of a nested dict or ConfigDict, in its
  iteration order: ``{'pruning': {'density': 0.1}}`` -> ``('pruning.density', 0.1)``. A group
  (anything with ``items``) is walked, not yielded, so an empty one yields nothing; any other
  value, a tuple or a list included, is a leaf."""
  for key, v in tree.items():
    if hasattr(v, 'items'):
      yield from leaves(v, f'{prefix}{key}.')
    else:
      yield f'{prefix}{key}', v


def check(config, key: str, ok, allowed: str) -> None:
  """Raises :class:`ConfigError` unless ``ok(value)`` (a ``TypeError`` counts as not ok)."""
  v = value(config, key)
  try:
    good = ok(v)
  except TypeError:
    good = False
  if not good:
    raise ConfigError(key, v, allowed)


def choice(config, key: str, options) -> None:
  """Raises :class:`ConfigError` unless the value at ``key`` is one of ``options``."""
  check(config, key, lambda v: v in options, f'one of {tuple(options)}')


def positive_int(config, key: str) -> None:
  """Raises :class:`ConfigError` unless the value at ``key`` is an integer >= 1."""
  check(config, key, lambda v: is_int(v) and v > 0, 'an integer >= 1')


def boolean(config, key: str) -> None:
  """Raises :class:`ConfigError` unless the value at ``key`` is ``True`` or ``False``."""
  check(config, key, lambda v: isinstance(v, bool), 'True or False')


def is_int(v) -> bool:
  """An int, not a bool."""
  return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
  """A finite int or float (no bool, nan or inf: no key of the config takes them)."""
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_regex(pattern) -> bool:
  """A string that compiles as a regular expression."""
  try:
    re.compile(pattern)
    return isinstance(pattern, str)
  except re.error:
    return False
