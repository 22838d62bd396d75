//! Fuzzing the evaluation inputs: COCO ground-truth JSON (`CocoGroundTruth::from_json_str`) and
//! results JSON, through `evaluate` for bbox, segm and Boundary IoU and the arcgis.learn AP.
//! Seeds hold polygons, compressed and uncompressed RLE, crowd and ignored regions; mutations
//! are byte edits and structured JSON edits (hostile numbers, removed or duplicated members,
//! retyped values). Short in CI; `MASKRCNN_FUZZ_CASES=100000 cargo test --release -p
//! maskrcnn-eval --test fuzz_coco_eval` for a long run.

#[path = "../../maskrcnn-masks/tests/fuzz_common/mod.rs"]
mod fuzz_common;

use fuzz_common::{json, mutate_bytes, Rng};
use maskrcnn_eval::{average_precision_score, evaluate, CocoGroundTruth, DetectionResult, EvalParams, IouType};
use maskrcnn_masks::{Rle, Segmentation};
use serde_json::{json as j, Value};

/// Ground truth and results are evaluated when their masks total at most this many pixels; a
/// bigger declared image is legitimate work (no bound to find), only slow.
const FUZZ_PIXEL_BUDGET: u64 = 1 << 24;

fn seeds() -> (Value, Value) {
    let (h, w) = (12usize, 10usize);
    let mask: Vec<u8> = (0..h * w).map(|i| u8::from((i / w) % 5 < 3 && i % w > 2)).collect();
    let rle = Rle::from_mask(&mask, h, w);
    let gt = j!({
        "images": [{"id": 1, "width": w, "height": h, "file_name": "a.png"}, {"id": 2, "width": 6, "height": 5}],
        "categories": [{"id": 1, "name": "a"}, {"id": 4, "name": "b"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0,
             "segmentation": [[1, 1, 6, 1, 6, 6, 1, 6]]},
            {"id": 2, "image_id": 1, "category_id": 4, "iscrowd": 1,
             "segmentation": {"size": [h, w], "counts": rle.counts}},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 3, 3], "ignore": 1,
             "segmentation": Segmentation::from_rle(&Rle::from_mask(&[1; 30], 5, 6))},
            {"id": 4, "image_id": 2, "category_id": 4, "bbox": [2, 1, 3, 3], "area": 9.5,
             "segmentation": [[2, 1, 5, 1, 5, 4], [2, 2, 3, 2, 3, 3]]}
        ]
    });
    let results = j!([
        {"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 4], "score": 0.9,
         "segmentation": Segmentation::from_rle(&rle)},
        {"image_id": 1, "category_id": 4, "bbox": [0, 0, 10, 12], "score": 0.5,
         "segmentation": Segmentation::from_rle(&rle)},
        {"image_id": 2, "category_id": 1, "bbox": [0, 0, 2, 2], "score": 0.5,
         "segmentation": Segmentation::from_rle(&Rle::from_mask(&[0, 1].repeat(15), 5, 6))},
        {"image_id": 2, "category_id": 4, "bbox": [2, 1, 3, 3], "score": 0.1}
    ]);
    (gt, results)
}

/// Declared pixels the evaluation would rasterise.
fn declared_pixels(gt: &CocoGroundTruth, results: &[DetectionResult]) -> u64 {
    let size: std::collections::HashMap<i64, u64> =
        gt.images.iter().map(|i| (i.id, (i.height as u64).saturating_mul(i.width as u64))).collect();
    let per = |id: &i64| size.get(id).copied().unwrap_or(0);
    gt.annotations
        .iter()
        .map(|a| per(&a.image_id))
        .chain(results.iter().map(|r| per(&r.image_id)))
        .fold(0, u64::saturating_add)
}

