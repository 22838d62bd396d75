//! The training forward pass of torchvision's `MaskRCNN` (`model.train(); model(images, targets)`):
//! resize images and targets, then the RPN's and the RoI heads' losses, each computed by its
//! component, as differentiable tensors.

use anyhow::{ensure, Context, Result};
use burn::tensor::Tensor;

use crate::model::MaskRcnn;
use crate::ops::boxes::Box;
use crate::sampling::Sampler;
use crate::tensor_util::tensor_to_vec;
use crate::transform::{batch_images, ImageChw};

pub use crate::roi_heads::sampling::PositiveRoi;
pub use crate::targets::TrainTarget;

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
        self.objectness.clone()
            + self.rpn_box_reg.clone()
            + self.classifier.clone()
            + self.box_reg.clone()
            + self.mask.clone()
            + self.mask_point.clone()
    }

    /// The terms in [`Self::NAMES`] order, read back to the host.
    pub fn values(&self) -> [f32; NUM_LOSS_TERMS] {
        [&self.objectness, &self.rpn_box_reg, &self.classifier, &self.box_reg, &self.mask, &self.mask_point]
            .map(|t| tensor_to_vec(t.clone())[0])
    }
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

impl MaskRcnn {
    /// torchvision's training forward: the five losses for a batch of images and their targets.
    /// `sampler` picks the anchors and proposals that enter the losses (random in training,
    /// recorded in tests).
    pub fn forward_train(
        &self,
        images: &[ImageChw],
        targets: &[TrainTarget],
        sampler: &mut dyn Sampler,
    ) -> Result<LossTerms> {
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
        for (i, (image, target)) in images.iter().zip(targets).enumerate() {
            crate::transform::check_image(image, cfg.backbone.in_channels).with_context(|| format!("image {i}"))?;
            target.check(i, image, cfg.num_classes)?;
        }
        let batch = batch_images(images, &cfg.transform, &self.device);
        let [_, _, ph, pw] = batch.tensor.dims();
        let targets: Vec<TrainTarget> =
            targets.iter().enumerate().map(|(i, t)| t.resized(batch.original_sizes[i], batch.image_sizes[i])).collect();

        let mut batch_norm_stats = Vec::new();
        let train_norm = (cfg.backbone.norm == crate::config::NormKind::Batch).then_some(&mut batch_norm_stats);
        let features =
            self.net.backbone.forward_with_stats(batch.tensor.clone(), &cfg.backbone.returned_layers, train_norm);
        let levels = &features[..cfg.backbone.returned_layers.len()];

        let rpn = self.net.rpn_head.propose(&features, (ph, pw), &batch.image_sizes, &cfg.rpn, true);
        let rpn_losses = rpn.losses(&targets, &cfg.rpn, sampler)?;
        let roi_losses =
            self.net.roi_heads.losses(levels, &rpn.proposals, &targets, &batch.image_sizes, &cfg.roi_heads, sampler)?;

        if let Some(t) = trace {
            t.image_sizes = batch.image_sizes.clone();
            t.proposals = rpn.proposals;
            t.rpn_sampled = rpn_losses.sampled;
            t.roi_sampled = roi_losses.sampled;
        }
        Ok(LossTerms {
            objectness: rpn_losses.objectness,
            rpn_box_reg: rpn_losses.box_reg,
            classifier: roi_losses.classifier,
            box_reg: roi_losses.box_reg,
            mask: roi_losses.mask.mask,
            mask_point: roi_losses.mask.mask_point,
            batch_norm_stats,
        })
    }
}
