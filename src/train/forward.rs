//! The training forward pass of torchvision's `MaskRCNN` (`model.train(); model(images, targets)`):
//! resize images and targets, match and sample anchors and proposals, and return the five losses
//! as differentiable tensors.

use anyhow::{bail, ensure, Result};
use burn::tensor::Tensor;

use super::losses::{bce_with_logits_mean, cross_entropy_mean, smooth_l1_sum};
use super::sampling::{match_boxes, Sampler, SamplingStage, BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS};
use crate::model::MaskRcnn;
use crate::ops::boxes::{resize_box, Box};
use crate::ops::interpolate::nearest_indices;
use crate::ops::roi_align::{roi_align_host, RoiAlignParams};
use crate::ops::BoxCoder;
use crate::proposal::rpn::{anchors_for, filter_proposals};
use crate::roi_heads::poolers::multiscale_roi_align;
use crate::tensor_util::{int_tensor_from_vec, tensor_from_vec, tensor_to_vec};
use crate::transform::{batch_images, ImageChw};

/// torchvision's smooth-L1 `beta` for both box losses.
const SMOOTH_L1_BETA: f32 = 1.0 / 9.0;

/// Ground truth of one image, in the pixel coordinates of the image given to `forward_train`.
/// Crowd regions must already be removed (torchvision's reference drops `iscrowd` annotations).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainTarget {
    pub boxes: Vec<Box>,
    /// Model labels, `1..num_classes`.
    pub labels: Vec<usize>,
    /// One `height * width` binary mask per instance.
    pub masks: Vec<Vec<u8>>,
}

pub const NUM_LOSS_TERMS: usize = 6;

/// The five Mask R-CNN losses and PointRend's point loss (scalar tensors, shape `[1]`), named as torchvision names them.
#[derive(Debug, Clone)]
pub struct LossTerms {
    pub objectness: Tensor<1>,
    pub rpn_box_reg: Tensor<1>,
    pub classifier: Tensor<1>,
    pub box_reg: Tensor<1>,
    pub mask: Tensor<1>,
    /// PointRend's point loss (zero for the plain mask head, whose `mask` is the 28x28 loss).
    pub mask_point: Tensor<1>,
    /// With `norm = batch`: each ResNet batch norm's statistics in this forward, for the running
    /// averages (applied by the trainer only when the step is taken). Empty otherwise.
    pub batch_norm_stats: Vec<crate::layers::BatchStats>,
}

impl LossTerms {
    pub const NAMES: [&'static str; NUM_LOSS_TERMS] =
        ["loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask", "loss_mask_point"];

    /// The sum torchvision's reference trains on.
    pub fn total(&self) -> Tensor<1> {
        self.objectness.clone() + self.rpn_box_reg.clone() + self.classifier.clone() + self.box_reg.clone() + self.mask.clone() + self.mask_point.clone()
    }

    /// The terms in [`Self::NAMES`] order, read back to the host.
    pub fn values(&self) -> [f32; NUM_LOSS_TERMS] {
        [&self.objectness, &self.rpn_box_reg, &self.classifier, &self.box_reg, &self.mask, &self.mask_point].map(|t| tensor_to_vec(t.clone())[0])
    }
}

/// A sampled proposal matched to a ground-truth instance.
#[derive(Debug, Clone, Copy)]
pub struct PositiveRoi {
    pub image: usize,
    pub bbox: Box,
    pub label: usize,
    /// Index of the matched instance in the image's target.
    pub gt: usize,
}

/// What one training forward decided, for tests and diagnostics.
#[derive(Debug, Clone, Default)]
pub struct TrainTrace {
    /// Image sizes after resizing (before padding).
    pub image_sizes: Vec<(usize, usize)>,
    /// RPN proposals per image, before ground-truth boxes are appended.
    pub proposals: Vec<Vec<Box>>,
    /// Sampled (positive, negative) counts per image: RPN anchors, then RoIs.
    pub rpn_sampled: Vec<(usize, usize)>,
    pub roi_sampled: Vec<(usize, usize)>,
}

/// A target scaled to the resized image, as `GeneralizedRCNNTransform.resize` does in training:
/// boxes by the size ratios, masks by nearest-neighbour interpolation.
fn resize_target(target: &TrainTarget, from: (usize, usize), to: (usize, usize)) -> TrainTarget {
    let rows = nearest_indices(from.0, to.0);
    let cols = nearest_indices(from.1, to.1);
    let masks = target
        .masks
        .iter()
        .map(|m| {
            let mut out = Vec::with_capacity(to.0 * to.1);
            for &r in &rows {
                let line = &m[r * from.1..(r + 1) * from.1];
                out.extend(cols.iter().map(|&c| line[c]));
            }
            out
        })
        .collect();
    TrainTarget { boxes: target.boxes.iter().map(|b| resize_box(b, from, to)).collect(), labels: target.labels.clone(), masks }
}

fn check_target(i: usize, image: &ImageChw, target: &TrainTarget, num_classes: usize) -> Result<()> {
    let n = target.boxes.len();
    ensure!(target.labels.len() == n && target.masks.len() == n, "target {i}: {n} boxes, {} labels, {} masks", target.labels.len(), target.masks.len());
    for (k, b) in target.boxes.iter().enumerate() {
        if !(b[2] > b[0] && b[3] > b[1]) || b.iter().any(|v| !v.is_finite()) {
            bail!("target {i}: box {k} {b:?} is degenerate (torchvision requires x2 > x1 and y2 > y1)");
        }
        let label = target.labels[k];
        ensure!((1..num_classes).contains(&label), "target {i}: label {label} of instance {k} is outside 1..{num_classes}");
        ensure!(
            target.masks[k].len() == image.height * image.width,
            "target {i}: mask {k} has {} pixels for a {}x{} image",
            target.masks[k].len(),
            image.height,
            image.width
        );
    }
    Ok(())
}

impl MaskRcnn {
    /// torchvision's training forward: the five losses for a batch of images and their targets.
    /// `sampler` picks the anchors and proposals that enter the losses (random in training,
    /// recorded in tests).
    pub fn forward_train(&self, images: &[ImageChw], targets: &[TrainTarget], sampler: &mut dyn Sampler) -> Result<LossTerms> {
        self.forward_train_traced(images, targets, sampler, None)
    }

