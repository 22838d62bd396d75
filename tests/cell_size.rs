//! Cell size through the CLI: training records the chips' ground sample distance (from their
//! georeferencing, `--cell-size`, or an `.emd`), `detect` resamples rasters of another cell size
//! to it (or says why not), and objects found on resampled tiles land at the right map place.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use geo::BoundingRect;
use maskrcnn::cell_size::{CellSizePlan, CellSizeRequest};
use maskrcnn::config::MaskRcnnConfig;
use maskrcnn::MaskRcnn;
use maskrcnn_data::image_io::{write_tiff, TiffSampleType};
use maskrcnn_data::ImageTensor;
use maskrcnn_geo::{DetectOptions, GeoTiff, TileImage, TileInstance, TileMask};

fn maskrcnn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_maskrcnn")).args(args).output().unwrap()
}

fn run(args: &[&str]) -> String {
    let out = maskrcnn(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "maskrcnn {args:?} failed: {stderr}");
    stderr
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A `size`² single-band 8-bit raster of bright squares on grey, `cell` metres per pixel in UTM
/// 33N (`None`: no georeferencing), with the squares' outlines in map coordinates.
fn squares_raster(dir: &Path, name: &str, size: usize, cell: Option<f64>) -> (PathBuf, Vec<[f64; 4]>) {
    let mut image = ImageTensor::zeros(1, size, size);
    image.data.iter_mut().for_each(|v| *v = 60.0);
    let mut boxes = Vec::new();
    let step = size / 4;
    for gy in 0..4 {
        for gx in 0..4 {
            let (x0, y0, side) = (gx * step + step / 4, gy * step + step / 4, step / 2);
            for y in y0..y0 + side {
                for x in x0..x0 + side {
                    image.data[y * size + x] = 220.0;
                }
            }
            boxes.push([x0 as f64, y0 as f64, (x0 + side) as f64, (y0 + side) as f64]);
        }
    }
    let plain = dir.join(format!("{name}-plain.tif"));
    write_tiff(&plain, &image, TiffSampleType::U8, false).unwrap();
    let Some(cell) = cell else { return (plain, boxes) };
    let out = dir.join(format!("{name}.tif"));
    let (ox, oy) = (400_000.0, 5_000_000.0);
    let extent = size as f64 * cell;
    let status = Command::new("gdal_translate")
        .args(["-q", "-a_srs", "EPSG:32633", "-a_ullr"])
        .args([ox, oy, ox + extent, oy - extent].map(|v| v.to_string()))
        .arg(&plain)
        .arg(&out)
        .status()
        .expect("gdal_translate (gdal-bin) is needed for the test rasters");
    assert!(status.success());
    let map = boxes.iter().map(|b| [ox + b[0] * cell, oy - b[1] * cell, ox + b[2] * cell, oy - b[3] * cell]).collect();
    (out, map)
}

fn write_labels(path: &Path, boxes: &[[f64; 4]]) {
    let features: Vec<serde_json::Value> = boxes
        .iter()
        .map(|b| {
            let ring = [[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]], [b[0], b[1]]];
            serde_json::json!({"type": "Feature", "properties": {},
                               "geometry": {"type": "Polygon", "coordinates": [ring]}})
        })
        .collect();
    let doc = serde_json::json!({"type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}}, "features": features});
    std::fs::write(path, serde_json::to_vec(&doc).unwrap()).unwrap();
}

fn stored_cell_size(model_dir: &Path) -> Option<f64> {
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model_dir.join("config.json")).unwrap()).unwrap();
    config["cell_size"].as_f64()
}

