"""Runs a study's grid, one ordinary training run per (cell, seed), resumable at any moment.

Each run trains with :func:`n2nskip_jax.train.train_and_evaluate` in
``<workdir>/runs/<run name>/``, so resume, ``summary.json`` and ``analyze`` hold per run. A run
whose ``summary.json`` exists is finished and never retrained; an interrupted one resumes from
its last checkpoint. A run that fails (diverges, is refused, crashes) is recorded in its
directory's ``failed.json`` with the reason, and the study goes on; a rerun leaves it failed
unless asked to retry it. A run another process is training (its lock,
:mod:`n2nskip_jax.runlock`) is skipped, so two processes on one study split its runs. With
``study.analyze``, each run's connectivity (weighted graph, F(t*) and F(inf) against the dense
reference, paper Eq. 6) at initialization and after training (the paper's definition: the
pruned and trained network) is written to ``connectivity-initial-weighted.json`` and
``connectivity-final-weighted.json`` beside its summary.
"""
import gc
import json
import os
import time
import traceback

import jax
import numpy as np
from absl import logging

from n2nskip_jax.connectivity import analysis
from n2nskip_jax import preemption, rundir, runlock, sparsity, train
from n2nskip_jax.connectivity import heat
from n2nskip_jax.errors import Diverged, DiskFull, Interrupted, Preempted, UserError
from n2nskip_jax.metrics import write_json
from n2nskip_jax.progress import hms
from n2nskip_jax.study import grid

CONNECTIVITY = 'connectivity-initial-weighted.json'
CONNECTIVITY_FINAL = 'connectivity-final-weighted.json'
FAILED = 'failed.json'


def run_dir(workdir: str, name: str) -> str:
  """The run directory of the study's run ``name``."""
  return os.path.join(workdir, 'runs', name)


