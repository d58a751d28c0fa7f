"""How the masked layers are executed: the one seam for backend-specific speed-ups.

The core (``layers``, ``models``, ``steps``, ``network``, ``pruning``) is the paper as written
and runs the same on every backend; nothing in it imports this package. The training loop, the
command-line tools and config validation ask it for a :class:`Plan`:

    plan = execution.plan(config, masks)          # backend: jax.default_backend()
    model = plan.model(config, num_classes, bn_axis_name=steps.AXIS)
    p_train_step, p_eval_step = plan.steps()      # pmapped, (state, batch) -> ...

A plan names, for ``config.execution`` and the backend, the layers the model is built from
(``conv``, ``dense``, ``norm``, ``pool``: same variables as the core's, so checkpoints, masks and
counts do not change) and the step that trains them. ``'auto'`` picks the CPU formulations on
the CPU backend only (the patches conv for 1x1 kernels and small maps, BatchNorm with a
closed-form backward, max-pooling as a reshape, layers of few nonzeros run by their nonzeros
with native kernels; docs/PERFORMANCE.md) and the core everywhere else. :func:`before_jax`
applies the process settings the CPU backend wants, before JAX starts;
:func:`distributed.initialize` joins a multi-process run (the processes' collectives).
"""
import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from n2nskip_jax import checks
from n2nskip_jax.checks import RENAMED
from n2nskip_jax import layers as core_layers
from n2nskip_jax import steps
from n2nskip_jax.execution import by_nonzeros, distributed, layers, native, step
from n2nskip_jax.execution.batch_norm import BatchNorm
from n2nskip_jax.execution.process import before_jax
from n2nskip_jax.errors import UserError
from n2nskip_jax.models import create_model, is_skip_path

# config.execution's keys and their choices ('auto' first: chosen by the backend).
CHOICES = {
    'conv': ('auto', 'xla', 'patches'),
    'batch_norm': ('auto', 'flax', 'closed_form'),
    'max_pool': ('auto', 'flax', 'reshape'),
    'sequential': ('auto', 'dense', 'sparse'),
    'skip': ('auto', 'dense', 'sparse'),
}
# What 'auto' means on the CPU backend (elsewhere: the core's, the second choice).
CPU_AUTO = {'conv': 'small_maps', 'batch_norm': 'closed_form', 'max_pool': 'reshape'}


def check_config(config) -> None:
  """Checks ``config.execution`` and the multi-process keys (:func:`distributed.check_config`),
  and refuses the keys ``config.execution`` replaced, naming the new ones."""
  for old, new in RENAMED.items():
    group, _, key = old.rpartition('.')
    if key in (config[group] if group else config):
      raise UserError(f'config.{old} no longer exists: use config.{new} (how the masked layers '
                      f'run is the group config.execution: {", ".join(CHOICES)})')
  for key, choices in CHOICES.items():
    checks.choice(config, f'execution.{key}', choices)
  distributed.check_config(config)


