#!/usr/bin/env bash
# CI leg: a rehearsal of the GPU machines' image, so that the first lent GPU runs the
# accelerator kit once, right. Python 3.12, jax 0.11.2 and the newest flax/optax/orbax that go
# with it, and none of tensorflow, tensorflow-datasets, ml-collections, tensorboardX, mnist1d
# or torch. Checks that `pip install -e .` would change neither jax, jaxlib nor flax there,
# follows docs/PERFORMANCE.md's no-index route word for word (its block marked
# `offline-route`), and runs the kit with --tiny: every part must pass.
# Usage: .ci/gpu_image.sh SCRATCH_DIR (from the repository root).
set -euo pipefail
scratch=$1
PYENV_VERSION=3.12.1 python -m venv "$scratch/image"
. "$scratch/image/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q 'jax==0.11.2' 'jaxlib==0.11.2' flax optax orbax-checkpoint numpy scipy \
  scikit-learn matplotlib tqdm absl-py pyyaml protobuf setuptools wheel
python - <<'PY'
import importlib.util, sys
present = [m for m in ('tensorflow', 'tensorflow_datasets', 'ml_collections', 'tensorboardX',
                       'mnist1d', 'torch') if importlib.util.find_spec(m)]
assert not present, f'the image has none of {present}'
from importlib import metadata
print('image:', sys.version.split()[0], *(f'{p} {metadata.version(p)}' for p in
      ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'numpy')))
PY

# What a user with this environment and an index would get from `pip install -e .`.
python -m pip install -q --dry-run --report "$scratch/report.json" -e .
python - "$scratch/report.json" <<'PY'
import json, sys
changed = {x['metadata']['name'].lower(): x['metadata']['version']
           for x in json.load(open(sys.argv[1]))['install']}
touched = {k: v for k, v in changed.items() if k in ('jax', 'jaxlib', 'flax')}
assert not touched, f'pip install -e . would change {touched}'
print('pip install -e . leaves jax, jaxlib and flax as they are; it adds', len(changed) - 1,
      'packages')
PY

# The route, as documented.
sed -n '/<!-- offline-route/,/^```$/p' docs/PERFORMANCE.md | sed '1,2d;$d' > "$scratch/route.sh"
[ -s "$scratch/route.sh" ] || { echo 'no offline-route block in docs/PERFORMANCE.md'; exit 1; }
echo '--- docs/PERFORMANCE.md, offline-route:'; cat "$scratch/route.sh"
bash -euxo pipefail "$scratch/route.sh"

python benchmarks/accelerator.py --out "$scratch/kit" --tiny --budget_s 1e9
python - "$scratch/kit/records.jsonl" <<'PY'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
bad = [(r['part'], r['status']) for r in records
       if r['status'] not in ('ok', 'unavailable') or r.get('passed') is False]
print('kit parts:', ', '.join(dict.fromkeys(f"{r['part']}={r['status']}" for r in records)))
assert not bad, f'kit parts not ok: {bad}'
PY
deactivate