fn evaluate_everything(gt_text: &[u8], results_text: &[u8]) {
    let Ok(gt) = CocoGroundTruth::from_json_str(&String::from_utf8_lossy(gt_text)) else { return };
    let Ok(results) = serde_json::from_slice::<Vec<DetectionResult>>(results_text) else { return };
    if declared_pixels(&gt, &results) > FUZZ_PIXEL_BUDGET {
        return;
    }
    for iou_type in [IouType::Bbox, IouType::Segm, IouType::Boundary] {
        if let Ok(metrics) = evaluate(&gt, &results, &EvalParams::new(iou_type)) {
            for v in metrics.stats_in_coco_order() {
                assert!(v == -1.0 || (0.0..=1.0).contains(&v), "{iou_type:?} stat {v}");
            }
        }
    }
    let _ = evaluate(&gt, &results, &EvalParams::new(IouType::Segm).with_max_dets([1, 2, 1000]));
    let _ = average_precision_score(&gt, &results, 0.5, 0.1);
}

/// Input: ground truth and results texts joined by a NUL byte (neither holds one).
fn split(input: &[u8]) -> (&[u8], &[u8]) {
    match input.iter().position(|&b| b == 0) {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, b"[]"),
    }
}

fn join(gt: &[u8], results: &[u8]) -> Vec<u8> {
    let mut out = gt.to_vec();
    out.push(0);
    out.extend_from_slice(results);
    out
}

#[test]
fn fuzz_ground_truth_and_results() {
    let (gt, results) = seeds();
    let (gt_text, results_text) = (serde_json::to_vec(&gt).unwrap(), serde_json::to_vec(&results).unwrap());
    // The seeds evaluate.
    let parsed = CocoGroundTruth::from_json_str(std::str::from_utf8(&gt_text).unwrap()).unwrap();
    let dets: Vec<DetectionResult> = serde_json::from_slice(&results_text).unwrap();
    for t in [IouType::Bbox, IouType::Segm, IouType::Boundary] {
        evaluate(&parsed, &dets, &EvalParams::new(t)).unwrap_or_else(|e| panic!("{t:?}: {e}"));
    }
    let tokens: &[&[u8]] = &[b"\"segmentation\"", b"\"counts\"", b"\"bbox\"", b"\"score\"", b"NaN", b"-1", b"1e999"];
    fuzz_common::run(
        "coco_eval",
        fuzz_common::cases(20_000),
        |rng: &mut Rng, _| {
            let mutate_gt = rng.chance(2);
            let (g, r) = if rng.below(3) != 0 {
                let g = if mutate_gt { json::mutate(rng, &gt) } else { gt.clone() };
                let r = if mutate_gt && !rng.chance(3) { results.clone() } else { json::mutate(rng, &results) };
                (serde_json::to_vec(&g).unwrap(), serde_json::to_vec(&r).unwrap())
            } else if mutate_gt {
                (mutate_bytes(rng, &gt_text, &[], tokens), results_text.clone())
            } else {
                (gt_text.clone(), mutate_bytes(rng, &results_text, &[], tokens))
            };
            join(&g.into_iter().filter(|&b| b != 0).collect::<Vec<_>>(), &r)
        },
        |input| {
            let (g, r) = split(input);
            evaluate_everything(g, r);
        },
    );
}

// ---- regressions ----

/// Boundary IoU decoded every mask at its image's full size, with two more full-size buffers:
/// a ground truth declaring a 65535x65535 image took 13 GB per annotation (abort). The band is
/// now computed on each mask's box, so memory follows the objects.
#[test]
fn boundary_evaluation_of_a_huge_declared_image_is_bounded() {
    let (mut gt, mut results) = seeds();
    gt["images"][0]["height"] = j!(65535);
    gt["images"][0]["width"] = j!(65535);
    // Only annotations and results at the declared size: polygons and a box.
    gt["annotations"] = j!([gt["annotations"][0].clone()]);
    results = j!([results[3].clone(), {"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 4], "score": 0.9}]);
    let gt = CocoGroundTruth::from_json_str(&gt.to_string()).unwrap();
    let results: Vec<DetectionResult> = serde_json::from_value(results).unwrap();
    let start = std::time::Instant::now();
    let (metrics, peak) = fuzz_common::peak_during(|| evaluate(&gt, &results, &EvalParams::new(IouType::Boundary)));
    assert!(metrics.unwrap().stats_in_coco_order()[0] >= 0.0);
    assert!(peak < 256 << 20, "peak {peak} bytes");
    assert!(start.elapsed().as_secs_f64() < 2.0, "{:?}", start.elapsed());
}
