"""The Python package in a few lines, notebook style: run `python examples/python_quickstart.py`
from the repository root after `pip install ./python`.

Each block is a notebook cell: load a model, predict on an array or a file, then (with the
SpaceNet sample in ../shared/data) cut training chips from a GeoTIFF, train, and detect buildings
into a GeoPackage in the raster's CRS."""

import pathlib
import tempfile

import numpy as np

import maskrcnn

repo = pathlib.Path(__file__).resolve().parents[1]

# %% Load any model form the command line takes: .pth, .safetensors, a model or run folder, .emd, .dlpk.
model = maskrcnn.load(repo / "fixtures" / "parity" / "r18_tiny")
print(model)
print("classes:", model.classes, "| min_size:", model.config["transform"]["min_size"])

# %% Predict on a file, or on a numpy array (HxWxC or HxW; uint8, uint16 or float32 raw values).
for d in model.predict(repo / "fixtures" / "parity" / "r18_tiny" / "image.png", score_threshold=0.5):
    x1, y1, x2, y2 = d["box"]
    print(f"{d['class_name']:>8} {d['score']:.3f} box=({x1:.0f},{y1:.0f},{x2:.0f},{y2:.0f}) mask={d['mask'].sum()} px")
array = np.zeros((120, 160, 3), np.uint8)
array[30:90, 40:120] = (200, 180, 40)
print("objects in a synthetic array:", len(model.predict(array, score_threshold=0.5)))

# %% GIS: chips from a GeoTIFF and footprints, a short training run, detection over the whole raster.
spacenet = repo.parent / "shared" / "data" / "spacenet-atlanta-sample"
if not spacenet.is_dir():
    print(f"(the SpaceNet sample is not at {spacenet}; skipping the GIS cells)")
else:
    work = pathlib.Path(tempfile.mkdtemp(prefix="maskrcnn-quickstart-"))
    chips = maskrcnn.export_chips(
        spacenet / "sample_geotiff.tif", spacenet / "geotiff_labels.geojson", work / "chips", tile_size=256, format="coco"
    )

    def show(event):
        if event["kind"] == "step":
            print(f"\rstep {event['step']}/{event['total']} {event['message']}", end="", flush=True)
        elif event["kind"] == "line":
            print("\n" + event["line"])

    # A few steps to show the calls; a useful building model needs thousands (and --init weights).
    model_dir = maskrcnn.train(
        chips / "annotations.json", work / "run", backbone=18, steps=4, batch_size=1,
        min_size=128, max_size=128, val_split=0, progress=show,
    )
    print("\nmodel:", model_dir)
    summary = maskrcnn.detect(
        model_dir, spacenet / "sample_geotiff.tif", work / "buildings.gpkg",
        tile_size=256, overlap=32, threshold=0.5, progress=lambda e: print(f"\rtile {e['done']}/{e['total']}", end=""),
    )
    print(f"\n{summary['objects']} objects in {summary['tiles']} tiles -> {summary['output']}")
