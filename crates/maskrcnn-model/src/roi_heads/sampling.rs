//! torchvision's `RoIHeads.select_training_samples`: proposals plus the ground-truth boxes,
//! matched at 0.5 / 0.5, 512 sampled per image at a quarter positives. The box and mask losses
//! both read the result.

use crate::config::RoiHeadsConfig;
use crate::ops::boxes::Box;
use crate::sampling::{match_boxes, Sampler, SamplingStage, BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS};
use crate::targets::TrainTarget;

/// A sampled proposal matched to a ground-truth instance.
#[derive(Debug, Clone, Copy)]
pub struct PositiveRoi {
    pub image: usize,
    pub bbox: Box,
    pub label: usize,
    /// Index of the matched instance in the image's target.
    pub gt: usize,
    /// Row of this RoI in [`SampledRois::rois`].
    pub row: usize,
}

/// The RoIs that enter the box and mask losses, image by image, each image's in ascending
/// candidate order.
#[derive(Debug, Clone, Default)]
pub struct SampledRois {
    /// `(image, box)` in resized-image pixels.
    pub rois: Vec<(usize, Box)>,
    /// torchvision's labels: the matched class, or 0 for background.
    pub labels: Vec<i64>,
    pub positives: Vec<PositiveRoi>,
    /// (positive, negative) counts per image.
    pub counts: Vec<(usize, usize)>,
}

/// Samples RoIs among each image's `proposals` and ground-truth boxes.
pub fn sample_rois(
    proposals: &[Vec<Box>],
    targets: &[TrainTarget],
    config: &RoiHeadsConfig,
    sampler: &mut dyn Sampler,
) -> SampledRois {
    let mut out = SampledRois::default();
    for (i, target) in targets.iter().enumerate() {
        let mut candidates = proposals[i].clone();
        candidates.extend_from_slice(&target.boxes);
        let matches =
            match_boxes(&target.boxes, &candidates, config.box_fg_iou_thresh, config.box_bg_iou_thresh, false);
        let labels: Vec<i64> = matches
            .iter()
            .map(|&m| match m {
                BELOW_LOW_THRESHOLD => 0,
                BETWEEN_THRESHOLDS => -1,
                g => target.labels[g as usize] as i64,
            })
            .collect();
        let (pos, neg) = sampler.sample(
            SamplingStage::RoiHeads,
            i,
            &labels,
            config.box_batch_size_per_image,
            config.box_positive_fraction,
        );
        out.counts.push((pos.len(), neg.len()));
        let mut sampled: Vec<usize> = pos.iter().chain(&neg).copied().collect();
        sampled.sort_unstable();
        for &k in &sampled {
            let row = out.rois.len();
            let label = labels[k];
            out.rois.push((i, candidates[k]));
            out.labels.push(label);
            if label > 0 {
                let gt = matches[k] as usize;
                out.positives.push(PositiveRoi { image: i, bbox: candidates[k], label: label as usize, gt, row });
            }
        }
    }
    out
}
