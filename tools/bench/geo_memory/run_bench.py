#!/usr/bin/env python3
"""Run `maskrcnn detect` on rasters under /usr/bin/time -v, sample its RSS over time, check the
output with ogrinfo, and print one JSON line per run (collected into bench/geo_memory.md).

  run_bench.py --raster a.tif [--raster b.tif ...] [--outdir DIR] [--model DIR] [-- extra detect args]

RSS is read from /proc/<pid>/status (VmRSS) every 0.2 s so a slow climb shows up even when the
peak alone looks harmless: `rss_mb_at` gives RSS at 10/25/50/75/90 % of the wall time;
the full curve is written to <outdir>/<raster>.rss.tsv (seconds, KB).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def sample_rss(time_pid, samples, stop):
    """Samples the RSS of the program that /usr/bin/time started."""
    target = None
    t0 = time.time()
    while not stop.is_set():
        if target is None:
            kids = children(time_pid)
            target = kids[0] if kids else None
        if target is not None:
            r = rss_kb(target)
            if r is not None:
                samples.append((time.time() - t0, r))
        time.sleep(0.2)


def parse_time_v(text):
    def grab(label):
        m = re.search(re.escape(label) + r":\s*(.+)", text)
        return m.group(1).strip() if m else None

    wall = grab("Elapsed (wall clock) time (h:mm:ss or m:ss)")
    parts = [float(p) for p in wall.split(":")]
    seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    return {
        "wall_s": seconds,
        "user_s": float(grab("User time (seconds)")),
        "sys_s": float(grab("System time (seconds)")),
        "cpu_percent": grab("Percent of CPU this job got"),
        "peak_rss_kb": int(grab("Maximum resident set size (kbytes)")),
        "exit_status": int(grab("Exit status")),
    }


def ogr_check(path):
    out = subprocess.run(["ogrinfo", "-so", "-al", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        return {"ogrinfo_error": out.stderr.strip()}
    count = re.search(r"Feature Count: (\d+)", out.stdout)
    epsg = re.findall(r'ID\["EPSG",(\d+)\]', out.stdout)
    return {"ogr_feature_count": int(count.group(1)) if count else None, "ogr_crs_epsg": int(epsg[-1]) if epsg else None}


def run(cmd, log_path):
    samples = []
    stop = threading.Event()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["/usr/bin/time", "-v"] + cmd, stdout=log, stderr=subprocess.STDOUT)
        sampler = threading.Thread(target=sample_rss, args=(proc.pid, samples, stop), daemon=True)
        sampler.start()
        proc.wait()
        stop.set()
        sampler.join()
    text = Path(log_path).read_text()
    return text, samples


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raster", action="append", required=True, type=Path)
    p.add_argument("--model", type=Path, default=REPO / "fixtures/parity/r18_tiny")
    p.add_argument("--binary", type=Path, default=REPO / "target/release/maskrcnn")
    p.add_argument("--outdir", type=Path, default=REPO / "fixtures/generated/geo_memory/out")
    p.add_argument("--tile-size", type=int, default=512)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--format", default="gpkg", choices=["gpkg", "fgb", "geojson"])
    p.add_argument("extra", nargs="*", help="more `maskrcnn detect` arguments (after --)")
    a = p.parse_args()
    a.outdir.mkdir(parents=True, exist_ok=True)
    for raster in a.raster:
        if not raster.is_file():
            sys.exit(f"{raster}: no such raster (make it with make_raster.py)")
        out = a.outdir / f"{raster.stem}.{a.format}"
        cmd = [
            str(a.binary), "detect", "--model", str(a.model), "--raster", str(raster), "--output", str(out),
            "--tile-size", str(a.tile_size), "--overlap", str(a.overlap), "--threshold", str(a.threshold),
            "--overwrite", *a.extra,
        ]
        text, samples = run(cmd, a.outdir / f"{raster.stem}.log")
        result = {"raster": str(raster), "raster_mb": round(raster.stat().st_size / 1e6, 1), "command": " ".join(cmd)}
        result.update(parse_time_v(text))
        m = re.search(r"(\d+) tiles \((\d+) skipped as nodata\), (\d+) objects", text)
        if m:
            result.update({"tiles": int(m.group(1)), "objects": int(m.group(3))})
            result["tiles_per_s"] = round(result["tiles"] / result["wall_s"], 2)
        if result["exit_status"] == 0:
            result.update(ogr_check(out))
        if samples:
            end = samples[-1][0]
            at = {}
            for frac in (0.1, 0.25, 0.5, 0.75, 0.9):
                near = min(samples, key=lambda s: abs(s[0] - frac * end))
                at[f"{int(frac * 100)}%"] = round(near[1] / 1024, 1)
            result["rss_mb_at"] = at
            result["rss_samples"] = len(samples)
        result["peak_rss_mb"] = round(result["peak_rss_kb"] / 1024, 1)
        with open(a.outdir / f"{raster.stem}.rss.tsv", "w") as f:
            f.writelines(f"{t:.1f}\t{r}\n" for t, r in samples)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
