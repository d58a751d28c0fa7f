"""The study command: ``n2nskip-study --config NAME`` (``python -m n2nskip_jax.study``).

Flags:
  --config          a study config file (``configs/studies/NAME.py``) or a packaged one's
                    name (``NAME``; keys: ``n2nskip_jax/study/grid.py``); override any key with
                    ``--config.base.num_epochs=5``, ``--config.seeds=0,1``,
                    ``--config.axes.pruning.density=0.1,0.05``.
  --workdir         where the runs and the tables go; default ``runs/studies/<config name>``.
  --shard=I/N       run only every N-th run from the I-th (a SLURM array task, one GPU).
  --dry_run         list the runs and the ``n2nskip-train`` command of each; train nothing.
  --aggregate_only  write the tables and figures from the runs finished so far; in a folder
                    with a results.csv and no runs/ (a published study, docs/results/NAME),
                    rebuild table.json and table.md from the csv alone.
  --retry_failed    train the runs that failed before again (by default they stay failed).
Rerunning the same command skips finished runs and resumes an interrupted one. A run that
fails is recorded with its reason and the study goes on; the study then exits with 4.
"""
import os
import shlex

from absl import flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    'config', None, 'Study config file (configs/studies/*.py), or the name of a packaged one '
    '(offline_mlp, methods_vgg_digits, ...).', lock_config=True)
flags.DEFINE_string('workdir', None, 'Study directory (default: runs/studies/<config name>).')
flags.DEFINE_string('shard', '0/1', "Run shard 'I/N' of the study's runs.")
flags.DEFINE_bool('dry_run', False, 'List the runs and their n2nskip-train commands; train nothing.')
flags.DEFINE_bool('aggregate_only', False, 'Only aggregate the finished runs (without run '
                  'folders: rebuild the tables from results.csv).')
flags.DEFINE_bool('retry_failed', False, 'Train the runs that failed before again.')
flags.mark_flags_as_required(['config'])


def _flag(key, value) -> str:
  text = ','.join(map(str, value)) if isinstance(value, (tuple, list)) else value
  return f'--config.{key}={text}'


def _main_command(config_path: str, study, workdir: str, run) -> str:
  """The training command of one run (``n2nskip-train``, installed with the package; in the
  repository ``python main.py`` is the same): the study file's base config, the keys the
  command line changed in it, then the run's own overrides and seed."""
  import runpy

  from n2nskip_jax import checks
  from n2nskip_jax.rundir import changed_keys
  from n2nskip_jax.study.run import run_dir
  path = config_path.split(':')[0]
  file_base = runpy.run_path(path)['get_config']('base').to_dict()
  base = study.base.to_dict()
  flags_ = [_flag(k, checks.value(study.base, k)) for k in changed_keys(file_base, base)]
  flags_ += [_flag(k, v) for k, v in run.overrides] + [_flag('seed', run.seed)]
  return (f'n2nskip-train --config {shlex.quote(path)}:base '
          f'--workdir {shlex.quote(run_dir(workdir, run.name))} '
          + ' '.join(shlex.quote(f) for f in flags_))


def _check_workdir(workdir: str, aggregate_only: bool) -> None:
  """A ``UserError`` for a workdir that is a file, cannot be written, or (to aggregate) does
  not exist yet."""
  from n2nskip_jax import rundir
  from n2nskip_jax.errors import UserError
  if aggregate_only and not os.path.isdir(workdir):
    raise UserError(f'--workdir={workdir!r}: no study there to aggregate (run the study first)')
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UserError(f'--workdir={workdir!r}: a file, not a directory')
  rundir.check_writable(workdir)


def main(argv):
  del argv
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  from n2nskip_jax import cli, progress
  from n2nskip_jax.logs import setup_logging
  from n2nskip_jax.study import aggregate, grid
  from n2nskip_jax.study import run as run_lib
  setup_logging()
  config_path = flags.FLAGS['config'].config_filename
  name = os.path.splitext(os.path.basename(config_path.split(':')[0]))[0]
  workdir = FLAGS.workdir or os.path.join('runs', 'studies', name)
  if not FLAGS.dry_run and not FLAGS.aggregate_only:
    run_lib.keep_compiled_programs(workdir)  # before anything is compiled
  study = FLAGS.config
  def run():
    if FLAGS.dry_run:
      runs = grid.shard(grid.runs(study), FLAGS.shard)
      for r in runs:
        print(f'{r.name}\n  {_main_command(config_path, study, workdir, r)}')
      print(f'{len(runs)} runs')
      return
    _check_workdir(workdir, FLAGS.aggregate_only)
    failed = []
    if not FLAGS.aggregate_only:
      failed = run_lib.run_study(study, workdir, FLAGS.shard, FLAGS.retry_failed)
    if FLAGS.aggregate_only and aggregate.csv_only(workdir):
      logging.info('No run folders in %s: rebuilding its tables from results.csv alone (no '
                   'figures)', workdir)
      paths = aggregate.tables_from_csv(study, workdir)
    else:
      paths = aggregate.aggregate(study, workdir)
    logging.info('Wrote %s', ', '.join(paths))
    if failed:
      cli.fail(f'{progress.counted(len(failed), "run")} failed ({", ".join(failed[:3])}{", ..." * (len(failed) > 3)}'
               f'); their reasons are in {os.path.join(workdir, "table.md")}. The other runs '
               'finished; --retry_failed trains the failed ones again.', cli.EXIT_RUNS_FAILED)

  cli.user_errors(run)


def entry():
  """The ``n2nskip-study`` command."""
  from n2nskip_jax import preemption
  preemption.exit_before_steps()  # before the seconds of importing JAX
  from n2nskip_jax import cli
  cli.run(main, configs='studies')


if __name__ == '__main__':
  entry()
