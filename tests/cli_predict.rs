//! `maskrcnn predict` end to end: results that match torchvision, overlays, and one-line errors.

mod common;

use std::process::Command;

use common::{fixture, read_safetensors};
use maskrcnn_masks::Rle;

fn maskrcnn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_maskrcnn"))
}

#[test]
fn predict_writes_coco_results_matching_torchvision() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results.json");
    let overlays = dir.path().join("overlays");
    let status = maskrcnn()
        .args(["predict", "--model"])
        .arg(fixture("parity/r18_tiny"))
        .arg("--input")
        .arg(fixture("parity/r18_tiny/image.png"))
        .arg("--output")
        .arg(&out)
        .arg("--overlay-dir")
        .arg(&overlays)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let results = results.as_array().unwrap();
    let reference = read_safetensors(&fixture("parity/r18_tiny/outputs.safetensors"));
    let (_, scores) = &reference["final.scores"];
    let (_, labels) = &reference["final.labels"];
    let (mshape, masks) = &reference["final.masks"];
    let (h, w) = (mshape[2], mshape[3]);
    assert_eq!(results.len(), scores.len());
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["image_id"], 1);
        assert_eq!(r["file_name"], "image.png");
        assert_eq!(r["category_id"].as_f64().unwrap() as f32, labels[i]);
        assert!((r["score"].as_f64().unwrap() as f32 - scores[i]).abs() < 1e-3);
        let seg = &r["segmentation"];
        assert_eq!(seg["size"], serde_json::json!([h, w]));
        let rle = Rle::from_coco_string(seg["counts"].as_str().unwrap(), h, w).unwrap();
        let ours = rle.to_mask();
        let theirs = &masks[i * h * w..(i + 1) * h * w];
        let inter = ours.iter().zip(theirs).filter(|(a, b)| **a == 1 && **b > 0.5).count();
        let union = ours.iter().zip(theirs).filter(|(a, b)| **a == 1 || **b > 0.5).count();
        assert!(inter as f64 / union as f64 >= 0.98, "mask IoU of detection {i}");
        // COCO boxes are [x, y, w, h].
        let bbox: Vec<f64> = r["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert!(bbox[2] > 0.0 && bbox[3] > 0.0);
    }
    let overlay = image::open(overlays.join("image.png")).unwrap();
    assert_eq!((overlay.height() as usize, overlay.width() as usize), (h, w));
}

fn expect_one_line_error(args: &[&std::ffi::OsStr], must_mention: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results.json");
    let output = maskrcnn().args(args).arg("--output").arg(&out).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "should fail: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(must_mention), "{stderr} should mention {must_mention}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    assert!(!out.exists(), "no partial output file");
}

#[test]
fn bad_inputs_fail_with_one_line_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.png");
    let bytes = std::fs::read(fixture("parity/r18_tiny/image.png")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let model = fixture("parity/r18_tiny");
    let image = fixture("parity/r18_tiny/image.png");
    let os = |p: &std::path::Path| p.as_os_str().to_owned();

    expect_one_line_error(
        &["predict".as_ref(), "--model".as_ref(), &os(&model), "--input".as_ref(), &os(&truncated)],
        "truncated.png",
    );
    expect_one_line_error(
        &["predict".as_ref(), "--model".as_ref(), &os(&model), "--input".as_ref(), &os(&empty)],
        "holds no images",
    );
    let not_a_model = dir.path().join("weights.pth");
    std::fs::write(&not_a_model, b"definitely not a checkpoint").unwrap();
    expect_one_line_error(
        &["predict".as_ref(), "--model".as_ref(), &os(&not_a_model), "--input".as_ref(), &os(&image)],
        "weights.pth",
    );
}
