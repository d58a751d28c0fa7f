"""Where skip layers go, shared by every model (docs/DESIGN.md, section 2; paper Eqs. 1-2).

Layers are numbered ``1..L`` along the sequential path; ``a^0`` is the network input and
``a^j`` the activation of layer ``j`` (before any pooling that follows it). With span
``k``, a skip runs from ``a^l`` to the pre-activation ``z^{l+k}`` of every hidden layer
``l+k`` (``l >= 0``; the classifier head receives none, since it has no nonlinearity):

* ``n2nskip`` (Eq. 2): ``a^{l+k} = g(z^{l+k} + g(skip(a^l)))``, ``skip`` a learnable,
  masked, dense-shaped layer (conv: ``f x f`` kernel, ``C_l x C_{l+k}``; BatchNorm before
  its nonlinearity in BatchNorm models). Its stride absorbs the pooling inside the span.
* ``resskip`` (Eq. 1): ``a^{l+k} = g(z^{l+k} + a^l)``, with a masked linear projection
  (1x1 conv + BatchNorm in CNNs) where the shapes differ.

* ``sequential`` (beyond the paper, a budget control): no skip layers; the skip share of the
  budget goes to extra sequential weights instead (:mod:`n2nskip_jax.pruning`), so that a
  comparison with ``n2nskip`` tells the skips' placement from their mere extra weights.

Skip-layer names start with ``skip`` so that budgets can tell skip kernels from
sequential ones (:func:`is_skip_path`).
"""
from typing import NamedTuple

SKIP_KINDS = ('none', 'n2nskip', 'resskip', 'sequential')
# The kinds that split the budget by ``skip.fraction`` (the skip share).
SHARED_BUDGET_KINDS = ('n2nskip', 'sequential')
SKIP_PREFIX = 'skip'
INPUT = 'input'


class Edge(NamedTuple):
  """A junction of a model's structure: unit groups ``src`` -> ``dst`` joined by the masked
  kernel at parameter path ``layer``, or by an identity shortcut (``layer=None``).

  Groups are named after the layer whose output units they are (``'input'`` for the input
  features or channels). In a model's edge list, groups first appear in network order, so the
  first is the input and the last to appear is the classifier output.
  """
  src: str
  dst: str
  layer: tuple[str, ...] | None


def chain_edges(layers: list[str], num_hidden: int, kind: str, span: int,
                built: set[tuple[str, ...]]) -> list[Edge]:
  """Edges of a chain ``input -> layers[0] -> ... -> layers[-1]`` with the skips of
  :func:`skip_sources` into its first ``num_hidden`` layers. ``built``: the paths of the layers
  the model holds a kernel for; a ResSkip from ``a^l`` to layer ``j`` with no layer among them
  is an identity (the model builds a projection only where the shapes differ)."""
  groups = [INPUT, *layers]
  edges = [Edge(groups[i], groups[i + 1], (groups[i + 1],)) for i in range(len(layers))]
  for j, l in skip_sources(num_hidden, span, kind).items():
    layer = (skip_name(l, j),)
    is_identity = kind == 'resskip' and layer not in built
    edges.append(Edge(groups[l], groups[j], None if is_identity else layer))
  return edges


def skip_sources(num_hidden: int, span: int, kind: str) -> dict[int, int]:
  """Maps each hidden layer ``j`` (1-based) that receives a skip to its source ``l = j - k``."""
  if kind in ('none', 'sequential'):
    return {}
  return {j: j - span for j in range(1, num_hidden + 1) if j - span >= 0}


def skip_name(source: int, target: int) -> str:
  return f'{SKIP_PREFIX}{source}_{target}'


def is_skip_path(path: tuple[str, ...]) -> bool:
  """Whether a parameter path (tuple of module names) lies inside a skip layer."""
  return any(str(p).startswith(SKIP_PREFIX) for p in path)
