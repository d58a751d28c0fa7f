"""n2nskip_jax: N2NSkip (BMVC 2020) in JAX/Flax.

Modules: ``layers`` (masked Dense/Conv), ``models`` (MLP, VGG19, ResNet50 with skips),
``pruning`` (RP, SNIP, structured; budgets), ``network`` (build/prune/inspect from Python),
``data``, ``steps`` and ``train`` (pmapped training with orbax resume), ``connectivity``
(channel graphs, heat diffusion, scatter) and ``analyze`` (the analysis CLI).
"""
__version__ = '0.1.0'
