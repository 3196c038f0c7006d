#!/usr/bin/env bash
# The one prepared script for a GPU machine (no network there). From the repository root:
#   on the CPU machine (fills .wheels/, about 53 MB):
#     ../shared/device-wheels cucim-cu13 hypothesis sortedcontainers attrs pwlf PyWavelets imagecodecs \
#       tqdm dask distributed cloudpickle fsspec partd locket toolz tblib zict msgpack tornado psutil \
#       pytest-xdist execnet pytest-benchmark py-cpuinfo
#   on the GPU machine:  GPUIMG_COMMIT=<sha> TEST_TIMEOUT=150 BENCH_TIMEOUT=120 bash benchmarks/gpu_check.sh [quick]
# It installs the carried wheels (gpuimg's own too) without network, runs the whole test suite with CuPy active,
# runs the GPU benchmarks against their peers, and writes benchmarks/results/gpu-<date>.json
# (device, commit, kernels_sha256, test counts, ratios). Copies of the raw outputs go to $OUT.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpuimg-out}
mkdir -p "$OUT" benchmarks/results
DATE=$(date -u +%F)
COMMIT=${GPUIMG_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
QUICK=${1:-}
# DRY_RUN=1 rehearses the script on a CPU machine: no CuPy check, a small test and bench subset
DRY_RUN=${DRY_RUN:-0}
TESTS="tests"; BENCH_K="cupy"
[ "$DRY_RUN" = "1" ] && { TESTS="tests/test_backend.py tests/test_kernels.py"; BENCH_K="numpy and (boundary or 3x3)"; }

if [ -d .wheels ]; then
    # dependencies the GPU image lacks, and gpuimg's own wheel (its packaging: kernels, console
    # script); --no-deps keeps the image's numpy/scipy/cupy. A dry run leaves this machine's
    # gpuimg alone.
    WHEELS=$(ls .wheels/*.whl)
    [ "$DRY_RUN" = "1" ] && WHEELS=$(echo "$WHEELS" | grep -v '/gpuimg-')
    $PY -m pip install -q --no-index --no-deps --find-links .wheels $WHEELS 2>&1 | tail -3
    [ "$DRY_RUN" = "1" ] || $PY -c "import importlib.metadata as m; print('installed gpuimg', m.version('gpuimg'))"
fi
# the checkout comes first on the path, so the tests run the commit under test even where the
# carried wheel was built from an older tree
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
$PY -c "import gpuimg, json; i = gpuimg.backend_info(); print(json.dumps(i)); assert i['cupy_usable'] or $DRY_RUN, i['reason']" \
    || { echo "CuPy is not usable here"; exit 3; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

XDIST=""
$PY -c "import xdist" 2>/dev/null && XDIST="-n ${TEST_WORKERS:-12}"
echo "== tests (CuPy active) =="
# the *_kernel.py tests run the CUDA sources on the CPU through g++; the GPU runs the real thing
timeout ${TEST_TIMEOUT:-300} $PY -m pytest -q -x --maxfail=20 $XDIST -p no:cacheprovider --benchmark-disable $TESTS \
    --ignore-glob="*_kernel.py" \
    --junitxml="$OUT/junit.xml" > "$OUT/tests.log" 2>&1
grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/tests.log" | tail -40
echo "== benchmarks (cupy backend vs GPU peers) =="
BENCH_ARGS="--benchmark-min-rounds=3 --benchmark-max-time=0.2 --benchmark-warmup=off"
[ "$QUICK" = "quick" ] && BENCH_ARGS="$BENCH_ARGS --benchmark-disable-gc"
timeout ${BENCH_TIMEOUT:-200} $PY -m pytest -q -p no:cacheprovider benchmarks/bench_*.py -k "$BENCH_K" $BENCH_ARGS \
    --benchmark-json="$OUT/bench.json" > "$OUT/bench.log" 2>&1
grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/bench.log" | tail -20
REPORT="benchmarks/results/gpu-$DATE.json"
# a second run on the same day keeps the first report: the new one is named by its commit
[ -e "$REPORT" ] && REPORT="benchmarks/results/gpu-$DATE-${COMMIT:0:7}.json"
[ "$DRY_RUN" = "1" ] && REPORT="$OUT/gpu-dry-run.json"
$PY benchmarks/gpu_report.py --junit "$OUT/junit.xml" --bench "$OUT/bench.json" --commit "$COMMIT" --out "$REPORT"
[ "$REPORT" = "$OUT/gpu-dry-run.json" ] || cp "$REPORT" "$OUT/"
# where the time goes (PROFILE=0 skips it): host vs device time of the hot steps, and per-kernel
# duration, DRAM and SM throughput under ncu when the image has it
if [ "${PROFILE:-1}" = "1" ] && [ "$DRY_RUN" != "1" ]; then
    timeout ${PROFILE_TIMEOUT:-75} $PY benchmarks/gpu_profile.py rl_steps kernels_only pipeline > "$OUT/exp.txt" 2>&1
    # the point sampler with each warp shape forced (does the launcher pick the fastest?)
    timeout ${PROFILE_TIMEOUT:-45} $PY benchmarks/gpu_profile.py warp_shapes > "$OUT/warp-shapes.txt" 2>&1
    # the batch engine again with the driver spinning while the host waits (issue 9's slowdown)
    timeout ${PROFILE_TIMEOUT:-45} $PY benchmarks/gpu_profile.py pipeline --spin > "$OUT/exp-spin.txt" 2>&1
    NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null)
    [ -n "$NCU" ] && timeout ${PROFILE_TIMEOUT:-25} "$NCU" --metrics \
        gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__throughput.avg.pct_of_peak_sustained_elapsed \
        -k regex:"window_moments|correlate_tiled|correlate1d|warp_point|resample|error_sum|rl_|spectrum|margins" \
        $PY benchmarks/gpu_profile.py ncu-case > "$OUT/ncu.txt" 2>&1
    # the kernels behind the bandwidth records (SSIM, cubic warp, undistort), one launch each,
    # with ncu's detailed sections (throughput breakdown, memory, occupancy, warp stalls)
    [ -n "$NCU" ] && timeout ${PROFILE_TIMEOUT:-45} "$NCU" --set detailed -c 3 \
        -k regex:"window_moments_fixed|warp_point" \
        $PY benchmarks/gpu_profile.py ncu-case > "$OUT/ncu-detailed.txt" 2>&1
fi
exit 0
