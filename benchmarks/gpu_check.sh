#!/usr/bin/env bash
# The GPU checks in one prepared run, for a task that is lent a GPU machine for ~15 minutes.
#
#   bash benchmarks/gpu_check.sh prepare   # here, with network: wheels + MNIST into .gpu/ (git-ignored)
#   bash benchmarks/gpu_check.sh run       # there: the device tool's run, with carry [".gpu"]
#
# The GPU machine has Python 3.12, torch, CuPy, NumPy, SciPy, numba, pytest and hypothesis,
# but no network and not anymlp's other needs: array-api-compat, array-api-strict and the
# scikit-learn the project specifies travel as wheels, MNIST as a file (../shared does not
# travel). `run` writes everything it prints under $OUT (or .gpu/out): the test log, the
# launch counts and the MNIST timings, CuPy and torch on CUDA at batches 200/256, 1024, 4096.
# It stays under ~9 minutes so that a second try fits in the device budget.
set -uo pipefail
cd "$(dirname "$0")/.."
KIT=.gpu
PY=${PYTHON:-python3}

prepare() {
    grep -qx "/$KIT/" .git/info/exclude 2>/dev/null || echo "/$KIT/" >> .git/info/exclude
    mkdir -p "$KIT/whl" "$KIT/data"
    local platforms="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
    # --python-version: the device's Python (3.12); the pure-Python wheels fit any.
    $PY -m pip download -q --no-deps --only-binary=:all: --python-version "${DEVICE_PYTHON:-3.12}" \
        --implementation cp $platforms -d "$KIT/whl" \
        "array-api-compat==1.16.0" "array-api-strict==2.6.1" "scikit-learn==1.9.1" || return 1
    cp "${ANYMLP_DATA:-../shared/data}/mnist.npz" "$KIT/data/" || return 1
    du -sh "$KIT"
}

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit}s)"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    echo "   exit $? ; last lines:"
    tail -n 25 "$OUT/$name.log" | sed 's/^/   /'
}

run() {
    OUT=${OUT:-$KIT/out}
    mkdir -p "$OUT"
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$KIT"/whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 ANYMLP_DATA=$PWD/$KIT/data
    nvidia-smi -L 2>&1 | tee "$OUT/gpu.txt"
    $PY -c "import anymlp, sklearn, numpy, torch, cupy; print(anymlp.__version__, sklearn.__version__, \
numpy.__version__, torch.__version__, cupy.__version__, torch.cuda.is_available(), cupy.is_available())" \
        2>&1 | tee -a "$OUT/gpu.txt"
    # 1. The suite: on a GPU the CuPy backend joins every backend-parametrised test, and the
    #    CUDA-only tests (torch kernels on CUDA, cupy L2 penalty, device="cuda") run.
    step tests 300 $PY -m pytest -q --maxfail=20 -p no:cacheprovider -rs tests
    # 2. Launches per step (array_api_strict and torch counts; the same on any machine).
    step op_count 40 $PY benchmarks/op_count.py
    # 3. MNIST on CUDA: anymlp-cupy, anymlp-torch and the torch loop at each config's batch,
    #    1024 and 4096; two repeats of one epoch each (the CPU contenders are left out to
    #    stay in time), and predict_proba on 70000 rows.
    step mnist 180 $PY benchmarks/mnist.py --configs A,B,C --repeats 2 --epochs 1 --no-memory \
        --contenders anymlp-cupy,anymlp-torch,torch --out "$OUT/mnist-gpu.json"
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: bash benchmarks/gpu_check.sh prepare|run" >&2; exit 2 ;;
esac