def read_json(path: str):
  """A JSON file of a run directory, or ``None`` if it does not exist (yet)."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def failure(directory: str) -> dict | None:
  """A failed run's record (``error``: the exception's type, ``reason``: its message), or
  ``None``."""
  return read_json(os.path.join(directory, FAILED))


def _finished(directory: str, analyze: bool) -> bool:
  files = [rundir.SUMMARY] + ([CONNECTIVITY, CONNECTIVITY_FINAL] if analyze else [])
  return all(os.path.exists(os.path.join(directory, f)) for f in files)


class _References:
  """Reference diffusions (dense parent at the weights a run trains from), one per distinct
  reference network: cells that differ only in pruning and skips share it, except
  ``pruning.reinit``, which trains from other weights."""

  def __init__(self):
    self._cache = {}

  def get(self, config, graph_ref, sources, eps):
    key = json.dumps({**{k: v for k, v in json.loads(config.to_json()).items()
                         if k not in ('pruning', 'skip')}, 'reinit': config.pruning.reinit},
                     sort_keys=True)
    if key not in self._cache:
      self._cache[key] = heat.reference_diffusion(graph_ref.adjacency(sparse=True), sources, eps)
    return self._cache[key]


def connectivity(directory: str, references: _References, weights: str,
                 eps: float = 1e-3) -> dict:
  """F(t*) and F(inf) of a run's weighted graph (paper Eq. 6, Sec. 3.2) with its ``weights``,
  ``'initial'`` or ``'final'``, against the dense network it trained from."""
  config, params, masks, ref_params = analysis.load_run(directory, weights)
  graph, ref_graph = analysis.graphs(config, params, masks, ref_params)
  sources = graph.sources()
  ref = references.get(config, ref_graph, sources, eps)
  f, f_inf = analysis.distances(ref, graph.adjacency(sparse=True), ref_graph.adjacency(sparse=True),
                                sources)
  return {'weights': weights, 'mode': 'weighted', 'nodes': graph.num_nodes, 'eps': eps,
          't_star': ref.times['t_star'], 'F_t_star': float(f[-1]), 'F_inf': f_inf,
          't_grid': ref.times['grid'].tolist(), 'F_grid': f[:-1].tolist(),
          'dead_units': sparsity.dead_units(config, masks)}


def run_study(study, workdir: str, shard_spec: str = '0/1',
              retry_failed: bool = False) -> list[str]:
  """Runs this shard's share of ``study`` in ``workdir``; returns the names of its failed runs.

  Logs one line per run started and finished (with its result) or failed (with the reason),
  and an overall line with runs done / total and an ETA from the runs trained in this process.
  A run that failed before is left failed unless ``retry_failed``. A preemption signal
  (:mod:`n2nskip_jax.preemption`) stops the run in progress at a step, after a checkpoint, or
  the study before its next run; either way :class:`~n2nskip_jax.errors.Preempted` is raised.
  """
  runs = grid.shard(grid.runs(study), shard_spec)
  os.makedirs(workdir, exist_ok=True)
  references, durations = _References(), []
  done = sum(_finished(run_dir(workdir, r.name), study.analyze) for r in runs)
  failed = [r.name for r in runs if failure(run_dir(workdir, r.name))]
  logging.info('Study shard %s: %d runs, %d already finished, %d failed before%s.', shard_spec,
               len(runs), done, len(failed),
               ' (retried now)' if retry_failed and failed else
               ' (--retry_failed trains them again)' if failed else '')
  if retry_failed:
    for name in failed:
      os.remove(os.path.join(run_dir(workdir, name), FAILED))
    failed = []
  else:
    done += len(failed)
  with preemption.stop_requests() as stop:
    for run in runs:
      directory = run_dir(workdir, run.name)
      if _finished(directory, study.analyze) or run.name in failed:
        continue
      if stop.signum:
        raise Preempted(stop.signum, None)
      try:
        with runlock.RunLock(directory) as lock:  # training and analysis: one process
          lock.acquire()
          if _finished(directory, study.analyze) or failure(directory):
            continue  # another process finished it meanwhile
          start = time.time()
          logging.info('[%d/%d] start %s', done + 1, len(runs), run.name)
          result = _train_or_record(study, directory, run, references)
          _release_compiled()
          durations.append(time.time() - start)
      except runlock.Held as e:
        logging.info('[%d/%d] skipped %s: %s', done + 1, len(runs), run.name, e)
        continue
      done += 1
      if result is None:
        failed.append(run.name)
        continue
      eta = np.mean(durations) * (len(runs) - done)
      logging.info('[%d/%d] done %s: %s (%.0f s). Study: %d/%d runs done, ETA %s.', done,
                   len(runs), run.name, result, durations[-1], done, len(runs), hms(eta))
  return failed


COMPILE_CACHE = 'compile_cache'


def keep_compiled_programs(workdir: str) -> None:
  """Keeps the programs that take over a second to compile in ``<workdir>/compile_cache``
  (JAX's persistent compilation cache; delete the folder when the study is done), unless JAX
  has a cache directory already (``JAX_COMPILATION_CACHE_DIR``): the study clears JAX's caches
  in memory after every run, and runs of one model then load, not compile again, what they
  share (``network.init`` of a conv net compiles for 10-25 s on a CPU). Call it before JAX
  compiles anything; the study command does. (JAX's size limit for the folder needs the
  ``filelock`` package, which this project does not install: no limit is set.)"""
  if jax.config.jax_compilation_cache_dir:
    return
  jax.config.update('jax_compilation_cache_dir', os.path.join(workdir, COMPILE_CACHE))


def _release_compiled() -> None:
  """Drops what JAX traced and compiled for the run just finished. Its masks' nonzero tables
  give its steps shapes of their own, JAX's caches keep every shape they have seen, and a study
  process otherwise grows by megabytes a run (``benchmarks/study_memory.py``); what runs
  share, :func:`keep_compiled_programs` keeps on disk."""
  jax.clear_caches()
  gc.collect()


def _train_or_record(study, directory: str, run, references: _References) -> str | None:
  """:func:`_train`; a failure is logged and recorded in ``failed.json`` (``None`` returned)."""
  try:
    return _train(study, directory, run, references)
  except (Interrupted, Preempted, DiskFull):  # the study's, not the run's: it stops
    raise
  except Exception as e:  # noqa: BLE001 (one failed run must not stop the study)
    record = {'error': type(e).__name__, 'reason': str(e)}
    if not isinstance(e, (Diverged, UserError)):  # a crash: where it happened
      record['traceback'] = traceback.format_exc()
    write_json(os.path.join(directory, FAILED), record)
    logging.warning('Run %s failed: %s: %s', run.name, type(e).__name__, e)
    return None


def _train(study, directory: str, run, references: _References) -> str:
  """Trains (or resumes) one run and analyzes it; returns its result in words."""
  summary_path = os.path.join(directory, rundir.SUMMARY)
  if not os.path.exists(summary_path):
    train.train_and_evaluate(run.config(study.base), directory)
  with open(summary_path) as f:
    summary = json.load(f)
  result = f"test accuracy {summary['test_accuracy']:.4f}"
  if study.analyze:
    for weights, name in (('initial', CONNECTIVITY), ('final', CONNECTIVITY_FINAL)):
      conn = connectivity(directory, references, weights)
      write_json(os.path.join(directory, name), conn)
      result += f", F(t*) {weights} {conn['F_t_star']:.4g}"
  return result
