//! torchvision's `RegionProposalNetwork` at inference: the head over every FPN level, anchors,
//! and `filter_proposals`. Its losses are in [`super::rpn_loss`].

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::anchors::{cell_anchors, grid_anchors};
use crate::config::RpnConfig;
use crate::layers::Conv;
use crate::ops::boxes::{clip_box, is_large_enough, Box};
use crate::ops::{batched_nms, BoxCoder};
use crate::weights::{NamedTensors, TensorSlot};

/// torchvision's `RPNHead`: a shared 3x3 conv, then objectness logits and box deltas per anchor.
#[derive(Module, Debug)]
pub struct RpnHead {
    pub conv: Conv,
    pub cls_logits: Conv,
    pub bbox_pred: Conv,
}

impl RpnHead {
    pub fn new(channels: usize, anchors_per_cell: usize, device: &Device) -> Self {
        Self {
            conv: Conv::new_normal(channels, channels, 3, 1, 0.01, device),
            cls_logits: Conv::new_normal(channels, anchors_per_cell, 1, 0, 0.01, device),
            bbox_pred: Conv::new_normal(channels, anchors_per_cell * 4, 1, 0, 0.01, device),
        }
    }

    /// Objectness `[N, H*W*A]` and deltas `[N, H*W*A, 4]` over all levels, flattened in anchor
    /// order (level, row, column, cell anchor), plus the anchor count of each level.
    pub fn forward(&self, features: &[Tensor<4>]) -> (Tensor<2>, Tensor<3>, Vec<usize>) {
        let mut objectness = Vec::new();
        let mut deltas = Vec::new();
        let mut per_level = Vec::new();
        for f in features {
            let t = relu(self.conv.forward(f.clone()));
            let logits = self.cls_logits.forward(t.clone());
            let boxes = self.bbox_pred.forward(t);
            let [n, a, h, w] = logits.dims();
            per_level.push(a * h * w);
            objectness.push(logits.permute([0, 2, 3, 1]).reshape([n, h * w * a]));
            deltas.push(boxes.reshape([n, a, 4, h, w]).permute([0, 3, 4, 1, 2]).reshape([n, h * w * a, 4]));
        }
        (Tensor::cat(objectness, 1), Tensor::cat(deltas, 1), per_level)
    }
}

impl NamedTensors for RpnHead {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        self.conv.visit_named(&format!("{prefix}.conv.0.0"), visit);
        self.cls_logits.visit_named(&format!("{prefix}.cls_logits"), visit);
        self.bbox_pred.visit_named(&format!("{prefix}.bbox_pred"), visit);
    }
}

/// The RPN's output for a batch: the head's raw outputs (differentiable while training), the
/// anchors of the padded batch, and each image's proposals (best first).
pub struct RpnOutput {
    /// Objectness logits `[N, A]` over all anchors of all levels.
    pub objectness: Tensor<2>,
    /// Box deltas `[N, A, 4]`.
    pub deltas: Tensor<3>,
    /// Host copies of `objectness` and `deltas` (proposals are chosen from detached values).
    pub objectness_host: Vec<f32>,
    pub deltas_host: Vec<f32>,
    pub anchors: Vec<Box>,
    pub proposals: Vec<Vec<Box>>,
}

