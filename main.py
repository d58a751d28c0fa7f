"""Trains a (pruned, skip-connected) network: ``python main.py --config configs/X.py``.

Flags:
  --config   an ml_collections config file; override keys with --config.key=value.
  --workdir  where checkpoints, metrics and the summary go; default
             ``runs/<config name>-<hash of the config>``, so rerunning the same command
             resumes the same run.
"""
import hashlib
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Config file (see configs/default.py).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Run directory (default: runs/<config>-<hash>).')
flags.mark_flags_as_required(['config'])


def default_workdir(config_path: str, config) -> str:
  name = os.path.splitext(os.path.basename(config_path.split(':')[0]))[0]
  digest = hashlib.sha1(config.to_json(sort_keys=True).encode()).hexdigest()[:8]
  return os.path.join('runs', f'{name}-{digest}')


def main(argv):
  del argv
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  from n2nskip_jax import train  # after flag parsing: keeps --help fast
  from n2nskip_jax.config import UserError
  from n2nskip_jax.data import DataError
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(lambda r: 'orbax' not in r.pathname)  # per-save chatter
  workdir = FLAGS.workdir or default_workdir(flags.FLAGS['config'].config_filename, FLAGS.config)
  logging.info('workdir: %s', workdir)
  try:
    train.train_and_evaluate(FLAGS.config, workdir)
  except (UserError, DataError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main)
