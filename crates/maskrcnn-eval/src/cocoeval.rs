//! A re-implementation of pycocotools' `COCOeval` (evaluate + accumulate + summarize).
//!
//! Every rule that changes the numbers is reproduced: the stable (mergesort) score order,
//! truncation to the largest maxDets before computing IoUs, greedy matching in score order
//! where a detection keeps the *last* ground truth with the best IoU, ignored ground truths
//! sorted last and only matched when no regular one is available, crowd regions matched
//! by intersection over detection area and allowed to absorb any number of detections,
//! unmatched detections outside the area range ignored, 101-point interpolated precision,
//! and -1 for settings without ground truth.
//!
//! Deliberate differences from pycocotools, all invisible on well-formed COCO data:
//! * `stats["AP"]` uses `max_dets[2]`; pycocotools always looks up maxDets=100 there and so
//!   prints -1 for any other setting (detectron2's `COCOevalMaxDets` makes the same fix).
//! * A match to a ground truth with annotation id 0 counts as a match (pycocotools stores
//!   matches as gt ids and so treats id 0 as "unmatched").
//! * Malformed input (unknown ids, RLE sizes that differ from the image, broken RLE) is an
//!   error instead of an assertion, a silent drop, or IoU -1.

use std::collections::{BTreeMap, HashMap};

use maskrcnn_masks::{bbox_iou, boundary_dilation_pixels, mask_boundary_band, mask_iou, Rle};
use serde::{Deserialize, Serialize};

use crate::coco::{CocoGroundTruth, DetectionResult};
use crate::error::EvalError;

/// Which overlap measure matches detections to ground truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IouType {
    Bbox,
    Segm,
    /// Boundary IoU (Cheng et al., 2021) as in boundary_iou_api's COCOeval: the minimum of
    /// mask IoU and the IoU of the boundary bands; crowd regions use plain mask IoU.
    Boundary,
}

impl IouType {
    /// The `iouType` string of pycocotools, also the key in reports.
    pub fn name(self) -> &'static str {
        match self {
            IouType::Bbox => "bbox",
            IouType::Segm => "segm",
            IouType::Boundary => "boundary",
        }
    }
}

/// What [`evaluate`] computes; IoU thresholds and area ranges are COCO's fixed ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalParams {
    pub iou_type: IouType,
    /// Detections per image for AR1/AR10/AR100; the largest also caps detections per
    /// image for every AP number. Dense scenes (building tiles) need more than 100.
    pub max_dets: [usize; 3],
    /// Boundary band width as a fraction of the image diagonal (boundary_iou_api: 0.02).
    pub boundary_dilation_ratio: f64,
}

impl EvalParams {
    /// COCO's defaults: max detections 1/10/100, boundary dilation ratio 0.02.
    pub fn new(iou_type: IouType) -> EvalParams {
        EvalParams { iou_type, max_dets: [1, 10, 100], boundary_dilation_ratio: 0.02 }
    }

    pub fn with_max_dets(mut self, max_dets: [usize; 3]) -> EvalParams {
        self.max_dets = max_dets;
        self
    }
}

impl Default for EvalParams {
    fn default() -> Self {
        EvalParams::new(IouType::Segm)
    }
}

/// COCO's summary numbers in the order pycocotools prints them. AR1/AR10/AR100 are recall
/// at `max_dets[0]`, `[1]`, `[2]` (the names stay fixed so that output keys are stable).
pub const STAT_NAMES: [&str; 12] =
    ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"];

/// Per-category AP over IoU 0.50:0.95 and at 0.50/0.75 (area "all", `max_dets[2]`);
/// `None` (JSON null) when the category has no non-crowd ground truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub category_id: i64,
    pub name: String,
    #[serde(rename = "AP")]
    pub ap: Option<f64>,
    #[serde(rename = "AP50")]
    pub ap50: Option<f64>,
    #[serde(rename = "AP75")]
    pub ap75: Option<f64>,
    /// Non-crowd ground-truth instances of this category.
    pub num_ground_truth: usize,
    /// Results of this category, as given (before any `max_dets` cut).
    pub num_detections: usize,
}

/// The result of one [`evaluate`] run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoMetrics {
    pub iou_type: IouType,
    pub max_dets: [usize; 3],
    /// The 12 numbers of [`STAT_NAMES`]; -1 where undefined, as COCO prints it.
    #[serde(flatten)]
    pub stats: BTreeMap<String, f64>,
    pub per_class: Vec<ClassMetrics>,
}

