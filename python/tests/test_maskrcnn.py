"""The Python package against the command line: the same models, the same detections, the same
errors; detect, train and evaluate in-process with progress and interruption."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import maskrcnn
from conftest import (
    FIXTURES,
    LOADER,
    R18_TINY,
    assert_same_as_cli,
    cli_error,
    cli_predictions,
    photo_like_image,
    run_cli,
    write_png,
)


@pytest.fixture(scope="module")
def r18():
    return maskrcnn.load(R18_TINY)


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    """r18_tiny as an arcgis.learn package (.pth, .emd, .dlpk), written by `maskrcnn package`."""
    out = tmp_path_factory.mktemp("package")
    dlpk = maskrcnn.package(R18_TINY, out, name="r18")
    assert dlpk == out / "r18.dlpk" and dlpk.is_file()
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run folder of a few steps on the COCO fixture, and the progress events it reported."""
    run = tmp_path_factory.mktemp("train") / "run"
    events = []
    model_dir = maskrcnn.train(
        FIXTURES / "data" / "coco_tiny" / "instances.json",
        run,
        backbone=18,
        steps=3,
        batch_size=1,
        min_size=64,
        max_size=64,
        val_split=0,
        progress=events.append,
    )
    return run, model_dir, events


def test_every_model_form_loads_and_predicts_as_the_command_line(binary, r18, packaged, trained, tmp_path):
    image = R18_TINY / "image.png"
    reference = r18.predict(image)
    assert r18.classes == ["person", "tie", "scissors"]
    assert isinstance(r18.config, dict) and r18.config["num_classes"] == len(r18.classes) + 1
    # The weights file of a model folder reads its config.json beside it: the same model.
    weights = maskrcnn.load(R18_TINY / "model.safetensors")
    assert weights.classes == r18.classes
    dets = weights.predict(image)
    assert [d["label"] for d in dets] == [d["label"] for d in reference]
    assert np.allclose([d["score"] for d in dets], [d["score"] for d in reference], atol=1e-5)
    # An .emd keeps the classes but arcgis.learn's settings (its chip size for the transform); the
    # .dlpk is the same .emd and .pth zipped. A bare .pth state dict has only what its shapes say
    # (torchvision's transform, classes "class 1", ...), on the command line too.
    emd, dlpk = maskrcnn.load(packaged / "r18.emd"), maskrcnn.load(packaged / "r18.dlpk")
    assert emd.classes == dlpk.classes == r18.classes
    assert [d["score"] for d in emd.predict(image)] == [d["score"] for d in dlpk.predict(image)]
    bare = maskrcnn.load(packaged / "r18.pth")
    assert bare.classes == ["class 1", "class 2", "class 3"]
    assert bare.config["transform"]["min_size"] == 800
    run, model_dir, _ = trained
    forms = [packaged / "r18.pth", packaged / "r18.emd", packaged / "r18.dlpk", run, model_dir]
    forms += [LOADER / "model.pth", LOADER / "model.safetensors", LOADER / "model_legacy_wrapped.pth"]
    for form in forms:
        assert_same_as_cli(maskrcnn.load(form).predict(image), cli_predictions(binary, form, image, tmp_path))
    from_run = maskrcnn.load(run)
    assert pathlib.Path(from_run.weights_path).parent == model_dir
    assert from_run.classes == maskrcnn.load(model_dir).classes == ["building", "tank", "ship", "unused"]
    assert "ResNet-18" in repr(from_run)


def test_predict_on_a_path_equals_the_command_line(binary, r18, tmp_path):
    image = R18_TINY / "image.png"
    dets = r18.predict(image)
    assert len(dets) == 4 and all(d["score"] > 0.9 for d in dets)
    assert {d["class_name"] for d in dets} <= set(r18.classes)
    assert_same_as_cli(dets, cli_predictions(binary, R18_TINY, image, tmp_path))


def test_predict_on_arrays_equals_the_command_line_on_their_files(binary, r18, tmp_path):
    array = photo_like_image()
    png = write_png(tmp_path / "photo.png", array)
    cli = cli_predictions(binary, R18_TINY, png, tmp_path, "--score-threshold", "0.05", "--max-detections", "100")
    assert len(cli) > 0
    assert_same_as_cli(r18.predict(array, score_threshold=0.05, max_detections=100), cli)
    # 16-bit: raw values divided by 65535, as the command line scales a 16-bit PNG.
    wide = array.astype(np.uint16) * 257
    png16 = write_png(tmp_path / "photo16.png", wide)
    assert_same_as_cli(r18.predict(wide), cli_predictions(binary, R18_TINY, png16, tmp_path))
    # One band: repeated to the model's three, as the readers do for grey files.
    grey = array[:, :, 1].copy()
    png1 = write_png(tmp_path / "grey.png", grey)
    assert_same_as_cli(r18.predict(grey), cli_predictions(binary, R18_TINY, png1, tmp_path))
    # Non-contiguous arrays are read as they index.
    assert_same_as_cli(r18.predict(np.ascontiguousarray(array[:, ::-1])[:, ::-1]), cli)


