#!/usr/bin/env python3
"""Whole-scene `maskrcnn detect` throughput: tiles/s and km²/h at 1 and 2 (or more) threads and
several batch sizes, alternating settings and repeating, medians written to bench/detect.md.

For each raster, each repetition runs every (threads, batch size) setting once, in turn, so a
change in the machine's load hits all settings alike; the figures are medians over repetitions.
Each run is timed by /usr/bin/time (wall, user+system CPU, peak RSS); every run's output must be
byte-identical to the first setting's (the pipeline never changes what is found).

Rasters: `--raster PATH` (any number), or by default the 20k x 20k photo raster made by
tools/bench/geo_memory/make_raster.py (generated under fixtures/generated/, git-ignored) and the
SpaceNet Atlanta sample in ../shared/data (read in place, never copied; skipped when absent).

  tools/bench/detect_throughput.py                                   # the defaults above
  tools/bench/detect_throughput.py --size 5000 --reps 3 --threads 1 2 --batch-sizes 1 4
  tools/bench/detect_throughput.py --raster scene.tif --model fixtures/parity/r18_tiny
  tools/bench/detect_throughput.py --reference /tmp/maskrcnn-before --pin   # two builds side by side

With `--reference BINARY` (e.g. a build of the commit before a change) every setting runs with
both builds, one right after the other, so they meet the same load; each build's speed-up is
against its own one-thread runs, and every output must equal the first run's byte for byte.
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SPACENET = REPO.parent / "shared/data/spacenet-atlanta-sample/sample_geotiff.tif"


def raster_facts(path):
    """(width, height, cell size x and y in CRS units, band count) from gdalinfo."""
    import json

    info = json.loads(subprocess.run(["gdalinfo", "-json", str(path)], check=True, capture_output=True, text=True).stdout)
    w, h = info["size"]
    gt = info.get("geoTransform", [0, 1, 0, 0, 0, -1])
    return w, h, abs(gt[1]), abs(gt[5]), len(info.get("bands", []))


def run_once(binary, model, raster, out, threads, batch, extra, pin):
    cmd = [str(binary), "--threads", str(threads), "detect", "--model", str(model), "--raster", str(raster),
           "--output", str(out), "--batch-size", str(batch), "--overwrite"] + extra
    if pin:
        # N threads get N cores in all: the reader and the merger share them with the model workers.
        cmd = ["taskset", "-c", f"0-{threads - 1}"] + cmd
    t0 = time.time()
    p = subprocess.run(["/usr/bin/time", "-f", "TIME %e %U %S %M"] + cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if p.returncode != 0:
        sys.exit(f"detect failed ({' '.join(cmd)}):\n{p.stderr[-3000:]}")
    line = [l for l in p.stderr.splitlines() if l.startswith("TIME ")][-1].split()
    summary = [l for l in p.stderr.splitlines() if " tiles (" in l][-1]
    tiles = int(summary.split()[0])
    skipped = int(summary.split("(")[1].split()[0])
    objects = int(summary.split("), ")[1].split()[0])
    return {
        "wall": float(line[1]), "user": float(line[2]), "sys": float(line[3]), "rss_mb": int(line[4]) / 1024,
        "tiles": tiles + skipped, "objects": objects, "output": out.read_bytes(), "timer_wall": wall,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", type=Path, default=Path(os.environ.get("MASKRCNN", REPO / "target/release/maskrcnn")))
    ap.add_argument("--reference", type=Path, help="a second maskrcnn binary (e.g. the commit before a change), "
                    "run right after --binary in every setting")
    ap.add_argument("--labels", nargs=2, default=["this", "reference"], metavar=("BINARY", "REFERENCE"),
                    help="names of the two builds in the tables (default: this, reference)")
    ap.add_argument("--model", type=Path, default=REPO / "fixtures/parity/r18_tiny")
    ap.add_argument("--model-note", default="fixtures/parity/r18_tiny (ResNet-18 FPN 32 ch, trained parity fixture, "
                    "resizes each 512 tile to 256 px)")
    ap.add_argument("--raster", type=Path, action="append", default=[])
    ap.add_argument("--size", type=int, default=20000, help="side of the generated photo raster (default 20000)")
    ap.add_argument("--no-spacenet", action="store_true")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--extra", default="--tile-size 512 --overlap 64 --threshold 0.5",
                    help="further detect arguments (default: %(default)s)")
    ap.add_argument("--pin", action="store_true",
                    help="run N threads on N cores (taskset), so 1 thread is one core in all, reading and merging included")
    ap.add_argument("--out", type=Path, default=REPO / "bench/detect.md")
    args = ap.parse_args()

    rasters = list(args.raster)
    if not rasters:
        gen = REPO / f"fixtures/generated/detect_throughput/photo_{args.size}.tif"
        if not gen.exists():
            gen.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, str(REPO / "tools/bench/geo_memory/make_raster.py"), "--size",
                            str(args.size), "--content", "photo", "--out", str(gen)], check=True)
        rasters.append(gen)
        if not args.no_spacenet:
            if SPACENET.exists():
                rasters.append(SPACENET)
            else:
                print(f"{SPACENET} absent: the SpaceNet figures are left out", file=sys.stderr)
    extra = args.extra.split()
    builds = [(args.labels[0], args.binary)] + ([(args.labels[1], args.reference)] if args.reference else [])
    settings = [(name, t, b) for b in args.batch_sizes for t in args.threads for name, _ in builds]
    binaries = dict(builds)
    load_start = open("/proc/loadavg").read().split()[:3]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for raster in rasters:
            w, h, cx, cy, bands = raster_facts(raster)
            km2 = w * h * cx * cy / 1e6
            # A one-band scene (the panchromatic SpaceNet sample) feeds its band to each of the model's inputs.
            raster_extra = extra + (["--bands", "1,1,1"] if bands == 1 else [])
            runs = {s: [] for s in settings}
            reference = None
            for rep in range(args.reps):
                for (name, t, b) in settings:
                    out = Path(tmp) / "out.geojson"
                    load_before = float(open("/proc/loadavg").read().split()[0])
                    r = run_once(binaries[name], args.model, raster, out, t, b, raster_extra, args.pin)
                    r["load_before"] = load_before
                    r["load"] = float(open("/proc/loadavg").read().split()[0])
                    if reference is None:
                        reference = r["output"]
                    # GeoJSON carries no timestamps: equal runs give equal bytes.
                    r["identical"] = r["output"] == reference
                    del r["output"]
                    runs[(name, t, b)].append(r)
                    print(f"{raster.name} rep {rep + 1} {name} threads {t} batch {b}: {r['wall']:.1f} s wall, "
                          f"{r['user'] + r['sys']:.1f} s CPU, {r['rss_mb']:.0f} MB, load {load_before} -> "
                          f"{r['load']}", file=sys.stderr)
            results[raster] = (w, h, cx, cy, km2, runs, raster_extra != extra)
            # After each raster, so a long run stopped part way still leaves its figures.
            load_end = open("/proc/loadavg").read().split()[:3]
            write_report(args, results, settings, builds, started, load_start, load_end)


def write_report(args, results, settings, builds, started, load_start, load_end):
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    keep = ("Model name", "CPU(s):", "Thread(s) per core", "Core(s) per socket", "Flags")
    cpu = [l for l in lscpu.splitlines() if l.startswith(keep[:4])]
    flags = [l for l in lscpu.splitlines() if l.startswith("Flags")]
    avx = " ".join(f for f in (flags[0].split() if flags else []) if f.startswith("avx512f") or f == "avx2")
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    md = ["# `maskrcnn detect`: whole-scene throughput by threads and batch size", "",
          f"Written by `tools/bench/detect_throughput.py` ({' '.join(sys.argv[1:]) or 'defaults'}), {started}, "
          f"commit {rev.stdout.strip()}.", "",
          "## Machine", "", "```", *cpu, f"AVX: {avx}", f"{platform.node()} nproc={os.cpu_count()}", "```", "",
          f"Load average at the start {' / '.join(load_start)}, at the end {' / '.join(load_end)} (1/5/15 min). "
          "The cores are shared with other jobs: wall-clock figures depend on the load at the time of each run; "
          "the settings are interleaved within each repetition so the load hits them alike.", "",
          f"Model: {args.model_note}. Detect arguments: `{args.extra}`, GeoJSON output.", "",
          *([f"Builds: `{builds[0][0]}` is {builds[0][1]}, `{builds[1][0]}` is {builds[1][1]}; every setting runs "
             "both, one right after the other.", ""] if len(builds) > 1 else []),
          ("Pinned: a run with N threads is limited to N cores (`taskset -c 0-(N-1)`), the reader thread and the "
           "merging included, so the speed-up is what a second core buys." if args.pin else
           "Not pinned: with 1 thread the reader thread and the merging still run beside the model worker, on the "
           "second core when it is free."), "",
          f"Medians of {args.reps} repetitions. tiles/s counts every grid tile (skipped ones included) over the wall "
          "time of the whole process (model load, reading, inference, stitching, writing). km²/h is the raster's "
          "area at its cell size over the same wall time. CPU is user+system seconds. The speed-up is the median of "
          "the per-repetition ratios (runs next to each other in time), so a change in load between repetitions "
          "cancels. `identical`: every run's output file equals the first setting's byte for byte.", ""]
    for raster, (w, h, cx, cy, km2, runs, one_band) in results.items():
        md += [f"## {raster.name}", "",
               f"{w} x {h} px, cell {cx:g} x {cy:g} (CRS units), {km2:.2f} km², "
               f"{runs[settings[0]][0]['tiles']} tiles, {runs[settings[0]][0]['objects']} objects"
               + (" (one band, fed as `--bands 1,1,1`)." if one_band else "."), "",
               "| build | threads | batch | wall s | CPU s | tiles/s | km²/h | speed-up vs 1 thread, same batch "
               "| peak RSS MB | load (1 min) before / after | identical |",
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        med = {s: statistics.median(r["wall"] for r in runs[s]) for s in settings}
        for (name, t, b) in settings:
            rs = runs[(name, t, b)]
            wall = med[(name, t, b)]
            cpu = statistics.median(r["user"] + r["sys"] for r in rs)
            tiles = rs[0]["tiles"]
            base = runs.get((name, min(args.threads), b))
            speed = (f"{statistics.median(r0['wall'] / r['wall'] for r0, r in zip(base, rs)):.2f}x"
                     if base else "–")
            load = (f"{statistics.median(r['load_before'] for r in rs):.1f} / "
                    f"{statistics.median(r['load'] for r in rs):.1f}")
            md.append(f"| {name} | {t} | {b} | {wall:.1f} | {cpu:.1f} | {tiles / wall:.2f} | {km2 / (wall / 3600):.1f} "
                      f"| {speed} | {max(r['rss_mb'] for r in rs):.0f} | {load} "
                      f"| {'yes' if all(r['identical'] for r in rs) else 'NO'} |")
        md += ["", "Every run (wall s / CPU s / load before):", ""]
        for (name, t, b) in settings:
            md.append(f"- {name}, threads {t}, batch {b}: " + ", ".join(
                f"{r['wall']:.1f}/{r['user'] + r['sys']:.1f}/{r['load_before']:.1f}" for r in runs[(name, t, b)]))
        md.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(md) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