impl RpnHead {
    /// Proposals for a padded batch of `padded` size whose images have `image_sizes` (after
    /// resizing, before padding), with the train or test top-n as torchvision switches them.
    pub fn propose(
        &self,
        features: &[Tensor<4>],
        padded: (usize, usize),
        image_sizes: &[(usize, usize)],
        config: &RpnConfig,
        training: bool,
    ) -> RpnOutput {
        let (objectness, deltas, per_level) = self.forward(features);
        let feature_sizes: Vec<(usize, usize)> = features.iter().map(|f| (f.dims()[2], f.dims()[3])).collect();
        let anchors = anchors_for(config, &feature_sizes, padded);
        let objectness_host = crate::tensor_util::tensor_to_vec(objectness.clone());
        let deltas_host = crate::tensor_util::tensor_to_vec(deltas.clone());
        let (pre_nms_top_n, post_nms_top_n) = if training {
            (config.pre_nms_top_n_train, config.post_nms_top_n_train)
        } else {
            (config.pre_nms_top_n_test, config.post_nms_top_n_test)
        };
        let total = anchors.len();
        let proposals = image_sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| {
                filter_proposals(
                    &objectness_host[i * total..(i + 1) * total],
                    &deltas_host[i * total * 4..(i + 1) * total * 4],
                    &anchors,
                    &per_level,
                    size,
                    pre_nms_top_n,
                    post_nms_top_n,
                    config,
                )
                .0
            })
            .collect();
        RpnOutput { objectness, deltas, objectness_host, deltas_host, anchors, proposals }
    }
}

/// Anchors for every level of a padded batch, concatenated in head-output order.
pub fn anchors_for(config: &RpnConfig, feature_sizes: &[(usize, usize)], padded: (usize, usize)) -> Vec<Box> {
    let mut all = Vec::new();
    for (level, &grid) in feature_sizes.iter().enumerate() {
        let base = cell_anchors(&config.anchor_sizes[level], &config.aspect_ratios);
        all.extend(grid_anchors(&base, grid, padded));
    }
    all
}

/// Indices of the `k` largest values, in decreasing order (torch.topk, sorted).
pub fn top_k_indices(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    let k = k.min(values.len());
    let cmp = |a: &usize, b: &usize| values[*b].partial_cmp(&values[*a]).unwrap_or(std::cmp::Ordering::Equal);
    if k < idx.len() {
        idx.select_nth_unstable_by(k, cmp);
        idx.truncate(k);
    }
    idx.sort_by(cmp);
    idx
}

/// Proposals for one image from its objectness logits and box deltas over all anchors.
/// Returns boxes and their objectness probabilities, best first.
#[allow(clippy::too_many_arguments)]
pub fn filter_proposals(
    objectness: &[f32],
    deltas: &[f32],
    anchors: &[Box],
    per_level: &[usize],
    image_size: (usize, usize),
    pre_nms_top_n: usize,
    post_nms_top_n: usize,
    config: &RpnConfig,
) -> (Vec<Box>, Vec<f32>) {
    let coder = BoxCoder::new([1.0; 4]);
    let mut candidates = Vec::new();
    let mut offset = 0;
    for (level, &n) in per_level.iter().enumerate() {
        for i in top_k_indices(&objectness[offset..offset + n], pre_nms_top_n) {
            candidates.push((offset + i, level));
        }
        offset += n;
    }
    let mut boxes = Vec::with_capacity(candidates.len());
    let mut scores = Vec::with_capacity(candidates.len());
    let mut levels = Vec::with_capacity(candidates.len());
    for (anchor, level) in candidates {
        let decoded = coder.decode(&deltas[anchor * 4..anchor * 4 + 4], &anchors[anchor]);
        let b = clip_box(&decoded, image_size.0, image_size.1);
        let score = sigmoid(objectness[anchor]);
        if !is_large_enough(&b, 1e-3) || score < config.score_thresh {
            continue;
        }
        boxes.push(b);
        scores.push(score);
        levels.push(level);
    }
    let mut keep = batched_nms(&boxes, &scores, &levels, config.nms_thresh);
    keep.truncate(post_nms_top_n);
    (keep.iter().map(|&i| boxes[i]).collect(), keep.iter().map(|&i| scores[i]).collect())
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_sorted_descending() {
        assert_eq!(top_k_indices(&[0.1, 0.9, 0.5, 0.7], 3), vec![1, 3, 2]);
        assert_eq!(top_k_indices(&[0.1, 0.9], 5), vec![1, 0]);
    }
}
