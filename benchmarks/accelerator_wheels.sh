#!/usr/bin/env bash
# Downloads the wheels the accelerator kit needs on a GPU image that has jax, flax, optax,
# orbax-checkpoint, absl-py, PyYAML, protobuf, scipy, scikit-learn and torch but no package
# index: the project's pure-Python needs that such an image lacks, at the versions tested here.
# They go to .whl/ (ignored by git; about 0.3 MB). On the GPU host, from the repository root:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site:$PWD python3 benchmarks/accelerator.py --out /tmp/kit
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform any -d .whl ml_collections==1.1.0 tensorboardX==2.6.5
ls -l .whl
