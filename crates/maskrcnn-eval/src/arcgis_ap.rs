//! Average precision in the style of arcgis.learn's `MaskRCNN.average_precision_score`,
//! so numbers can be compared with what ArcGIS users are used to, minus its known quirks.
//!
//! Shared with arcgis.learn: IoU is mask IoU at a single threshold; for each image and each
//! class with at least one ground-truth instance the class's detections are taken in score
//! order, each takes the ground truth with the highest IoU (no second-best fallback) and is
//! a true positive only if that IoU reaches the threshold and that ground truth is still
//! free; precision is made monotone from the right over a curve padded with (0,0) and
//! (1,0) and summed over recall steps (all-point interpolation); a class's AP is the mean
//! of its per-image APs over images that contain it, and the mean AP pools all classes per
//! image (class must match) and averages over images.
//!
//! Differences from arcgis.learn 2.4.4 (its behaviour in brackets):
//! * Images without any detection count, with AP 0 [skipped, which inflates AP].
//! * Detections scoring below `detect_threshold` are dropped before matching [kept as
//!   false positives, so the model's 0.05 floor decides what counts].
//! * Crowd ground truths (COCO `iscrowd`) are not instances to find; a detection whose
//!   best ground truth is a crowd region covering at least `iou_threshold` of it is
//!   neither a true nor a false positive [no crowd concept].
//! * A class with no ground truth anywhere has `None` [0].

use std::collections::{BTreeMap, HashMap};

use maskrcnn_masks::{mask_iou, Rle};
use serde::{Deserialize, Serialize};

use crate::coco::{CocoGroundTruth, DetectionResult};
use crate::error::EvalError;

/// What [`average_precision_score`] returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArcgisApScores {
    /// Per class name; `None` when the class has no ground truth in any image.
    pub per_class: BTreeMap<String, Option<f64>>,
    /// Classes pooled per image, averaged over images with ground truth; `None` if none.
    pub mean: Option<f64>,
}

struct Instance {
    category: i64,
    mask: Rle,
    crowd: bool,
}

struct Detection {
    category: i64,
    mask: Rle,
    score: f64,
}

/// arcgis.learn-style AP (see the module docs for exactly what differs from arcgis.learn).
/// `results` need segmentations; ground truth polygons/RLEs are rasterised per image.
pub fn average_precision_score(
    gt: &CocoGroundTruth,
    results: &[DetectionResult],
    iou_threshold: f64,
    detect_threshold: f64,
) -> Result<ArcgisApScores, EvalError> {
    let images = gt.image_index();
    let categories: HashMap<i64, &str> = gt.categories.iter().map(|c| (c.id, c.name.as_str())).collect();
    let mut instances: HashMap<i64, Vec<Instance>> = HashMap::new();
    for ann in &gt.annotations {
        let image = images[&ann.image_id];
        let Some(segmentation) = &ann.segmentation else {
            return Err(EvalError::InvalidAnnotation {
                annotation_id: ann.id,
                reason: "mask AP needs a segmentation".into(),
            });
        };
        let mask = segmentation
            .to_rle(image.height, image.width)
            .map_err(|source| EvalError::AnnotationMask { annotation_id: ann.id, source })?;
        instances.entry(ann.image_id).or_default().push(Instance {
            category: ann.category_id,
            mask,
            crowd: ann.iscrowd,
        });
    }
    let mut detections: HashMap<i64, Vec<Detection>> = HashMap::new();
    for (index, result) in results.iter().enumerate() {
        let image = result.check_against(index, &images, &categories)?;
        if result.score < detect_threshold {
            continue;
        }
        let Some(segmentation) = &result.segmentation else {
            return Err(EvalError::InvalidResult { index, reason: "mask AP needs a segmentation".into() });
        };
        let mask =
            segmentation.to_rle(image.height, image.width).map_err(|source| EvalError::ResultMask { index, source })?;
        detections.entry(result.image_id).or_default().push(Detection {
            category: result.category_id,
            mask,
            score: result.score,
        });
    }
    for list in detections.values_mut() {
        // Stable, so equal scores keep file order.
        list.sort_by(|a, b| b.score.partial_cmp(&a.score).unwrap_or(std::cmp::Ordering::Equal));
    }

    let mut class_sums: HashMap<i64, (f64, usize)> = HashMap::new();
    let (mut mean_sum, mut mean_count) = (0.0, 0usize);
    let mut image_ids: Vec<i64> = instances.keys().copied().collect();
    image_ids.sort_unstable();
    let no_detections = Vec::new();
    for image_id in image_ids {
        let gts = &instances[&image_id];
        let dts = detections.get(&image_id).unwrap_or(&no_detections);
        let mut present: Vec<i64> = gts.iter().filter(|g| !g.crowd).map(|g| g.category).collect();
        present.sort_unstable();
        present.dedup();
        for &category in &present {
            let ap = image_ap(gts, dts, Some(category), iou_threshold);
            let entry = class_sums.entry(category).or_insert((0.0, 0));
            entry.0 += ap;
            entry.1 += 1;
        }
        if !present.is_empty() {
            mean_sum += image_ap(gts, dts, None, iou_threshold);
            mean_count += 1;
        }
    }
    let per_class =
        gt.categories.iter().map(|c| (c.name.clone(), class_sums.get(&c.id).map(|&(sum, n)| sum / n as f64))).collect();
    Ok(ArcgisApScores { per_class, mean: (mean_count > 0).then(|| mean_sum / mean_count as f64) })
}

