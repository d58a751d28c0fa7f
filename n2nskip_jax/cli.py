"""What the command-line tools share: flag parsing that reports a user's mistake in one line,
and the exit codes every tool uses.

Exit codes: 0 success; 2 a user's mistake (bad flag, config key or value, missing data,
unreadable checkpoints, unwritable directory) or a full disk; 3 training diverged; 4 a study
finished with some runs failed (each recorded with its reason); 130 interrupted (Ctrl-C);
128 + the signal's number when a preemption signal stopped training after a checkpoint (143
SIGTERM, 138 SIGUSR1, 129 SIGHUP).
"""
import difflib
import logging
import os
import runpy
import sys

from absl import app, flags

from n2nskip_jax import checks, errors
from n2nskip_jax.errors import UserError
from n2nskip_jax.execution import RENAMED, process

EXIT_USER, EXIT_DIVERGED, EXIT_RUNS_FAILED, EXIT_INTERRUPTED = 2, 3, 4, 130


def fail(message: str, code: int = EXIT_USER):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


def _config_path(argv) -> str | None:
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      return arg.split('=', 1)[1]
    if arg == '--config' and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _explain(argv, error: Exception) -> str:
  """One line for an error raised while reading ``--config`` and its overrides."""
  path = _config_path(argv)
  if path is None:
    return f'{error}'
  file, _, arg = path.partition(':')
  if not os.path.exists(file):
    hint = ''
    if os.sep not in file and not file.endswith('.py'):
      hint = f' nor a packaged config name ({", ".join(_names(argv))})'
    return f'--config={path}: no such file{hint}'
  try:
    module = runpy.run_path(file)
    config = module['get_config'](arg) if arg else module['get_config']()
  except Exception as e:  # noqa: BLE001 (a user's config file can raise anything)
    return f'--config={path}: cannot load it: {type(e).__name__}: {e}'
  known = [key for key, _ in checks.leaves(config)]
  for a in argv:
    if a.startswith('--config.'):
      key = a[len('--config.'):].split('=', 1)[0]
      if key not in known and not any(k.startswith(key + '.') for k in known):
        if key in RENAMED:
          return f'--config.{key} no longer exists: use --config.{RENAMED[key]}'
        close = difflib.get_close_matches(key, known, n=1)
        hint = f'; did you mean --config.{close[0]}?' if close else ''
        return f'--config.{key}: no such key in {file}{hint}'
  return f'{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ""}'


def packaged_configs(folder: str = '') -> str:
  """The folder of the packaged config files (the repository's ``configs/``, installed as
  ``n2nskip_jax.configs``), or its subfolder ``folder`` (``'studies'``)."""
  from n2nskip_jax import configs
  return os.path.join(os.path.dirname(configs.__file__), folder)


def config_by_name(argv: list[str], folder: str = '') -> list[str]:
  """``argv`` with a ``--config`` that names a packaged config (``quickstart``, or
  ``quickstart:arg``: no folder, no ``.py``, no such file here) replaced by its file in
  :func:`packaged_configs`; a path is left as it is."""
  def resolve(value: str) -> str:
    name, sep, arg = value.partition(':')
    if os.sep in name or name.endswith('.py') or os.path.exists(name):
      return value
    path = os.path.join(packaged_configs(folder), f'{name}.py')
    return f'{path}{sep}{arg}' if os.path.exists(path) else value
  out = list(argv)
  for i, arg in enumerate(out):
    if arg.startswith('--config='):
      out[i] = '--config=' + resolve(arg.split('=', 1)[1])
    elif arg == '--config' and i + 1 < len(out):
      out[i + 1] = resolve(out[i + 1])
  return out


def _names(argv) -> list[str]:
  """The packaged configs' names (the study tool's, if ``argv`` is the study tool's)."""
  folder = packaged_configs('studies' if 'study' in argv[0] else '')
  return sorted(f[:-3] for f in os.listdir(folder) if f.endswith('.py') and f[0] != '_'
                and f != 'common.py')