#[test]
fn training_records_the_chips_cell_size_and_detect_resamples_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (raster, boxes) = squares_raster(d, "half-metre", 128, Some(0.5));
    let labels = d.join("squares.geojson");
    write_labels(&labels, &boxes);
    let chips = d.join("chips");
    run(&[
        "export-chips",
        "--raster",
        &s(&raster),
        "--labels",
        &s(&labels),
        "--output",
        &s(&chips),
        "--tile-size",
        "64",
    ]);
    let chip_emd: serde_json::Value =
        serde_json::from_slice(&std::fs::read(chips.join("esri_model_definition.emd")).unwrap()).unwrap();
    assert_eq!(chip_emd["CellSizeMeters"].as_f64(), Some(0.5), "{chip_emd}");

    let mut start = MaskRcnn::new(MaskRcnnConfig::small(2, 64, 8), &burn::tensor::Device::flex()).unwrap();
    let start_dir = d.join("start");
    maskrcnn::weights::save_model_dir(&mut start, &start_dir).unwrap();
    let train = |out: &Path, extra: &[&str]| {
        let mut args = vec!["train", "--data", chips.to_str().unwrap(), "--init", start_dir.to_str().unwrap()];
        args.extend(["--output", out.to_str().unwrap(), "--steps", "1", "--batch-size", "1", "--val-split", "0"]);
        args.extend(["--no-val-ap", "--quiet"]);
        args.extend(extra);
        run(&args)
    };
    let run_dir = d.join("run");
    let said = train(&run_dir, &[]);
    assert!(said.contains("cell size 0.5 m per pixel (from the georeferencing of"), "{said}");
    assert_eq!(stored_cell_size(&run_dir.join("model")), Some(0.5));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("model/config.json")).unwrap()).unwrap();
    assert_eq!(config["transform"]["chip_size"].as_u64(), Some(64), "the chips' side: {config}");

    // --cell-size wins over the chips' georeferencing.
    let overridden = d.join("run-override");
    let said = train(&overridden, &["--cell-size", "0.3"]);
    assert!(said.contains("cell size 0.3 m per pixel (--cell-size)"), "{said}");
    assert_eq!(stored_cell_size(&overridden.join("model")), Some(0.3));

    // A 1 m raster is resampled to the model's 0.5 m; its own cell size given, or --no-resample,
    // runs it as it is.
    let (coarse, _) = squares_raster(d, "one-metre", 96, Some(1.0));
    let detect = |model: &Path, output: &str, extra: &[&str]| {
        let mut args = vec!["detect", "--model", model.to_str().unwrap(), "--raster", coarse.to_str().unwrap()];
        let out = d.join(output);
        args.extend(["--output", out.to_str().unwrap(), "--tile-size", "64", "--overlap", "16"]);
        args.extend(extra);
        run(&args)
    };
    let said = detect(&run_dir, "a.geojson", &[]);
    assert!(said.contains("cell size 1 m, the model's 0.5 m: tiles resampled by 2.000 x 2.000"), "{said}");
    let said = detect(&run_dir, "b.geojson", &["--no-resample"]);
    assert!(!said.contains("resampled") && !said.contains("chips"), "{said}");
    // Tiles of another size than the chips reach the network at the chips' scale: 96 raster
    // pixels resampled to 192, with the 64 px chips shown at 64 px.
    let out = d.join("b2.geojson");
    let said = run(&[
        "detect",
        "--model",
        &s(&run_dir),
        "--raster",
        &s(&coarse),
        "--output",
        &s(&out),
        "--tile-size",
        "96",
        "--overlap",
        "16",
    ]);
    assert!(said.contains("trained on 64 px chips, resized to 64 px: 96x96 px tiles go in at 192 px"), "{said}");
    let said = detect(&run_dir, "c.geojson", &["--cell-size", "0.5"]);
    assert!(!said.contains("resampled") && !said.contains("cell size"), "{said}");

    // A raster without georeferencing has no cell size: one warning, no resampling.
    let (plain, _) = squares_raster(d, "plain", 64, None);
    let out = d.join("d.geojson");
    let said = run(&[
        "detect",
        "--model",
        &s(&run_dir),
        "--raster",
        &s(&plain),
        "--output",
        &s(&out),
        "--tile-size",
        "64",
        "--overlap",
        "16",
    ]);
    let warning: Vec<&str> = said.lines().filter(|l| l.contains("cell size unknown")).collect();
    assert_eq!(warning.len(), 1, "{said}");
    assert!(warning[0].contains("pass --cell-size METRES"), "{said}");

    // The cell size goes into an arcgis package's .emd and comes back from it.
    let package = d.join("package");
    run(&["package", "--model", &s(&run_dir.join("model")), "--output", &s(&package), "--name", "squares"]);
    let emd: serde_json::Value = serde_json::from_slice(&std::fs::read(package.join("squares.emd")).unwrap()).unwrap();
    assert_eq!((emd["MinCellSize"].as_f64(), emd["MaxCellSize"].as_f64()), (Some(0.5), Some(0.5)), "{emd}");
    assert_eq!(emd["ImageSpaceUsed"], "MAP_SPACE");
    assert_eq!(emd["ExtractBands"], serde_json::json!([0]), "one band, repeated: {emd}");
    // The chip size is arcgis's ImageHeight; our 64 px input size is not its 1.5 x chip, so it
    // travels as a torchvision argument.
    assert_eq!(emd["ImageHeight"].as_u64(), Some(64), "{emd}");
    assert_eq!(emd["MaskRCNNkwargs"]["min_size"].as_u64(), Some(64), "{emd}");
    assert_eq!(emd["MaskRCNNkwargs"]["max_size"].as_u64(), Some(64), "{emd}");
    let said = detect(&package.join("squares.emd"), "e.geojson", &[]);
    assert!(said.contains("tiles resampled by 2.000 x 2.000"), "{said}");

    // An old model folder (no cell size) says so once and runs as before.
    let said = detect(&start_dir, "f.geojson", &["--bands", "1,1,1"]);
    assert!(said.contains("the model does not record the cell size it was trained at"), "{said}");
}

