"""xla_flags: XLA:CPU runs convolutions itself and keeps YNNPACK's dots; the same results."""
import numpy as np
from conftest import run_fresh

# In a fresh process (XLA reads XLA_FLAGS when its first backend starts; with LATE set, one has
# started before the call): a 3x3 conv and a
# matmul; whether the compiled conv is XLA's own (not in a fusion), whether the dot is still
# YNNPACK's, and the conv's output and gradients on fixed inputs.
SCRIPT = """
import json, os
import jax, jax.numpy as jnp, numpy as np
from n2nskip_jax.execution import xla_flags
if os.environ.get('LATE'):  # a backend started first
  jnp.ones(1).block_until_ready()
applied = xla_flags.convolutions_by_xla()
from jax import lax
conv = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                             dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
rng = np.random.default_rng(0)
x, w = rng.normal(size=(4, 8, 8, 16)).astype('f4'), rng.normal(size=(3, 3, 16, 32)).astype('f4')
a, b = rng.normal(size=(64, 128)).astype('f4'), rng.normal(size=(128, 64)).astype('f4')
hlo = jax.jit(lambda x, w, a, b: (conv(x, w), a @ b)).lower(x, w, a, b).compile().as_text()
entry = hlo[hlo.index('ENTRY'):]  # the computation run, where YNNPACK's fusions are called
loss = lambda x, w: jnp.sum(jnp.sin(conv(x, w)))
grads = jax.jit(jax.grad(loss, (0, 1)))(x, w)
print(json.dumps({'applied': applied, 'xla_flags': os.environ.get('XLA_FLAGS'),
                  'own_conv': 'convolution(' in entry, 'ynn': '__ynn_fusion' in entry,
                  'y': np.asarray(conv(x, w)).ravel()[::97].tolist(),
                  'dx': np.asarray(grads[0]).ravel()[::31].tolist(),
                  'dw': np.asarray(grads[1]).ravel()[::37].tolist()}))
"""


def _run(**env) -> dict:
  return run_fresh(SCRIPT, **env)


def test_convolutions_by_xla_and_dots_by_ynnpack_with_the_same_results():
  on = _run(XLA_FLAGS=None, N2NSKIP_XLA_FLAGS=None)
  off = _run(XLA_FLAGS=None, N2NSKIP_XLA_FLAGS='0')
  assert on['applied']
  assert on['xla_flags'] == '--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce'
  assert not off['applied'] and off['xla_flags'] is None
  # XLA's default puts the conv inside a YNNPACK fusion; the flag leaves it to XLA, dots not.
  assert on['own_conv'] and on['ynn']
  assert not off['own_conv'] and off['ynn']
  for key in ('y', 'dx', 'dw'):  # the same sums in another order: float32 rounding apart
    scale = np.max(np.abs(off[key]))
    np.testing.assert_allclose(on[key], off[key], rtol=0, atol=1e-5 * scale)


def test_nothing_changed_or_claimed_once_a_backend_has_started():
  late = _run(XLA_FLAGS=None, N2NSKIP_XLA_FLAGS=None, LATE='1')
  assert not late['applied'] and late['xla_flags'] is None and not late['own_conv']


def test_a_setting_of_the_flag_in_xla_flags_is_kept():
  mine = '--xla_cpu_experimental_ynn_fusion_type= --xla_cpu_enable_fast_math=false'
  kept = _run(XLA_FLAGS=mine, N2NSKIP_XLA_FLAGS=None)
  assert not kept['applied'] and kept['xla_flags'] == mine
  assert kept['own_conv'] and not kept['ynn']  # the user's: nothing to YNNPACK
  other = _run(XLA_FLAGS='--xla_cpu_enable_fast_math=false', N2NSKIP_XLA_FLAGS=None)
  assert other['applied'] and other['xla_flags'] == (
      '--xla_cpu_enable_fast_math=false '
      '--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce')


def test_the_flag_is_set_only_for_the_jaxlib_releases_that_know_it():
  from n2nskip_jax.execution import xla_flags
  assert xla_flags.jaxlib_has_flag('0.10.2') and xla_flags.jaxlib_has_flag('0.12.0.1')
  assert xla_flags.jaxlib_has_flag('0.11.2')
  assert not xla_flags.jaxlib_has_flag('0.9.2') and not xla_flags.jaxlib_has_flag('0.13.0')
  assert xla_flags.jaxlib_has_flag()  # the installed jaxlib, within pyproject's range


def test_pyprojects_jax_range_is_the_range_checked_for_the_flag():
  # Admitting a newer jax means checking that its XLA:CPU still has the flag (an unknown flag
  # aborts the process), then widening JAXLIB_WITH_FLAG.
  import os
  import re
  import tomllib
  from conftest import ROOT
  from n2nskip_jax.execution import xla_flags
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    deps = tomllib.load(f)['project']['dependencies']
  [jax] = [d for d in deps if d.startswith('jax>=')]
  bounds = [int(x) for x in re.fullmatch(r'jax>=(\d+)\.(\d+)\.\d+,<(\d+)\.(\d+)', jax).groups()]
  (first, last) = xla_flags.JAXLIB_WITH_FLAG
  assert bounds == [*first, last[0], last[1] + 1], jax
