"""Connectivity analysis of a run against its dense reference (paper Sec. 3.2).

    from n2nskip_jax.connectivity import analyze, load_run
    config, params, masks, reference_params = load_run(workdir, 'initial')
    results, arrays = analyze(config, params, masks, reference_params)

``results`` holds F on a log grid of t and at t* (Eq. 6), F(inf), lambda_2, components, the
scree (Eq. 7) where the full spectrum is computed, and scatter; ``arrays`` what the plots need.
"""
import time

import jax
import numpy as np
import scipy.sparse
from scipy.sparse.csgraph import connected_components

from n2nskip_jax import data as data_lib
from n2nskip_jax import network, rundir, sparsity
from n2nskip_jax.errors import UserError
from n2nskip_jax.connectivity import heat, scatter
from n2nskip_jax.connectivity.graph import network_graph

K_FRACTIONS = np.linspace(0.01, 1.0, 100)


def load_run(workdir: str, weights: str = 'final'):
  """``(config, params, masks, reference_params)`` of a run's latest checkpoint: its final
  weights, or (``weights='initial'``) the weights it was initialized and pruned with; the
  reference parameters are the unpruned weights it trained from; both from
  :func:`network.initial_variables`, as the training loop builds them (re-drawn weights for a
  ``pruning.reinit`` run)."""
  config = rundir.read_config(workdir)
  step, restored = rundir.read_latest(workdir)
  masks = restored['masks']
  if not all(np.all(np.isfinite(x)) for x in jax.tree.leaves(restored['state']['params'])):
    raise UserError(f'--workdir={workdir!r}: the weights at step {step} are not finite '
                    '(the run diverged); nothing to analyze')
  spec = data_lib.spec(config)
  unpruned, pruned = network.initial_variables(config, network.init(config, *spec)[1], masks,
                                               *spec)
  params = restored['state']['params'] if weights == 'final' else pruned['params']
  return config, params, masks, unpruned['params']


def graphs(config, params, masks, reference_params, mode: str = 'weighted'):
  """``(graph, reference_graph)``: the pruned network's channel graph and its dense
  sequential parent's, on the same nodes (:func:`network_graph`)."""
  return (network_graph(config, params, masks, mode),
          network_graph(config, reference_params, masks, mode, reference=True))


def distances(reference: heat.Reference, w, w_ref, sources, signatures=None):
  """``(F(t) for t in reference.t, F(inf))`` (Eq. 6) of adjacency ``w`` against the diffusion
  of its reference ``w_ref`` (``reference``, :func:`heat.reference_diffusion`), from
  ``sources``; exactly 0 for the dense parent itself (sparse matrices equal entry for entry).
  ``signatures``: ``w``'s own at ``reference.t``, if known."""
  if scipy.sparse.issparse(w) and (w != w_ref).nnz == 0:
    return np.zeros(len(reference.t)), 0.0
  return heat.distances_to_reference(reference, w, sources, signatures)


def analyze(config, params, masks, reference_params, mode='weighted', method='auto',
            eps=1e-3, num_times=25) -> tuple[dict, dict]:
  """Connectivity figures of a pruned network against its reference; returns
  ``(results, arrays)``, ``arrays`` holding what the plots need."""
  graph, ref_graph = graphs(config, params, masks, reference_params, mode)
  n = graph.num_nodes
  dense = method == 'dense' or (method == 'auto' and n <= heat.DENSE_MAX_NODES)
  w, w_ref = graph.adjacency(sparse=not dense), ref_graph.adjacency(sparse=not dense)
  sources = graph.sources()
  start = time.time()
  ref = heat.reference_diffusion(w_ref, sources, eps, num_times, 'dense' if dense else 'chebyshev')
  times, lam_ref = ref.times, ref.eigenvalues
  if dense:
    s = heat.spectrum(w)
    lam, lam2 = s.eigenvalues, float(s.eigenvalues[1])
    f, f_inf = distances(ref, w, w_ref, sources, heat.signature_from_spectrum(s, sources, ref.t))
  else:
    f, f_inf = distances(ref, w, w_ref, sources)
    lam2, lam = heat.extreme_eigenvalues(w)[0], None
  scree_times = {'t_min': times['grid'][0], 't_mid': float(np.sqrt(times['grid'][0] * times['grid'][-1])),
                 't_star': times['t_star']}
  curves = {}
  if lam is not None:
    for name, t in scree_times.items():
      curves[f'{name}={t:.3g}'] = {
          'reference': heat.scree_from_eigenvalues(lam_ref, K_FRACTIONS, t)[0].tolist(),
          'pruned': heat.scree_from_eigenvalues(lam, K_FRACTIONS, t)[0].tolist()}
  binary = graph if mode == 'binary' else network_graph(config, params, masks, 'binary')
  net_f, net_b = scatter.network_scatter(binary)
  results = {
      'model': config.model, 'skip_kind': config.skip.kind, 'pruning_method': config.pruning.method,
      'density': config.pruning.density, 'mode': mode, 'nodes': n,
      'method': 'dense eigh (float64)' if dense else 'chebyshev (matrix-free)',
      'lambda_2': lam2, 'lambda_2_reference': times['lambda_2'],
      'lambda_max_reference': times['lambda_max'],
      'components': int(connected_components(w, directed=False)[0]),
      'dead_units': sparsity.dead_units(config, masks), 'eps': eps, 't_star': times['t_star'],
      'F_t_star': float(f[-1]), 't_grid': times['grid'].tolist(), 'F_grid': f[:-1].tolist(),
      'F_inf': f_inf,
      'scree': ({'k_fractions': K_FRACTIONS.tolist(),
                 'times': scree_times, 'curves': curves}
                if curves else None),
      'scatter': {'network_forward': net_f, 'network_backward': net_b,
                  'junctions': scatter.layer_scatter(binary)},
      'seconds': time.time() - start,
  }
  return results, {'adjacency': w, 'reference_adjacency': w_ref, 'curves': curves,
                   'groups': graph.groups}
