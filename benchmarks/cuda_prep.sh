#!/usr/bin/env bash
# Prepare .dev/ (ignored) for benchmarks/cuda_check.sh on a lent NVIDIA machine (the `device`
# tool: Python 3.12, CUDA 13, no network, 64 MiB a call): MLX's CUDA wheel cut to the H200's
# sm_90 kernels (90 -> ~21 MB), the engine's pure-Python dependencies missing there, and the
# embedded model's shape and tokenizer (its weights, 98 MB, cannot travel). ~3 min here.
#   bash benchmarks/cuda_prep.sh && (device) run: bash benchmarks/cuda_check.sh, carry [".dev"]
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.dev/' .git/info/exclude 2>/dev/null || echo /.dev/ >>.git/info/exclude
rm -rf .dev && mkdir -p .dev/whl
lock() { grep -A1 "^name = \"$1\"$" uv.lock | sed -n 's/^version = "\(.*\)"/\1/p'; }
get() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$@"; }
tmp=$(mktemp -d)
get "$tmp" "mlx==$(lock mlx)" "mlx-cuda-13==$(lock mlx-cuda-13)"
mkdir "$tmp/tree" && for w in "$tmp"/*.whl; do unzip -qo "$w" -d "$tmp/tree"; done
strip --strip-unneeded "$tmp/tree/mlx/lib/libmlx.so"
uv run python benchmarks/cuda_check.py slim --lib "$tmp/tree/mlx/lib/libmlx.so" --arch 90
tar cf - -C "$tmp/tree" . | xz -9 -T2 >.dev/mlxcuda90.tar.xz
rm -rf "$tmp"
# The machine has torch's stack (numpy, transformers, tokenizers, huggingface-hub, jinja2,
# anyio, click, h11, pytest); these it lacks.
for p in mlx-lm pydantic pydantic-core fastapi starlette uvicorn sse-starlette annotated-types \
    typing-inspection typing-extensions; do get .dev/whl "$p==$(lock "$p")"; done
uv run python - <<'PY'
import dataclasses, json
from mlx_entropix.io.load import load
lm = load(None)
shape = dataclasses.asdict(lm.model.args)
shape.pop("extra", None)
json.dump(shape, open(".dev/shape.json", "w"))
lm.tokenizer.hf.save_pretrained(".dev/tokenizer")
PY
du -sh .dev