/// All-point AP of one image, for one class or (None) all classes pooled.
fn image_ap(gts: &[Instance], dts: &[Detection], category: Option<i64>, iou_threshold: f64) -> f64 {
    let wanted = |c: i64| category.is_none_or(|k| k == c);
    let gt_list: Vec<&Instance> = gts.iter().filter(|g| wanted(g.category)).collect();
    let dt_list: Vec<&Detection> = dts.iter().filter(|d| wanted(d.category)).collect();
    let num_gt = gt_list.iter().filter(|g| !g.crowd).count();
    if num_gt == 0 {
        return 0.0;
    }
    let gt_masks: Vec<Rle> = gt_list.iter().map(|g| g.mask.clone()).collect();
    let crowd: Vec<bool> = gt_list.iter().map(|g| g.crowd).collect();
    let dt_masks: Vec<Rle> = dt_list.iter().map(|d| d.mask.clone()).collect();
    let ious = mask_iou(&dt_masks, &gt_masks, &crowd);
    let mut taken = vec![false; gt_list.len()];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut precisions = vec![0.0];
    let mut recalls = vec![0.0];
    for (d, detection) in dt_list.iter().enumerate() {
        // Highest IoU among same-class ground truths, first one on ties.
        let mut best: Option<(usize, f64)> = None;
        for (g, gt) in gt_list.iter().enumerate() {
            if gt.category != detection.category {
                continue;
            }
            let iou = ious[d][g];
            if best.is_none_or(|(_, b)| iou > b) {
                best = Some((g, iou));
            }
        }
        match best {
            Some((g, iou)) if iou >= iou_threshold && gt_list[g].crowd => continue,
            Some((g, iou)) if iou >= iou_threshold && !taken[g] => {
                taken[g] = true;
                tp += 1;
            }
            _ => fp += 1,
        }
        precisions.push(tp as f64 / (tp + fp) as f64);
        recalls.push(tp as f64 / num_gt as f64);
    }
    precisions.push(0.0);
    recalls.push(1.0);
    for i in (0..precisions.len() - 1).rev() {
        precisions[i] = precisions[i].max(precisions[i + 1]);
    }
    (1..recalls.len())
        .filter(|&i| recalls[i] != recalls[i - 1])
        .map(|i| (recalls[i] - recalls[i - 1]) * precisions[i])
        .sum()
}
