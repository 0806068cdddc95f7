#!/usr/bin/env bash
# The CUDA path on a lent NVIDIA machine (the `device` tool), in one run of under 10 minutes:
# MLX's CUDA wheel and the engine's pure-Python dependencies travel in .dev/ (made here by
# benchmarks/cuda_prep.sh); the machine's own python3 (3.12, CUDA 13 libraries) runs them.
# Every stage is time-limited and writes its JSON to $OUT as it ends. Each process builds its
# kernels at their first use (seconds to tens of seconds): the limits leave room for that.
set -u
OUT=${OUT:-/tmp/cuda_check}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
SITE=/tmp/site
PURE=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p $SITE && tar xJf .dev/mlxcuda90.tar.xz -C $SITE || exit 1
ln -sfn "$PURE/nvidia" $SITE/nvidia  # libmlx.so's RPATH: $ORIGIN/../../nvidia/*/lib
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target $SITE \
    .dev/whl/*.whl || exit 1
export PYTHONPATH=$SITE:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c 'import mlx.core as mx; a = mx.ones((2048, 2048)); print("mlx", mx.__version__,
mx.default_device(), "cuda", mx.cuda.is_available(), (a @ a).sum().item())' || exit 1
stage() {  # stage NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    echo "=== $name (limit ${limit}s)"
    timeout "$limit" "$@"; local rc=$?
    echo "=== $name rc=$rc in $((SECONDS - t0))s"
}
M=/tmp/rand
stage make 30 python3 benchmarks/cuda_check.py make --shape .dev/shape.json \
    --tokenizer .dev/tokenizer --out $M
stage sanity 120 python3 benchmarks/cuda_check.py sanity --model $M --out "$OUT/sanity.json"
stage batch 110 python3 benchmarks/continuous_batching.py --model $M --rows 1 4 8 --steps 32 \
    --repeats 1 --out "$OUT/continuous_batching.json"
stage fork 80 python3 benchmarks/fork_batch.py --model $M --rounds 2 --out "$OUT/fork_batch.json"
stage family 50 python3 benchmarks/family_batch.py --model $M --models tiny ours --rounds 2 \
    --out "$OUT/family_batch.json"
stage speed 130 python3 benchmarks/speed.py --model $M --lengths 50,500,2000 --tokens 64 \
    --repeats 2 --out "$OUT/speed.json" --png "$OUT/speed.png"
stage tests 30 python3 -m pytest -q -x -p no:cacheprovider --timeout 25 tests/test_metrics.py \
    tests/test_sampler.py
