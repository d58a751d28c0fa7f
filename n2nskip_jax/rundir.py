"""The run directory: its default name, the config pinned in it, and what is read back from it.

A run directory holds ``config.json`` (the resolved config), ``checkpoints/<step>/`` (orbax),
``metrics.jsonl``, ``tensorboard/`` and, once the run has finished, ``summary.json``. A rerun
in the same directory must use the same config, except for :data:`RESUMABLE_KEYS`.
"""
import glob
import hashlib
import json
import os
import re

import ml_collections

from n2nskip_jax import checks
from n2nskip_jax.checkpoints import Checkpoints
from n2nskip_jax.errors import UserError
from n2nskip_jax.metrics import write_json

# Keys that only choose how the masked layers execute (the `execution` group and the names its
# keys had before it): left out of the default run directory's name and hash.
EXECUTION_KEYS = ('execution.*', *checks.RENAMED)
# Keys a resumed run may change: they do not alter the trajectory of the run, or alter it by
# float rounding only (how the masked layers execute, like the process count). A key missing
# from a stored config (written before the key existed) counts as changed.
RESUMABLE_KEYS = ('num_epochs', 'log_every_steps', 'eval_every_epochs', 'eval_batch_size',
                  'checkpoint_every_steps', 'max_checkpoints_to_keep', 'data_dir',
                  'download', 'multihost', 'restart_on_corrupt', 'coordinator_address',
                  'num_processes', 'process_id', 'heartbeat_timeout', *EXECUTION_KEYS)
# Keys added after runs were stored, each with the value that reproduces those runs: a stored
# config without one is read with it, and the default run directory's name leaves it out while
# it has that value (older runs keep their folders).
ADDED_KEYS = {'pruning.grasp_temperature': 200.0, 'pruning.synflow_iterations': 100,
              'pruning.shuffle': False, 'pruning.reinit': False, 'skip.affine': True,
              'pruning.rescale_normalized': True}
CONFIG, SUMMARY, CHECKPOINTS = 'config.json', 'summary.json', 'checkpoints'
MAX_LABEL = 96  # characters of overridden keys in a default run directory's name
TRAIN_FIRST = 'train the run first: n2nskip-train or main.py'


def with_added_keys(stored: dict) -> dict:
  """A stored config dict with the :data:`ADDED_KEYS` it lacks, at their values."""
  out = json.loads(json.dumps(stored))
  for key, value in ADDED_KEYS.items():
    group, name = key.split('.')
    out.setdefault(group, {}).setdefault(name, value)
  return out


def default_workdir(config_path: str, config, overrides: dict | None = None) -> str:
  """``runs/<config file name>[-<key>=<value>...]-<hash of the resolved config>``: the same
  config, the same directory, so rerunning a command resumes its run. The command line's
  ``overrides`` (``{'pruning.density': 0.02}``, keys sorted) make the name readable, e.g. as
  TensorBoard's run name; the hash alone is the resume key: an existing folder with the same
  hash is used whatever its label (overrides in another order, a default set explicitly, a
  run named before labels existed). The hash leaves out how the layers execute
  (:data:`EXECUTION_KEYS`), which does not change the run; it is taken as before that group
  existed (its keys' old names at their defaults) and without :data:`ADDED_KEYS` at their
  values, so older runs keep their folders."""
  name = os.path.splitext(os.path.basename(config_path.split(':')[0]))[0]
  resolved = json.loads(config.to_json())
  resolved.pop('execution', None)
  for key, value in ADDED_KEYS.items():
    group, leaf = key.split('.')
    if resolved[group].get(leaf) == value:
      del resolved[group][leaf]
  for old in checks.RENAMED:  # each at its default
    group, _, key = old.rpartition('.')
    (resolved[group] if group else resolved)[key] = 'auto'
  digest = hashlib.sha1(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:8]
  existing = sorted(glob.glob(os.path.join('runs', f'{glob.escape(name)}-*{digest}')))
  existing = [d for d in existing if os.path.isdir(d) and _name_and_digest(d) == (name, digest)]
  if existing:
    return existing[0]
  label = _label({k: v for k, v in (overrides or {}).items() if not _matches(k, EXECUTION_KEYS)})
  return os.path.join('runs', '-'.join(filter(None, (name, label, digest))))


def _name_and_digest(workdir: str) -> tuple[str, str]:
  """``'runs/vgg19_c10-seed=3-3f9c1a2b'`` -> ``('vgg19_c10', '3f9c1a2b')``; the config file name
  is the part before the first ``-<key>=``, or before the hash."""
  base, _, digest = os.path.basename(workdir).rpartition('-')
  return re.split(r'-[\w.]+=', base, maxsplit=1)[0], digest