def run(main, configs: str = ''):
  """``app.run(main)`` as every tool runs: the process settings of
  :func:`execution.before_jax` first (on the CPU backend: freed host memory reused, XLA:CPU's
  own convolutions), orbax's closing noise quieted (:func:`quiet_closed_loop`), a config named
  rather than given by path looked up in the packaged ``configs`` (``configs='studies'``: its
  studies; :func:`config_by_name`), flags parsed by :func:`parse_flags`, and a reader that
  leaves early (``... | head``) ending the output quietly (:func:`quiet_closed_pipe`)."""
  sys.argv = config_by_name(sys.argv, configs)
  process.before_jax()
  sys.unraisablehook = quiet_closed_loop(sys.unraisablehook)
  logging.getLogger('asyncio').addFilter(not_orbax_noise)  # the same, as asyncio reports it
  app.run(quiet_closed_pipe(main), flags_parser=parse_flags)


def quiet_closed_pipe(main):
  """``main``, ending quietly when standard output is a pipe whose reader has all it wanted
  (``--dry_run | head``) instead of raising ``BrokenPipeError``; the output is flushed before
  returning, so the interpreter's own flush at exit cannot raise it either. The exit status
  is then 0, deliberately: what was asked for was delivered (``set -o pipefail`` stays
  green), and the work, e.g. a run whose result line nobody read, is done and saved."""
  def main_to_a_pipe(argv):
    try:
      status = main(argv)
      sys.stdout.flush()
      return status
    except BrokenPipeError:
      os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush to
  return main_to_a_pipe


def quiet_closed_loop(hook):
  """An ``sys.unraisablehook`` that drops the "Event loop is closed" errors orbax's reader
  threads raise after a failed restore (noise that would bury the one-line report)."""
  def quiet(unraisable):
    if not _is_closed_loop(unraisable.exc_value):
      hook(unraisable)
  return quiet


def _is_closed_loop(error) -> bool:
  return isinstance(error, RuntimeError) and 'Event loop is closed' in str(error)


def not_orbax_noise(record) -> bool:
  """A ``logging`` filter for asyncio's "Task exception was never retrieved" reports: drops
  those of the same closed-loop errors, and those of a full disk (orbax writes a checkpoint in
  several tasks; the run reports the failed save once, in one line, and the sibling tasks'
  copies of that error would otherwise print their tracebacks whenever they are collected)."""
  error = record.exc_info[1] if record.exc_info else None
  return not (_is_closed_loop(error) or 'Event loop is closed' in record.getMessage()
              or errors.out_of_space(error))


def parse_flags(argv: list[str]) -> list[str]:
  """``app.run``'s ``flags_parser``: parses ``argv``, and reports a bad flag, a missing or
  broken config file or an unknown config key in one line (exit 2), with a suggestion."""
  try:
    rest = flags.FLAGS(argv)
    if 'config' in flags.FLAGS:
      flags.FLAGS.config.keys()  # config_flags defers some load errors to the first access
    return rest
  except flags.Error as e:
    message = str(e).splitlines()[0]
    if '--config must have a value' in message:
      message = (f'--config is required: a config file, or a packaged config name '
                 f'({", ".join(_names(argv))})')
    fail(message)
  except Exception as e:  # noqa: BLE001 (config_flags raises what the config file raises)
    fail(_explain(argv, e))


def user_errors(fn):
  """Runs ``fn()`` and turns a user's mistake, a divergence, Ctrl-C or a preemption signal into
  one line and an exit code instead of a traceback."""
  from n2nskip_jax.errors import Diverged, Interrupted, Preempted
  try:
    return fn()
  except Diverged as e:
    fail(str(e), EXIT_DIVERGED)
  except Interrupted as e:
    fail(str(e), EXIT_INTERRUPTED)
  except Preempted as e:
    fail(str(e), 128 + e.signum)
  except KeyboardInterrupt:
    fail('interrupted', EXIT_INTERRUPTED)
  except UserError as e:
    fail(str(e))
