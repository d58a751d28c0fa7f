"""Runs main.py with tfds mocked (tfds.testing.mock_data), as a separate process.

Usage: python tests/mock_main.py NUM_EXAMPLES [main.py flags...]
"""
import os
import runpy
import sys

import tensorflow_datasets as tfds

if __name__ == '__main__':
  num_examples = int(sys.argv[1])
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  sys.path.insert(0, root)
  sys.argv = ['main.py', *sys.argv[2:]]
  with tfds.testing.mock_data(num_examples=num_examples):
    runpy.run_path(os.path.join(root, 'main.py'), run_name='__main__')
