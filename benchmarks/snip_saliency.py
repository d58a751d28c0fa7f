"""Time of SNIP's saliency (one jax.grad over the masks) against one train step.

    python benchmarks/snip_saliency.py --model=resnet50 --batch=128

Prints one JSON object: ``saliency_ms`` (jitted, compile excluded), ``train_step_ms`` and
their ratio, on the same model and batch size.
"""
import jax
import numpy as np
from common import device_info, emit, timed
from train_throughput import INPUTS, make_config, make_step, parser

from n2nskip_jax import models, saliency
from n2nskip_jax.models import create_model


def main():
  args = parser(__doc__.splitlines()[0]).parse_args()
  config = make_config(args)
  step, variables = make_step(config, plain=False, batch=args.batch)
  shape = INPUTS[config.model]
  rng = np.random.default_rng(0)
  batch = {'image': rng.normal(size=(args.batch, *shape)).astype(np.float32),
           'label': rng.integers(0, 10, args.batch).astype(np.int32)}
  n2n = config.skip.kind == 'n2nskip'  # SNIP runs on the reference network for N2NSkip
  apply_fn = create_model(models.reference(config) if n2n else config, 10).apply
  variables = jax.device_put(models.without_skips(variables) if n2n else variables)
  scoring = timed(lambda: saliency.snip(apply_fn, variables, batch), args.warmup, args.iters)
  train = timed(step, args.warmup, args.iters)
  emit({'benchmark': 'snip_saliency', 'model': config.model, 'width_multiplier': args.width,
        'batch': args.batch, 'saliency_ms': 1e3 * scoring, 'train_step_ms': 1e3 * train,
        'saliency_over_step': scoring / train, **device_info()})


if __name__ == '__main__':
  main()
