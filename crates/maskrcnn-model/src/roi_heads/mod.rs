//! torchvision's `RoIHeads`: box and mask heads on pooled RoI features. At inference
//! [`RoiHeads::detect`] runs the box branch and post-processing; in training [`RoiHeads::losses`]
//! samples RoIs and returns the box and mask losses. Each head owns its inference, loss and targets.

pub mod box_head;
pub mod mask_branch;
pub mod mask_head;
pub mod pointrend;
pub mod poolers;
pub mod sampling;

use anyhow::{ensure, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

pub use box_head::{fastrcnn_loss, postprocess_detections, softmax, RawDetections};
pub use mask_branch::{MaskBranch, MaskLosses};

use crate::config::MaskRcnnConfig;
use crate::config::RoiHeadsConfig;
use crate::ops::boxes::Box;
use crate::sampling::Sampler;
use crate::targets::TrainTarget;
use crate::tensor_util::tensor_to_vec;
use crate::weights::{NamedTensors, TensorSlot};
use box_head::{FastRcnnPredictor, TwoMlpHead};
use poolers::multiscale_roi_align;

/// The box head, its predictor and the mask branch, under `roi_heads.*`.
#[derive(Module, Debug)]
pub struct RoiHeads {
    pub box_head: TwoMlpHead,
    pub box_predictor: FastRcnnPredictor,
    pub mask: MaskBranch,
}

/// The box branch at inference, kept whole for parity tests and profiling.
pub struct BoxStage {
    pub pooled: Tensor<4>,
    pub box_features: Tensor<2>,
    pub class_logits: Vec<f32>,
    pub box_regression: Vec<f32>,
    pub detections: Vec<RawDetections>,
}

/// The RoI heads' training losses and the RoIs sampled per image.
pub struct RoiLosses {
    pub classifier: Tensor<1>,
    pub box_reg: Tensor<1>,
    pub mask: MaskLosses,
    pub sampled: Vec<(usize, usize)>,
}

impl RoiHeads {
    /// Freshly initialised heads for `config` (torchvision's initialisers).
    pub fn new(config: &MaskRcnnConfig, device: &Device) -> Self {
        let c = config.backbone.fpn_out_channels;
        let rh = &config.roi_heads;
        let side = rh.box_roi_output_size;
        Self {
            box_head: TwoMlpHead::new(c * side * side, rh.representation_size, device),
            box_predictor: FastRcnnPredictor::new(rh.representation_size, config.num_classes, device),
            mask: MaskBranch::new(config.mask_head, c, rh, config.num_classes, device),
        }
    }

    /// Fresh class-specific layers for `num_classes` classes; the shared layers are kept.
    pub fn set_num_classes(&mut self, num_classes: usize, device: &Device) {
        self.box_predictor = self.box_predictor.with_num_classes(num_classes, device);
        self.mask.set_num_classes(num_classes, device);
    }

    /// Box branch and `postprocess_detections` for each image's `proposals`, from the FPN `levels`.
    pub fn detect(
        &self,
        levels: &[Tensor<4>],
        proposals: &[Vec<Box>],
        image_sizes: &[(usize, usize)],
        config: &RoiHeadsConfig,
    ) -> BoxStage {
        let rois: Vec<(usize, Box)> =
            proposals.iter().enumerate().flat_map(|(i, ps)| ps.iter().map(move |b| (i, *b))).collect();
        let pooled =
            multiscale_roi_align(levels, &rois, image_sizes, config.box_roi_output_size, config.sampling_ratio);
        let box_features = self.box_head.forward(pooled.clone());
        let (logits, regression) = self.box_predictor.forward(box_features.clone());
        let num_classes = self.box_predictor.num_classes();
        let class_logits = tensor_to_vec(logits);
        let box_regression = tensor_to_vec(regression);
        let mut offset = 0;
        let detections = proposals
            .iter()
            .enumerate()
            .map(|(i, ps)| {
                let rows = offset..offset + ps.len();
                offset += ps.len();
                postprocess_detections(
                    &class_logits[rows.start * num_classes..rows.end * num_classes],
                    &box_regression[rows.start * num_classes * 4..rows.end * num_classes * 4],
                    ps,
                    num_classes,
                    image_sizes[i],
                    config,
                )
            })
            .collect();
        BoxStage { pooled, box_features, class_logits, box_regression, detections }
    }

    /// Samples RoIs among `proposals` and the ground truth, and returns the box and mask losses.
    pub fn losses(
        &self,
        levels: &[Tensor<4>],
        proposals: &[Vec<Box>],
        targets: &[TrainTarget],
        image_sizes: &[(usize, usize)],
        config: &RoiHeadsConfig,
        sampler: &mut dyn Sampler,
    ) -> Result<RoiLosses> {
        let sampled = sampling::sample_rois(proposals, targets, config, sampler);
        ensure!(!sampled.rois.is_empty(), "no proposals could be sampled for the RoI heads");
        let pooled =
            multiscale_roi_align(levels, &sampled.rois, image_sizes, config.box_roi_output_size, config.sampling_ratio);
        let (class_logits, box_regression) = self.box_predictor.forward(self.box_head.forward(pooled));
        let (classifier, box_reg) = fastrcnn_loss(class_logits, box_regression, &sampled, targets, config);
        let mask = self.mask.losses(levels, &sampled, targets, image_sizes, config, sampler)?;
        Ok(RoiLosses { classifier, box_reg, mask, sampled: sampled.counts })
    }
}

impl NamedTensors for RoiHeads {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        self.box_head.visit_named(&format!("{prefix}.box_head"), visit);
        self.box_predictor.visit_named(&format!("{prefix}.box_predictor"), visit);
        self.mask.visit_named(prefix, visit);
    }
}
