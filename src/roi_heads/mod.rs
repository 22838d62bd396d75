//! Box and mask heads on pooled RoI features, and torchvision's detection post-processing.

pub mod box_head;
pub mod mask_head;
pub mod pointrend;
pub mod poolers;

use crate::config::RoiHeadsConfig;
use crate::ops::boxes::{clip_box, is_large_enough, Box};
use crate::ops::{batched_nms, BoxCoder};

/// Detections of one image in resized-image coordinates, best first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawDetections {
    pub boxes: Vec<Box>,
    pub scores: Vec<f32>,
    pub labels: Vec<usize>,
}

/// torchvision's `RoIHeads.postprocess_detections` for one image: softmax, per-class decoding,
/// clipping, score threshold, small-box removal, class-wise NMS, top-k.
pub fn postprocess_detections(
    class_logits: &[f32],
    box_regression: &[f32],
    proposals: &[Box],
    num_classes: usize,
    image_size: (usize, usize),
    config: &RoiHeadsConfig,
) -> RawDetections {
    let coder = BoxCoder::new(config.bbox_reg_weights);
    let mut boxes = Vec::new();
    let mut scores = Vec::new();
    let mut labels = Vec::new();
    for (r, proposal) in proposals.iter().enumerate() {
        let logits = &class_logits[r * num_classes..(r + 1) * num_classes];
        let probs = softmax(logits);
        for class in 1..num_classes {
            let score = probs[class];
            if score <= config.box_score_thresh {
                continue;
            }
            let d = &box_regression[(r * num_classes + class) * 4..(r * num_classes + class) * 4 + 4];
            let b = clip_box(&coder.decode(d, proposal), image_size.0, image_size.1);
            if !is_large_enough(&b, 1e-2) {
                continue;
            }
            boxes.push(b);
            scores.push(score);
            labels.push(class);
        }
    }
    let mut keep = batched_nms(&boxes, &scores, &labels, config.box_nms_thresh);
    keep.truncate(config.box_detections_per_img);
    RawDetections {
        boxes: keep.iter().map(|&i| boxes[i]).collect(),
        scores: keep.iter().map(|&i| scores[i]).collect(),
        labels: keep.iter().map(|&i| labels[i]).collect(),
    }
}

pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}
