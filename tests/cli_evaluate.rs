//! `maskrcnn evaluate` and `show-results` end to end on the shared COCO sample.

mod common;

use std::process::Command;

use common::{fixture, shared_data};

fn maskrcnn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_maskrcnn"))
}

#[test]
fn evaluate_results_file_matches_pycocotools() {
    let gt = shared_data("coco128-permissive/instances.json");
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("eval/coco128_expected.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("metrics.json");
    let report = dir.path().join("report.html");
    let run = maskrcnn()
        .args(["evaluate", "--predictions"])
        .arg(fixture("eval/coco128_results_shifted.json"))
        .arg("--annotations")
        .arg(&gt)
        .arg("--output")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("Average Precision") && !stdout.split_whitespace().any(|w| w.eq_ignore_ascii_case("nan")),
        "{stdout}"
    );
    let metrics: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"];
    for (iou_type, key) in [("bbox", "bbox_maxdets_100"), ("segm", "segm_maxdets_100")] {
        let reference = expected["shifted"][key]["pycocotools_stats"].as_array().unwrap();
        for (name, want) in names.iter().zip(reference) {
            let got = metrics[iou_type][name].as_f64().unwrap();
            assert!((got - want.as_f64().unwrap()).abs() < 1e-4, "{iou_type} {name}: {got} vs {want}");
        }
        assert!(metrics[iou_type]["per_class"].as_array().is_some_and(|a| !a.is_empty()));
    }
    assert!(metrics["boundary"]["AP"].is_number());
    assert!(metrics["arcgis_average_precision"]["per_class"].is_object());
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<table") && !html.contains("http://") && !html.contains("https://"), "offline report");
}

#[test]
fn show_results_and_model_evaluation_run_on_the_shared_sample() {
    let data = shared_data("coco128-permissive");
    let dir = tempfile::tempdir().unwrap();
    let grid = dir.path().join("grid.png");
    let run = maskrcnn()
        .args(["show-results", "--model"])
        .arg(fixture("parity/r18_tiny"))
        .arg("--data")
        .arg(&data)
        .arg("--output")
        .arg(&grid)
        .args(["--rows", "2", "--mode", "bbox_mask"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let picture = image::open(&grid).unwrap();
    assert!(picture.width() >= 960 && picture.height() >= 720, "two rows of two 480x360 cells");

    // Bad input: results naming an image the ground truth does not have.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"[{"image_id": 987654321, "category_id": 1, "bbox": [0,0,5,5], "score": 0.9}]"#).unwrap();
    let run = maskrcnn()
        .args(["evaluate", "--predictions"])
        .arg(&bad)
        .arg("--annotations")
        .arg(data.join("instances.json"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && stderr.starts_with("error: ") && stderr.contains("987654321"), "{stderr}");
}

/// Results naming a category the ground truth does not have are refused, not scored.
#[test]
fn results_with_unknown_category_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gt = dir.path().join("gt.json");
    std::fs::write(
        &gt,
        r#"{"images":[{"id":1,"file_name":"a.png","height":10,"width":10}],
            "annotations":[{"id":1,"image_id":1,"category_id":3,"bbox":[1,1,4,4],"area":16,"iscrowd":0,
                            "segmentation":[[1,1,5,1,5,5,1,5]]}],
            "categories":[{"id":3,"name":"tank"},{"id":7,"name":"ship"}]}"#,
    )
    .unwrap();
    let results = dir.path().join("results.json");
    std::fs::write(&results, r#"[{"image_id":1,"category_id":2,"bbox":[1,1,4,4],"score":0.9}]"#).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_maskrcnn"))
        .args(["evaluate", "--predictions", results.to_str().unwrap(), "--annotations", gt.to_str().unwrap()])
        .args(["--iou-type", "bbox"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("category") && err.contains('2'), "{err}");
}
