"""Trains a (pruned, skip-connected) network: ``n2nskip-train --config NAME`` (installed by
``pip install``), ``python -m n2nskip_jax`` or, in the repository, ``python main.py``.

Flags:
  --config   a config file (``configs/resnet50_c10.py``), or the name of a packaged one
             (``resnet50_c10``: a file of ``configs/``); override keys with --config.key=value.
  --workdir  where checkpoints, metrics and the summary go; default
             ``runs/<config name>-<overridden keys>-<hash of the config>``, so rerunning the
             same command resumes the same run.
  --baseline also train the same config without skip layers (plain RP/CSP/structured at
             the same density) in ``<workdir>/baseline`` and print both results.
"""
import copy
import os

from absl import flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    'config', None, 'Config file, or the name of a packaged one (quickstart, resnet50_c10, ...; '
    'every key: configs/default.py); override keys with --config.key=value.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Run directory (default: runs/<config>-<overrides>-<hash>).')
flags.DEFINE_bool('baseline', False, 'Also train the config without skip layers and compare.')
flags.mark_flags_as_required(['config'])


def main(argv):
  del argv
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  from n2nskip_jax import cli, rundir, train  # after flag parsing: keeps --help fast
  from n2nskip_jax.logs import setup_logging
  from n2nskip_jax.errors import UserError
  setup_logging()
  workdir = FLAGS.workdir or rundir.default_workdir(
      FLAGS['config'].config_filename, FLAGS.config,
      config_flags.get_override_values(FLAGS['config']))
  config = FLAGS.config

  def run():
    if FLAGS.baseline and config.skip.kind == 'none':
      raise UserError('--baseline compares against a run without skips: set --config.skip.kind')
    out = [(config.skip.kind, train.train_and_evaluate(config, workdir))]
    if FLAGS.baseline:
      base = copy.deepcopy(config)
      base.skip.kind = 'none'
      out.append(('none', train.train_and_evaluate(base, os.path.join(workdir, 'baseline'))))
    return out

  runs = cli.user_errors(run)
  print(f'\n{config.model} on {config.dataset}, pruning.method={config.pruning.method}, '
        f'density {config.pruning.density}:')
  for kind, s in runs:
    print(f'  skip.kind={kind:<8} test accuracy {s["test_accuracy"]:.4f}   nonzero weights '
          f'{s["params_nonzero"]:,} ({s["params_nonzero_sequential"]:,} sequential + '
          f'{s["params_nonzero_skip"]:,} skip)   dead units {s["dead_units"]}')
    for warning in s['warnings']:
      print(f'    warning: {warning}')


def entry():
  """The ``n2nskip-train`` command."""
  from n2nskip_jax import preemption
  preemption.exit_before_steps()  # before the seconds of importing JAX
  from n2nskip_jax import cli
  cli.run(main)


if __name__ == '__main__':
  entry()
