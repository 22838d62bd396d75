//! Agreement with pycocotools 2.0.11 on the coco128-permissive annotations (shared data) and
//! the result sets in fixtures/eval (regenerate with tools/reference/eval/make_eval_fixtures.py).
mod common;

use common::*;
use maskrcnn_eval::{evaluate, load_ground_truth, load_results, EvalParams, IouType};

const SETS: [&str; 9] =
    ["perfect", "shifted", "dropped", "duplicates", "misclassed", "crowd", "random_scores", "segm_only", "many"];

#[test]
fn ground_truth_rasterisation_matches_pycocotools_ann_to_rle() {
    let gt = load_ground_truth(shared_data().join("coco128-permissive/instances.json")).unwrap();
    let expected = read_json(&fixture("coco128_gt_rles.json"));
    let images = gt.image_index();
    for ann in &gt.annotations {
        let image = images[&ann.image_id];
        let rle = ann.segmentation.as_ref().unwrap().to_rle(image.height, image.width).unwrap();
        let reference = &expected[ann.id.to_string()];
        assert_eq!(rle.to_coco_string(), reference["counts"].as_str().unwrap(), "annotation {}", ann.id);
    }
    assert_eq!(gt.annotations.len(), 246);
}

fn check(iou_type: IouType, max_dets: [usize; 3]) {
    let gt = load_ground_truth(shared_data().join("coco128-permissive/instances.json")).unwrap();
    let expected = read_json(&fixture("coco128_expected.json"));
    let key = format!("{}_maxdets_{}", iou_type.name(), max_dets[2]);
    let mut compared = 0;
    for set in SETS {
        let results = load_results(fixture(&format!("coco128_results_{set}.json"))).unwrap();
        let metrics = evaluate(&gt, &results, &EvalParams::new(iou_type).with_max_dets(max_dets)).unwrap();
        compared += assert_matches_reference(&metrics, &expected[set][&key], &format!("{set} {key}"));
    }
    // 9 sets x (12 stats + 80 classes x 3)
    assert_eq!(compared, 9 * (12 + 80 * 3));
}

#[test]
fn bbox_matches_pycocotools() {
    check(IouType::Bbox, [1, 10, 100]);
}

#[test]
fn bbox_with_300_detections_matches_pycocotools() {
    check(IouType::Bbox, [1, 10, 300]);
}

#[test]
fn segm_matches_pycocotools() {
    check(IouType::Segm, [1, 10, 100]);
}

#[test]
fn segm_with_300_detections_matches_pycocotools() {
    check(IouType::Segm, [1, 10, 300]);
}

#[test]
fn boundary_matches_python_boundary_iou_port() {
    check(IouType::Boundary, [1, 10, 100]);
}

#[test]
fn max_dets_changes_dense_results() {
    // Guards the fixture itself: the "many" set must actually exceed 100 per image and class.
    let expected = read_json(&fixture("coco128_expected.json"));
    let at_100 = expected["many"]["bbox_maxdets_100"]["stats"][8].as_f64().unwrap();
    let at_300 = expected["many"]["bbox_maxdets_300"]["stats"][8].as_f64().unwrap();
    assert!(at_300 > at_100 + 0.01, "AR@300 {at_300} vs AR@100 {at_100}");
}
