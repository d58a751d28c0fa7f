"""Connectivity analysis of a trained run: ``python -m n2nskip_jax.analyze --workdir DIR``.

Reads the run's config and latest checkpoint, builds the channel graph of the pruned network
and of its dense sequential parent (same nodes), and writes ``DIR/connectivity.json``
(F on a log grid of t and at t*, F(inf), lambda_2, components, scree values, scatter) and
the plots ``DIR/adjacency.png`` (paper Figure 3) and ``DIR/scree.png`` (Figure 4).
"""
import json
import os
import sys
import time

import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import app, flags, logging
from scipy.sparse.csgraph import connected_components

from n2nskip_jax import data as data_lib
from n2nskip_jax import network
from n2nskip_jax.config import UserError, setup_logging
from n2nskip_jax.connectivity import heat, plots, scatter
from n2nskip_jax.connectivity.graph import network_graph

flags.DEFINE_string('workdir', None, 'Run directory written by main.py.')
flags.DEFINE_enum('weights', 'final', ['initial', 'final'], 'Which weights to analyze.')
flags.DEFINE_enum('mode', 'weighted', ['weighted', 'binary'], 'Edge weights (see graph.py).')
flags.DEFINE_enum('method', 'auto', ['auto', 'dense', 'chebyshev'], 'Heat signature method.')
flags.DEFINE_float('eps', 1e-3, 't* = ln(1/eps) / lambda_2(reference).')
flags.DEFINE_integer('num_times', 25, 'Points on the log grid of t.')
FLAGS = flags.FLAGS
K_FRACTIONS = np.linspace(0.01, 1.0, 100)


def load_run(workdir: str, weights: str):
  """``(config, params, masks, reference_params)`` of a run's latest checkpoint."""
  path = os.path.join(workdir, 'config.json')
  ckpt_dir = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if not os.path.exists(path) or not os.path.isdir(ckpt_dir):
    raise UserError(f'--workdir={workdir!r}: no config.json and checkpoints/ (run main.py first)')
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  manager = ocp.CheckpointManager(ckpt_dir)
  step = manager.latest_step()
  if step is None:
    raise UserError(f'--workdir={workdir!r}: no finished checkpoint yet')
  restored = manager.restore(step, args=ocp.args.StandardRestore())
  masks = restored['masks']
  _, initial = network.init(config, *data_lib.spec(config))  # unpruned initial weights
  params = (restored['state']['params'] if weights == 'final'
            else network.apply_masks(initial, masks)['params'])
  return config, params, masks, initial['params']


