//! Runs without shared data: a tiny hand-made case (fixtures/eval/synthetic_*.json) whose
//! pycocotools numbers come from tools/reference/eval/make_eval_fixtures.py, plus input
//! errors, report output and the arcgis-style AP computed by hand.
mod common;

use common::*;
use maskrcnn_eval::{
    average_precision_score, evaluate, evaluate_all, format_report, format_table, load_ground_truth, load_results,
    CocoGroundTruth, DetectionResult, EvalError, EvalParams, IouType,
};
use maskrcnn_masks::Segmentation;

fn synthetic() -> (CocoGroundTruth, Vec<DetectionResult>) {
    (load_ground_truth(fixture("synthetic_gt.json")).unwrap(), load_results(fixture("synthetic_results.json")).unwrap())
}

#[test]
fn synthetic_matches_pycocotools() {
    let (gt, results) = synthetic();
    let expected = read_json(&fixture("synthetic_expected.json"));
    for iou_type in [IouType::Bbox, IouType::Segm, IouType::Boundary] {
        for max_dets in [[1, 10, 100], [1, 2, 3]] {
            let key = format!("{}_maxdets_{}", iou_type.name(), max_dets[2]);
            let metrics = evaluate(&gt, &results, &EvalParams::new(iou_type).with_max_dets(max_dets)).unwrap();
            assert_matches_reference(&metrics, &expected[&key], &key);
        }
    }
}

#[test]
fn synthetic_numbers_are_nontrivial() {
    // Guards against a fixture where everything is 0 or 1 and agreement proves little.
    let (gt, results) = synthetic();
    let metrics = evaluate(&gt, &results, &EvalParams::new(IouType::Segm)).unwrap();
    let ap = metrics.stat("AP");
    assert!(ap > 0.3 && ap < 0.9, "AP {ap}");
    assert_eq!(metrics.stat("APl"), -1.0, "no large objects: undefined, as COCO prints it");
    let unused = metrics.per_class.iter().find(|c| c.name == "unused").unwrap();
    assert_eq!((unused.ap, unused.num_ground_truth), (None, 0));
}

#[test]
fn empty_results_give_zeros_not_nan() {
    let (gt, _) = synthetic();
    let metrics = evaluate(&gt, &[], &EvalParams::new(IouType::Segm)).unwrap();
    assert_eq!(metrics.stat("AP"), 0.0);
    assert_eq!(metrics.stat("AR100"), 0.0);
    assert_eq!(metrics.stat("APl"), -1.0);
    let json = serde_json::to_string(&metrics).unwrap();
    assert!(!json.contains("NaN") && !json.contains("nan"), "{json}");
}

#[test]
fn bad_results_are_clear_errors() {
    let (gt, results) = synthetic();
    let params = EvalParams::new(IouType::Segm);
    let mut bad = results.clone();
    bad[3].image_id = 99;
    let err = evaluate(&gt, &bad, &params).unwrap_err();
    assert!(matches!(err, EvalError::UnknownImage { index: 3, image_id: 99 }), "{err}");
    assert!(err.to_string().contains("image_id 99"));

    let mut bad = results.clone();
    bad[1].category_id = 3;
    assert!(matches!(evaluate(&gt, &bad, &params), Err(EvalError::UnknownCategory { index: 1, category_id: 3 })));

    let mut bad = results.clone();
    bad[2].segmentation = Some(Segmentation::CompressedRle { size: [48, 64], counts: "0{{".into() });
    let err = evaluate(&gt, &bad, &params).unwrap_err();
    assert!(matches!(err, EvalError::ResultMask { index: 2, .. }), "{err}");

    let mut bad = results.clone();
    bad[0].segmentation = Some(Segmentation::CompressedRle { size: [10, 10], counts: "0`1".into() });
    assert!(
        matches!(evaluate(&gt, &bad, &params), Err(EvalError::ResultMask { index: 0, .. })),
        "size differs from image"
    );

    // The first result has a box, so pycocotools takes every area from boxes: a later
    // result without one is an error rather than a KeyError.
    let mut bad = results.clone();
    bad[4].bbox = None;
    assert!(matches!(evaluate(&gt, &bad, &params), Err(EvalError::InvalidResult { index: 4, .. })));

    let mut no_annotations = gt.clone();
    no_annotations.annotations.clear();
    assert!(matches!(evaluate(&no_annotations, &results, &params), Err(EvalError::NoGroundTruthAnnotations)));
}

