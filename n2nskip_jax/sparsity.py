"""Counting masks: sizes, nonzeros, the reference network's weights, the per-layer table and
the units pruning left without input or output (layer collapse).

``masks`` is the ``masks`` collection (one float 0/1 array per prunable kernel, shaped like
it); skip layers are told apart by :func:`n2nskip_jax.models.is_skip_path`.
"""
import dataclasses
import re

import jax
import numpy as np
from flax import traverse_util

from n2nskip_jax import models

Path = tuple[str, ...]


def path_name(path: Path) -> str:
  """A parameter path as text: ``('a', 'b')`` -> ``'a/b'``."""
  return '/'.join(path)


def count(tree) -> int:
  """Number of scalars in a pytree."""
  return sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(tree))


def reference_weights(masks) -> int:
  """``N_ref``: prunable weights of the reference network (every kernel outside skip layers)."""
  return sum(int(np.prod(np.shape(m))) for p, m in traverse_util.flatten_dict(masks).items()
             if not models.is_skip_path(p))


def skip_weights(masks) -> int:
  """Weights the skip layers hold (their capacity)."""
  return count(masks) - reference_weights(masks)


def skip_extra_params(params) -> int:
  """Trainable parameters of the skip layers other than their kernels (the MLP skips' biases,
  the conv skips' BatchNorm scale and shift): what a variant with skips trains beyond the
  budget and the network without them (0 with ``skip.affine=False``)."""
  return sum(int(np.size(v)) for p, v in traverse_util.flatten_dict(params).items()
             if models.is_skip_path(p) and p[-1] != 'kernel')


def nonzero(masks, skip: bool | None = None) -> int:
  """Nonzero mask entries; ``skip=True``/``False`` restricts to skip/sequential layers."""
  return sum(int(np.count_nonzero(v)) for p, v in traverse_util.flatten_dict(masks).items()
             if skip is None or models.is_skip_path(p) == skip)


def nonzero_weights(params, masks) -> int:
  """Nonzero entries of ``kernel * mask`` over all masked kernels."""
  flat_params = traverse_util.flatten_dict(params)
  return sum(int(np.count_nonzero(np.asarray(flat_params[p]) * np.asarray(m)))
             for p, m in traverse_util.flatten_dict(masks).items())


def _natural(name: str) -> list:
  """Sort key reading digit runs as numbers: ``conv2`` before ``conv10``."""
  return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', name)]


def layer_table(masks) -> list[dict]:
  """One row per masked kernel: ``layer``, ``shape``, ``weights``, ``nonzero``, ``density``,
  ``skip``; sequential layers first, each group in natural order (``conv2`` before ``conv10``)."""
  rows = []
  for p, m in traverse_util.flatten_dict(masks).items():
    nz = int(np.count_nonzero(m))
    rows.append({'layer': path_name(p[:-1]), 'shape': list(np.shape(m)),
                 'weights': int(np.size(m)), 'nonzero': nz,
                 'density': nz / max(1, int(np.size(m))), 'skip': models.is_skip_path(p)})
  return sorted(rows, key=lambda r: (r['skip'], _natural(r['layer'])))


def format_layers(rows: list[dict]) -> str:
  """The per-layer density table as text."""
  lines = [f'{"layer":<34} {"shape":<22} {"weights":>11} {"nonzero":>11} {"density":>8}']
  for r in rows:
    lines.append(f'{r["layer"]:<34} {str(tuple(r["shape"])):<22} {r["weights"]:>11,} '
                 f'{r["nonzero"]:>11,} {r["density"]:>8.4f}')
  return '\n'.join(lines)


def unit_groups(edges, flat_masks) -> dict[str, int]:
  """Group name -> number of units, in order, for a model's ``edges`` (:func:`models.structure`);
  ``flat_masks`` maps each layer path to its mask (or kernel)."""
  sizes = {models.INPUT: np.shape(flat_masks[edges[0].layer])[-2]}
  for src, dst, layer in edges:
    sizes.setdefault(dst, np.shape(flat_masks[layer])[-1] if layer else sizes[src])
  return sizes


def _links(config, masks):
  """``(sizes, [(src, dst, linked)])`` over the model's structure: ``linked[i, j]`` says whether
  unit ``i`` of ``src`` has a nonzero weight (or an identity shortcut) to unit ``j`` of ``dst``."""
  flat = {p[:-1]: np.asarray(m) for p, m in traverse_util.flatten_dict(masks).items()}
  edges = models.structure(config, masks)
  sizes = unit_groups(edges, flat)
  return sizes, [(src, dst, np.eye(sizes[src], dtype=bool) if layer is None else
                  (flat[layer] != 0).reshape(-1, sizes[src], sizes[dst]).any(0))
                 for src, dst, layer in edges]


@dataclasses.dataclass(frozen=True)
class Units:
  """Unit (neuron, channel) counts over a model's structure, identity shortcuts counting as
  connections: ``hidden``, the units of every group but the input and the classifier output;
  ``dead``, hidden units left with no incoming or no outgoing connection (the layer-collapse
  count); ``outputs``, the classifier's; ``reachable_outputs``, the outputs that some path of
  nonzero weights joins to the input (0 is layer collapse, whatever each layer keeps)."""
  hidden: int
  dead: int
  outputs: int
  reachable_outputs: int


def units(config, masks) -> Units:
  """:class:`Units` of the network ``masks`` prune (one walk of :func:`models.structure`)."""
  sizes, links = _links(config, masks)
  groups = list(sizes)
  fan_in = {g: np.zeros(n, np.int64) for g, n in sizes.items()}
  fan_out = {g: np.zeros(n, np.int64) for g, n in sizes.items()}
  reach = {g: np.zeros(n, bool) for g, n in sizes.items()}
  reach[models.INPUT][:] = True
  for src, dst, linked in links:
    fan_out[src] += linked.sum(1)
    fan_in[dst] += linked.sum(0)
  changed = True
  while changed:  # skips join groups out of list order: propagate until nothing changes
    changed = False
    for src, dst, linked in links:
      new = reach[dst] | (linked & reach[src][:, None]).any(0)
      changed |= bool((new != reach[dst]).any())
      reach[dst] = new
  hidden = groups[1:-1]
  return Units(hidden=int(sum(sizes[g] for g in hidden)),
               dead=int(sum(np.sum((fan_in[g] == 0) | (fan_out[g] == 0)) for g in hidden)),
               outputs=int(sizes[groups[-1]]), reachable_outputs=int(reach[groups[-1]].sum()))


def dead_units(config, masks) -> int:
  """:attr:`Units.dead`: hidden units with no incoming or no outgoing connection."""
  return units(config, masks).dead


def reachable_outputs(config, masks) -> int:
  """:attr:`Units.reachable_outputs`: 0 is layer collapse."""
  return units(config, masks).reachable_outputs


def _group_sizes(config, masks) -> list[int]:
  """The units of each group of the model's structure, in order (:func:`unit_groups`)."""
  flat = {p[:-1]: m for p, m in traverse_util.flatten_dict(masks).items()}
  return list(unit_groups(models.structure(config, masks), flat).values())


def output_units(config, masks) -> int:
  """Units of the classifier output: the ``num_classes`` the model was built for."""
  return _group_sizes(config, masks)[-1]
