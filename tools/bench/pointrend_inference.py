#!/usr/bin/env python3
"""PointRend vs the plain 28x28 mask head at inference: time and peak memory on the same full-size images and
boxes. Writes bench/pointrend_inference.md and bench/pointrend_inference.json.

    python3 tools/bench/pointrend_inference.py [--runs 3]

Uses the R50-FPN benchmark model and images of tools/bench/bench_predict.py (fixtures/generated/bench/, made by
running that script once: 100 detections per image) and our `bench_predict` example, one process per
(head, image) at one thread (RAYON_NUM_THREADS=1). `--pointrend` swaps the mask branch for a new PointRend head on
the same backbone/RPN/box head, so both heads refine the same 100 boxes; PointRend's work (5 subdivision steps of
784 points per box, 224x224 masks) does not depend on its weights' values.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BENCH = os.path.join(REPO, "fixtures", "generated", "bench")
BIN = os.path.join(REPO, "target", "release", "examples", "bench_predict")
IMAGES = [("512x512", 512, 512), ("800x1216", 800, 1333)]


def run(image, min_size, max_size, pointrend, runs):
    cmd = [BIN, BENCH, os.path.join(BENCH, f"image_{image}.png"), str(runs), str(min_size), str(max_size)]
    if pointrend:
        cmd.append("--pointrend")
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if not os.path.exists(os.path.join(BENCH, "model.safetensors")):
        raise SystemExit("fixtures/generated/bench/ is missing: run tools/bench/bench_predict.py once to generate it")
    subprocess.run(["cargo", "build", "--release", "--example", "bench_predict"], cwd=REPO, check=True)
    rows = []
    for image, min_size, max_size in IMAGES:
        for pointrend in (False, True):
            rep = run(image, min_size, max_size, pointrend, args.runs)
            cpu = statistics.median(r["cpu_s"] for r in rep["runs"])
            wall = statistics.median(r["wall_s"] for r in rep["runs"])
            mask = statistics.median(r["stages"].get("mask head", 0.0) + r["stages"].get("paste masks", 0.0) for r in rep["runs"])
            rows.append({
                "image": image, "head": "PointRend" if pointrend else "plain", "cpu_s": cpu, "wall_s": wall,
                "mask_stages_wall_s": mask, "detections": rep["runs"][0]["detections"],
                "peak_rss_inference_mb": rep["peak_rss_inference_kb"] / 1024, "rss_after_load_mb": rep["rss_after_load_kb"] / 1024,
                "stages": rep["runs"][len(rep["runs"]) // 2]["stages"],
            })
            print(json.dumps(rows[-1]), flush=True)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "threads": 1, "runs": args.runs, "load_at_end": load}
    with open(os.path.join(REPO, "bench", "pointrend_inference.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    lines = [
        "# PointRend vs plain mask head: inference time and memory",
        "",
        f"{meta['date']}, {meta['cpus']}-core VM, one thread (`RAYON_NUM_THREADS=1`), median of {args.runs} runs after a warm-up,",
        f"1-minute load at the end {' '.join(load)}. Same R50-FPN weights, image and 100 boxes for both heads",
        "(`tools/bench/pointrend_inference.py`; model and images from `tools/bench/bench_predict.py`).",
        "",
        "| image | head | CPU s | wall s | mask head + paste, wall s | detections | peak RSS while predicting (MB) | RSS after load (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['image']} | {r['head']} | {r['cpu_s']:.2f} | {r['wall_s']:.2f} | {r['mask_stages_wall_s']:.2f} | {r['detections']} | "
                     f"{r['peak_rss_inference_mb']:.0f} | {r['rss_after_load_mb']:.0f} |")
    with open(os.path.join(REPO, "bench", "pointrend_inference.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
