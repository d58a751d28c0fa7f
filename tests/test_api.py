"""The public API: the README's Python block as written, exports, a new pruning method in one
module, and the one-way flow of imports (config -> data -> model -> masks -> train -> analysis)."""
import ast
import os
import pathlib
import re

import numpy as np
import pytest
from conftest import ROOT, make_config
from flax import traverse_util

from n2nskip_jax import network, pruning, rundir, sparsity
from n2nskip_jax.config import validate

PACKAGE = os.path.join(ROOT, 'n2nskip_jax')


def readme_python_block() -> str:
  text = pathlib.Path(ROOT, 'README.md').read_text()
  section = text[text.index('### From Python'):]
  return re.search(r'```python\n(.*?)```', section, re.S).group(1)


def test_readme_python_block_trains_the_masks_it_built(monkeypatch):
  monkeypatch.chdir(ROOT)
  namespace = {}
  exec(compile(readme_python_block(), 'README.md', 'exec'), namespace)  # exactly as written
  built = traverse_util.flatten_dict(namespace['masks'])
  _, restored = rundir.read_latest(namespace['workdir'])
  trained = traverse_util.flatten_dict(restored['masks'])
  assert built.keys() == trained.keys()
  for path, mask in built.items():
    np.testing.assert_array_equal(mask, trained[path])
  assert namespace['summary']['params_nonzero'] == sparsity.nonzero(namespace['masks'])


def test_connectivity_exports():
  from n2nskip_jax.connectivity import (analyze, connectivity_distance, heat_kernel,  # noqa: F401
                                        heat_signature, laplacian, saturation_distance, scree)
  assert heat_kernel(np.array([[0.0, 1.0], [1.0, 0.0]]), 0.0) == pytest.approx(np.eye(2))


def test_a_new_pruning_method_is_one_registered_function():
  @pruning.register('every_other')
  def every_other(shapes, budget, rng, scoring):  # keeps the first `budget` positions
    del rng, scoring
    keep = np.zeros(sum(int(np.prod(s)) for s in shapes.values()), np.float32)
    keep[:budget] = 1
    out, start = {}, 0
    for path, shape in shapes.items():
      out[path] = keep[start:start + int(np.prod(shape))].reshape(shape)
      start += int(np.prod(shape))
    return out

  try:
    config = make_config(model='mlp', dataset='mnist1d', mlp_hidden=(64, 32, 32, 16),
                         pruning__method='every_other', pruning__density=0.1,
                         skip__kind='n2nskip')
    validate(config)
    _, variables = network.init(config, 10, (40,))
    masks = pruning.prune(config, variables)
    assert sparsity.nonzero(masks) == round(0.1 * sparsity.reference_weights(masks))
    assert traverse_util.flatten_dict(masks)[('dense1', 'kernel')].ravel()[0] == 1
  finally:
    del pruning.METHODS['every_other']


def imports_of(path: str) -> set[str]:
  tree = ast.parse(pathlib.Path(path).read_text())
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
      names.update(f'{node.module}.{a.name}' for a in node.names)
    elif isinstance(node, ast.Import):
      names.update(a.name for a in node.names)
  return names


def modules(*parts):
  base = os.path.join(PACKAGE, *parts)
  if base.endswith('.py'):
    return [base]
  return [os.path.join(d, f) for d, _, files in os.walk(base) for f in files if f.endswith('.py')]


def test_models_pruning_and_training_never_import_the_analysis():
  for path in modules('models') + modules('pruning.py') + modules('methods.py') + \
      modules('sparsity.py') + modules('train.py') + modules('steps.py') + modules('network.py'):
    bad = [m for m in imports_of(path) if 'connectivity' in m or m.endswith('analyze')]
    assert not bad, f'{os.path.relpath(path, ROOT)} imports {bad}'


def test_no_module_outside_models_parses_layer_names():
  pattern = re.compile(r"_block(\b|\d)|startswith\(['\"](skip|stage|conv|dense)|SKIP_PREFIX")
  for path in modules():
    if os.sep + 'models' + os.sep in path:
      continue
    hits = [line for line in pathlib.Path(path).read_text().splitlines() if pattern.search(line)]
    assert not hits, f'{os.path.relpath(path, ROOT)}: {hits}'


def test_plots_select_no_backend_at_import():
  import matplotlib
  before = matplotlib.get_backend()
  import n2nskip_jax.connectivity.plots  # noqa: F401
  import n2nskip_jax.study.figures  # noqa: F401
  assert matplotlib.get_backend() == before
