"""Config validation, every key before anything is traced or compiled (:func:`validate`: each
module checks the keys it reads, with :mod:`n2nskip_jax.checks`).

Errors name the key, the value and what is allowed, e.g.
``config.pruning.density=1.5: expected a number in (0, 1]``.
"""
import functools
import math

from n2nskip_jax import checks, data, execution, models, pruning
from n2nskip_jax.errors import ConfigError, UserError

MAX_EPOCHS = 100_000
MIN_LEARNING_RATE = 1e-30  # well inside float32's normal range

__all__ = ['ConfigError', 'UserError', 'validate']


def _check_last_learning_rate(config) -> None:
  """The learning rate of the last epoch, ``lr * factor^((num_epochs - 1) // decay_epochs)``,
  must stay above :data:`MIN_LEARNING_RATE` (else the run would train with a zero step)."""
  lr, factor, every = config.learning_rate, config.lr_decay_factor, config.lr_decay_epochs
  if lr < MIN_LEARNING_RATE:
    raise ConfigError('learning_rate', lr, f'a number >= {MIN_LEARNING_RATE:g}')
  if lr * factor ** ((config.num_epochs - 1) // every) >= MIN_LEARNING_RATE:
    return
  decays = math.floor(math.log(MIN_LEARNING_RATE / lr) / math.log(factor)) if factor < 1 else 0
  raise ConfigError('num_epochs', config.num_epochs,
                    f'at most {every * (decays + 1)}, so that the learning rate ({lr:g}, x{factor:g} '
                    f'every {every} epochs) stays above {MIN_LEARNING_RATE:g}')


def validate(config, num_devices: int = 1, num_processes: int = 1) -> None:
  """Raises :class:`ConfigError` for the first invalid key of ``config``: each module checks the
  keys it reads (``data``, ``models``, ``pruning``, ``execution``: their ``check_config``), then
  the keys two of them read (an image data set for a model of images) and the training loop's
  keys are checked here."""
  execution.check_config(config)
  data.check_config(config)
  models.check_config(config)
  pruning.check_config(config)
  if models.spec(config).images and config.dataset not in data.IMAGE_DATASETS:
    raise ConfigError('dataset', config.dataset,
                      f'an image data set {data.IMAGE_DATASETS} for model={config.model!r} '
                      "(use model='mlp' for 'mnist1d' and 'digits')")
  for key in ('multihost', 'restart_on_corrupt'):
    checks.boolean(config, key)
  for key in ('num_epochs', 'batch_size', 'eval_batch_size', 'lr_decay_epochs',
              'eval_every_epochs', 'log_every_steps', 'max_checkpoints_to_keep'):
    checks.positive_int(config, key)
  check = functools.partial(checks.check, config)
  is_int, is_number = checks.is_int, checks.is_number
  check('checkpoint_every_steps', lambda v: is_int(v) and v >= 0, 'an integer >= 0')
  check('seed', lambda v: is_int(v) and 0 <= v < 2 ** 32, 'an integer in [0, 2**32 - 1]')
  check('num_epochs', lambda v: v <= MAX_EPOCHS, f'an integer in [1, {MAX_EPOCHS}]')
  check('learning_rate', lambda v: is_number(v) and v > 0, 'a number > 0')
  check('momentum', lambda v: is_number(v) and 0 <= v < 1, 'a number in [0, 1)')
  check('weight_decay', lambda v: is_number(v) and v >= 0, 'a number >= 0')
  check('lr_decay_factor', lambda v: is_number(v) and 0 < v <= 1, 'a number in (0, 1]')
  _check_last_learning_rate(config)
  for key in ('batch_size', 'eval_batch_size'):
    check(key, lambda v: v % num_devices == 0,
          f'a multiple of the device count ({num_devices} devices over {num_processes} processes)')
