"""What `pip install` gives: every package of the tree, the configs inside the package, and the
commands, which work from any directory."""
import json
import os
import re
import subprocess
import sys
import tomllib

from conftest import ROOT

BIN = os.path.dirname(sys.executable)


def test_every_package_of_the_tree_is_installed():
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    setuptools = tomllib.load(f)['tool']['setuptools']
  where = {'n2nskip_jax': 'n2nskip_jax', **setuptools['package-dir']}
  on_disk = set()
  for package, folder in where.items():
    for d, _, names in os.walk(os.path.join(ROOT, folder)):
      if '__init__.py' in names:
        rel = os.path.relpath(d, os.path.join(ROOT, folder))
        on_disk.add(package if rel == '.' else f'{package}.{rel.replace(os.sep, ".")}')
  assert on_disk == set(setuptools['packages'])


def command(name, *flags, cwd):
  return subprocess.run([os.path.join(BIN, name), *flags], cwd=cwd, capture_output=True,
                        text=True, timeout=600, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})


def test_the_commands_find_packaged_configs_by_name_from_any_directory(tmp_path):
  """From a folder outside the repository: train the quickstart config by name, list a packaged
  study's runs by name, analyze the run; a name that is not packaged is refused in one line."""
  r = command('n2nskip-train', '--config=quickstart', '--config.dataset=digits',
              '--config.num_epochs=1', '--config.mlp_hidden=32,16,16', cwd=tmp_path)
  assert r.returncode == 0, r.stderr[-2000:]
  [run] = os.listdir(tmp_path / 'runs')  # named after the config and the keys overridden
  assert re.fullmatch(r'quickstart-dataset=digits-mlp_hidden=32,16,16-num_epochs=1-\w{8}', run)
  run = os.path.join('runs', run)
  assert json.loads((tmp_path / run / 'summary.json').read_text())['config']['dataset'] == 'digits'
  r = command('n2nskip-study', '--config', 'offline_mlp', '--dry_run', cwd=tmp_path)
  assert r.returncode == 0 and r.stdout.strip().endswith('185 runs'), r.stderr[-2000:]
  r = command('n2nskip-analyze', f'--workdir={run}', '--num_times=3', cwd=tmp_path)
  assert r.returncode == 0 and (tmp_path / run / 'adjacency-final-weighted.png').exists()
  r = command('n2nskip-train', '--config=quickstrat', cwd=tmp_path)
  assert r.returncode == 2 and 'Traceback' not in r.stderr
  assert 'nor a packaged config name (default, mlp_c10, quickstart,' in r.stderr, r.stderr
  r = command('n2nskip-train', cwd=tmp_path)  # no --config: the names to choose from
  assert r.returncode == 2 and 'Traceback' not in r.stderr
  assert 'error: --config is required: a config file, or a packaged config name (default,' in r.stderr
