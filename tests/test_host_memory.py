"""host_memory: a jitted call's large temporary reuses freed pages instead of faulting in new ones."""
import platform

import pytest
from conftest import run_fresh

from n2nskip_jax.execution import xla_flags

# In a fresh process (the setting must come before JAX starts its threads): a jitted call whose
# temporary is a 256 MB matrix, run four times; the minor page faults of the last three.
SCRIPT = """
import json, resource
from n2nskip_jax.execution import host_memory
reused = host_memory.reuse_freed_memory()
import jax, jax.numpy as jnp
f = jax.jit(lambda a, b: jnp.sum(jnp.tanh(a @ b), axis=0))  # a @ b: 8192 x 8192 floats
a, b = jnp.ones((8192, 16)), jnp.ones((16, 8192))
f(a, b).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
  f(a, b).block_until_ready()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({'reused': reused, 'faults': faults}))
"""


@pytest.mark.skipif(platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc',
                    reason='glibc malloc only')
def test_temporaries_reuse_freed_pages_unless_turned_off():
  pages = 8192 * 8192 * 4 // 4096  # of one temporary
  off, on = run_fresh(SCRIPT, N2NSKIP_MALLOC='0'), run_fresh(SCRIPT, N2NSKIP_MALLOC='1')
  assert not off['reused'] and on['reused']
  # The setting reuses the freed temporary: (almost) no new pages after the first call...
  assert on['faults'] < pages // 10
  # ...where glibc's default maps a fresh one per call (its pages faulted in again each time),
  # with jaxlib 0.10 and 0.11. jaxlib 0.12's XLA:CPU no longer faults a fresh temporary in
  # by default (2,372 and 6,618 faults over the three calls, measured): nothing to show there.
  if xla_flags.jaxlib_minor() < (0, 12):
    assert off['faults'] > 2 * pages

