#!/usr/bin/env bash
# Reproduces bench/geo_memory.md: makes the rasters (if missing), runs `maskrcnn detect` on each
# under /usr/bin/time -v, then the --shard 0/2 + 1/2 + merge check on the 5k rasters.
# Rasters and outputs go to fixtures/generated/geo_memory (git-ignored; ~1 GB with the 20k pair).
#   tools/bench/geo_memory/run_all.sh [sizes...]      default sizes: 2000 5000 10000 20000
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
PY=${PYTHON:-/work/venv/bin/python}
BIN=${MASKRCNN:-$REPO/target/release/maskrcnn}
MODEL=${MODEL:-$REPO/fixtures/parity/r18_tiny}
DIR=$REPO/fixtures/generated/geo_memory
OUT=$DIR/out
mkdir -p "$OUT"
if [ $# -gt 0 ]; then SIZES=("$@"); else SIZES=(2000 5000 10000 20000); fi

for content in synthetic photo; do
  for s in "${SIZES[@]}"; do
    r=$DIR/${content}_$((s / 1000))k.tif
    [ -f "$r" ] || "$PY" "$REPO/tools/bench/geo_memory/make_raster.py" --size "$s" --content "$content" --out "$r"
  done
done

{
  echo "# $(date -u +%FT%TZ) $(uname -n) nproc=$(nproc) load: $(cut -d' ' -f1-3 /proc/loadavg)"
  for content in synthetic photo; do
    args=()
    for s in "${SIZES[@]}"; do args+=(--raster "$DIR/${content}_$((s / 1000))k.tif"); done
    "$PY" "$REPO/tools/bench/geo_memory/run_bench.py" --binary "$BIN" --model "$MODEL" --outdir "$OUT" "${args[@]}"
  done
} | tee -a "$OUT/results.jsonl"

# Sharded run + merge must give the same features as the unsharded run.
for content in synthetic photo; do
  r=$DIR/${content}_5k.tif
  [ -f "$r" ] || continue
  for k in 0 1; do
    /usr/bin/time -f "shard $k/2 $content 5k: %e s, peak RSS %M KB" "$BIN" detect --model "$MODEL" --raster "$r" \
      --output "$OUT/${content}_5k.shard$k.jsonl" --tile-size 512 --overlap 64 --threshold 0.5 --shard "$k/2" --overwrite
  done
  /usr/bin/time -f "merge $content 5k: %e s, peak RSS %M KB" "$BIN" merge \
    --inputs "$OUT/${content}_5k.shard0.jsonl" "$OUT/${content}_5k.shard1.jsonl" \
    --output "$OUT/${content}_5k.merged.gpkg" --overwrite
  "$PY" "$REPO/tools/bench/geo_memory/compare_outputs.py" "$OUT/${content}_5k.gpkg" "$OUT/${content}_5k.merged.gpkg"
done 2>&1 | grep -v '^\s*$' | tee -a "$OUT/shards.log"