def test_float_arrays_are_taken_as_scaled_and_thresholds_apply(r18):
    array = photo_like_image()
    as_bytes = r18.predict(array)
    as_floats = r18.predict(array.astype(np.float32) / np.float32(255))
    # The same pixels up to the last bit of a division: the same objects.
    assert len(as_floats) == len(as_bytes)
    assert np.allclose([d["box"] for d in as_floats], [d["box"] for d in as_bytes], atol=0.05)
    few = r18.predict(array, score_threshold=0.5, max_detections=3)
    assert len(few) <= 3 and all(d["score"] >= 0.5 for d in few)
    # The model's own settings (this one keeps 20) are back after a call with others.
    assert r18.config["roi_heads"]["box_detections_per_img"] == 20
    batch = r18.predict_batch([array, R18_TINY / "image.png"])
    assert len(batch) == 2 and len(batch[0]) == len(as_bytes) and len(batch[1]) == 4


def test_predict_releases_the_gil(r18):
    """Another Python thread runs while the engine predicts. With a switch interval longer than
    the test, a thread waiting for the GIL gets it only when the holder gives it up: ticks counted
    during `predict` prove the engine gave it up (holding it, the count stays 0)."""
    images = [photo_like_image(160, 256, seed) for seed in range(3)]
    ticks = [0]
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks[0] += 1
            time.sleep(0.001)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(30.0)
    thread = threading.Thread(target=ticker)
    try:
        thread.start()
        time.sleep(0.05)
        before = ticks[0]
        r18.predict_batch(images)
        during = ticks[0] - before
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    assert during >= 3, f"the ticker thread ran {during} times while predict ran"


def test_errors_carry_the_command_lines_messages(binary, r18, tmp_path):
    missing = tmp_path / "missing.pth"
    with pytest.raises(maskrcnn.MaskRcnnFileNotFoundError) as e:
        maskrcnn.load(missing)
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, RuntimeError)
    assert str(e.value) == cli_error(binary, "predict", "--model", missing, "--input", R18_TINY / "image.png", "--output", tmp_path / "o.json")

    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(maskrcnn.MaskRcnnError) as e:
        maskrcnn.load(bad)
    assert str(e.value) == cli_error(binary, "predict", "--model", bad, "--input", R18_TINY / "image.png", "--output", tmp_path / "o.json")
    assert "\n" not in str(e.value)

    with pytest.raises(maskrcnn.MaskRcnnError, match=r"^image: the image has 4 band\(s\) but the model expects 3"):
        r18.predict(np.zeros((32, 32, 4), np.uint8))
    with pytest.raises(TypeError, match="int64"):
        r18.predict(np.zeros((32, 32, 3), np.int64))
    with pytest.raises(maskrcnn.MaskRcnnValueError, match="score_threshold must be within 0..1"):
        r18.predict(np.zeros((32, 32, 3), np.uint8), score_threshold=2.0)
    with pytest.raises(maskrcnn.MaskRcnnFileNotFoundError):
        r18.predict(tmp_path / "nowhere.png")

    with pytest.raises(maskrcnn.MaskRcnnValueError) as e:
        maskrcnn.detect(R18_TINY, tmp_path / "r.tif", tmp_path / "o.gpkg", no_such_option=3)
    assert isinstance(e.value, ValueError)
    assert str(e.value) == cli_error(binary, "detect", "--model", R18_TINY, "--raster", tmp_path / "r.tif", "--output", tmp_path / "o.gpkg", "--no-such-option=3")
    with pytest.raises(maskrcnn.MaskRcnnFileNotFoundError) as e:
        maskrcnn.detect(R18_TINY, tmp_path / "r.tif", tmp_path / "o.gpkg")
    assert str(e.value) == cli_error(binary, "detect", "--model", R18_TINY, "--raster", tmp_path / "r.tif", "--output", tmp_path / "o.gpkg")


def geotiff(tmp_path, name, array, origin=(500000.0, 3700000.0), pixel=0.5):
    """A georeferenced GeoTIFF (EPSG:32616) of `array`, through GDAL's gdal_translate."""
    png = write_png(tmp_path / f"{name}.png", array)
    tif = tmp_path / f"{name}.tif"
    h, w = array.shape[:2]
    x0, y0 = origin
    ullr = [x0, y0, x0 + w * pixel, y0 - h * pixel]
    subprocess.run(
        ["gdal_translate", "-q", "-of", "GTiff", "-a_srs", "EPSG:32616", "-a_ullr", *map(str, ullr), str(png), str(tif)],
        check=True,
    )
    return tif


