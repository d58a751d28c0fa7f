"""Resident memory of a study process over its runs: flat, or growing with every run?

    python benchmarks/study_memory.py --runs 20        # one JSON record, RSS after each run

A tiny study (the MLP on digits, 1 epoch, N2NSkip-RP and RP over seeds) runs in this process,
as ``python -m n2nskip_jax.study`` runs it (compiled programs kept on disk); the resident set size (``VmRSS``) is read after
every run. The record gives RSS after the third run and after the last, and the growth per run
between them (a least-squares slope), in MB.
"""
import argparse
import os
import tempfile

import numpy as np
from common import emit

from n2nskip_jax.configs import default
from n2nskip_jax.study import run as study_run


def rss_mb() -> float:
  """This process's resident set size, in MB (Linux)."""
  with open('/proc/self/status') as f:
    line = next(line for line in f if line.startswith('VmRSS:'))
  return int(line.split()[1]) / 1024


def tiny_study(runs: int):
  import ml_collections
  c = ml_collections.ConfigDict()
  c.base = default.get_config()
  c.base.update(model='mlp', dataset='digits', mlp_hidden=(64, 32, 32), num_epochs=1,
                lr_decay_epochs=1, log_every_steps=1000)
  c.base.pruning.update(method='rp', density=0.1)
  c.axes = ml_collections.ConfigDict({'skip': {'kind': ('none', 'n2nskip')}})
  c.seeds = tuple(range((runs + 1) // 2))
  c.extra = ()
  c.analyze = True
  return c


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--runs', type=int, default=20, help='runs in the study (at least 4)')
  args = p.parse_args()
  if args.runs < 4:
    p.error(f'--runs={args.runs} must be at least 4')
  after = []
  train_or_record = study_run._train_or_record

  def measured(*a, **k):
    result = train_or_record(*a, **k)
    after.append(rss_mb())
    return result
  study_run._train_or_record = measured
  with tempfile.TemporaryDirectory() as workdir:
    study_run.keep_compiled_programs(workdir)  # as the study command does
    study_run.run_study(tiny_study(args.runs), workdir)
  tail = np.asarray(after[2:])
  slope = float(np.polyfit(np.arange(len(tail)), tail, 1)[0])
  emit({'benchmark': 'study_memory', 'runs': len(after), 'rss_mb_after_run': after,
        'rss_mb_run3': after[2], 'rss_mb_last': after[-1],
        'growth_mb_per_run': slope, 'malloc_env': os.environ.get('N2NSKIP_MALLOC', '')})


if __name__ == '__main__':
  main()