    pub fn forward_train_traced(
        &self,
        images: &[ImageChw],
        targets: &[TrainTarget],
        sampler: &mut dyn Sampler,
        trace: Option<&mut TrainTrace>,
    ) -> Result<LossTerms> {
        ensure!(!images.is_empty(), "an empty training batch");
        ensure!(images.len() == targets.len(), "{} images but {} targets", images.len(), targets.len());
        let cfg = &self.config;
        let num_classes = cfg.num_classes;
        for (i, (image, target)) in images.iter().zip(targets).enumerate() {
            ensure!(image.channels == cfg.backbone.in_channels, "image {i} has {} bands, the model expects {}", image.channels, cfg.backbone.in_channels);
            check_target(i, image, target, num_classes)?;
        }
        let batch = batch_images(images, &cfg.transform, &self.device);
        let [n, _, ph, pw] = batch.tensor.dims();
        let targets: Vec<TrainTarget> =
            targets.iter().enumerate().map(|(i, t)| resize_target(t, batch.original_sizes[i], batch.image_sizes[i])).collect();
        let device = batch.tensor.device();

        let mut batch_norm_stats = Vec::new();
        let train_norm = (cfg.backbone.norm == crate::config::NormKind::Batch).then_some(&mut batch_norm_stats);
        let features = self.net.backbone.forward_with_stats(batch.tensor.clone(), &cfg.backbone.returned_layers, train_norm);
        let fpn_levels = cfg.backbone.returned_layers.len();

        // ---- RPN
        let (objectness, deltas, per_level) = self.net.rpn_head.forward(&features);
        let feature_sizes: Vec<(usize, usize)> = features.iter().map(|f| (f.dims()[2], f.dims()[3])).collect();
        let anchors = anchors_for(&cfg.rpn, &feature_sizes, (ph, pw));
        let total = anchors.len();
        // Proposals are chosen from detached values, as torchvision does.
        let objectness_host = tensor_to_vec(objectness.clone());
        let deltas_host = tensor_to_vec(deltas.clone());
        let proposals: Vec<Vec<Box>> = (0..n)
            .map(|i| {
                filter_proposals(
                    &objectness_host[i * total..(i + 1) * total],
                    &deltas_host[i * total * 4..(i + 1) * total * 4],
                    &anchors,
                    &per_level,
                    batch.image_sizes[i],
                    cfg.rpn.pre_nms_top_n_train,
                    cfg.rpn.post_nms_top_n_train,
                    &cfg.rpn,
                )
                .0
            })
            .collect();

        let rpn_coder = BoxCoder::new([1.0; 4]);
        let mut rpn_pos = Vec::new();
        let mut rpn_neg = Vec::new();
        let mut rpn_targets = Vec::new();
        let mut rpn_sampled = Vec::new();
        for (i, target) in targets.iter().enumerate() {
            let matches = match_boxes(&target.boxes, &anchors, cfg.rpn.fg_iou_thresh, cfg.rpn.bg_iou_thresh, true);
            let labels: Vec<i64> = matches.iter().map(|&m| if m >= 0 { 1 } else if m == BETWEEN_THRESHOLDS { -1 } else { 0 }).collect();
            let (pos, neg) = sampler.sample(SamplingStage::Rpn, i, &labels, cfg.rpn.batch_size_per_image, cfg.rpn.positive_fraction);
            rpn_sampled.push((pos.len(), neg.len()));
            for &a in &pos {
                rpn_targets.extend(rpn_coder.encode(&target.boxes[matches[a] as usize], &anchors[a]));
                rpn_pos.push((i * total + a) as i64);
            }
            rpn_neg.extend(neg.iter().map(|&a| (i * total + a) as i64));
        }
        let num_rpn_sampled = rpn_pos.len() + rpn_neg.len();
        ensure!(num_rpn_sampled > 0, "no anchors could be sampled (all ignored)");
        let rpn_labels: Vec<f32> = rpn_pos.iter().map(|_| 1.0).chain(rpn_neg.iter().map(|_| 0.0)).collect();
        let num_rpn_pos = rpn_pos.len();
        let sampled_logits = objectness.reshape([n * total]).select(0, int_tensor_from_vec(rpn_pos.iter().chain(&rpn_neg).copied().collect(), &device));
        let loss_objectness = bce_with_logits_mean(sampled_logits, tensor_from_vec(rpn_labels, [num_rpn_sampled], &device));
        let loss_rpn_box_reg = if num_rpn_pos == 0 {
            Tensor::zeros([1], &device)
        } else {
            let picked = deltas.reshape([n * total, 4]).select(0, int_tensor_from_vec(rpn_pos, &device));
            smooth_l1_sum(picked, tensor_from_vec(rpn_targets, [num_rpn_pos, 4], &device), SMOOTH_L1_BETA) / num_rpn_sampled as f32
        };

        // ---- RoI heads: sample proposals (+ GT boxes), then box and mask losses
        let rh = &cfg.roi_heads;
        let box_coder = BoxCoder::new(rh.bbox_reg_weights);
        let mut rois: Vec<(usize, Box)> = Vec::new();
        let mut roi_labels: Vec<i64> = Vec::new();
        let mut box_targets: Vec<f32> = Vec::new();
        let mut box_rows: Vec<i64> = Vec::new();
        let mut mask_rois: Vec<(usize, Box)> = Vec::new();
        let mut mask_targets: Vec<f32> = Vec::new();
        let mut mask_rows: Vec<i64> = Vec::new();
        let mut positives: Vec<PositiveRoi> = Vec::new();
        let mask_side = 2 * rh.mask_roi_output_size;
        let mask_params = RoiAlignParams { output_h: mask_side, output_w: mask_side, spatial_scale: 1.0, sampling_ratio: -1, aligned: false };
        let mut roi_sampled = Vec::new();
        for (i, target) in targets.iter().enumerate() {
            let mut candidates = proposals[i].clone();
            candidates.extend_from_slice(&target.boxes);
            let matches = match_boxes(&target.boxes, &candidates, rh.box_fg_iou_thresh, rh.box_bg_iou_thresh, false);
            let labels: Vec<i64> = matches
                .iter()
                .map(|&m| match m {
                    BELOW_LOW_THRESHOLD => 0,
                    BETWEEN_THRESHOLDS => -1,
                    g => target.labels[g as usize] as i64,
                })
                .collect();
            let (pos, neg) = sampler.sample(SamplingStage::RoiHeads, i, &labels, rh.box_batch_size_per_image, rh.box_positive_fraction);
            roi_sampled.push((pos.len(), neg.len()));
            let mut sampled: Vec<usize> = pos.iter().chain(&neg).copied().collect();
            sampled.sort_unstable();
            let (h, w) = batch.image_sizes[i];
            for &k in &sampled {
                let row = rois.len();
                let label = labels[k];
                rois.push((i, candidates[k]));
                roi_labels.push(label);
                if label > 0 {
                    let g = matches[k] as usize;
                    box_targets.extend(box_coder.encode(&target.boxes[g], &candidates[k]));
                    box_rows.push((row * num_classes) as i64 + label);
                    positives.push(PositiveRoi { image: i, bbox: candidates[k], label: label as usize, gt: g });
                    if self.net.pointrend.is_none() {
                        mask_rows.push((mask_rois.len() * num_classes) as i64 + label);
                        mask_rois.push((i, candidates[k]));
                        let gt_mask: Vec<f32> = target.masks[g].iter().map(|&v| v as f32).collect();
                        mask_targets.extend(roi_align_host(&gt_mask, 1, h, w, &[candidates[k]], &mask_params));
                    }
                }
            }
        }
        let num_rois = rois.len();
        ensure!(num_rois > 0, "no proposals could be sampled for the RoI heads");
        let pooled = multiscale_roi_align(&features[..fpn_levels], &rois, &batch.image_sizes, rh.box_roi_output_size, rh.sampling_ratio);
        let (class_logits, box_regression) = self.net.box_predictor.forward(self.net.box_head.forward(pooled));
        let loss_classifier = cross_entropy_mean(class_logits, int_tensor_from_vec(roi_labels, &device));
        let num_box_pos = box_rows.len();
        let loss_box_reg = if num_box_pos == 0 {
            Tensor::zeros([1], &device)
        } else {
            let picked = box_regression.reshape([num_rois * num_classes, 4]).select(0, int_tensor_from_vec(box_rows, &device));
            smooth_l1_sum(picked, tensor_from_vec(box_targets, [num_box_pos, 4], &device), SMOOTH_L1_BETA) / num_rois as f32
        };
        let mut loss_mask_point = Tensor::zeros([1], &device);
        let loss_mask = if positives.is_empty() {
            // torchvision returns `mask_logits.sum() * 0`: zero, with no gradient to speak of.
            Tensor::zeros([1], &device)
        } else if let Some(pr) = &self.net.pointrend {
            let max_image_h = batch.image_sizes.iter().map(|s| s.0).max().unwrap_or(1);
            let fine_scale = crate::roi_heads::poolers::infer_scale(features[0].dims()[2], max_image_h);
            let (coarse, point) = super::pointrend_loss::pointrend_losses(pr, &features[0], fine_scale, &positives, &targets, &batch.image_sizes, sampler)?;
            loss_mask_point = point;
            coarse
        } else {
            let (Some(head), Some(predictor)) = (&self.net.mask_head, &self.net.mask_predictor) else {
                anyhow::bail!("the model has no mask head");
            };
            let pooled = multiscale_roi_align(&features[..fpn_levels], &mask_rois, &batch.image_sizes, rh.mask_roi_output_size, rh.sampling_ratio);
            let logits = predictor.forward(head.forward(pooled));
            let [p, c, m, _] = logits.dims();
            ensure!(m == mask_side, "mask predictor gives {m}x{m} logits, expected {mask_side}");
            let picked: Tensor<2> = logits.reshape([p * c, m * m]).select(0, int_tensor_from_vec(mask_rows, &device));
            bce_with_logits_mean(picked.reshape([p * m * m]), tensor_from_vec(mask_targets, [p * m * m], &device))
        };

        if let Some(t) = trace {
            t.image_sizes = batch.image_sizes.clone();
            t.proposals = proposals;
            t.rpn_sampled = rpn_sampled;
            t.roi_sampled = roi_sampled;
        }
        Ok(LossTerms {
            objectness: loss_objectness,
            rpn_box_reg: loss_rpn_box_reg,
            classifier: loss_classifier,
            box_reg: loss_box_reg,
            mask: loss_mask,
            mask_point: loss_mask_point,
            batch_norm_stats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_masks_follow_nearest_resize() {
        let t = TrainTarget { boxes: vec![[0.0, 0.0, 2.0, 1.0]], labels: vec![1], masks: vec![vec![1, 1, 0, 0, 0, 0]] };
        let r = resize_target(&t, (2, 3), (4, 6));
        assert_eq!(r.boxes[0], [0.0, 0.0, 4.0, 2.0]);
        assert_eq!(&r.masks[0][..12], &[1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0]);
        assert!(r.masks[0][12..].iter().all(|&v| v == 0));
    }
}
