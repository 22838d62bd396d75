//! The mask branch of the RoI heads: the one place a mask head is registered. A new mask head
//! lives in its own module and adds a variant here.

use anyhow::Result;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::mask_head::{MaskProbabilities, StandardMaskHeads};
use super::pointrend::PointRendHeads;
use super::sampling::SampledRois;
use crate::config::{MaskHeadKind, RoiHeadsConfig};
use crate::ops::boxes::Box;
use crate::sampling::Sampler;
use crate::targets::TrainTarget;
use crate::weights::{NamedTensors, TensorSlot};

/// The mask head a model carries.
// One per model, so the variants' size difference costs nothing; burn's `Module` derive does not
// see through a `Box`.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum MaskBranch {
    /// torchvision's 28x28 head.
    Standard(StandardMaskHeads),
    /// PointRend's coarse head refined at uncertain points to 224x224.
    PointRend(PointRendHeads),
}

/// The mask branch's training losses: the mask loss and, for PointRend, the point loss.
pub struct MaskLosses {
    pub mask: Tensor<1>,
    pub mask_point: Tensor<1>,
}

impl MaskBranch {
    /// A freshly initialised branch of `kind` over `channels`-wide FPN features.
    pub fn new(
        kind: MaskHeadKind,
        channels: usize,
        config: &RoiHeadsConfig,
        num_classes: usize,
        device: &Device,
    ) -> Self {
        match kind {
            MaskHeadKind::Standard => Self::Standard(StandardMaskHeads::new(channels, config, num_classes, device)),
            MaskHeadKind::PointRend => Self::PointRend(PointRendHeads::new(channels, num_classes, device)),
        }
    }

    /// Which mask head this is, as the config names it.
    pub fn kind(&self) -> MaskHeadKind {
        match self {
            Self::Standard(_) => MaskHeadKind::Standard,
            Self::PointRend(_) => MaskHeadKind::PointRend,
        }
    }

    /// Fresh class-specific layers for `num_classes` classes.
    pub fn set_num_classes(&mut self, num_classes: usize, device: &Device) {
        match self {
            Self::Standard(heads) => heads.set_num_classes(num_classes, device),
            Self::PointRend(heads) => heads.set_num_classes(num_classes, device),
        }
    }

    /// Mask probabilities for detections `rois` with their `labels`, from the FPN `levels`.
    pub fn masks(
        &self,
        levels: &[Tensor<4>],
        rois: &[(usize, Box)],
        labels: &[usize],
        image_sizes: &[(usize, usize)],
        config: &RoiHeadsConfig,
    ) -> MaskProbabilities {
        match self {
            Self::Standard(heads) => heads.masks(levels, rois, labels, image_sizes, config),
            Self::PointRend(heads) => heads.masks(levels, rois, labels, image_sizes),
        }
    }

    /// The branch's losses on the positive RoIs of `sampled`.
    pub fn losses(
        &self,
        levels: &[Tensor<4>],
        sampled: &SampledRois,
        targets: &[TrainTarget],
        image_sizes: &[(usize, usize)],
        config: &RoiHeadsConfig,
        sampler: &mut dyn Sampler,
    ) -> Result<MaskLosses> {
        let device = levels[0].device();
        if sampled.positives.is_empty() {
            // torchvision returns `mask_logits.sum() * 0`: zero, with no gradient to speak of.
            return Ok(MaskLosses { mask: Tensor::zeros([1], &device), mask_point: Tensor::zeros([1], &device) });
        }
        Ok(match self {
            Self::Standard(heads) => MaskLosses {
                mask: heads.loss(levels, sampled, targets, image_sizes, config)?,
                mask_point: Tensor::zeros([1], &device),
            },
            Self::PointRend(heads) => {
                let (mask, mask_point) = heads.losses(levels, sampled, targets, image_sizes, sampler)?;
                MaskLosses { mask, mask_point }
            }
        })
    }
}

impl NamedTensors for MaskBranch {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        match self {
            Self::Standard(heads) => heads.visit_named(prefix, visit),
            Self::PointRend(heads) => heads.visit_named(prefix, visit),
        }
    }
}
