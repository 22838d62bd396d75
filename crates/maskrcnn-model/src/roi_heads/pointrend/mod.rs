//! PointRend mask head (Kirillov et al. 2020) as detectron2 and arcgis.learn build it: a coarse
//! 7x7 prediction from point features, refined by a point head at the most uncertain points while
//! the mask is upsampled to 224x224.
//!
//! - [`heads`]: the coarse mask head and the point head (the weights).
//! - [`point_features`]: reading features at box-relative points, tensor and host twins side by side.
//! - [`inference`]: adaptive subdivision for detections.
//! - [`loss`]: the coarse and point losses and their targets.

pub mod heads;
pub mod inference;
pub mod loss;
pub mod point_features;

use burn::module::Module;
use burn::tensor::Device;

pub use heads::{CoarseMaskHead, PointConv, PointHead};
pub use inference::{most_uncertain_cells, FineFeatures, PointRendInference};
pub use point_features::{
    regular_grid, sample_box_points, sample_box_points_host, sample_coarse, sample_coarse_host, HostFeatures,
};

use crate::weights::{NamedTensors, TensorSlot};

/// Side of the point grid the coarse head reads, and of its prediction.
pub const COARSE_INPUT_SIDE: usize = 14;
pub const COARSE_OUTPUT_SIDE: usize = 7;
/// Subdivision at inference: 5 doublings of the 7x7 mask (to 224x224), refining 784 points each.
pub const SUBDIVISION_STEPS: usize = 5;
pub const SUBDIVISION_POINTS: usize = 784;
/// Training points per RoI, drawn from `OVERSAMPLE_RATIO` times as many uniform candidates, of
/// which `IMPORTANCE_RATIO` are the most uncertain.
pub const TRAIN_POINTS: usize = 14 * 14;
pub const OVERSAMPLE_RATIO: usize = 3;
pub const IMPORTANCE_RATIO: f32 = 0.75;

/// The PointRend mask branch: coarse head under `roi_heads.mask_head.*`, point head under
/// `roi_heads.mask_predictor.mask_point_head.*` (arcgis.learn's key names).
#[derive(Module, Debug)]
pub struct PointRendHeads {
    pub coarse_head: CoarseMaskHead,
    pub point_head: PointHead,
}

impl PointRendHeads {
    /// Freshly initialised coarse and point heads over `channels`-wide FPN features.
    pub fn new(channels: usize, num_classes: usize, device: &Device) -> Self {
        Self {
            coarse_head: CoarseMaskHead::new(channels, num_classes, device),
            point_head: PointHead::new(channels, num_classes, device),
        }
    }

    /// Fresh class-specific layers for `num_classes` classes (the point head reads the class
    /// logits in every layer, so all of it starts afresh).
    pub fn set_num_classes(&mut self, num_classes: usize, device: &Device) {
        self.coarse_head.set_num_classes(num_classes, device);
        self.point_head = PointHead::new(self.point_head.fine_channels(), num_classes, device);
    }
}

impl NamedTensors for PointRendHeads {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        self.coarse_head.visit_named(&format!("{prefix}.mask_head"), visit);
        self.point_head.visit_named(&format!("{prefix}.mask_predictor.mask_point_head"), visit);
    }
}

#[cfg(test)]
mod tests;
