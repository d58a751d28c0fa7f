"""Shared helpers: configs with overrides, and main.py run as a subprocess."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# One persistent compilation cache for the session, this process and the processes it starts
# (main.py runs, pytest-xdist's workers: they inherit the environment): many tests compile the
# same tiny models again, and compiling is most of their time on 2 cores. Set before JAX is
# imported.
COMPILATION_CACHE = tempfile.mkdtemp(prefix='n2nskip-jax-tests-')
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', COMPILATION_CACHE)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
# The tests check equalities and invariants, not speed: XLA:CPU compiles without its expensive
# optimization passes, in half the time (compiling is most of the suite's time); float results
# may round differently from a default build, so nothing here compares against numbers recorded
# by one.
FAST_COMPILE = '--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true'
if FAST_COMPILE not in os.environ.get('XLA_FLAGS', ''):  # xdist's workers inherit it
  os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()
# Under pytest-xdist (`-n 2`), each worker is a process of its own: on a GPU host, JAX's default
# of claiming most of the GPU's memory in the first would leave none for the second.
if os.environ.get('PYTEST_XDIST_WORKER'):
  os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')


def pytest_sessionfinish(session, exitstatus):
  shutil.rmtree(COMPILATION_CACHE, ignore_errors=True)


# The reduced models most tests share, as (overrides, input shape). Sharing them lets the
# persistent compilation cache serve their initializers to every test after the first.
TINY_MODELS = {
    'mlp': (dict(model='mlp', mlp_hidden=(64, 48, 32, 16), dataset='digits'), (8, 8, 1)),
    'vgg19': (dict(model='vgg19', vgg_head='cifar', width_multiplier=1 / 16), (32, 32, 3)),
    'resnet50': (dict(model='resnet50', width_multiplier=1 / 16), (8, 8, 3)),
}


def make_config(**overrides):
  """``configs/default.py`` with ``key=value`` overrides (``pruning__density`` for groups)."""
  from n2nskip_jax.configs import default
  c = default.get_config()
  for key, value in overrides.items():
    node, *rest = key.split('__')
    if rest:
      c[node][rest[0]] = value
    else:
      c[node] = value
  return c


def run_main(*flags, devices: int = 1, mock_examples: int | None = None, timeout: int = 600,
             wait: bool = True):
  """Runs main.py (under tfds mock data when ``mock_examples``) on ``devices`` CPU devices."""
  env = {**os.environ,
         'XLA_FLAGS': f'{FAST_COMPILE} --xla_force_host_platform_device_count={devices}',
         'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '3', 'PYTHONUNBUFFERED': '1'}
  if mock_examples is None:
    cmd = [sys.executable, os.path.join(ROOT, 'main.py'), *flags]
  else:
    cmd = [sys.executable, os.path.join(ROOT, 'tests', 'mock_main.py'), str(mock_examples), *flags]
  if not wait:
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
  return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def run_fresh(script: str, **env) -> dict:
  """Runs ``script`` in a fresh Python process on the CPU backend, with ``env`` over this one's
  environment (a ``None`` value unsets the variable), and returns the JSON of its last line."""
  env = {k: v for k, v in {**os.environ, 'JAX_PLATFORMS': 'cpu', **env}.items() if v is not None}
  out = subprocess.run([sys.executable, '-c', script], env=env, check=True, text=True,
                       capture_output=True).stdout
  return json.loads(out.splitlines()[-1])


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


@pytest.fixture
def config():
  return make_config
