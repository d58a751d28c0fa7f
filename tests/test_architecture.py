"""The structure the docs promise, read from the source: backend decisions belong to the
execution package, and only the modules that load data or check its keys import ``data``
(docs/DESIGN.md, section 1)."""
import ast
import pathlib

from conftest import ROOT

PACKAGE = pathlib.Path(ROOT) / 'n2nskip_jax'
BACKEND_CALLS = ('jax.default_backend', 'jax.config.update')
# Modules outside execution/ that may make such a call, and why.
ALLOWED = {'study/run.py': "the study tool keeps its runs' compiled programs in its folder "
                           '(jax_compilation_cache_dir): a setting of its own process'}
# The modules that may import ``data``, and why; the core (models, pruning, methods, sparsity,
# network, resources, saliency, steps, ...) takes the shapes it needs from its caller.
READS_DATA = {
    'config.py': "validation: the data set's keys, and which models take images",
    'train.py': "loads the run's data and derives its spec once, for the whole run",
    'connectivity/analysis.py': "rebuilds a saved run's network, the caller that derives its spec",
    'study/grid.py': "checks each cell's budget before a study trains anything",
}


def imported_modules(source: str) -> set[str]:
  """The ``n2nskip_jax`` modules ``source`` imports, by dotted name."""
  found = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('n2nskip_jax'):
      found |= {node.module, *(f'{node.module}.{a.name}' for a in node.names)}
    elif isinstance(node, ast.Import):
      found |= {a.name for a in node.names}
  return found


def backend_calls(source: str) -> list[str]:
  """The calls of :data:`BACKEND_CALLS` in ``source``, by their dotted names, sorted."""
  def dotted(node) -> str:
    if isinstance(node, ast.Attribute):
      return f'{dotted(node.value)}.{node.attr}'
    return node.id if isinstance(node, ast.Name) else ''
  return sorted(name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
                and (name := dotted(node.func)) in BACKEND_CALLS)


def core_modules() -> dict[str, str]:
  """Source of every module of the package outside ``execution/``, by path."""
  return {p.relative_to(PACKAGE).as_posix(): p.read_text() for p in sorted(PACKAGE.rglob('*.py'))
          if p.relative_to(PACKAGE).parts[0] != 'execution'}


def test_the_check_sees_a_backend_decision():
  assert backend_calls("import jax\nblock = jax.default_backend() == 'cpu'\n"
                       "jax.config.update('jax_enable_x64', True)\n") == sorted(BACKEND_CALLS)


def test_no_module_outside_execution_asks_for_the_backend_or_sets_jax_config():
  found = {path: calls for path, source in core_modules().items()
           if (calls := backend_calls(source))}
  assert set(found) <= set(ALLOWED), found


def test_the_check_sees_an_import_of_data():
  assert 'n2nskip_jax.data' in imported_modules('from n2nskip_jax import data as data_lib')
  assert 'n2nskip_jax.data' in imported_modules('from n2nskip_jax.data import spec')


def test_only_the_modules_that_load_data_or_check_its_keys_import_it():
  found = {path for path, source in core_modules().items()
           if path != 'data.py' and 'n2nskip_jax.data' in imported_modules(source)}
  assert found == set(READS_DATA)
