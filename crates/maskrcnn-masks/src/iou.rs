use crate::rle::{for_each_stretch, Rle};

/// Mask IoU between every detection and every ground truth (`rleIou`), indexed
/// `[detection][ground_truth]`.
///
/// For a crowd ground truth the score is intersection over the detection's area, so a
/// detection lying inside a crowd region scores high without the crowd's size mattering.
/// Pairs whose tight boxes do not overlap are 0 without looking at the masks (the C code
/// prefilters with [`bbox_iou`] on `rleToBbox` boxes); pairs of different mask sizes
/// get -1, as in pycocotools, so they can never match. `iscrowd` entries missing for
/// some ground truths count as not crowd.
pub fn mask_iou(dt: &[Rle], gt: &[Rle], iscrowd: &[bool]) -> Vec<Vec<f64>> {
    let dt_boxes: Vec<[f64; 4]> = dt.iter().map(Rle::to_bbox).collect();
    let gt_boxes: Vec<[f64; 4]> = gt.iter().map(Rle::to_bbox).collect();
    let mut ious = bbox_iou(&dt_boxes, &gt_boxes, iscrowd);
    for (d, row) in ious.iter_mut().enumerate() {
        for (g, iou) in row.iter_mut().enumerate() {
            if *iou <= 0.0 {
                continue;
            }
            let (a, b) = (&dt[d], &gt[g]);
            if a.height != b.height || a.width != b.width {
                *iou = -1.0;
                continue;
            }
            let (intersection, union) = intersection_and_union(&a.counts, &b.counts);
            let crowd = iscrowd.get(g).copied().unwrap_or(false);
            let denominator = if intersection == 0 {
                1
            } else if crowd {
                a.area()
            } else {
                union
            };
            *iou = intersection as f64 / denominator as f64;
        }
    }
    ious
}

fn intersection_and_union(a: &[u32], b: &[u32]) -> (u64, u64) {
    let (mut intersection, mut union) = (0u64, 0u64);
    for_each_stretch(a, b, |length, in_a, in_b| {
        if in_a || in_b {
            union += length;
        }
        if in_a && in_b {
            intersection += length;
        }
    });
    (intersection, union)
}

/// Box IoU (`bbIou`) for `[x, y, w, h]` boxes, indexed `[detection][ground_truth]`;
/// crowd ground truths use intersection over the detection box area.
pub fn bbox_iou(dt: &[[f64; 4]], gt: &[[f64; 4]], iscrowd: &[bool]) -> Vec<Vec<f64>> {
    dt.iter()
        .map(|d| {
            let detection_area = d[2] * d[3];
            gt.iter()
                .enumerate()
                .map(|(g, gb)| {
                    let crowd = iscrowd.get(g).copied().unwrap_or(false);
                    let w = (d[2] + d[0]).min(gb[2] + gb[0]) - d[0].max(gb[0]);
                    if w <= 0.0 {
                        return 0.0;
                    }
                    let h = (d[3] + d[1]).min(gb[3] + gb[1]) - d[1].max(gb[1]);
                    if h <= 0.0 {
                        return 0.0;
                    }
                    let intersection = w * h;
                    let union = if crowd { detection_area } else { detection_area + gb[2] * gb[3] - intersection };
                    intersection / union
                })
                .collect()
        })
        .collect()
}
