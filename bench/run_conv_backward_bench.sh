#!/usr/bin/env bash
# Runs the flex (generic default backward, then maskrcnn-kernels' GEMM backward) and PyTorch
# ResNet-50 body benchmarks at 1 and 2 threads, interleaved so that load changes hit all three
# alike.
# Usage: bench/run_conv_backward_bench.sh [SIZE=512] [RUNS=5] [THREADS="1 2"]
# Build first: cargo build --release -p maskrcnn-kernels --example conv_backward_bench
# PyTorch: PYTHON (default /work/venv-torch/bin/python) with torch and torchvision installed.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-512}
RUNS=${2:-5}
THREADS=${3:-1 2}
BIN=${CARGO_TARGET_DIR:-target}/release/examples/conv_backward_bench
PY=${PYTHON:-/work/venv-torch/bin/python}
for threads in $THREADS; do
  echo "loadavg before ${threads}-thread runs: $(cut -d' ' -f1-3 /proc/loadavg)"
  RAYON_NUM_THREADS=$threads MASKRCNN_CONV_BACKWARD=generic "$BIN" "$SIZE" "$RUNS"
  RAYON_NUM_THREADS=$threads "$BIN" "$SIZE" "$RUNS"
  OMP_NUM_THREADS=$threads "$PY" bench/conv_backward_bench.py "$SIZE" "$RUNS" "$threads"
done
echo "loadavg after: $(cut -d' ' -f1-3 /proc/loadavg)"
