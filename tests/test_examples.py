"""The example notebook runs offline, top to bottom."""
import os

import nbformat
from conftest import ROOT
from nbclient import NotebookClient


def test_quickstart_notebook_executes(tmp_path):
  """From a folder outside the repository: the installed package is all it needs."""
  path = os.path.join(ROOT, 'examples', 'quickstart.ipynb')
  nb = nbformat.read(path, as_version=4)
  NotebookClient(nb, timeout=300, kernel_name='python3',
                 resources={'metadata': {'path': str(tmp_path)}}).execute()
  outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs]
  text = ''.join(o.get('text', '') for o in outputs)
  assert "'total': 9658" in text and 'n2nskip  test accuracy' in text and 'none     test accuracy' in text
  assert 'F(t*) = ' in text
  images = [o for o in outputs if 'image/png' in o.get('data', {})]
  assert len(images) == 3  # the training curves, the adjacency patterns, the scree
  assert (tmp_path / 'runs' / 'notebook' / 'n2nskip' / 'summary.json').exists()  # kept
