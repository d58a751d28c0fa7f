"""Config validation: every key is checked before anything is traced or compiled.

Errors name the key, the value and what is allowed, e.g.
``config.pruning.density=1.5: expected a number in (0, 1]``.
"""
import contextlib
import re

from n2nskip_jax import execution, models, pruning
from n2nskip_jax.data import DATASETS, IMAGE_DATASETS
from n2nskip_jax.errors import ConfigError, UserError
from n2nskip_jax.models import MODELS, SKIP_KINDS
from n2nskip_jax.models.inits import INITS
from n2nskip_jax.models.resnet import STEMS
from n2nskip_jax.models.vgg import HEADS

__all__ = ['ConfigError', 'RENAMED', 'UserError', 'logging_for_runs', 'setup_logging', 'validate']

# Keys that no longer exist, and the keys that replaced them.
RENAMED = {'conv_impl': 'execution.conv', 'pruning.execution': 'execution.sequential',
           'skip.execution': 'execution.skip'}


def _not_orbax(record) -> bool:
  """Hides orbax's per-checkpoint chatter and JAX's harmless note that there is no TPU."""
  return 'orbax' not in record.pathname and 'libtpu' not in str(record.msg)


def setup_logging() -> None:
  """INFO progress lines from absl (also in a notebook), without orbax's per-checkpoint
  chatter: for the command-line tools (process-wide); the library uses :func:`logging_for_runs`."""
  from absl import logging
  logging.set_verbosity(logging.INFO)
  for handler in _handlers():
    if _not_orbax not in handler.filters:
      handler.addFilter(_not_orbax)


def _handlers() -> list:
  import logging as std_logging

  from absl import logging
  return [logging.get_absl_handler(), *std_logging.getLogger().handlers]


@contextlib.contextmanager
def logging_for_runs():
  """:func:`setup_logging` inside the block; absl's verbosity and the handlers' filters as they
  were after it."""
  from absl import logging
  verbosity = logging.get_verbosity()
  added = [h for h in _handlers() if _not_orbax not in h.filters]
  setup_logging()
  try:
    yield
  finally:
    logging.set_verbosity(verbosity)
    for handler in added:
      handler.removeFilter(_not_orbax)


def _get(config, key):
  node = config
  for part in key.split('.'):
    node = node[part]
  return node


def _check(config, key, ok, allowed):
  value = _get(config, key)
  try:
    good = ok(value)
  except TypeError:
    good = False
  if not good:
    raise ConfigError(key, value, allowed)


def _is_int(v):
  return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_regex(pattern):
  try:
    re.compile(pattern)
    return isinstance(pattern, str)
  except re.error:
    return False


def validate(config, num_devices: int = 1, num_processes: int = 1) -> None:
  """Raises :class:`ConfigError` for the first invalid key of ``config``."""
  for old, new in RENAMED.items():
    group, _, key = old.rpartition('.')
    if key in (config[group] if group else config):
      raise UserError(f'config.{old} no longer exists: use config.{new} (how the masked layers '
                      f'run is the group config.execution: {", ".join(execution.CHOICES)})')
  choice = lambda key, options: _check(config, key, lambda v: v in options, f'one of {options}')
  positive_int = lambda key: _check(config, key, lambda v: _is_int(v) and v > 0, 'an integer >= 1')
  choice('model', MODELS)
  choice('dataset', tuple(DATASETS))
  choice('resnet_stem', STEMS)
  choice('vgg_head', HEADS)
  choice('init', INITS)
  _check(config, 'width_multiplier', lambda v: _is_number(v) and v > 0, 'a number > 0')
  _check(config, 'mlp_hidden', lambda v: len(v) > 0 and all(_is_int(w) and w > 0 for w in v),
         'a non-empty sequence of positive integers')
  for key in ('half_precision', 'download', 'multihost', 'restart_on_corrupt', 'pruning.rescale'):
    _check(config, key, lambda v: isinstance(v, bool), 'True or False')
  if config.model != 'mlp' and config.dataset not in IMAGE_DATASETS:
    raise ConfigError('dataset', config.dataset,
                      f'an image data set {IMAGE_DATASETS} for model={config.model!r} '
                      "(use model='mlp' for 'mnist1d' and 'digits')")
  for key in ('num_epochs', 'batch_size', 'eval_batch_size', 'lr_decay_epochs',
              'eval_every_epochs', 'log_every_steps', 'max_checkpoints_to_keep', 'image_size',
              'shuffle_buffer'):
    positive_int(key)
  _check(config, 'checkpoint_every_steps', lambda v: _is_int(v) and v >= 0, 'an integer >= 0')
  _check(config, 'seed', _is_int, 'an integer')
  _check(config, 'coordinator_address', lambda v: v == '' or re.fullmatch(r'[^:\s]+:\d+', v),
         "'' or 'host:port'")
  _check(config, 'num_processes', lambda v: _is_int(v) and v >= 0, 'an integer >= 0 (0: from the environment)')
  _check(config, 'process_id', lambda v: _is_int(v) and v >= -1, 'an integer >= -1 (-1: from the environment)')
  _check(config, 'heartbeat_timeout', lambda v: _is_int(v) and v > 0, 'an integer >= 1 (seconds)')
  _check(config, 'learning_rate', lambda v: _is_number(v) and v > 0, 'a number > 0')
  _check(config, 'momentum', lambda v: _is_number(v) and 0 <= v < 1, 'a number in [0, 1)')
  _check(config, 'weight_decay', lambda v: _is_number(v) and v >= 0, 'a number >= 0')
  _check(config, 'lr_decay_factor', lambda v: _is_number(v) and 0 < v <= 1, 'a number in (0, 1]')
  shards = num_devices
  for key in ('batch_size', 'eval_batch_size'):
    _check(config, key, lambda v: v % shards == 0,
           f'a multiple of the device count ({num_devices} devices over {num_processes} processes)')
  # Pruning and skips.
  choice('pruning.method', ('dense', *pruning.METHODS))
  _check(config, 'pruning.density', lambda v: _is_number(v) and 0 < v <= 1, 'a number in (0, 1]')
  positive_int('pruning.snip_batch_size')
  _check(config, 'pruning.exclude', lambda v: all(_is_regex(p) for p in v),
         'a sequence of regular expressions')
  if config.pruning.method == 'dense' and config.pruning.density != 1:
    raise ConfigError('pruning.density', config.pruning.density,
                      "1.0 with pruning.method='dense' (choose 'rp', 'csp' or 'structured' to prune)")
  choice('skip.kind', SKIP_KINDS)
  for key, choices in execution.CHOICES.items():
    choice(f'execution.{key}', choices)
  _check(config, 'skip.fraction', lambda v: _is_number(v) and 0 <= v < 1, 'a number in [0, 1)')
  _check(config, 'skip.kernel_size', lambda v: _is_int(v) and v > 0 and v % 2 == 1,
         'an odd integer >= 1')
  depth = models.max_skip_span(config)
  _check(config, 'skip.span', lambda v: _is_int(v) and 1 <= v <= depth,
         f'an integer in [1, {depth}] for model={config.model!r}')
  if config.model == 'resnet50':
    _check(config, 'skip.span', lambda v: v == 3, '3 for resnet50 (one skip per bottleneck)')
    _check(config, 'skip.kind', lambda v: v != 'resskip',
           "'none' or 'n2nskip' for resnet50 (it already has residual shortcuts)")
  if config.skip.kind == 'n2nskip' and config.pruning.method == 'dense':
    raise ConfigError('pruning.method', 'dense',
                      "'rp', 'csp' or 'structured' with skip.kind='n2nskip' (skips share the budget)")
