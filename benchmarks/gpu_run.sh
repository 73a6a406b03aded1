#!/usr/bin/env bash
# One call on a GPU machine: build hopkit with CUDA in place, run the CUDA
# tests, then the GPU benchmark. Logs and gpu_bench.json go to $OUT (or
# ./gpu_out). Each stage has its own time limit, so a hang in one still
# leaves the others' output.
#
#   bash benchmarks/gpu_run.sh [--quick]      (--quick: Gowalla size only)
#
# Environment: HOPKIT_CUDA_ARCHITECTURES (default 80;90; 90 alone builds
# faster on an H100/H200), PROFILE=1 adds an Nsight Compute profile of the
# spmm and top-k kernels (benchmarks/gpu_profile.py) to $OUT/ncu.txt,
# BENCH_TIMEOUT and TESTS_TIMEOUT (seconds, defaults 300 and 300). The test log lists
# every skip (-rs): on a GPU machine no CUDA test should be skipped.
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/python
t0=$(date +%s)
stamp() { echo "== $1 at +$(( $(date +%s) - t0 )) s"; }

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,utilization.gpu \
  --format=csv | tee "$OUT/nvidia-smi.txt"
$PY -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda)"
stamp build
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DHOPKIT_CUDA=ON \
  -DPython_EXECUTABLE="$(command -v $PY)" -Dpybind11_DIR="$($PY -m pybind11 --cmakedir)" \
  > "$OUT/build.log" 2>&1 && cmake --build build-gpu -j "$(nproc)" >> "$OUT/build.log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then tail -60 "$OUT/build.log"; exit $rc; fi
grep -E "hopkit:|warning" "$OUT/build.log" | head -20

stamp tests
# the CUDA kernels against the CPU backends, opcheck of every operator on CUDA, fullgraph
# compile on CUDA, the bindings' names, and the FakeCuda plumbing
timeout ${TESTS_TIMEOUT:-300} $PY -m pytest tests/test_cuda.py tests/test_cuda_plumbing.py \
  tests/test_torch_ops.py tests/test_compile.py tests/test_bindings.py -q -rfE -rs \
  -p no:cacheprovider --tb=short > "$OUT/tests.log" 2>&1
echo "pytest exit $?"; grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/tests.log" | head -40

stamp bench
timeout ${BENCH_TIMEOUT:-300} $PY benchmarks/gpu_bench.py --sweep --out "$OUT/gpu_bench.json" "$@" \
  > "$OUT/bench.log" 2> "$OUT/bench.err"
echo "gpu_bench exit $?"; tail -30 "$OUT/bench.err" | grep -v Warning
if [ -n "${PROFILE:-}" ] && command -v ncu > /dev/null; then
  stamp profile
  timeout 150 ncu --clock-control none --profile-from-start off \
    -k 'regex:spmm|csr|SpMM|Spmm|topk_select' --section SpeedOfLight \
    --section MemoryWorkloadAnalysis --section Occupancy --section WarpStateStats \
    --section LaunchStats $PY benchmarks/gpu_profile.py > "$OUT/ncu.txt" 2>&1
  echo "ncu exit $?"
fi
stamp done
cat "$OUT/bench.log"