def test_detect_on_a_generated_geotiff_matches_the_command_line(binary, r18, tmp_path):
    tif = geotiff(tmp_path, "scene", np.concatenate([photo_like_image(96, 128, s) for s in range(3)], axis=1))
    events = []
    out = tmp_path / "objects.geojson"
    summary = maskrcnn.detect(r18, tif, out, tile_size=128, overlap=16, threshold=0.3, progress=events.append)
    tiles = [e for e in events if e["kind"] == "tiles"]
    assert tiles and tiles[-1]["done"] == tiles[-1]["total"] == summary["tiles"] > 1
    collection = json.loads(out.read_text())
    # Objects on tile seams are written once their neighbours are done, after the last tile's event.
    assert len(collection["features"]) == summary["objects"] >= tiles[-1]["objects"]
    assert summary["objects"] > 0
    cli_out = tmp_path / "cli.geojson"
    code, stderr = run_cli(binary, "detect", "--model", R18_TINY, "--raster", tif, "--output", cli_out, "--tile-size", "128", "--overlap", "16", "--threshold", "0.3")
    assert code == 0, stderr
    assert json.loads(cli_out.read_text())["features"] == collection["features"]
    assert "32616" in json.dumps(collection.get("crs", {})), collection.get("crs")
    # An existing output needs overwrite=True, as on the command line.
    with pytest.raises(maskrcnn.MaskRcnnError, match="overwrite"):
        maskrcnn.detect(r18, tif, out)


def test_ctrl_c_stops_detect_between_tiles_and_resume_finishes_it(r18, tmp_path):
    tif = geotiff(tmp_path, "big", np.concatenate([photo_like_image(128, 128, s) for s in range(8)], axis=1))
    out = tmp_path / "objects.gpkg"
    seen = []

    def interrupt_after_two(event):
        seen.append(event)
        if event["kind"] == "tiles" and event["done"] == 2:
            # What Ctrl-C does: the signal arrives while the engine works without the GIL.
            threading.Timer(0.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()

    with pytest.raises(KeyboardInterrupt):
        maskrcnn.detect(r18, tif, out, tile_size=128, overlap=0, threshold=0.3, progress=interrupt_after_two)
    done = max(e["done"] for e in seen)
    assert 2 <= done < seen[-1]["total"], seen
    resumed = maskrcnn.detect(r18, tif, out, tile_size=128, overlap=0, threshold=0.3, resume=True)
    assert resumed["tiles_done"] == resumed["tiles"] == 8


def test_an_exception_in_the_progress_callback_stops_detect(r18, tmp_path):
    tif = geotiff(tmp_path, "big", np.concatenate([photo_like_image(128, 128, s) for s in range(6)], axis=1))
    out = tmp_path / "objects.geojson"
    seen = []

    class Stop(Exception):
        pass

    def stop_at_three(event):
        seen.append(event["done"])
        if event["done"] == 3:
            raise Stop("enough")

    with pytest.raises(Stop, match="enough"):
        maskrcnn.detect(r18, tif, out, tile_size=128, overlap=0, threshold=0.3, progress=stop_at_three)
    # The callback is not called again once it raised, and the run stopped before the last tile.
    assert seen == [1, 2, 3], seen
    assert pathlib.Path(f"{out}.journal").exists(), "a stopped run keeps its journal"
    finished = maskrcnn.detect(r18, tif, out, tile_size=128, overlap=0, threshold=0.3, resume=True)
    assert finished["tiles_done"] == finished["tiles"] == 6


def test_train_reports_progress_and_its_model_predicts(trained):
    run, model_dir, events = trained
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "start" and events[0]["total"] == 3 and kinds[-1] == "finish"
    steps = [e["step"] for e in events if e["kind"] == "step"]
    assert steps == [1, 2, 3]
    assert all("loss" in e["message"] for e in events if e["kind"] == "step")
    assert (model_dir / "config.json").is_file() and (run / "metrics.jsonl").is_file()
    dets = maskrcnn.load(model_dir).predict(FIXTURES / "data" / "coco_tiny" / "images" / "a.png", score_threshold=0.0)
    assert all(d["class_name"] in ("building", "tank", "ship", "unused") for d in dets)


def test_an_exception_in_the_progress_callback_stops_training_and_resume_continues(tmp_path):
    run = tmp_path / "run"
    data = FIXTURES / "data" / "coco_tiny" / "instances.json"
    options = dict(backbone=18, steps=4, batch_size=1, min_size=64, max_size=64, val_split=0, checkpoint_every=1)

    def stop_at_two(event):
        if event["kind"] == "step" and event["step"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        maskrcnn.train(data, run, progress=stop_at_two, **options)
    assert not (run / "model").exists()
    events = []
    maskrcnn.train(data, run, resume=True, progress=events.append, **options)
    assert events[0] == {"kind": "start", "step": 2, "total": 4}
    assert (run / "model" / "config.json").is_file()


def test_evaluate_returns_the_command_lines_metrics(binary, tmp_path):
    gt, results = FIXTURES / "eval" / "synthetic_gt.json", FIXTURES / "eval" / "synthetic_results.json"
    metrics = maskrcnn.evaluate(predictions=results, annotations=gt, iou_type="segm")
    out = tmp_path / "cli.json"
    code, stderr = run_cli(binary, "evaluate", "--predictions", results, "--annotations", gt, "--iou-type", "segm", "--output", out)
    assert code == 0, stderr
    assert metrics == json.loads(out.read_text())
    assert 0.0 <= metrics["segm"]["AP"] <= 1.0