impl CocoMetrics {
    /// A stat by COCO name (e.g. "AP50"); -1 for an unknown name.
    pub fn stat(&self, name: &str) -> f64 {
        self.stats.get(name).copied().unwrap_or(-1.0)
    }

    /// The 12 numbers in pycocotools' `stats` order.
    pub fn stats_in_coco_order(&self) -> [f64; 12] {
        STAT_NAMES.map(|name| self.stat(name))
    }
}

const AREA_RANGES: [(f64, f64); 4] = [(0.0, 1e10), (0.0, 1024.0), (1024.0, 9216.0), (9216.0, 1e10)];
const NUM_IOU_THRESHOLDS: usize = 10;
const NUM_RECALL_THRESHOLDS: usize = 101;

/// `np.linspace(.5, 0.95, 10)`, computed the way numpy does (i*step + start, exact end).
fn iou_thresholds() -> [f64; NUM_IOU_THRESHOLDS] {
    let step = (0.95 - 0.5) / 9.0;
    let mut thresholds = [0.0; NUM_IOU_THRESHOLDS];
    for (i, t) in thresholds.iter_mut().enumerate() {
        *t = i as f64 * step + 0.5;
    }
    thresholds[NUM_IOU_THRESHOLDS - 1] = 0.95;
    thresholds
}

/// `np.linspace(0, 1, 101)`.
fn recall_thresholds() -> [f64; NUM_RECALL_THRESHOLDS] {
    let step = 1.0 / 100.0;
    let mut thresholds = [0.0; NUM_RECALL_THRESHOLDS];
    for (i, t) in thresholds.iter_mut().enumerate() {
        *t = i as f64 * step;
    }
    thresholds[NUM_RECALL_THRESHOLDS - 1] = 1.0;
    thresholds
}

struct GroundTruthInstance {
    area: f64,
    crowd: bool,
    /// pycocotools' `ignore` (= iscrowd), or iscrowd || ignore for boundary.
    ignore: bool,
    bbox: [f64; 4],
    mask: Option<Rle>,
    boundary: Option<Rle>,
}

struct DetectionInstance {
    score: f64,
    area: f64,
    bbox: [f64; 4],
    mask: Option<Rle>,
}

/// One (image, category, area range) row of pycocotools' `evalImgs`.
struct ImageEvaluation {
    /// Scores of the kept detections, highest first.
    scores: Vec<f64>,
    /// `[threshold * D + detection]`
    matched: Vec<bool>,
    ignored: Vec<bool>,
    num_counted_ground_truth: usize,
}

