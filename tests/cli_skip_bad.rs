//! Batch runs degrade instead of collapsing: `predict` over a folder and `evaluate --model --data`
//! skip an unreadable image with a warning naming it, write the results of the others, and exit
//! non-zero unless `--skip-bad` is given.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::fixture;

fn maskrcnn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_maskrcnn"))
}

/// A folder with the tiny model's test image as `good.jpg` (written by the `image` crate) and a
/// copy of it cut in half as `bad.jpg`.
fn folder_with_a_truncated_jpeg(dir: &Path) -> (PathBuf, PathBuf) {
    let images = dir.join("images");
    std::fs::create_dir(&images).unwrap();
    let picture = image::open(fixture("parity/r18_tiny/image.png")).unwrap().to_rgb8();
    let good = images.join("good.jpg");
    picture.save_with_format(&good, image::ImageFormat::Jpeg).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let bad = images.join("bad.jpg");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    (images, bad)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn predict(images: &Path, out: &Path, extra: &[&str]) -> Output {
    maskrcnn()
        .args(["predict", "--model"])
        .arg(fixture("parity/r18_tiny"))
        .arg("--input")
        .arg(images)
        .arg("--output")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn assert_good_results_only(out: &Path) {
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap();
    let results = results.as_array().unwrap();
    assert!(!results.is_empty(), "the good image has detections");
    for r in results {
        assert_eq!(r["file_name"], "good.jpg", "{r}");
        // Ids follow the folder order (bad.jpg is 1): skipping shifts no image's id.
        assert_eq!(r["image_id"], 2, "{r}");
    }
}

#[test]
fn predict_skips_a_truncated_jpeg_and_fails_without_skip_bad() {
    let dir = tempfile::tempdir().unwrap();
    let (images, bad) = folder_with_a_truncated_jpeg(dir.path());
    let out = dir.path().join("results.json");
    let overlays = dir.path().join("overlays");
    let run = predict(&images, &out, &["--overlay-dir", overlays.to_str().unwrap()]);
    let err = stderr(&run);
    assert!(!run.status.success(), "a skipped image must fail the run: {err}");
    let warning = format!("warning: {}: ", bad.display());
    assert!(err.lines().any(|l| l.starts_with(&warning) && l.ends_with("; skipped")), "{err}");
    assert!(err.contains("1 of 2 images skipped"), "{err}");
    assert!(err.lines().last().unwrap().starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_good_results_only(&out);
    assert!(overlays.join("good.png").is_file() && !overlays.join("bad.png").exists());
}

#[test]
fn predict_with_skip_bad_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (images, bad) = folder_with_a_truncated_jpeg(dir.path());
    let out = dir.path().join("results.json");
    let run = predict(&images, &out, &["--skip-bad"]);
    let err = stderr(&run);
    assert!(run.status.success(), "{err}");
    assert!(err.contains(&format!("warning: {}: ", bad.display())) && err.contains("1 of 2 images skipped"), "{err}");
    assert_good_results_only(&out);

    // With nothing readable there is nothing to write, --skip-bad or not.
    std::fs::remove_file(images.join("good.jpg")).unwrap();
    let none = dir.path().join("none.json");
    let run = predict(&images, &none, &["--skip-bad"]);
    assert!(!run.status.success() && stderr(&run).contains("none of its 1 images could be read"), "{}", stderr(&run));
    assert!(!none.exists());
}

#[test]
fn evaluate_on_a_dataset_skips_a_truncated_jpeg() {
    let dir = tempfile::tempdir().unwrap();
    let (images, bad) = folder_with_a_truncated_jpeg(dir.path());
    let (w, h) = image::image_dimensions(images.join("good.jpg")).unwrap();
    let instances = serde_json::json!({
        "images": [
            {"id": 1, "file_name": "bad.jpg", "height": h, "width": w},
            {"id": 2, "file_name": "good.jpg", "height": h, "width": w},
        ],
        // The tiny model's classes.
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "tie"}, {"id": 3, "name": "scissors"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [2, 2, 10, 10], "area": 100,
             "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]]},
            {"id": 2, "image_id": 2, "category_id": 1, "iscrowd": 0, "bbox": [2, 2, 10, 10], "area": 100,
             "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]]},
        ],
    });
    let data = dir.path().join("instances.json");
    std::fs::write(&data, serde_json::to_vec(&instances).unwrap()).unwrap();
    let metrics = dir.path().join("metrics.json");
    let evaluate = |extra: &[&str]| {
        maskrcnn()
            .args(["evaluate", "--model"])
            .arg(fixture("parity/r18_tiny"))
            .arg("--data")
            .arg(&data)
            .arg("--images")
            .arg(&images)
            .arg("--output")
            .arg(&metrics)
            .args(["--iou-type", "bbox"])
            .args(extra)
            .output()
            .unwrap()
    };
    let run = evaluate(&[]);
    let err = stderr(&run);
    assert!(!run.status.success(), "{err}");
    assert!(err.contains(&format!("warning: {}: ", bad.display())) && err.contains("1 of 2 images skipped"), "{err}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&metrics).unwrap()).unwrap();
    assert_eq!(json["skipped_images"][0]["image_id"], 1, "{json}");
    assert!(json["bbox"]["AP"].is_number(), "{json}");

    let run = evaluate(&["--skip-bad", "--overwrite"]);
    assert!(run.status.success(), "{}", stderr(&run));
}