@dataclasses.dataclass(frozen=True)
class Plan:
  """How one run executes its masked layers (build it with :func:`plan`).

  ``conv``: ``'xla'``, ``'patches'`` or ``'small_maps'`` (``layers.dense_conv``); ``batch_norm``: ``'flax'`` or ``'closed_form'``;
  ``max_pool``: ``'flax'`` or ``'reshape'``; ``native_kernels``: the layers run by their
  nonzeros use the native CPU kernels; ``tables``: index tables of those layers' masks, by
  kernel path (numpy; empty: none runs by its nonzeros).
  """
  backend: str
  conv: str = 'xla'
  batch_norm: str = 'flax'
  max_pool: str = 'flax'
  native_kernels: bool = False
  tables: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

  @property
  def blocks_each_step(self) -> bool:
    """Whether the loop waits for each step's metrics before dispatching the next: on the
    CPU backend only, where long asynchronous loops of pmapped steps on fake CPU devices
    (``--xla_force_host_platform_device_count``) can abort with a rendezvous timeout."""
    return self.backend == 'cpu'

  @property
  def is_core(self) -> bool:
    """Whether the plan runs the core model and step unchanged."""
    return self == Plan(self.backend) and not self.tables

  def layers(self) -> dict:
    """The models' layer arguments (``create_model(..., layers=...)``); ``{}`` for the core."""
    if self.is_core:
      return {}
    return _layers(self.conv, self.batch_norm, self.max_pool, self.native_kernels)

  def model(self, config, num_classes: int, *, bn_axis_name: str | None = None) -> nn.Module:
    """The model of ``config`` built from :meth:`layers` (the core's variables)."""
    return create_model(config, num_classes, bn_axis_name=bn_axis_name, layers=self.layers())

  def steps(self):
    """``(p_train_step, p_eval_step)``, pmapped, each called as ``(state, batch)`` like
    ``steps.p_train_step``: the core's, or the steps by nonzeros with the tables replicated."""
    if not self.tables:
      return steps.p_train_step, steps.p_eval_step
    tables = steps.replicate(self.tables)
    return (lambda state, batch: step.p_train_step(state, tables, batch),
            lambda state, batch: step.p_eval_step(state, tables, batch))


def plan(config, masks, backend: str | None = None) -> Plan:
  """The execution plan of ``config.execution`` for a run with ``masks`` on ``backend``
  (default: JAX's default backend; ``'cuda'``/``'tpu'`` to build an accelerator's step here).

  A masked layer runs by its nonzeros where its key (``execution.skip`` for the skip layers,
  ``execution.sequential`` for the others) is ``'sparse'``, or ``'auto'`` on the CPU backend
  with at most ``by_nonzeros.auto_max_density`` of its kernel nonzero for the compute dtype of
  ``config.half_precision``.
  """
  backend = backend or jax.default_backend()
  on_cpu = backend == 'cpu'
  ex = config.execution

  def pick(key):
    if ex[key] != 'auto':
      return ex[key]
    return CPU_AUTO[key] if on_cpu else CHOICES[key][1]
  dtype = jnp.bfloat16 if config.half_precision else jnp.float32
  tables = {}
  for path, mask in traverse_util.flatten_dict(masks).items():
    if _by_nonzeros(ex.skip if is_skip_path(path) else ex.sequential, mask, dtype, on_cpu):
      tables[path] = by_nonzeros.nonzero_tables(jax.device_get(mask))
  return Plan(backend, conv=pick('conv'), batch_norm=pick('batch_norm'),
              max_pool=pick('max_pool'), tables=traverse_util.unflatten_dict(tables),
              native_kernels=bool(tables) and on_cpu and native.available())


def _by_nonzeros(choice: str, mask, dtype, on_cpu: bool) -> bool:
  if choice == 'auto':  # (the threshold's check builds the native kernels: only if needed)
    if not on_cpu:
      return False
    density = np.mean(mask)
    return (density <= max(by_nonzeros.AUTO_MAX_DENSITY.values())
            and density <= by_nonzeros.auto_max_density(dtype))
  return choice == 'sparse'


@functools.lru_cache(maxsize=None)
def _layers(conv: str, batch_norm: str, max_pool: str, native_kernels: bool) -> dict:
  """The layer arguments, one object per combination (so that models compare equal)."""
  return {'conv': functools.partial(layers.Conv, algorithm=conv, native=native_kernels),
          'dense': functools.partial(layers.Dense, native=native_kernels),
          'norm': BatchNorm if batch_norm == 'closed_form' else nn.BatchNorm,
          'pool': layers.max_pool_2x2 if max_pool == 'reshape' else core_layers.max_pool_2x2}


__all__ = ['CHOICES', 'RENAMED', 'Plan', 'before_jax', 'check_config', 'distributed', 'plan']