/// Runs COCO evaluation of `results` against `gt`.
///
/// Detection areas (for the small/medium/large split) follow pycocotools' `loadRes`: when
/// the first result has a box, every detection's area is its box `w*h` — also for segm and
/// boundary evaluation — otherwise it is the mask area. Ground truth uses the annotation's
/// `area` field.
pub fn evaluate(
    gt: &CocoGroundTruth,
    results: &[DetectionResult],
    params: &EvalParams,
) -> Result<CocoMetrics, EvalError> {
    if gt.annotations.is_empty() {
        return Err(EvalError::NoGroundTruthAnnotations);
    }
    if params.max_dets.contains(&0) {
        return Err(EvalError::InvalidParams("max_dets entries must be at least 1".into()));
    }
    if params.iou_type == IouType::Boundary
        && !(params.boundary_dilation_ratio.is_finite() && params.boundary_dilation_ratio >= 0.0)
    {
        return Err(EvalError::InvalidParams("boundary_dilation_ratio must be a finite non-negative number".into()));
    }
    let mut max_dets = params.max_dets;
    max_dets.sort_unstable();
    let max_det_per_image = max_dets[2];

    let mut image_ids: Vec<i64> = gt.images.iter().map(|image| image.id).collect();
    image_ids.sort_unstable();
    image_ids.dedup();
    let mut category_ids: Vec<i64> = gt.categories.iter().map(|category| category.id).collect();
    category_ids.sort_unstable();
    category_ids.dedup();
    let image_position: HashMap<i64, usize> = image_ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let category_position: HashMap<i64, usize> = category_ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let images = gt.image_index();

    let ground_truths = prepare_ground_truth(gt, params, &images)?;
    let detections = prepare_detections(results, params, &images, &category_position)?;

    // Bucket by (image, category) in file order, as COCO's index does.
    let mut buckets: BTreeMap<(usize, usize), (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for (index, ann) in gt.annotations.iter().enumerate() {
        let key = (image_position[&ann.image_id], category_position[&ann.category_id]);
        buckets.entry(key).or_default().0.push(index);
    }
    for (index, result) in results.iter().enumerate() {
        let key = (image_position[&result.image_id], category_position[&result.category_id]);
        buckets.entry(key).or_default().1.push(index);
    }

    let num_images = image_ids.len();
    let num_categories = category_ids.len();
    let num_areas = AREA_RANGES.len();
    let iou_thresholds = iou_thresholds();
    let mut evaluations: Vec<Option<ImageEvaluation>> = Vec::new();
    evaluations.resize_with(num_categories * num_areas * num_images, || None);

    for (&(image, category), (gt_indices, dt_indices)) in &buckets {
        let mut sorted_detections = dt_indices.clone();
        sort_by_score_descending(&mut sorted_detections, |&d| detections[d].score);
        sorted_detections.truncate(max_det_per_image);
        let gts: Vec<&GroundTruthInstance> = gt_indices.iter().map(|&g| &ground_truths[g]).collect();
        let dts: Vec<&DetectionInstance> = sorted_detections.iter().map(|&d| &detections[d]).collect();
        let image_info = images[&image_ids[image]];
        let ious = compute_ious(&gts, &dts, params, image_info.height, image_info.width);
        for (area_index, &area_range) in AREA_RANGES.iter().enumerate() {
            let evaluation = evaluate_image(&gts, &dts, &ious, area_range, &iou_thresholds);
            evaluations[(category * num_areas + area_index) * num_images + image] = Some(evaluation);
        }
    }

    let (precision, recall) = accumulate(&evaluations, num_categories, num_images, &max_dets);
    let shape = Shape { categories: num_categories, max_dets: max_dets.len() };
    let mut stats = BTreeMap::new();
    let last = max_dets.len() - 1;
    let summaries: [(&str, bool, Option<usize>, usize, usize); 12] = [
        ("AP", true, None, 0, last),
        ("AP50", true, Some(0), 0, last),
        ("AP75", true, Some(5), 0, last),
        ("APs", true, None, 1, last),
        ("APm", true, None, 2, last),
        ("APl", true, None, 3, last),
        ("AR1", false, None, 0, 0),
        ("AR10", false, None, 0, 1),
        ("AR100", false, None, 0, last),
        ("ARs", false, None, 1, last),
        ("ARm", false, None, 2, last),
        ("ARl", false, None, 3, last),
    ];
    for (name, is_precision, threshold, area, max_det_index) in summaries {
        let value = if is_precision {
            summarize(&precision, &shape, true, threshold, None, area, max_det_index)
        } else {
            summarize(&recall, &shape, false, threshold, None, area, max_det_index)
        };
        stats.insert(name.to_string(), value);
    }

    let names: HashMap<i64, &str> = gt.categories.iter().map(|c| (c.id, c.name.as_str())).collect();
    let per_class = category_ids
        .iter()
        .enumerate()
        .map(|(k, &category_id)| {
            let defined = |v: f64| (v > -1.0).then_some(v);
            ClassMetrics {
                category_id,
                name: names[&category_id].to_string(),
                ap: defined(summarize(&precision, &shape, true, None, Some(k), 0, last)),
                ap50: defined(summarize(&precision, &shape, true, Some(0), Some(k), 0, last)),
                ap75: defined(summarize(&precision, &shape, true, Some(5), Some(k), 0, last)),
                num_ground_truth: gt.annotations.iter().filter(|a| a.category_id == category_id && !a.iscrowd).count(),
                num_detections: results.iter().filter(|r| r.category_id == category_id).count(),
            }
        })
        .collect();

    Ok(CocoMetrics { iou_type: params.iou_type, max_dets: params.max_dets, stats, per_class })
}

/// numpy `argsort(-scores, kind="mergesort")`: descending, ties keep input order.
fn sort_by_score_descending<T>(items: &mut [T], score: impl Fn(&T) -> f64) {
    items.sort_by(|a, b| score(b).partial_cmp(&score(a)).unwrap_or(std::cmp::Ordering::Equal));
}

fn prepare_ground_truth(
    gt: &CocoGroundTruth,
    params: &EvalParams,
    images: &HashMap<i64, &crate::coco::CocoImage>,
) -> Result<Vec<GroundTruthInstance>, EvalError> {
    let needs_masks = params.iou_type != IouType::Bbox;
    gt.annotations
        .iter()
        .map(|ann| {
            let image = images[&ann.image_id];
            let mask = match (&ann.segmentation, needs_masks) {
                (Some(segmentation), _) if needs_masks || ann.area.is_none() || ann.bbox.is_none() => Some(
                    segmentation
                        .to_rle(image.height, image.width)
                        .map_err(|source| EvalError::AnnotationMask { annotation_id: ann.id, source })?,
                ),
                (None, true) => {
                    return Err(EvalError::InvalidAnnotation {
                        annotation_id: ann.id,
                        reason: format!("{} evaluation needs a segmentation", params.iou_type.name()),
                    })
                }
                _ => None,
            };
            let bbox = match (ann.bbox, &mask) {
                (Some(bbox), _) => bbox,
                (None, Some(mask)) => mask.to_bbox(),
                (None, None) => {
                    return Err(EvalError::InvalidAnnotation {
                        annotation_id: ann.id,
                        reason: "has neither bbox nor segmentation".into(),
                    })
                }
            };
            let area = match (ann.area, &mask) {
                (Some(area), _) => area,
                (None, Some(mask)) => mask.area() as f64,
                (None, None) => bbox[2] * bbox[3],
            };
            let boundary = match (&mask, params.iou_type) {
                (Some(mask), IouType::Boundary) => Some(boundary_rle(mask, params.boundary_dilation_ratio)),
                _ => None,
            };
            let ignore = if params.iou_type == IouType::Boundary { ann.iscrowd || ann.ignore } else { ann.iscrowd };
            Ok(GroundTruthInstance {
                area,
                crowd: ann.iscrowd,
                ignore,
                bbox,
                mask: if needs_masks { mask } else { None },
                boundary,
            })
        })
        .collect()
}

/// The boundary band of `mask` as an RLE, computed on the mask's box only: the band lies inside
/// the mask, and outside the box is background just as outside the image is, so the result is
/// `mask_boundary` of the whole image while memory and time follow the object, not the image
/// (a ground truth declaring a 65535x65535 image needed 13 GB per annotation otherwise).
fn boundary_rle(mask: &Rle, dilation_ratio: f64) -> Rle {
    let (h, w) = (mask.height, mask.width);
    let d = boundary_dilation_pixels(h, w, dilation_ratio);
    // Foreground runs as column-major [start, end), and their box.
    let mut runs = Vec::new();
    let (mut x0, mut x1, mut y0, mut y1) = (usize::MAX, 0, usize::MAX, 0);
    let mut position = 0usize;
    let total = h * w;
    for (i, &count) in mask.counts.iter().enumerate() {
        let end = (position + count as usize).min(total);
        if i % 2 == 1 && end > position {
            runs.push((position, end));
            let (first, last) = ((position / h, position % h), ((end - 1) / h, (end - 1) % h));
            x0 = x0.min(first.0);
            x1 = x1.max(last.0);
            if first.0 == last.0 {
                y0 = y0.min(first.1);
                y1 = y1.max(last.1);
            } else {
                (y0, y1) = (0, h - 1);
            }
        }
        position = end;
    }
    if runs.is_empty() {
        return Rle::empty(h, w);
    }
    let (ch, cw) = (y1 - y0 + 1, x1 - x0 + 1);
    let mut crop = vec![0u8; ch * cw];
    for &(start, end) in &runs {
        for p in start..end {
            let (x, y) = (p / h, p % h);
            crop[(y - y0) * cw + (x - x0)] = 1;
        }
    }
    let band = mask_boundary_band(&crop, ch, cw, d);
    // Back to full-size column-major runs, as `Rle::from_mask` would give them.
    let mut counts = Vec::new();
    let (mut last, mut inside) = (0usize, false);
    for cx in 0..cw {
        for cy in 0..ch {
            let p = (x0 + cx) * h + y0 + cy;
            if (band[cy * cw + cx] != 0) != inside {
                counts.push((p - last) as u32);
                (last, inside) = (p, !inside);
            }
        }
        if inside && ch != h {
            // The pixels below the box in this column are background.
            let p = (x0 + cx) * h + y1 + 1;
            counts.push((p - last) as u32);
            (last, inside) = (p, false);
        }
    }
    if inside {
        let p = (x0 + cw - 1) * h + y1 + 1;
        counts.push((p - last) as u32);
        last = p;
    }
    if last < total || counts.is_empty() {
        counts.push((total - last) as u32);
    }
    Rle { height: h, width: w, counts }
}

/// pycocotools' `loadRes`: the first result decides whether areas come from boxes.
fn prepare_detections(
    results: &[DetectionResult],
    params: &EvalParams,
    images: &HashMap<i64, &crate::coco::CocoImage>,
    category_position: &HashMap<i64, usize>,
) -> Result<Vec<DetectionInstance>, EvalError> {
    let needs_masks = params.iou_type != IouType::Bbox;
    let areas_from_boxes = results.first().is_none_or(|first| first.bbox.is_some());
    results
        .iter()
        .enumerate()
        .map(|(index, result)| {
            let image = result.check_against(index, images, category_position)?;
            if let Some(bbox) = result.bbox {
                if bbox.iter().any(|v| !v.is_finite()) {
                    return Err(EvalError::InvalidResult { index, reason: format!("bbox {bbox:?} is not finite") });
                }
            }
            let decode = |segmentation: &maskrcnn_masks::Segmentation| {
                segmentation.to_rle(image.height, image.width).map_err(|source| EvalError::ResultMask { index, source })
            };
            if areas_from_boxes {
                let Some(bbox) = result.bbox else {
                    return Err(EvalError::InvalidResult {
                        index,
                        reason: "has no bbox although the first result has one (areas come from boxes then, as in pycocotools)".into(),
                    });
                };
                let mask = if needs_masks {
                    Some(match &result.segmentation {
                        Some(segmentation) => decode(segmentation)?,
                        None => {
                            let [x1, y1, w, h] = bbox;
                            let (x2, y2) = (x1 + w, y1 + h);
                            Rle::from_polygons(&[vec![x1, y1, x1, y2, x2, y2, x2, y1]], image.height, image.width)
                        }
                    })
                } else {
                    None
                };
                Ok(DetectionInstance { score: result.score, area: bbox[2] * bbox[3], bbox, mask })
            } else {
                let Some(segmentation) = &result.segmentation else {
                    return Err(EvalError::InvalidResult { index, reason: "has neither bbox nor segmentation".into() });
                };
                let mask = decode(segmentation)?;
                let bbox = result.bbox.unwrap_or_else(|| mask.to_bbox());
                Ok(DetectionInstance { score: result.score, area: mask.area() as f64, bbox, mask: needs_masks.then_some(mask) })
            }
        })
        .collect()
}

/// IoU matrix `[detection][ground truth]` (`computeIoU` / `computeBoundaryIoU`).
fn compute_ious(
    gts: &[&GroundTruthInstance],
    dts: &[&DetectionInstance],
    params: &EvalParams,
    height: usize,
    width: usize,
) -> Vec<Vec<f64>> {
    if gts.is_empty() || dts.is_empty() {
        return vec![Vec::new(); dts.len()];
    }
    let crowd: Vec<bool> = gts.iter().map(|g| g.crowd).collect();
    let mask_of = |m: &Option<Rle>| m.clone().unwrap_or_else(|| Rle::empty(height, width));
    match params.iou_type {
        IouType::Bbox => {
            let dt_boxes: Vec<[f64; 4]> = dts.iter().map(|d| d.bbox).collect();
            let gt_boxes: Vec<[f64; 4]> = gts.iter().map(|g| g.bbox).collect();
            bbox_iou(&dt_boxes, &gt_boxes, &crowd)
        }
        IouType::Segm => {
            let dt_masks: Vec<Rle> = dts.iter().map(|d| mask_of(&d.mask)).collect();
            let gt_masks: Vec<Rle> = gts.iter().map(|g| mask_of(&g.mask)).collect();
            mask_iou(&dt_masks, &gt_masks, &crowd)
        }
        IouType::Boundary => {
            let dt_masks: Vec<Rle> = dts.iter().map(|d| mask_of(&d.mask)).collect();
            let gt_masks: Vec<Rle> = gts.iter().map(|g| mask_of(&g.mask)).collect();
            let mut ious = mask_iou(&dt_masks, &gt_masks, &crowd);
            let dt_boundaries: Vec<Rle> =
                dt_masks.iter().map(|m| boundary_rle(m, params.boundary_dilation_ratio)).collect();
            let gt_boundaries: Vec<Rle> = gts.iter().map(|g| mask_of(&g.boundary)).collect();
            let boundary_ious = mask_iou(&dt_boundaries, &gt_boundaries, &crowd);
            for (row, boundary_row) in ious.iter_mut().zip(&boundary_ious) {
                for (g, (iou, &boundary_iou)) in row.iter_mut().zip(boundary_row).enumerate() {
                    if !crowd[g] {
                        *iou = iou.min(boundary_iou);
                    }
                }
            }
            ious
        }
    }
}

/// `COCOeval.evaluateImg` for one image, category and area range.
fn evaluate_image(
    gts: &[&GroundTruthInstance],
    dts: &[&DetectionInstance],
    ious: &[Vec<f64>],
    (area_min, area_max): (f64, f64),
    iou_thresholds: &[f64; NUM_IOU_THRESHOLDS],
) -> ImageEvaluation {
    let outside = |area: f64| area < area_min || area > area_max;
    let gt_ignore: Vec<bool> = gts.iter().map(|g| g.ignore || outside(g.area)).collect();
    // Regular ground truths first, ignored ones last (stable).
    let mut order: Vec<usize> = (0..gts.len()).collect();
    order.sort_by_key(|&g| gt_ignore[g]);
    let num_dt = dts.len();
    let mut matched = vec![false; NUM_IOU_THRESHOLDS * num_dt];
    let mut ignored = vec![false; NUM_IOU_THRESHOLDS * num_dt];
    if !gts.is_empty() && num_dt > 0 {
        for (t, &threshold) in iou_thresholds.iter().enumerate() {
            let mut gt_taken = vec![false; gts.len()];
            for d in 0..num_dt {
                let mut best_iou = threshold.min(1.0 - 1e-10);
                let mut best: Option<usize> = None;
                for &g in &order {
                    if gt_taken[g] && !gts[g].crowd {
                        continue;
                    }
                    if let Some(m) = best {
                        if !gt_ignore[m] && gt_ignore[g] {
                            break;
                        }
                    }
                    if ious[d][g] < best_iou {
                        continue;
                    }
                    best_iou = ious[d][g];
                    best = Some(g);
                }
                if let Some(m) = best {
                    ignored[t * num_dt + d] = gt_ignore[m];
                    matched[t * num_dt + d] = true;
                    gt_taken[m] = true;
                }
            }
        }
    }
    for t in 0..NUM_IOU_THRESHOLDS {
        for (d, dt) in dts.iter().enumerate() {
            let i = t * num_dt + d;
            ignored[i] = ignored[i] || (!matched[i] && outside(dt.area));
        }
    }
    ImageEvaluation {
        scores: dts.iter().map(|d| d.score).collect(),
        matched,
        ignored,
        num_counted_ground_truth: gt_ignore.iter().filter(|&&ignore| !ignore).count(),
    }
}

struct Shape {
    categories: usize,
    max_dets: usize,
}

/// `COCOeval.accumulate`: precision `[T][R][K][A][M]` and recall `[T][K][A][M]`, flat.
fn accumulate(
    evaluations: &[Option<ImageEvaluation>],
    num_categories: usize,
    num_images: usize,
    max_dets: &[usize; 3],
) -> (Vec<f64>, Vec<f64>) {
    let (t_len, r_len, k_len, a_len, m_len) =
        (NUM_IOU_THRESHOLDS, NUM_RECALL_THRESHOLDS, num_categories, AREA_RANGES.len(), max_dets.len());
    let mut precision = vec![-1.0; t_len * r_len * k_len * a_len * m_len];
    let mut recall = vec![-1.0; t_len * k_len * a_len * m_len];
    let recall_thresholds = recall_thresholds();
    for k in 0..k_len {
        for a in 0..a_len {
            let entries: Vec<&ImageEvaluation> =
                (0..num_images).filter_map(|i| evaluations[(k * a_len + a) * num_images + i].as_ref()).collect();
            if entries.is_empty() {
                continue;
            }
            let num_counted: usize = entries.iter().map(|e| e.num_counted_ground_truth).sum();
            if num_counted == 0 {
                continue;
            }
            for (m, &max_det) in max_dets.iter().enumerate() {
                // (entry, detection) pairs of the first max_det detections of each image.
                let mut pairs: Vec<(usize, usize)> = Vec::new();
                for (e, entry) in entries.iter().enumerate() {
                    for d in 0..entry.scores.len().min(max_det) {
                        pairs.push((e, d));
                    }
                }
                sort_by_score_descending(&mut pairs, |&(e, d)| entries[e].scores[d]);
                let nd = pairs.len();
                for t in 0..t_len {
                    let mut tp = 0.0f64;
                    let mut fp = 0.0f64;
                    let mut rc = Vec::with_capacity(nd);
                    let mut pr = Vec::with_capacity(nd);
                    for &(e, d) in &pairs {
                        let entry = entries[e];
                        let i = t * entry.scores.len() + d;
                        if !entry.ignored[i] {
                            if entry.matched[i] {
                                tp += 1.0;
                            } else {
                                fp += 1.0;
                            }
                        }
                        rc.push(tp / num_counted as f64);
                        pr.push(tp / (fp + tp + f64::EPSILON));
                    }
                    recall[((t * k_len + k) * a_len + a) * m_len + m] = rc.last().copied().unwrap_or(0.0);
                    for i in (1..nd).rev() {
                        if pr[i] > pr[i - 1] {
                            pr[i - 1] = pr[i];
                        }
                    }
                    let mut start = 0usize;
                    for (r, &threshold) in recall_thresholds.iter().enumerate() {
                        // np.searchsorted(rc, threshold, side="left")
                        while start < nd && rc[start] < threshold {
                            start += 1;
                        }
                        let q = if start < nd { pr[start] } else { 0.0 };
                        precision[(((t * r_len + r) * k_len + k) * a_len + a) * m_len + m] = q;
                    }
                }
            }
        }
    }
    (precision, recall)
}

/// `COCOeval.summarize._summarize`: mean over the defined (> -1) entries, else -1.
fn summarize(
    values: &[f64],
    shape: &Shape,
    is_precision: bool,
    threshold: Option<usize>,
    category: Option<usize>,
    area: usize,
    max_det_index: usize,
) -> f64 {
    let (k_len, a_len, m_len) = (shape.categories, AREA_RANGES.len(), shape.max_dets);
    let r_len = if is_precision { NUM_RECALL_THRESHOLDS } else { 1 };
    let thresholds: Vec<usize> = match threshold {
        Some(t) => vec![t],
        None => (0..NUM_IOU_THRESHOLDS).collect(),
    };
    let categories: Vec<usize> = match category {
        Some(k) => vec![k],
        None => (0..k_len).collect(),
    };
    let mut sum = 0.0;
    let mut count = 0usize;
    for &t in &thresholds {
        for r in 0..r_len {
            for &k in &categories {
                let v = values[(((t * r_len + r) * k_len + k) * a_len + area) * m_len + max_det_index];
                if v > -1.0 {
                    sum += v;
                    count += 1;
                }
            }
        }
    }
    if count == 0 {
        -1.0
    } else {
        sum / count as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maskrcnn_masks::mask_boundary;

    /// The box-only band equals the whole-image band, RLE for RLE, on masks touching every
    /// image edge, spanning full columns, and scattered.
    #[test]
    fn boundary_on_the_box_equals_boundary_on_the_image() {
        let mut state = 99u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for case in 0..3000 {
            let (h, w) = (1 + (next() % 17) as usize, 1 + (next() % 17) as usize);
            let (y0, x0) = ((next() as usize) % h, (next() as usize) % w);
            let (y1, x1) = (y0 + (next() as usize) % (h - y0), x0 + (next() as usize) % (w - x0));
            let density = next() % 4;
            let mut pixels = vec![0u8; h * w];
            for y in y0..=y1 {
                for x in x0..=x1 {
                    pixels[y * w + x] = u8::from(next() % 4 >= density.min(case % 2));
                }
            }
            let mask = Rle::from_mask(&pixels, h, w);
            for ratio in [0.0, 0.02, 0.1, 0.5] {
                let want = Rle::from_mask(&mask_boundary(&pixels, h, w, ratio), h, w);
                assert_eq!(boundary_rle(&mask, ratio), want, "{h}x{w} ratio {ratio}: {pixels:?}");
            }
        }
    }
}