def analyze(config, params, masks, reference_params, mode='weighted', method='auto',
            eps=1e-3, num_times=25) -> tuple[dict, dict]:
  """Connectivity figures of a pruned network against its reference; returns
  ``(results, arrays)``, ``arrays`` holding what the plots need."""
  graph = network_graph(config.model, params, masks, mode)
  ref = network_graph(config.model, reference_params, masks, mode, reference=True)
  n = graph.num_nodes
  dense = method == 'dense' or (method == 'auto' and n <= heat.DENSE_MAX_NODES)
  w, w_ref = graph.adjacency(sparse=not dense), ref.adjacency(sparse=not dense)
  sources = graph.sources()
  start = time.time()
  if dense:
    s, s_ref = heat.spectrum(w), heat.spectrum(w_ref)
    lam, lam_ref = s.eigenvalues, s_ref.eigenvalues
    times = heat.times_from_eigenvalues(lam_ref[1], lam_ref[-1], eps, num_times)
    t_all = np.append(times['grid'], times['t_star'])
    f = np.linalg.norm(heat.signature_from_spectrum(s_ref, sources, t_all)
                       - heat.signature_from_spectrum(s, sources, t_all), axis=-1)
    lam2 = float(lam[1])
  else:
    times = heat.diffusion_times(w_ref, eps, num_times)
    t_all = np.append(times['grid'], times['t_star'])
    f = heat.connectivity_distance(w_ref, w, sources, t_all, method='chebyshev')
    lam2, lam = heat.extreme_eigenvalues(w)[0], None
  scree_times = {'t_min': times['grid'][0], 't_mid': float(np.sqrt(times['grid'][0] * times['grid'][-1])),
                 't_star': times['t_star']}
  curves = {}
  if lam is not None:
    for name, t in scree_times.items():
      curves[f'{name}={t:.3g}'] = {
          'reference': heat.scree_from_eigenvalues(lam_ref, K_FRACTIONS, t)[0].tolist(),
          'pruned': heat.scree_from_eigenvalues(lam, K_FRACTIONS, t)[0].tolist()}
  binary = graph if mode == 'binary' else network_graph(config.model, params, masks, 'binary')
  net_f, net_b = scatter.network_scatter(binary)
  results = {
      'model': config.model, 'skip_kind': config.skip.kind, 'pruning_method': config.pruning.method,
      'density': config.pruning.density, 'mode': mode, 'nodes': n,
      'method': 'dense eigh (float64)' if dense else 'chebyshev (matrix-free)',
      'lambda_2': lam2, 'lambda_2_reference': times['lambda_2'],
      'lambda_max_reference': times['lambda_max'],
      'components': int(connected_components(w, directed=False)[0]),
      'dead_units': binary.dead_units(), 'eps': eps, 't_star': times['t_star'],
      'F_t_star': float(f[-1]), 't_grid': times['grid'].tolist(), 'F_grid': f[:-1].tolist(),
      'F_inf': heat.saturation_distance(w_ref, w, sources),
      'scree': ({'k_fractions': K_FRACTIONS.tolist(),
                 'times': scree_times, 'curves': curves}
                if curves else None),
      'scatter': {'network_forward': net_f, 'network_backward': net_b,
                  'junctions': scatter.layer_scatter(binary)},
      'seconds': time.time() - start,
  }
  return results, {'adjacency': w, 'reference_adjacency': w_ref, 'curves': curves}


def main(argv):
  del argv
  setup_logging()
  if not FLAGS.workdir:
    print('error: --workdir is required', file=sys.stderr)
    sys.exit(2)
  try:
    config, params, masks, ref_params = load_run(FLAGS.workdir, FLAGS.weights)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  logging.info('Analyzing %s weights of %s (%s, %s, density %s).', FLAGS.weights, config.model,
               config.pruning.method, config.skip.kind, config.pruning.density)
  results, arrays = analyze(config, params, masks, ref_params, FLAGS.mode, FLAGS.method,
                            FLAGS.eps, FLAGS.num_times)
  results['weights'] = FLAGS.weights
  with open(os.path.join(FLAGS.workdir, 'connectivity.json'), 'w') as f:
    json.dump(results, f, indent=2)
  title = (f'{config.model}, {config.pruning.method}, skip={config.skip.kind}, '
           f'density {config.pruning.density}')
  plots.plot_adjacency(arrays['reference_adjacency'], arrays['adjacency'],
                       os.path.join(FLAGS.workdir, 'adjacency.png'), title)
  if arrays['curves']:
    plots.plot_scree(K_FRACTIONS, arrays['curves'], os.path.join(FLAGS.workdir, 'scree.png'), title)
  print(f"{results['nodes']} nodes, {results['components']} component(s), "
        f"lambda_2 {results['lambda_2']:.4g} (reference {results['lambda_2_reference']:.4g}); "
        f"F(t*={results['t_star']:.3g}) = {results['F_t_star']:.4g}, F(inf) = {results['F_inf']:.4g}; "
        f"scatter {results['scatter']['network_forward']:.3f}/{results['scatter']['network_backward']:.3f}"
        f" -> {os.path.join(FLAGS.workdir, 'connectivity.json')}")


if __name__ == '__main__':
  app.run(main)
