"""Connectivity analysis of a trained run: ``n2nskip-analyze --workdir DIR`` (``python -m
n2nskip_jax.analyze``).

Reads the run's config and newest readable checkpoint, builds the channel graph of the pruned
network and of its dense sequential parent (same nodes), and writes
``DIR/connectivity-<weights>-<mode>.json`` (F on a log grid of t and at t*, F(inf), lambda_2,
components, scree values, scatter; strict JSON) and the plots ``DIR/adjacency-<weights>-<mode>.png``
(paper Figure 3) and ``DIR/scree-<weights>-<mode>.png`` (Figure 4). Weights that are not finite
are refused.
"""
import os

from absl import flags, logging

from n2nskip_jax import cli, rundir
from n2nskip_jax.logs import setup_logging
from n2nskip_jax.errors import UserError
from n2nskip_jax.metrics import write_json
from n2nskip_jax.connectivity import plots
from n2nskip_jax.connectivity.analysis import K_FRACTIONS, analyze, load_run

flags.DEFINE_string('workdir', None, 'Run directory written by main.py.')
flags.DEFINE_enum('weights', 'final', ['initial', 'final'], 'Which weights to analyze.')
flags.DEFINE_enum('mode', 'weighted', ['weighted', 'binary'], 'Edge weights (see graph.py).')
flags.DEFINE_enum('method', 'auto', ['auto', 'dense', 'chebyshev'], 'Heat signature method.')
flags.DEFINE_float('eps', 1e-3, 't* = ln(1/eps) / lambda_2(reference); in (0, 1).')
flags.register_validator('eps', lambda v: 0 < v < 1, message='--eps must be in (0, 1)')
flags.DEFINE_integer('num_times', 25, 'Points on the log grid of t.', lower_bound=1)
FLAGS = flags.FLAGS


def outputs(workdir: str, weights: str, mode: str) -> dict[str, str]:
  """The files one analysis writes, named by weights and mode so analyses never overwrite
  each other: ``connectivity-<weights>-<mode>.json``, ``adjacency-...png``, ``scree-...png``."""
  return {kind: os.path.join(workdir, f'{kind}-{weights}-{mode}.{ext}')
          for kind, ext in (('connectivity', 'json'), ('adjacency', 'png'), ('scree', 'png'))}


def run():
  if not FLAGS.workdir:
    raise UserError('--workdir is required')
  rundir.check_writable(FLAGS.workdir)
  config, params, masks, ref_params = load_run(FLAGS.workdir, FLAGS.weights)
  logging.info('Analyzing %s weights of %s (%s, %s, density %s).', FLAGS.weights, config.model,
               config.pruning.method, config.skip.kind, config.pruning.density)
  results, arrays = analyze(config, params, masks, ref_params, FLAGS.mode, FLAGS.method,
                            FLAGS.eps, FLAGS.num_times)
  results['weights'] = FLAGS.weights
  paths = outputs(FLAGS.workdir, FLAGS.weights, FLAGS.mode)
  write_json(paths['connectivity'], results)
  title = (f'{config.model}, {config.pruning.method}, skip={config.skip.kind}, '
           f'density {config.pruning.density}, {FLAGS.weights} weights, {FLAGS.mode}')
  plots.plot_adjacency(arrays['reference_adjacency'], arrays['adjacency'], paths['adjacency'],
                       title, groups=arrays['groups'])
  if arrays['curves']:
    plots.plot_scree(K_FRACTIONS, arrays['curves'], paths['scree'], title)
  print(f"{results['nodes']} nodes, {results['components']} component(s), "
        f"lambda_2 {results['lambda_2']:.4g} (reference {results['lambda_2_reference']:.4g}); "
        f"F(t*={results['t_star']:.3g}) = {results['F_t_star']:.4g}, F(inf) = {results['F_inf']:.4g}; "
        f"scatter {results['scatter']['network_forward']:.3f}/{results['scatter']['network_backward']:.3f}"
        f" -> {paths['connectivity']}")


def main(argv):
  del argv
  setup_logging()
  cli.user_errors(run)


def entry():
  """The ``n2nskip-analyze`` command."""
  cli.run(main)


if __name__ == '__main__':
  entry()
