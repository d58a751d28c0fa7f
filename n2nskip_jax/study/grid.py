"""A study's grid: the (cell, seed) runs a study config describes, validated up front.

A study config (see ``configs/studies/``) has:

* ``base``: a complete run config (the schema of ``configs/default.py``);
* ``axes``: a ConfigDict mirroring the run config's nesting, a tuple of values at each
  leaf (``axes.pruning.density = (0.1, 0.05)``); the grid is their cartesian product;
* ``seeds``: a tuple of ints, every cell runs once per seed;
* ``extra``: a tuple of override dicts in the same nesting (``{'pruning': {'method':
  'dense', 'density': 1.0}}``), more cells run for every seed (e.g. the dense baseline);
* ``analyze``: measure every run's connectivity at initialization (default True).
"""
import dataclasses
import itertools
import json
import re

import ml_collections

import jax

from n2nskip_jax import checks
from n2nskip_jax import config as config_lib
from n2nskip_jax import data, network, pruning
from n2nskip_jax.errors import ConfigError, UserError


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run of a study: ``overrides`` (dotted key -> value) applied to ``base``."""
  name: str
  overrides: tuple[tuple[str, object], ...]
  seed: int

  def config(self, base: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(base.to_dict())
    for key, value in self.overrides:
      *parents, leaf = key.split('.')
      node = c
      for p in parents:
        node = node[p]
      node[leaf] = value
    c.seed = self.seed
    return c


def _has_key(base, key: str) -> bool:
  node = base
  for part in key.split('.'):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return False
    node = node[part]
  return not isinstance(node, ml_collections.ConfigDict)


def axis_values(study) -> dict[str, tuple]:
  """Dotted axis name -> its values, in config order."""
  return {k: tuple(v) for k, v in checks.leaves(study.axes)}


def axis_keys(study) -> list[str]:
  """The dotted names of the study's axes, in config order."""
  return list(axis_values(study))


def cell_keys(study) -> list[str]:
  """The keys that tell a study's cells apart: its axes, then the keys only an ``extra`` sets
  (in order of first appearance), so that an extra run is never counted in an axes cell it
  differs from (e.g. an extra with ``pruning.rescale=True`` where no axis varies it)."""
  keys = axis_keys(study)
  for extra in study.extra:
    keys += [k for k, _ in checks.leaves(extra) if k not in keys]
  return keys


def _short(keys: list[str]) -> dict[str, str]:
  """Last component of each key, or the whole key where two keys share it."""
  last = [k.split('.')[-1] for k in keys]
  return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def _value_text(v) -> str:
  return re.sub(r'[^A-Za-z0-9.+-]', '', str(v)) or 'x'


def runs(study) -> list[Run]:
  """Every run of ``study``, seeds outermost (so early results cover every cell), validated.

  Raises :class:`ConfigError` naming the key, before anything is trained, for: an unknown
  or empty axis, an ``extra`` that is not a dict or has unknown keys, no seeds, a value the
  run config rejects, a budget the skip layers cannot hold, or two runs that would be the same.
  """
  base = study.base
  keys = axis_keys(study)
  for key, values in checks.leaves(study.axes):
    if not _has_key(base, key):
      raise ConfigError(f'axes.{key}', values, 'an axis named after a key of the run config '
                        '(configs/default.py)')
    if not isinstance(values, (tuple, list)) or not values:
      raise ConfigError(f'axes.{key}', values, 'a non-empty tuple of values')
  seeds = tuple(study.seeds)
  if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds) \
      or len(set(seeds)) != len(seeds):
    raise ConfigError('seeds', study.seeds, 'a non-empty tuple of distinct integers')
  extras = []
  for i, extra in enumerate(study.extra):
    if not hasattr(extra, 'items'):
      raise ConfigError(f'extra[{i}]', extra, 'a dict of overrides in the run config\'s nesting')
    leaves = tuple(checks.leaves(extra))
    for key, value in leaves:
      if not _has_key(base, key):
        raise ConfigError(f'extra[{i}].{key}', value, 'a key of the run config (configs/default.py)')
    extras.append(leaves)
  values = axis_values(study)
  grid = [tuple(zip(keys, combo)) for combo in itertools.product(*(values[k] for k in keys))]
  short = _short(keys + [k for e in extras for k, _ in e if k not in keys])
  out, names, checked = [], {}, {}
  for seed in seeds:
    for origin, overrides in [('axes', o) for o in grid] + [(f'extra[{i}]', e)
                                                            for i, e in enumerate(extras)]:
      run = _make_run(base, keys, short, overrides, seed)
      if run.name in names:
        raise ConfigError(origin, dict(overrides), f'a cell different from {names[run.name]} '
                          f'(both are {run.name})')
      names[run.name] = origin
      _validate(run, base, origin, checked)
      out.append(run)
  return out


def _make_run(base, keys, short, overrides, seed) -> Run:
  config = Run('', overrides, seed).config(base)
  resolved = [(k, checks.value(config, k)) for k in keys]
  extra_keys = [(k, v) for k, v in overrides if k not in keys]
  name = '__'.join(f'{short[k]}-{_value_text(v)}' for k, v in resolved + extra_keys)
  return Run(f'{name}__seed-{seed}' if name else f'seed-{seed}', overrides, seed)


def _validate(run: Run, base, origin: str, checked: dict) -> None:
  """Checks a run's config (once per distinct config, seed aside) as ``main.py`` would."""
  try:
    config = run.config(base)
  except (TypeError, ValueError) as e:
    raise ConfigError(origin, dict(run.overrides), f'values of the run config\'s types ({e})') from None
  key = json.dumps({k: v for k, v in json.loads(config.to_json()).items() if k != 'seed'},
                   sort_keys=True)
  if key in checked:
    return
  try:
    config_lib.validate(config, jax.device_count())
    pruning.check_budget(config, network.abstract(config, *data.spec(config))[1]['masks'])
  except ConfigError as e:
    where = f'axes.{e.key}' if any(k == e.key for k, _ in run.overrides) else e.key
    raise ConfigError(where if origin == 'axes' else f'{origin}.{e.key}', e.value,
                      f'{str(e).split(": expected ", 1)[-1]} (in cell {run.name})') from None
  checked[key] = True


def shard(items: list, spec: str) -> list:
  """Runs of shard ``'I/N'`` (``0 <= I < N``): every ``N``-th run from the ``I``-th."""
  m = re.fullmatch(r'(\d+)/(\d+)', spec or '')
  if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
    raise UserError(f"--shard={spec!r}: expected 'I/N' with 0 <= I < N, e.g. --shard=0/4")
  i, n = int(m.group(1)), int(m.group(2))
  return items[i::n]
