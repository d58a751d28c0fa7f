"""Connectivity analysis: F(t*) of N2NSkip vs plain pruning, and analysis time vs graph size.

    python benchmarks/connectivity.py compare --model=mlp --density=0.05
    python benchmarks/connectivity.py timing --models=mlp,vgg19,resnet50 --dense_max=6000

``compare`` builds the paper's network (CIFAR-shaped input), prunes it at ``--density`` with
and without N2NSkip (same method, same seed) and prints F(t*), F on the t grid, F(inf),
lambda_2 and scatter for each, at the initial weights (weighted and binary graphs).
``timing`` times the heat signatures on each model's channel graph: dense ``eigh`` (up to
``--dense_max`` nodes) and the matrix-free Chebyshev path.
"""
import argparse
import time

import numpy as np
from common import device_info, emit

from n2nskip_jax.configs import default
from n2nskip_jax import network, pruning
from n2nskip_jax.connectivity import analyze
from n2nskip_jax.connectivity import heat, network_graph


def pruned_network(model, method, density, kind, seed=0):
  c = default.get_config()
  c.model, c.dataset, c.vgg_head, c.seed = model, 'cifar10', 'paper', seed
  if density < 1:
    c.pruning.method, c.pruning.density = method, density
  c.skip.kind = kind
  _, variables = network.init(c, 10, (32, 32, 3))
  batch = None
  if pruning.needs_batch(c):  # CSP scores with data: one seeded random CIFAR-shaped batch here
    rng = np.random.default_rng(seed)
    batch = {'image': rng.normal(size=(c.pruning.snip_batch_size, 32, 32, 3)).astype(np.float32),
             'label': rng.integers(0, 10, c.pruning.snip_batch_size)}
  masks = pruning.prune(c, variables, batch, input_shape=(32, 32, 3))
  return c, variables, masks


def compare(args):
  for kind in ('none', 'n2nskip'):
    config, variables, masks = pruned_network(args.model, args.method, args.density, kind, args.seed)
    params = pruning.apply_masks(variables, masks)['params']
    for mode in ('weighted', 'binary'):
      r, _ = analyze(config, params, masks, variables['params'], mode=mode, eps=args.eps)
      emit({'benchmark': 'connectivity_compare', 'model': args.model, 'method': args.method,
            'skip': kind, 'density': args.density, 'seed': args.seed, 'mode': mode,
            'nodes': r['nodes'], 't_star': r['t_star'], 'F_t_star': r['F_t_star'],
            'F_inf': r['F_inf'], 'F_grid': r['F_grid'], 't_grid': r['t_grid'],
            'lambda_2': r['lambda_2'], 'components': r['components'],
            'dead_units': r['dead_units'], 'scatter_forward': r['scatter']['network_forward'],
            'seconds': r['seconds']})


def timing(args):
  for model in args.models.split(','):
    config, variables, masks = pruned_network(model, 'rp', args.density, 'none')
    params = pruning.apply_masks(variables, masks)['params']
    graph = network_graph(config, params, masks)
    ref = network_graph(config, variables['params'], masks, reference=True)
    w, n = graph.adjacency(sparse=True), graph.num_nodes
    sources = graph.sources()
    start = time.perf_counter()
    times = heat.diffusion_times(ref.adjacency(sparse=True), num=args.num_times)
    spectral = time.perf_counter() - start
    record = {'benchmark': 'connectivity_timing', 'model': model, 'nodes': n, 'edges': w.nnz // 2,
              'reference_extreme_eigenvalues_s': spectral, **device_info()}
    start = time.perf_counter()
    cheb = heat.heat_signature(w, sources, times['grid'], method='chebyshev')
    record['chebyshev_s'] = time.perf_counter() - start
    if n <= args.dense_max:
      start = time.perf_counter()
      dense = heat.heat_signature(w.toarray(), sources, times['grid'], method='dense')
      record['dense_eigh_s'] = time.perf_counter() - start
      record['max_abs_difference'] = float(np.abs(dense - cheb).max())
    emit(record)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('what', choices=['compare', 'timing'])
  p.add_argument('--model', default='mlp', choices=['mlp', 'vgg19', 'resnet50'])
  p.add_argument('--models', default='mlp,vgg19,resnet50')
  p.add_argument('--method', default='rp', choices=['rp', 'csp', 'structured'])
  p.add_argument('--density', type=float, default=0.05)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--eps', type=float, default=1e-3)
  p.add_argument('--num_times', type=int, default=12)
  p.add_argument('--dense_max', type=int, default=6000, help='largest graph to run eigh on')
  args = p.parse_args()
  compare(args) if args.what == 'compare' else timing(args)


if __name__ == '__main__':
  main()
