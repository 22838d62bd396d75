#!/usr/bin/env bash
# The GPU path on Mesa's lavapipe (Vulkan on the CPU): builds with `--features gpu` and runs the
# equality tests (tests/gpu_lavapipe.rs: stage outputs, detections, PointRend, the CLI, one training
# step's losses and 35 gradients, SGD/AdamW short runs; tests/gpu_op_grads.rs: op gradients), then
# clippy on the GPU build. A separate command, not part of `.ci/run`'s default: the wgpu/cubecl
# crates are a second build of the burn stack, about as long as the first, which CI's 2 cores and
# 45 minutes cannot hold beside the rest (`.ci/run` calls this with MASKRCNN_CI_GPU=1).
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$SECONDS

if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || ! ldconfig -p | grep -q libvulkan.so.1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    mesa-vulkan-drivers libvulkan1 >/dev/null) \
    || { echo "error: could not install mesa-vulkan-drivers libvulkan1 (apt-get); the GPU tests need a Vulkan adapter"; exit 1; }
fi
# The loader warns on every start without a runtime directory.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

cargo test --release --features gpu --test gpu_lavapipe --test gpu_op_grads -- --test-threads 1 --nocapture 2>&1 | tee /tmp/gpu_lavapipe.log
# Without an adapter every GPU test skips and passes: here one must have run.
if grep -q "^skipped: no Vulkan adapter" /tmp/gpu_lavapipe.log; then
  echo "error: the GPU tests found no Vulkan adapter (lavapipe installed?); they were skipped, not run"
  exit 1
fi
cargo clippy --release --features gpu --all-targets -- -D warnings
echo "gpu (lavapipe): done in $((SECONDS - started)) s"