#[test]
fn bad_cell_sizes_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (raster, _) = squares_raster(d, "r", 64, Some(1.0));
    let mut model = MaskRcnn::new(MaskRcnnConfig::small(2, 64, 8), &burn::tensor::Device::flex()).unwrap();
    let model_dir = d.join("model");
    maskrcnn::weights::save_model_dir(&mut model, &model_dir).unwrap();
    let out = d.join("o.geojson");
    for bad in ["0", "-1", "nan"] {
        let flag = format!("--cell-size={bad}");
        let res =
            maskrcnn(&["detect", "--model", &s(&model_dir), "--raster", &s(&raster), "--output", &s(&out), &flag]);
        let stderr = String::from_utf8_lossy(&res.stderr);
        assert!(!res.status.success(), "{stderr}");
        assert!(stderr.contains("--cell-size must be a number of metres above 0"), "{stderr}");
        assert!(!out.exists(), "nothing written for --cell-size {bad}");
    }
}

/// A detector that sees resampled tiles: a known box in the resampled tile's pixels must come
/// back as the polygon at the matching map coordinates of the raster.
#[test]
fn objects_on_resampled_tiles_land_at_their_map_place() {
    let dir = tempfile::tempdir().unwrap();
    let (raster_path, _) = squares_raster(dir.path(), "one-metre", 128, Some(1.0));
    let mut raster = GeoTiff::open(&raster_path).unwrap();
    let info = raster.info().clone();
    // The model was trained at 0.5 m: each 1 m raster pixel becomes 2 x 2 model pixels.
    let plan = CellSizePlan::new(&raster_path, &info, Some(0.5), CellSizeRequest::default()).unwrap();
    assert_eq!(plan, CellSizePlan { fx: 2.0, fy: 2.0 });
    let seen = std::sync::Mutex::new(Vec::new());
    let inner = |tile: &TileImage| -> anyhow::Result<Vec<TileInstance>> {
        seen.lock().unwrap().push((tile.width, tile.height));
        if tile.tile.name() != "r0c0" {
            return Ok(Vec::new());
        }
        // Model pixels 20..60 across, 40..80 down: raster pixels 10..30 x 20..40.
        let w = tile.width as usize;
        let mut mask = vec![0u8; w * tile.height as usize];
        for y in 40..80 {
            for x in 20..60 {
                mask[y * w + x] = 1;
            }
        }
        Ok(vec![TileInstance { class_id: 1, score: 0.9, mask: TileMask::whole(tile.width, tile.height, mask) }])
    };
    let options = DetectOptions { tile_size: 64, overlap: 0, ..DetectOptions::default() };
    let batch = plan.wrap_batch(|tiles: &[TileImage]| tiles.iter().map(inner).collect());
    let per_tile = |tile: &TileImage| Ok(batch(std::slice::from_ref(tile))?.remove(0));
    let (features, _) = maskrcnn_geo::detect_raster(&mut raster, per_tile, &options, |_| {}).unwrap();
    drop(batch);
    let seen = seen.into_inner().unwrap();
    assert!(seen.iter().all(|&s| s == (128, 128)), "the detector sees 64 px tiles at twice the size: {seen:?}");
    assert_eq!(features.len(), 1);
    let r = features[0].geometry.bounding_rect().unwrap();
    let (ox, oy) = (400_000.0, 5_000_000.0);
    assert_eq!((r.min().x, r.max().x), (ox + 10.0, ox + 30.0), "{r:?}");
    assert_eq!((r.min().y, r.max().y), (oy - 40.0, oy - 20.0), "{r:?}");
}
