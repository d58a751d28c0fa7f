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

from n2nskip_jax import models, sparsity
from n2nskip_jax.models import INPUT


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


def _edge(kernel, mask, n_src, mode) -> np.ndarray:
  w = (np.asarray(mask) != 0).astype(np.float64) if mode == 'binary' else np.abs(
      np.asarray(kernel, np.float64) * np.asarray(mask))
  return w.reshape(-1, n_src, w.shape[-1]).sum(0)


def network_graph(config, params, masks, mode: str = 'weighted',
                  reference: bool = False) -> Graph:
  """The channel graph of ``config``'s model, from its structure (:func:`models.structure`).

  Args:
    config: the run's config.
    params, masks: the network's ``params`` and ``masks`` collections.
    mode: ``'weighted'`` or ``'binary'`` edge weights.
    reference: build the dense sequential parent instead (:func:`models.reference`): skip
      layers dropped and every mask taken as ones (``params`` should then be the unpruned
      initial weights).
  """
  if mode not in ('weighted', 'binary'):
    raise ValueError(f"mode={mode!r}: expected 'weighted' or 'binary'")
  flat_p = traverse_util.flatten_dict(params)
  flat_m = {p[:-1]: m for p, m in traverse_util.flatten_dict(masks).items()}
  edges = models.structure(models.reference(config) if reference else config, masks)
  if reference:
    flat_m = {e.layer: np.ones(np.shape(flat_m[e.layer])) for e in edges if e.layer}
  sizes = sparsity.unit_groups(edges, flat_m)
  out = []
  for src, dst, layer in edges:
    if layer is None:  # identity shortcut
      out.append((src, dst, np.eye(sizes[src])))
    else:
      out.append((src, dst, _edge(flat_p[layer + ('kernel',)], flat_m[layer], sizes[src], mode)))
  return Graph(list(sizes.items()), out)
