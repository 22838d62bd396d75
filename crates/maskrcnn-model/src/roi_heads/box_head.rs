//! The box branch of torchvision's `RoIHeads`: `TwoMLPHead` and `FastRCNNPredictor`, detection
//! post-processing at inference, and `fastrcnn_loss` in training.

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::sampling::SampledRois;
use crate::config::RoiHeadsConfig;
use crate::layers::Linear;
use crate::ops::boxes::{clip_box, is_large_enough, Box};
use crate::ops::losses::{cross_entropy_mean, smooth_l1_sum, SMOOTH_L1_BETA};
use crate::ops::{batched_nms, BoxCoder};
use crate::targets::TrainTarget;
use crate::tensor_util::{int_tensor_from_vec, tensor_from_vec};
use crate::weights::{NamedTensors, TensorSlot};

#[derive(Module, Debug)]
pub struct TwoMlpHead {
    pub fc6: Linear,
    pub fc7: Linear,
}

impl TwoMlpHead {
    pub fn new(in_features: usize, representation: usize, device: &Device) -> Self {
        Self {
            fc6: Linear::new(in_features, representation, device),
            fc7: Linear::new(representation, representation, device),
        }
    }

    pub fn forward(&self, pooled: Tensor<4>) -> Tensor<2> {
        let x: Tensor<2> = pooled.flatten(1, 3);
        relu(self.fc7.forward(relu(self.fc6.forward(x))))
    }
}

impl NamedTensors for TwoMlpHead {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        self.fc6.visit_named(&format!("{prefix}.fc6"), visit);
        self.fc7.visit_named(&format!("{prefix}.fc7"), visit);
    }
}

#[derive(Module, Debug)]
pub struct FastRcnnPredictor {
    pub cls_score: Linear,
    pub bbox_pred: Linear,
}

impl FastRcnnPredictor {
    pub fn new(in_features: usize, num_classes: usize, device: &Device) -> Self {
        Self {
            cls_score: Linear::new(in_features, num_classes, device),
            bbox_pred: Linear::new(in_features, num_classes * 4, device),
        }
    }

    pub fn num_classes(&self) -> usize {
        self.cls_score.out_features()
    }

    /// A fresh predictor of the same width for `num_classes` classes (torchvision's fine-tuning recipe).
    pub fn with_num_classes(&self, num_classes: usize, device: &Device) -> Self {
        Self::new(self.cls_score.in_features(), num_classes, device)
    }

    /// Class logits `[R, C]` and per-class box deltas `[R, 4C]`.
    pub fn forward(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        (self.cls_score.forward(x.clone()), self.bbox_pred.forward(x))
    }
}

impl NamedTensors for FastRcnnPredictor {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        self.cls_score.visit_named(&format!("{prefix}.cls_score"), visit);
        self.bbox_pred.visit_named(&format!("{prefix}.bbox_pred"), visit);
    }
}

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

/// torchvision's `fastrcnn_loss`: cross-entropy over all sampled RoIs, and smooth-L1 on the
/// positives' deltas of their matched class, summed and divided by the number of RoIs.
pub fn fastrcnn_loss(
    class_logits: Tensor<2>,
    box_regression: Tensor<2>,
    sampled: &SampledRois,
    targets: &[TrainTarget],
    config: &RoiHeadsConfig,
) -> (Tensor<1>, Tensor<1>) {
    let device = class_logits.device();
    let [num_rois, num_classes] = class_logits.dims();
    let classifier = cross_entropy_mean(class_logits, int_tensor_from_vec(sampled.labels.clone(), &device));
    if sampled.positives.is_empty() {
        return (classifier, Tensor::zeros([1], &device));
    }
    let coder = BoxCoder::new(config.bbox_reg_weights);
    let mut regression_targets = Vec::with_capacity(sampled.positives.len() * 4);
    let mut rows = Vec::with_capacity(sampled.positives.len());
    for p in &sampled.positives {
        regression_targets.extend(coder.encode(&targets[p.image].boxes[p.gt], &p.bbox));
        rows.push((p.row * num_classes + p.label) as i64);
    }
    let positives = rows.len();
    let picked = box_regression.reshape([num_rois * num_classes, 4]).select(0, int_tensor_from_vec(rows, &device));
    let regression_targets = tensor_from_vec(regression_targets, [positives, 4], &device);
    let box_reg = smooth_l1_sum(picked, regression_targets, SMOOTH_L1_BETA) / num_rois as f32;
    (classifier, box_reg)
}
