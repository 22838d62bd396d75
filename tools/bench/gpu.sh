#!/usr/bin/env bash
# GPU benchmark: ours (`--device gpu`, burn wgpu on Vulkan) beside torchvision (CUDA, eager fp32)
# on the same randomly initialised maskrcnn_resnet50_fpn weights and the same generated data:
# predict over 20 images, 50 training steps (batch 4 x 1024 px), and detect over an 8k x 8k
# GeoTIFF. Writes $OUT/gpu.md (and the raw JSON lines in $OUT/gpu.jsonl).
#
# Made for the device tool's H200 machine, which has no network, no Rust toolchain and maybe no
# Vulkan loader. Prepare here, in the repository root:
#   cargo build --release --features gpu --bin maskrcnn
#   mkdir -p .gpu-bench && cp "$CARGO_TARGET_DIR/release/maskrcnn" .gpu-bench/ && strip .gpu-bench/maskrcnn
#   echo /.gpu-bench/ >> .git/info/exclude
#   Vulkan loader debs into .gl/ as /work/.library/device/README.md says (libvulkan1 ...)
#   optional: torch/torchvision wheels in .whl/ (the machine has CUDA torch already; wheels are
#   used instead only when present)
# Then run there (carry .gpu-bench and .gl, and .whl if made):
#   bash tools/bench/gpu.sh
#
# BENCH_TINY=1 shrinks everything (2 images of 128 px, 2 steps at 128 px, a 1024 px raster, an
# R50 still) to check the script's logic locally, e.g. on lavapipe:
#   BENCH_TINY=1 BIN=$CARGO_TARGET_DIR/release/maskrcnn OUT=/tmp/gpu-bench bash tools/bench/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/bench-out}
mkdir -p "$OUT"
WORK=${BENCH_WORK:-$(mktemp -d)}
LOG=$OUT/gpu.log
JSONL=$OUT/gpu.jsonl
: >"$LOG"
: >"$JSONL"
say() { echo "$*" | tee -a "$LOG" >&2; }

if [ -n "${BENCH_TINY:-}" ]; then
  export BENCH_IMAGES=2 BENCH_IMAGE_SIZE=128 BENCH_STEPS=2 BENCH_BATCH=1 BENCH_TRAIN_SIZE=128 BENCH_RASTER=1024
else
  export BENCH_IMAGES=${BENCH_IMAGES:-20} BENCH_IMAGE_SIZE=${BENCH_IMAGE_SIZE:-800} BENCH_STEPS=${BENCH_STEPS:-50}
  export BENCH_BATCH=${BENCH_BATCH:-4} BENCH_TRAIN_SIZE=${BENCH_TRAIN_SIZE:-1024} BENCH_RASTER=${BENCH_RASTER:-8192}
fi
export BENCH_TILE=${BENCH_TILE:-512} BENCH_OVERLAP=${BENCH_OVERLAP:-64} BENCH_PIXEL_M=${BENCH_PIXEL_M:-0.3}
# Each phase's wall-clock cap, so a slow phase cannot eat the whole lease: gpu.md still gets written.
PHASE_S=${BENCH_PHASE_S:-150}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}

