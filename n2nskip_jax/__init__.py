"""n2nskip_jax: N2NSkip (BMVC 2020) in JAX/Flax.

Modules, in the order data flows (docs/DESIGN.md): ``config`` and ``errors``; ``data``;
``models`` (MLP, VGG19, ResNet50 with skips, their structure and initializers), ``layers``
(masked Dense/Conv) and ``sparse`` (masked kernels run by their nonzeros); ``network`` (build
and initialize, and which skip layers run by their nonzeros); ``pruning`` (the masks: RP, SNIP,
structured, budgets, a registry of methods) and ``sparsity`` (counting); ``steps`` and
``train`` (pmapped training, resumable) with ``rundir`` and ``checkpoints``;
``connectivity`` (channel graphs, heat diffusion, scatter, the analysis library);
``study`` (grids of runs with statistics); ``analyze`` and ``cli`` (command lines), with
``startup`` (process settings before JAX starts: ``host_memory``, ``xla_flags``).
"""
__version__ = '0.1.0'
