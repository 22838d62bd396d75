//! torchvision's `RegionProposalNetwork` losses: anchors matched to ground truth (0.7 / 0.3,
//! low-quality matches kept), 256 sampled per image at half positives, binary cross-entropy on
//! objectness and smooth-L1 on the positives' deltas.

use anyhow::{ensure, Result};
use burn::tensor::Tensor;

use super::rpn::RpnOutput;
use crate::config::RpnConfig;
use crate::ops::losses::{bce_with_logits_mean, smooth_l1_sum, SMOOTH_L1_BETA};
use crate::ops::BoxCoder;
use crate::sampling::{match_boxes, Sampler, SamplingStage, BETWEEN_THRESHOLDS};
use crate::targets::TrainTarget;
use crate::tensor_util::{int_tensor_from_vec, tensor_from_vec};

/// The RPN's two losses, and the (positive, negative) anchors sampled per image.
pub struct RpnLosses {
    pub objectness: Tensor<1>,
    pub box_reg: Tensor<1>,
    pub sampled: Vec<(usize, usize)>,
}

impl RpnOutput {
    /// `RegionProposalNetwork.compute_loss` against `targets` (already resized with the images).
    pub fn losses(&self, targets: &[TrainTarget], config: &RpnConfig, sampler: &mut dyn Sampler) -> Result<RpnLosses> {
        let device = self.objectness.device();
        let [n, total] = self.objectness.dims();
        let coder = BoxCoder::new([1.0; 4]);
        let mut positives = Vec::new();
        let mut negatives = Vec::new();
        let mut regression_targets = Vec::new();
        let mut sampled = Vec::new();
        for (i, target) in targets.iter().enumerate() {
            let matches = match_boxes(&target.boxes, &self.anchors, config.fg_iou_thresh, config.bg_iou_thresh, true);
            let labels: Vec<i64> = matches
                .iter()
                .map(|&m| {
                    if m >= 0 {
                        1
                    } else if m == BETWEEN_THRESHOLDS {
                        -1
                    } else {
                        0
                    }
                })
                .collect();
            let (pos, neg) =
                sampler.sample(SamplingStage::Rpn, i, &labels, config.batch_size_per_image, config.positive_fraction);
            sampled.push((pos.len(), neg.len()));
            for &a in &pos {
                regression_targets.extend(coder.encode(&target.boxes[matches[a] as usize], &self.anchors[a]));
                positives.push((i * total + a) as i64);
            }
            negatives.extend(neg.iter().map(|&a| (i * total + a) as i64));
        }
        let num_sampled = positives.len() + negatives.len();
        ensure!(num_sampled > 0, "no anchors could be sampled (all ignored)");
        let labels: Vec<f32> = positives.iter().map(|_| 1.0).chain(negatives.iter().map(|_| 0.0)).collect();
        let num_positive = positives.len();
        let rows = int_tensor_from_vec(positives.iter().chain(&negatives).copied().collect(), &device);
        let sampled_logits = self.objectness.clone().reshape([n * total]).select(0, rows);
        let objectness = bce_with_logits_mean(sampled_logits, tensor_from_vec(labels, [num_sampled], &device));
        let box_reg = if num_positive == 0 {
            Tensor::zeros([1], &device)
        } else {
            let picked = self.deltas.clone().reshape([n * total, 4]).select(0, int_tensor_from_vec(positives, &device));
            let targets = tensor_from_vec(regression_targets, [num_positive, 4], &device);
            smooth_l1_sum(picked, targets, SMOOTH_L1_BETA) / num_sampled as f32
        };
        Ok(RpnLosses { objectness, box_reg, sampled })
    }
}
