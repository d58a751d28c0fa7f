"""The channel graph of a masked network (paper, section 3.2).

One node per input channel (or input feature), neuron, or conv output channel, and per
class output. Groups of nodes follow the layers; an edge joins channel ``i`` of a layer's
input to channel ``j`` of its output with weight from the masked kernel slice
``w[..., i, j]``:

* ``'weighted'``: ``sum |w * m|`` over the kernel window (and over the 7x7 positions that
  VGG's paper head flattens);
* ``'binary'``: 1 where any tap of the slice is unpruned.

Identity shortcuts (ResNet, ResSkip) are edges of weight 1 between matching channels; skip
layers are edges from their source layer to their target layer. In ResNet50 a bottleneck
contributes three groups: ``conv1``, ``conv2`` and the block output (its ``conv3``
channels, where the shortcut and the skip also land).

The reference graph of a pruned network is its dense sequential parent (all masks ones,
no skip layers), with the same node order.
"""
import dataclasses

import numpy as np
import scipy.sparse
from flax import traverse_util

from n2nskip_jax.models import is_skip_path

INPUT = 'input'


@dataclasses.dataclass
class Graph:
  """Layered graph: ``groups`` (name, size) in node order, ``edges`` (src, dst, W[src, dst])."""
  groups: list[tuple[str, int]]
  edges: list[tuple[str, str, np.ndarray]]

  @property
  def offsets(self) -> dict[str, int]:
    out, start = {}, 0
    for name, size in self.groups:
      out[name] = start
      start += size
    return out

  @property
  def num_nodes(self) -> int:
    return sum(size for _, size in self.groups)

  def adjacency(self, sparse: bool = False):
    """The symmetric ``(n, n)`` weight matrix ``W`` (float64); ``scipy.sparse`` CSR if asked."""
    n, off = self.num_nodes, self.offsets
    rows, cols, vals = [], [], []
    for src, dst, w in self.edges:
      r, c = np.nonzero(w)
      rows.append(r + off[src])
      cols.append(c + off[dst])
      vals.append(w[r, c])
    r, c, v = (np.concatenate(x) for x in (rows, cols, vals))
    upper = scipy.sparse.coo_matrix((v, (r, c)), shape=(n, n)).tocsr()
    a = upper + upper.T
    return a if sparse else a.toarray()

  def sources(self) -> np.ndarray:
    """The heat-source indicator ``A``: 1 on the input nodes (Eq. 5)."""
    a = np.zeros(self.num_nodes)
    a[:dict(self.groups)[INPUT]] = 1.0
    return a

  def dead_units(self) -> int:
    """Hidden nodes with no incoming or no outgoing nonzero edge (layer collapse)."""
    fan_in = {name: np.zeros(size) for name, size in self.groups}
    fan_out = {name: np.zeros(size) for name, size in self.groups}
    for src, dst, w in self.edges:
      fan_out[src] += w.sum(1)
      fan_in[dst] += w.sum(0)
    hidden = [name for name, _ in self.groups[1:-1]]
    return int(sum(np.sum((fan_in[g] == 0) | (fan_out[g] == 0)) for g in hidden))


def _edge(kernel, mask, n_src, mode) -> np.ndarray:
  w = (np.asarray(mask) != 0).astype(np.float64) if mode == 'binary' else np.abs(
      np.asarray(kernel, np.float64) * np.asarray(mask))
  return w.reshape(-1, n_src, w.shape[-1]).sum(0)


def network_graph(model: str, params, masks, mode: str = 'weighted',
                  reference: bool = False) -> Graph:
  """The channel graph of ``model`` ('mlp', 'vgg19' or 'resnet50').

  Args:
    model: ``config.model``.
    params, masks: the network's ``params`` and ``masks`` collections.
    mode: ``'weighted'`` or ``'binary'`` edge weights.
    reference: build the dense sequential parent instead: skip layers dropped and every
      mask taken as ones (``params`` should then be the unpruned initial weights).
  """
  if mode not in ('weighted', 'binary'):
    raise ValueError(f"mode={mode!r}: expected 'weighted' or 'binary'")
  flat_p = traverse_util.flatten_dict(params)
  flat_m = {p[:-1]: m for p, m in traverse_util.flatten_dict(masks).items()}
  if reference:
    flat_m = {p: np.ones(np.shape(m)) for p, m in flat_m.items() if not is_skip_path(p)}
  specs = (_resnet_specs if model == 'resnet50' else _chain_specs)(flat_m)
  first = next(iter(specs))
  in_width = np.shape(flat_m[first[2]])[-2]
  groups, sizes, edges = [(INPUT, in_width)], {INPUT: in_width}, []
  for src, dst, layer in specs:
    if dst not in sizes:
      sizes[dst] = np.shape(flat_m[layer])[-1] if layer else sizes[src]
      groups.append((dst, sizes[dst]))
    if layer is None:  # identity shortcut
      edges.append((src, dst, np.eye(sizes[src])))
    else:
      edges.append((src, dst, _edge(flat_p[layer + ('kernel',)], flat_m[layer], sizes[src], mode)))
  return Graph(groups, edges)


def _chain_specs(flat_m) -> list:
  """MLP and VGG: sequential layers in order, plus skips ``skip{l}_{j}`` from layer l to j."""
  seq = [p for p in flat_m if not is_skip_path(p)]
  order = lambda p: (p[0] == 'head', p[0].startswith('fc'), int(''.join(filter(str.isdigit, p[0])) or 0))
  seq.sort(key=order)
  names = [INPUT] + [p[0] for p in seq]
  specs = [(names[i], names[i + 1], seq[i]) for i in range(len(seq))]
  skips = {p[0] for p in flat_m if is_skip_path(p)}
  for name in sorted(skips):
    l, j = map(int, name[len('skip'):].split('_'))
    specs.append((names[l], names[j], (name,)))
  return specs


def _resnet_specs(flat_m) -> list:
  """Stem, then per bottleneck: conv1, conv2, output (conv3 + shortcut + skip), then head."""
  specs, prev = [(INPUT, 'stem', ('stem',))], 'stem'
  blocks = sorted({p[0] for p in flat_m if p[0].startswith('stage')},
                  key=lambda b: tuple(int(x) for x in b.replace('stage', '').split('_block')))
  for b in blocks:
    specs += [(prev, f'{b}/conv1', (b, 'conv1')), (f'{b}/conv1', f'{b}/conv2', (b, 'conv2')),
              (f'{b}/conv2', b, (b, 'conv3')),
              (prev, b, (b, 'proj') if (b, 'proj') in flat_m else None)]
    if (b, 'skip') in flat_m:
      specs.append((prev, b, (b, 'skip')))
    prev = b
  return specs + [(prev, 'head', ('head',))]
