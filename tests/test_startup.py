"""execution.before_jax: applies every setting that must precede JAX, and says which took effect."""
import platform

import pytest
from conftest import run_fresh

# In a fresh process: what before_jax returns, what a second call returns, XLA_FLAGS after it,
# and what each setting's own function says afterwards.
SCRIPT = """
import json, os
from n2nskip_jax.execution import host_memory, process as startup, xla_flags
first = startup.before_jax()
print(json.dumps({'first': first, 'again': startup.before_jax(),
                  'xla_flags': os.environ.get('XLA_FLAGS', ''),
                  'own': {'reuse_freed_memory': host_memory.reuse_freed_memory(),
                          'convolutions_by_xla': xla_flags.convolutions_by_xla()}}))
"""
GLIBC = platform.system() == 'Linux' and platform.libc_ver()[0] == 'glibc'


def _run(setting: str) -> dict:
  return run_fresh(SCRIPT, N2NSKIP_MALLOC=setting, N2NSKIP_XLA_FLAGS=setting, XLA_FLAGS=None)


@pytest.mark.skipif(not GLIBC, reason='the host memory setting is for glibc only')
def test_before_jax_applies_both_settings_unless_turned_off():
  on, off = _run('1'), _run('0')
  assert on['first'] == {'reuse_freed_memory': True, 'convolutions_by_xla': True}
  assert on['again'] == on['first'] == on['own']
  assert '--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce' in on['xla_flags']
  assert off['first'] == {'reuse_freed_memory': False, 'convolutions_by_xla': False}
  assert off['again'] == off['first'] == off['own'] and off['xla_flags'] == ''