# --- the Vulkan loader and driver -------------------------------------------------------------
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1'; then
  if ls .gl/*.deb >/dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    say "vulkan: loader unpacked from .gl/"
  else
    say "vulkan: no libvulkan.so.1 and no .gl/*.deb carried; ours cannot use the GPU"
  fi
fi
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] \
  && ! ls /usr/share/vulkan/icd.d/nvidia*.json /etc/vulkan/icd.d/nvidia*.json >/dev/null 2>&1; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  say "vulkan: driver file $VK_DRIVER_FILES"
fi

# --- Python: the machine's own torch, or carried wheels ---------------------------------------
PY=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site && say "python: wheels from .whl/ installed"
else
  say "python: no .whl/ folder carried; using the installed torch/torchvision"
fi
TV_INFO=$($PY -c 'import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0) or "cpu")' 2>&1) \
  || TV_INFO="unavailable: $TV_INFO"
say "torchvision: $TV_INFO"

# --- our binary ---------------------------------------------------------------------------------
BIN=${BIN:-}
for candidate in "$BIN" .gpu-bench/maskrcnn "${CARGO_TARGET_DIR:-target}/release/maskrcnn" target/release/maskrcnn; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then BIN=$candidate; break; fi
done
[ -x "$BIN" ] || { say "no maskrcnn binary: build it and copy it to .gpu-bench/maskrcnn"; exit 1; }
say "ours: $BIN"

GPU_NAME=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi")
say "gpu: $GPU_NAME"

# Peak GPU memory of a command, from nvidia-smi every 200 ms (the process's own allocator is
# invisible from here). Prints MiB, or "n/a".
MEMLOG=$WORK/mem.log
mem_start() {
  : >"$MEMLOG"
  if command -v nvidia-smi >/dev/null; then
    (while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits >>"$MEMLOG" 2>/dev/null; sleep 0.2; done) &
    MEMPID=$!
  else
    MEMPID=
  fi
}
mem_stop() {
  [ -n "${MEMPID:-}" ] && kill "$MEMPID" 2>/dev/null && wait "$MEMPID" 2>/dev/null
  sort -n "$MEMLOG" 2>/dev/null | tail -1 | grep . || echo n/a
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

# --- data -----------------------------------------------------------------------------------------
say "data: generating in $WORK"
if ! timeout "$PHASE_S" $PY tools/bench/gpu_bench.py data "$WORK" >>"$JSONL" 2>>"$LOG"; then
  say "data generation failed; see gpu.log"
  exit 1
fi

run_ours() { # name, then the command's arguments
  local name=$1; shift
  mem_start
  local t0; t0=$(now)
  timeout "$PHASE_S" "$BIN" "$@" >>"$LOG" 2>&1
  local rc=$?
  local s; s=$(elapsed "$t0")
  local mem; mem=$(mem_stop)
  echo "{\"side\": \"ours\", \"phase\": \"$name\", \"rc\": $rc, \"seconds\": $s, \"peak_mib\": \"$mem\"}" >>"$JSONL"
  say "ours $name: rc $rc, $s s, peak $mem MiB"
  return $rc
}
run_tv() { # phase
  local name=$1
  mem_start
  local line; line=$(timeout "$PHASE_S" $PY tools/bench/gpu_bench.py "tv-$name" "$WORK" 2>>"$LOG" | tail -1)
  local mem; mem=$(mem_stop)
  if [ -n "$line" ]; then
    echo "$line" | $PY -c "import json,sys; d=json.loads(sys.stdin.read()); d['phase']='$name'; d['peak_mib']='$mem'; print(json.dumps(d))" >>"$JSONL"
    say "torchvision $name: $line (peak $mem MiB)"
  else
    echo "{\"side\": \"torchvision\", \"phase\": \"$name\", \"failed\": true}" >>"$JSONL"
    say "torchvision $name: failed or timed out (see gpu.log)"
  fi
}

# Ours: one image first (startup, model load and shader compilation), then all of them; the
# difference over the extra images is the steady rate.
mkdir -p "$WORK/one"
cp "$(ls "$WORK"/predict/*.png | head -1)" "$WORK/one/"
run_ours predict-1 predict --model "$WORK/model.pth" --input "$WORK/one" --output "$WORK/ours-1.json" --device gpu --overwrite
run_ours predict predict --model "$WORK/model.pth" --input "$WORK/predict" --output "$WORK/ours.json" --device gpu --overwrite
run_tv predict

run_ours train train --data "$WORK/instances.json" --images "$WORK/images" --output "$WORK/run" --backbone 50 \
  --steps "$BENCH_STEPS" --batch-size "$BENCH_BATCH" --min-size "$BENCH_TRAIN_SIZE" --max-size "$BENCH_TRAIN_SIZE" \
  --optimizer sgd --lr 0.005 --val-split 0 --log-every 1 --quiet --device gpu
run_tv train

run_ours detect detect --model "$WORK/model.pth" --raster "$WORK/raster.tif" --output "$WORK/ours.gpkg" \
  --tile-size "$BENCH_TILE" --overlap "$BENCH_OVERLAP" --device gpu --overwrite
run_tv detect

# --- report ---------------------------------------------------------------------------------------
cp "$WORK/run/metrics.jsonl" "$OUT/ours-train-metrics.jsonl" 2>/dev/null || true
$PY - "$JSONL" "$WORK" "$OUT/gpu.md" "$GPU_NAME" "$TV_INFO" <<'EOF'
import json, sys, os
jsonl, work, md, gpu, tv = sys.argv[1:6]
rows = [json.loads(l) for l in open(jsonl) if l.strip().startswith("{")]
ours = {r["phase"]: r for r in rows if r.get("side") == "ours"}
tvr = {r["phase"]: r for r in rows if r.get("side") == "torchvision"}
n_img = int(os.environ["BENCH_IMAGES"]); steps = int(os.environ["BENCH_STEPS"]); batch = int(os.environ["BENCH_BATCH"])
size = int(os.environ["BENCH_TRAIN_SIZE"]); side = int(os.environ["BENCH_RASTER"]); px = float(os.environ["BENCH_PIXEL_M"])
km2 = side * side * px * px / 1e6
def ok(r): return r is not None and r.get("rc", 0) == 0 and not r.get("failed")
lines = [f"# GPU benchmark", "", f"- GPU: {gpu}", f"- torchvision: {tv}",
         f"- model: maskrcnn_resnet50_fpn, random init (same weights both sides), fp32, 2 classes",
         f"- ours: `--device gpu` (burn 0.22.1 wgpu on Vulkan, autotune off)", ""]
lines += ["| | ours | torchvision (CUDA eager) |", "| --- | --- | --- |"]
# predict: steady rate from the 1-image and n-image runs (startup and shader compilation cancel).
o1, on = ours.get("predict-1"), ours.get("predict")
if ok(o1) and ok(on) and n_img > 1 and on["seconds"] > o1["seconds"]:
    ours_ips = f"{(n_img - 1) / (on['seconds'] - o1['seconds']):.2f} img/s ({on['seconds']:.1f} s for {n_img} incl. {o1['seconds']:.1f} s start)"
else:
    ours_ips = "failed" if on else "not run"
t = tvr.get("predict")
lines.append(f"| predict, {n_img} images of {os.environ['BENCH_IMAGE_SIZE']} px | {ours_ips} | "
             + (f"{t['images_per_s']:.2f} img/s" if ok(t) else "failed") + " |")
# train: seconds_per_step from metrics.jsonl, after the first steps (compilation).
ot = ours.get("train"); ours_sps = "failed"
try:
    m = [json.loads(l) for l in open(f"{work}/run/metrics.jsonl")]
    sp = [r["seconds_per_step"] for r in m if r.get("kind") == "step"]
    steady = sp[3:] or sp
    ours_sps = f"{1 / (sum(steady) / len(steady)):.3f} steps/s (first step {sp[0]:.1f} s)"
except Exception as e:
    pass
t = tvr.get("train")
lines.append(f"| train, {steps} steps, batch {batch} x {size} px | {ours_sps}, peak {ot.get('peak_mib') if ot else 'n/a'} MiB | "
             + (f"{t['steps_per_s']:.3f} steps/s, peak {t['peak_gib']:.1f} GiB allocated / {t['peak_mib']} MiB used" if ok(t) else "failed") + " |")
od = ours.get("detect"); t = tvr.get("detect")
lines.append(f"| detect, {side} x {side} px ({km2:.2f} km² at {px} m) | "
             + (f"{km2 / od['seconds'] * 3600:.1f} km²/h ({od['seconds']:.0f} s, polygons written)" if ok(od) else "failed or timed out") + " | "
             + (f"{t['km2_per_h']:.1f} km²/h ({t['seconds']:.0f} s, model only)" if ok(t) else "failed") + " |")
lines += ["", "Raw lines: gpu.jsonl; log: gpu.log. Each phase is capped at BENCH_PHASE_S seconds."]
open(md, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
