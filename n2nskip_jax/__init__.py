"""n2nskip_jax: N2NSkip (BMVC 2020) in JAX/Flax.

Modules, in the order data flows (docs/DESIGN.md). The core, the paper as written and the same
on every backend: ``config`` and ``errors``; ``data``; ``models`` (MLP, VGG19, ResNet50 with
skips, their structure and initializers) and ``layers`` (masked Dense/Conv: ``kernel * mask``);
``network`` (build and initialize); ``pruning`` (the masks: RP, SNIP, structured, budgets, a
registry of methods) and ``sparsity`` (counting); ``steps`` and ``train`` (pmapped training,
resumable) with ``rundir`` and ``checkpoints``; ``connectivity`` (channel graphs, heat
diffusion, scatter, the analysis library); ``study`` (grids of runs with statistics);
``analyze`` and ``cli`` (command lines).

The one seam for speed: ``execution`` (how the masked layers run on a backend: by their
nonzeros, CPU formulations, native CPU kernels, process settings before JAX starts), used by
the training loop, the command-line tools and config validation only.
"""
__version__ = '0.1.0'
