"""The library leaves the process as it found it: importing n2nskip_jax, network.init,
pruning.prune and train.train_and_evaluate change no XLA flags, no malloc settings, no
sys.unraisablehook, and no logging handlers, filters or verbosity (the command-line tools set
those, execution.before_jax on the CPU backend only)."""
from conftest import ROOT, run_fresh

SCRIPT = """
import json, logging, os, sys, tempfile
sys.path.insert(0, %(root)r)
from absl import logging as absl_logging

def snapshot():
  handlers = [absl_logging.get_absl_handler(), *logging.getLogger().handlers]
  return {'xla_flags': os.environ.get('XLA_FLAGS'), 'hook': id(sys.unraisablehook),
          'root_handlers': [id(h) for h in logging.getLogger().handlers],
          'filters': [len(h.filters) for h in handlers], 'root_filters': len(logging.getLogger().filters),
          'verbosity': absl_logging.get_verbosity()}

import orbax.checkpoint  # its import adds a StreamHandler to the root logger (orbax 0.12.8)
before = snapshot()
import n2nskip_jax
from n2nskip_jax.configs import default
from n2nskip_jax import network, pruning, train
from n2nskip_jax.execution import host_memory, xla_flags
imported = snapshot()
c = default.get_config()
c.model, c.dataset, c.mlp_hidden, c.num_epochs, c.batch_size = 'mlp', 'digits', (16, 16, 16), 1, 100
c.pruning.method, c.pruning.density = 'rp', 0.2
_, variables = network.init(c, 10, (64,))
masks = pruning.prune(c, variables)
summary = train.train_and_evaluate(c, tempfile.mkdtemp())
print(json.dumps({'before': before, 'imported': imported, 'after': snapshot(),
                  'malloc_set': host_memory.reuse_freed_memory.cache_info().currsize,
                  'flags_set': xla_flags.convolutions_by_xla.cache_info().currsize,
                  'steps': summary['steps']}))
"""


def test_the_library_changes_no_process_wide_setting():
  out = run_fresh(SCRIPT % {'root': ROOT}, XLA_FLAGS=None)
  assert out['steps'] > 0  # it did train
  assert out['imported'] == out['before']
  assert out['after'] == out['before']
  assert out['malloc_set'] == 0 and out['flags_set'] == 0  # never even asked


def test_the_tools_do_set_them_on_the_cpu_backend():
  """The check above can fail: ``cli.run``'s settings are visible to the same snapshot."""
  script = ('import json, os, sys\nsys.path.insert(0, %r)\nfrom n2nskip_jax import cli\n'
            'hook = id(sys.unraisablehook)\ntry:\n  cli.run(lambda argv: None)\nexcept SystemExit:\n'
            '  pass\nprint(json.dumps({"xla_flags": os.environ.get("XLA_FLAGS"), '
            '"hook_changed": id(sys.unraisablehook) != hook}))' % ROOT)
  out = run_fresh(script, XLA_FLAGS=None, N2NSKIP_XLA_FLAGS=None)
  assert out['hook_changed'] and 'ynn_fusion_type' in out['xla_flags']
  accelerator = run_fresh(script, XLA_FLAGS=None, N2NSKIP_XLA_FLAGS=None, JAX_PLATFORMS='cuda')
  assert accelerator['xla_flags'] is None  # not on an accelerator
