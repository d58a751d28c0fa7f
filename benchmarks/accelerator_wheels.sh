#!/usr/bin/env bash
# Downloads the two pure-Python wheels the accelerator kit needs on an image without a package
# index that has jax, flax, optax, orbax-checkpoint, absl-py, PyYAML, protobuf, scipy,
# scikit-learn and matplotlib: ml_collections and tensorboardX, at the versions tested here,
# into .whl/ (ignored by git; about 0.3 MB). The install on the image is one pip command:
# docs/PERFORMANCE.md, "On an image without a package index".
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform any -d .whl ml_collections==1.1.0 tensorboardX==2.6.5
ls -l .whl
