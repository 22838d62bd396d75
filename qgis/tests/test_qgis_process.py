"""The QGIS plugin headless, through `qgis_process` as a user's script would run it: Export training
chips, Train (a few steps) and Detect objects on the SpaceNet sample, each against the `maskrcnn`
command it wraps, run directly with the same options.

Needs Debian's `qgis` package (qgis_process), GDAL's ogrinfo, the maskrcnn binary and the SpaceNet
sample in ../shared/data/spacenet-atlanta-sample (as CI lays it out; a missing sample fails).

Debian's /usr/bin/qgis_process is a shell wrapper that passes /etc/default/qgis's
`--noversioncheck`, which qgis_process 3.22 refuses ("Unrecognised parameter"); the test calls the
binary it wraps, /usr/bin/qgis_process.bin, where it exists."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1].parent
SPACENET = REPO.parent / "shared" / "data" / "spacenet-atlanta-sample"
sys.path.insert(0, str(REPO / "python" / "tests"))
from conftest import find_binary  # noqa: E402


def find_qgis_process():
    for name in ("qgis_process.bin", "qgis_process"):
        found = shutil.which(name) or (f"/usr/bin/{name}" if os.path.isfile(f"/usr/bin/{name}") else None)
        if found:
            return found
    return None


def run(command, env=None):
    out = subprocess.run([str(c) for c in command], capture_output=True, text=True, env=env)
    assert out.returncode == 0, f"{command} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout, out.stderr


def layer_info(path):
    text = run(["ogrinfo", "-so", "-al", path])[0]
    count = int(re.search(r"Feature Count: (\d+)", text).group(1))
    return count, text


@pytest.fixture(scope="module")
def qgis(tmp_path_factory):
    """(qgis_process, its environment, the maskrcnn binary, a scratch folder), the plugin enabled."""
    process = find_qgis_process()
    if process is None:
        pytest.skip("qgis_process is not installed (apt-get install qgis); the QGIS plugin test did not run")
    assert SPACENET.is_dir(), f"the SpaceNet sample is absent: this test needs {SPACENET}"
    binary = find_binary()
    assert binary, "no maskrcnn binary: `cargo build --release` or set MASKRCNN_BIN"
    tmp = tmp_path_factory.mktemp("qgis")
    home, runtime = tmp / "home", tmp / "xdg"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    # A fresh profile (under HOME) that loads the plugin from this checkout; the binary through
    # MASKRCNN_BIN, as the plugin's settings would give it.
    env = dict(
        os.environ,
        HOME=str(home),
        XDG_RUNTIME_DIR=str(runtime),
        QT_QPA_PLATFORM="offscreen",
        QGIS_PLUGINPATH=str(REPO / "qgis"),
        MASKRCNN_BIN=binary,
    )
    said = "".join(run([process, "plugins", "enable", "maskrcnn_qgis"], env))
    assert "* maskrcnn_qgis" in said, said
    algorithms = run([process, "list"], env)[0]
    for algorithm in ("maskrcnn:detect", "maskrcnn:exportchips", "maskrcnn:train"):
        assert algorithm in algorithms, algorithms
    return process, env, binary, tmp


def qgis_run(qgis, algorithm, **parameters):
    """`qgis_process run ALGORITHM -- NAME=VALUE...`: its results, and what it printed (the feedback's
    log and progress text, which --json would leave out)."""
    process, env, _, _ = qgis
    args = [f"{name}={value}" for name, value in parameters.items()]
    stdout, stderr = run([process, "run", algorithm, "--", *args], env)
    section = stdout.split("Results\n----------------\n", 1)
    assert len(section) == 2, stdout
    results = dict(line.split(":\t", 1) for line in section[1].splitlines() if ":\t" in line)
    return results, stdout + stderr


@pytest.fixture(scope="module")
def chips(qgis):
    _, _, binary, tmp = qgis
    out = tmp / "chips"
    results, _ = qgis_run(
        qgis,
        "maskrcnn:exportchips",
        INPUT=SPACENET / "sample_geotiff.tif",
        LABELS=SPACENET / "geotiff_labels.geojson",
        TILE_SIZE=256,
        FORMAT=1,
        OUTPUT=out,
    )
    assert pathlib.Path(results["OUTPUT"]) == out
    direct = tmp / "chips_direct"
    run([binary, "export-chips", "--raster", SPACENET / "sample_geotiff.tif", "--labels", SPACENET / "geotiff_labels.geojson", "--output", direct, "--tile-size", "256", "--format", "coco"])
    ours, theirs = (json.loads((d / "annotations.json").read_text()) for d in (out, direct))
    assert len(ours["images"]) == len(theirs["images"]) == 16
    assert ours["annotations"] == theirs["annotations"] and len(ours["annotations"]) == 55
    return out


@pytest.fixture(scope="module")
def model(qgis, chips):
    _, _, _, tmp = qgis
    run_dir = tmp / "run"
    # A few steps: this checks the plugin's plumbing, not what the model learns.
    results, said = qgis_run(
        qgis,
        "maskrcnn:train",
        DATA=chips / "annotations.json",
        BACKBONE=0,
        STEPS=3,
        BATCH_SIZE=1,
        MIN_SIZE=128,
        AUGMENT=0,
        VAL_SPLIT=0,
        OUTPUT=run_dir,
    )
    assert pathlib.Path(results["OUTPUT"]) == run_dir
    # The binary's `progress: step 3/3 ...` lines reach QGIS's feedback as the progress text.
    assert re.search(r"step 3/3 loss \d", said), said
    assert (run_dir / "model" / "config.json").is_file()
    return run_dir / "model"


def test_detect_on_spacenet_matches_the_command_line(qgis, model):
    _, _, binary, tmp = qgis
    raster = SPACENET / "sample_geotiff.tif"
    output = tmp / "qgis_buildings.gpkg"
    options = dict(INPUT=raster, MODEL=model / "config.json", TILE_SIZE=256, THRESHOLD=0.0, OVERLAP=32)
    results, said = qgis_run(qgis, "maskrcnn:detect", OUTPUT=output, **options)
    assert pathlib.Path(results["OUTPUT"]) == output
    assert "tiles" in said, said
    count, info = layer_info(output)
    assert re.search(r'ID\["EPSG",\s*32616\]', info), f"the output layer is in the raster's CRS (EPSG:32616): {info}"

    direct = tmp / "direct.gpkg"
    run([binary, "detect", "--model", model, "--raster", raster, "--output", direct, "--tile-size", "256", "--threshold", "0.0", "--overlap", "32"])
    assert count == layer_info(direct)[0] > 0, "qgis_process and the command line find the same objects"

    # An area of interest: the western half of the scene, a GeoJSON layer in the raster's CRS.
    aoi = tmp / "aoi.geojson"
    corners = json.loads(run(["gdalinfo", "-json", raster])[0])["cornerCoordinates"]
    (x0, y0), (x1, y1) = corners["upperLeft"], corners["lowerRight"]
    half = (x0 + x1) / 2
    ring = [[x0, y0], [half, y0], [half, y1], [x0, y1], [x0, y0]]
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32616"}}
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
    aoi.write_text(json.dumps({"type": "FeatureCollection", "crs": crs, "features": [feature]}))
    clipped = tmp / "qgis_aoi.gpkg"
    qgis_run(qgis, "maskrcnn:detect", AOI=aoi, OUTPUT=clipped, **options)
    direct_clipped = tmp / "direct_aoi.gpkg"
    run([binary, "detect", "--model", model, "--raster", raster, "--output", direct_clipped, "--tile-size", "256", "--threshold", "0.0", "--overlap", "32", "--aoi", aoi])
    inside = layer_info(clipped)[0]
    assert inside == layer_info(direct_clipped)[0] and inside < count


def test_errors_of_the_binary_are_the_algorithms_errors(qgis, model):
    process, env, _, tmp = qgis
    out = subprocess.run(
        [process, "run", "maskrcnn:detect", "--", f"INPUT={SPACENET / 'sample_geotiff.tif'}", f"MODEL={model / 'config.json'}", "BANDS=7", f"OUTPUT={tmp / 'bad.gpkg'}"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode != 0
    # The program's one-line message, not a Python traceback.
    text = out.stdout + out.stderr
    assert "band" in text and "Traceback" not in text, text
