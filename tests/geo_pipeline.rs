//! export-chips -> train -> detect on the real SpaceNet GeoTIFF, through the binary as a user runs it.

mod common;

use std::process::Command;

use common::shared_data;

fn run(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_maskrcnn")).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "maskrcnn {:?} failed: {stderr}", args);
    stderr
}

#[test]
fn spacenet_chips_train_and_detect_end_to_end() {
    let raster = shared_data("spacenet-atlanta-sample/sample_geotiff.tif");
    let labels = shared_data("spacenet-atlanta-sample/geotiff_labels.geojson");
    let dir = tempfile::tempdir().unwrap();
    let chips = dir.path().join("chips");
    let os = |s: &str| std::ffi::OsString::from(s);
    let p = |p: &std::path::Path| p.as_os_str().to_owned();
    let said = run(&[
        &os("export-chips"),
        &os("--raster"),
        &p(&raster),
        &os("--labels"),
        &p(&labels),
        &os("--output"),
        &p(&chips),
        &os("--tile-size"),
        &os("256"),
        &os("--format"),
        &os("coco"),
    ]);
    assert!(said.contains("16 chips") && said.contains("55 objects"), "{said}");

    // A few steps only: this checks that the pieces fit (1-band 16-bit chips, a 3-band model,
    // band replication at detection), not what the model learns.
    let run_dir = dir.path().join("run");
    run(&[
        &os("train"),
        &os("--data"),
        &p(&chips.join("annotations.json")),
        &os("--images"),
        &p(&chips.join("images")),
        &os("--output"),
        &p(&run_dir),
        &os("--backbone"),
        &os("18"),
        &os("--steps"),
        &os("4"),
        &os("--batch-size"),
        &os("1"),
        &os("--min-size"),
        &os("128"),
        &os("--max-size"),
        &os("128"),
        &os("--val-split"),
        &os("0"),
        &os("--quiet"),
    ]);
    let output = dir.path().join("buildings.gpkg");
    let said = run(&[
        &os("detect"),
        // The run folder (its model/ is read) and no --bands: the model recorded that it was
        // trained on single-band chips, so the one band is repeated to its three inputs.
        &os("--model"),
        &p(&run_dir),
        &os("--raster"),
        &p(&raster),
        &os("--output"),
        &p(&output),
        &os("--max-detections"),
        &os("300"),
        &os("--tile-size"),
        &os("256"),
        &os("--overlap"),
        &os("32"),
        &os("--threshold"),
        &os("0.0"),
    ]);
    assert!(said.contains("16 tiles"), "{said}");
    assert!(said.contains("a training run folder; using its") && said.contains("repeating band 1"), "{said}");
    assert!(output.is_file());
    match Command::new("ogrinfo").args(["-so", "-al"]).arg(&output).output() {
        Ok(info) => {
            let text = String::from_utf8_lossy(&info.stdout);
            assert!(text.contains("32616"), "output CRS is the raster's: {text}");
        }
        Err(_) => eprintln!("SKIPPED the ogrinfo check: GDAL's ogrinfo is not installed (apt-get install gdal-bin)"),
    }
}