#[test]
fn file_errors_name_the_file() {
    let err = load_ground_truth("/nonexistent/instances.json").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/instances.json"), "{err}");
    let dir = std::env::temp_dir().join(format!("maskrcnn-eval-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.json");
    std::fs::write(&path, r#"[{"image_id": 1, "category_id": 1, "score": 0.5, "bbox": [1, 2, 3]}]"#).unwrap();
    let err = load_results(&path).unwrap_err();
    assert!(err.to_string().contains("broken.json") && err.to_string().contains("4 numbers"), "{err}");
    std::fs::write(&path, r#"{"images": [{"id": 1, "width": 4, "height": 4}], "categories": [], "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [0,0,1,1], "area": 1}]}"#).unwrap();
    let err = load_ground_truth(&path).unwrap_err();
    assert!(err.to_string().contains("unknown image id 2"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn report_json_and_table() {
    let (gt, results) = synthetic();
    let report = evaluate_all(&gt, &results, &[IouType::Bbox, IouType::Segm, IouType::Boundary], [1, 10, 100]).unwrap();
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    for kind in ["bbox", "segm", "boundary"] {
        for name in maskrcnn_eval::STAT_NAMES {
            assert!(json[kind][name].is_f64(), "{kind}.{name} missing in {json}");
        }
        assert_eq!(json[kind]["per_class"].as_array().unwrap().len(), 3);
    }
    assert!(json["segm"]["per_class"][2]["AP"].is_null(), "undefined per-class AP is null");
    let table = format_table(report.segm.as_ref().unwrap());
    assert!(table.contains("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"), "{table}");
    assert!(table.contains("building") && !table.contains("unused"), "{table}");
    assert_eq!(format_report(&report).matches("evaluation (COCO)").count(), 3);
}

#[test]
fn arcgis_style_average_precision_by_hand() {
    let (gt, results) = synthetic();
    // Expected values worked out by hand with the all-point rule (curve padded with (0,0)
    // and (1,0), precision made monotone from the right, sum of recall steps x precision):
    // building, image 1: TP, FP (duplicate of a matched GT), TP over 2 GT -> 0.5*1 + 0.5*2/3;
    //   image 2: both detections inside the crowd region are skipped, then TP -> 1.
    // pool, image 1: FP (0.95), TP over 1 GT -> 0.5; image 5: no detection >= 0.5 -> 0.
    // pooled mean, image 1: FP, TP, FP, TP, TP over 3 GT -> 3 x (1/3 x 0.6) = 0.6.
    let scores = average_precision_score(&gt, &results, 0.5, 0.5).unwrap();
    let building = scores.per_class["building"].unwrap();
    assert!((building - (5.0 / 6.0 + 1.0) / 2.0).abs() < 1e-12, "{building}");
    assert!((scores.per_class["pool"].unwrap() - 0.25).abs() < 1e-12);
    assert_eq!(scores.per_class["unused"], None);
    assert!((scores.mean.unwrap() - (0.6 + 1.0 + 0.0) / 3.0).abs() < 1e-12, "{:?}", scores.mean);

    // Lowering the detection threshold lets image 5's detections in: the right-class one
    // is a TP, the wrong-class one a FP in the pooled score only.
    let scores = average_precision_score(&gt, &results, 0.5, 0.0).unwrap();
    assert!((scores.per_class["pool"].unwrap() - 0.75).abs() < 1e-12);
    assert!((scores.mean.unwrap() - (0.6 + 1.0 + 0.5) / 3.0).abs() < 1e-12);
}
