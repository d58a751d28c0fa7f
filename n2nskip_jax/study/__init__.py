"""Studies: a grid of training runs with seeds, aggregated into tables with error bars.

``grid`` expands and validates a study config, ``run`` trains its runs (resumable, sharded),
``aggregate`` writes ``results.csv``, ``table.json``/``table.md`` and the figures. The CLI is
``python -m n2nskip_jax.study --config configs/studies/NAME.py``.
"""