def _label(overrides: dict) -> str:
  """``{'seed': 3, 'mlp_hidden': (32, 16)}`` -> ``'mlp_hidden=32,16-seed=3'``: keys sorted,
  sequences joined by commas (as flags take them), whitespace dropped and any character but
  ``\\w.,=+-`` replaced by ``_`` (a folder name a shell takes unquoted), at most
  :data:`MAX_LABEL` characters."""
  def text(value):
    return ','.join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
  label = '-'.join(f'{k}={text(v)}' for k, v in sorted(overrides.items()))
  label = re.sub(r'[^\w.,=+-]+', '_', re.sub(r'\s+', '', label))
  return label if len(label) <= MAX_LABEL else label[:MAX_LABEL - 3] + '...'


def changed_keys(old: dict, new: dict) -> list[str]:
  """The dotted keys whose values differ between two config dicts, sorted; a key missing on
  one side counts as ``None`` there."""
  a, b = dict(checks.leaves(old)), dict(checks.leaves(new))
  return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def resumable(key: str) -> bool:
  """Whether a resumed run may change ``key`` (:data:`RESUMABLE_KEYS`; ``group.*`` names a
  whole group)."""
  return _matches(key, RESUMABLE_KEYS)


def _matches(key: str, patterns: tuple) -> bool:
  """Whether ``key`` is one of ``patterns`` (``group.*`` names a whole group)."""
  return key in patterns or f'{key.partition(".")[0]}.*' in patterns


def check_writable(workdir: str) -> None:
  """Raises a ``UserError`` if ``workdir`` (or, if it does not exist yet, the nearest
  existing folder above it) cannot be written; writes nothing."""
  folder = os.path.abspath(workdir)
  while not os.path.exists(folder):
    folder = os.path.dirname(folder)
  if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
    raise UserError(f'--workdir={workdir!r}: {folder} is not a writable directory')


def prepare(workdir: str, config) -> None:
  """Creates ``workdir`` (checking it is writable) and pins the run's config in it."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f'.write_test.{os.getpid()}')  # processes may share workdir
    with open(probe, 'w') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as e:
    raise UserError(f'--workdir={workdir!r}: not a writable directory ({e.strerror})') from None
  path = os.path.join(workdir, CONFIG)
  current = json.loads(config.to_json())
  if os.path.exists(path) and latest_step(workdir):
    stored = _load_json(path, ': it pins the config of the checkpoints beside it; restore it, '
                        'or delete it if you are sure this command has the same config')
    changed = [k for k in changed_keys(with_added_keys(stored), current) if not resumable(k)]
    if changed:
      raise UserError(f'--workdir={workdir!r} holds a run with a different config '
                      f'(keys {changed}); use another workdir or the original config.')
  write_json(path, current)


def _load_json(path: str, hint: str = ''):
  """A JSON file, or a ``UserError`` naming it if it is not valid JSON (e.g. torn)."""
  try:
    with open(path) as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise UserError(f'{path} is not valid JSON ({e}){hint}') from None


def latest_step(workdir: str) -> int | None:
  """The newest checkpoint step in ``workdir`` (readable or not), without touching it."""
  folder = os.path.join(workdir, CHECKPOINTS)
  steps = [int(n) for n in os.listdir(folder) if n.isdigit()] if os.path.isdir(folder) else []
  return max(steps, default=None)


def checkpoints(workdir: str, max_to_keep: int | None = None) -> Checkpoints:
  """The run's checkpoints (``<workdir>/checkpoints``), keeping the newest ``max_to_keep``
  (``None``: all)."""
  return Checkpoints(os.path.join(os.path.abspath(workdir), CHECKPOINTS), max_to_keep)


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config pinned in a run directory."""
  path = os.path.join(workdir, CONFIG)
  if not os.path.exists(path):
    raise UserError(f'--workdir={workdir!r}: no {CONFIG} ({TRAIN_FIRST})')
  return ml_collections.ConfigDict(with_added_keys(_load_json(path)))


def read_latest(workdir: str) -> tuple[int, dict]:
  """``(step, payload)`` of a run's latest checkpoint, restored as saved (numpy arrays):
  ``payload['state']`` (``params``, ``batch_stats``, ``opt_state``, ``step``),
  ``payload['masks']`` and ``payload['rng']``."""
  if latest_step(workdir) is None:
    raise UserError(f'--workdir={workdir!r}: no finished checkpoint ({TRAIN_FIRST})')
  found = checkpoints(workdir).read_latest()
  if found is None:
    raise UserError(f'--workdir={workdir!r}: no checkpoint can be read (see the lines above)')
  return found
