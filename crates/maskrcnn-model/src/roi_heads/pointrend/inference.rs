//! PointRend inference: coarse logits, then adaptive subdivision at the most uncertain points.

use burn::tensor::Tensor;

use crate::ops::boxes::Box;
use crate::ops::interpolate::resize_bilinear;
use crate::tensor_util::{tensor_from_vec, tensor_to_vec};

use super::heads::{CoarseMaskHead, PointHead};
use super::point_features::{
    regular_grid, sample_box_points, sample_box_points_host, sample_coarse_host, HostFeatures,
};
use super::{COARSE_INPUT_SIDE, COARSE_OUTPUT_SIDE, SUBDIVISION_POINTS, SUBDIVISION_STEPS};

/// Indices and box-relative centres of the `k` most uncertain cells (highest value) of an
/// `h x w` map, as detectron2's `get_uncertain_point_coords_on_grid`.
pub fn most_uncertain_cells(uncertainty: &[f32], h: usize, w: usize, k: usize) -> (Vec<usize>, Vec<[f32; 2]>) {
    let indices = crate::proposal::rpn::top_k_indices(uncertainty, k.min(h * w));
    let (w_step, h_step) = (1.0 / w as f32, 1.0 / h as f32);
    let coords = indices
        .iter()
        .map(|&i| [w_step / 2.0 + (i % w) as f32 * w_step, h_step / 2.0 + (i / w) as f32 * h_step])
        .collect();
    (indices, coords)
}

/// The stride-4 level that points are read from: on the CPU one channels-last host copy (fast
/// contiguous taps), on a GPU the device tensor itself, read by a gather, so the map (the largest
/// tensor of inference) never crosses to the host.
// One per image, never stored in bulk: the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum FineFeatures {
    Host(HostFeatures),
    Device(Tensor<4>),
}

impl FineFeatures {
    pub fn new(level: &Tensor<4>) -> Self {
        if crate::device::is_cpu(&level.device()) {
            Self::Host(HostFeatures::from_tensor(level))
        } else {
            Self::Device(level.clone())
        }
    }

    pub fn channels(&self) -> usize {
        match self {
            Self::Host(h) => h.channels(),
            Self::Device(t) => t.dims()[1],
        }
    }

    /// Features at box-relative `points` of each RoI, as rows `[R * P, C]` (RoI-major).
    fn rows(
        &self,
        scale: f32,
        rois: &[(usize, Box)],
        points: &[Vec<[f32; 2]>],
        device: &burn::tensor::Device,
    ) -> Tensor<2> {
        let p = points.first().map_or(0, Vec::len);
        match self {
            Self::Host(h) => {
                tensor_from_vec(sample_box_points_host(h, scale, rois, points), [rois.len() * p, h.channels()], device)
            }
            Self::Device(t) => {
                let sampled = sample_box_points(t, scale, rois, points);
                let [r, c, p] = sampled.dims();
                sampled.swap_dims(1, 2).reshape([r * p, c])
            }
        }
    }
}

/// PointRend inference for detections: coarse logits, then adaptive subdivision up to 224x224.
/// Only each detection's predicted class is refined (the other channels never reach the output),
/// and RoIs are processed in chunks so memory stays bounded.
pub struct PointRendInference<'a> {
    pub coarse_head: &'a CoarseMaskHead,
    pub point_head: &'a PointHead,
    /// The stride-4 FPN level ('0'), and its scale.
    pub fine_features: &'a FineFeatures,
    pub fine_scale: f32,
}

impl PointRendInference<'_> {
    /// Returns, per RoI, the refined `side x side` probabilities of its label and the side.
    pub fn masks(&self, rois: &[(usize, Box)], labels: &[usize]) -> (Vec<Vec<f32>>, usize) {
        const CHUNK: usize = 32;
        let mut out = Vec::with_capacity(rois.len());
        let mut side = COARSE_OUTPUT_SIDE;
        for (chunk_rois, chunk_labels) in rois.chunks(CHUNK).zip(labels.chunks(CHUNK)) {
            let (masks, s) = self.masks_chunk(chunk_rois, chunk_labels);
            side = s;
            out.extend(masks);
        }
        (out.into_iter().map(|m| m.into_iter().map(crate::proposal::rpn::sigmoid).collect()).collect(), side)
    }

    fn masks_chunk(&self, rois: &[(usize, Box)], labels: &[usize]) -> (Vec<Vec<f32>>, usize) {
        let r = rois.len();
        let device = self.coarse_head.coarse_mask_fc1.weight.val().device();
        let c = self.fine_features.channels();
        let grid = regular_grid(COARSE_INPUT_SIDE);
        let grid_points: Vec<Vec<[f32; 2]>> = vec![grid; r];
        let rows = self.fine_features.rows(self.fine_scale, rois, &grid_points, &device);
        let point_features: Tensor<4> =
            rows.reshape([r, COARSE_INPUT_SIDE, COARSE_INPUT_SIDE, c]).permute([0, 3, 1, 2]);
        let coarse = self.coarse_head.forward(point_features);
        let [_, k, s7, _] = coarse.dims();
        let coarse_host = tensor_to_vec(coarse);
        let mut logits: Vec<Vec<f32>> = (0..r)
            .map(|i| coarse_host[(i * k + labels[i]) * s7 * s7..(i * k + labels[i] + 1) * s7 * s7].to_vec())
            .collect();
        let mut side = s7;
        for step in 0..SUBDIVISION_STEPS {
            let next = side * 2;
            logits = logits.iter().map(|m| resize_bilinear(m, 1, (side, side), (next, next))).collect();
            side = next;
            if SUBDIVISION_POINTS >= 4 * side * side && step < SUBDIVISION_STEPS - 1 {
                continue;
            }
            let mut indices = Vec::with_capacity(r);
            let mut coords = Vec::with_capacity(r);
            for m in &logits {
                let uncertainty: Vec<f32> = m.iter().map(|v| -v.abs()).collect();
                let (idx, pts) = most_uncertain_cells(&uncertainty, side, side, SUBDIVISION_POINTS);
                indices.push(idx);
                coords.push(pts);
            }
            let p = coords[0].len();
            let fine = self.fine_features.rows(self.fine_scale, rois, &coords, &device);
            let coarse_at_points =
                tensor_from_vec(sample_coarse_host(&coarse_host, k, s7, &coords), [r * p, k], &device);
            let point_logits = tensor_to_vec(self.point_head.forward_rows(fine, coarse_at_points));
            for (i, idx) in indices.iter().enumerate() {
                for (j, &cell) in idx.iter().enumerate() {
                    logits[i][cell] = point_logits[(i * p + j) * k + labels[i]];
                }
            }
        }
        (logits, side)
    }
}

impl super::PointRendHeads {
    /// Refined masks for detections `rois` with their `labels`, read from the stride-4 FPN level
    /// (the first of `levels`: copied once to the host on the CPU, read in place on a GPU).
    pub fn masks(
        &self,
        levels: &[Tensor<4>],
        rois: &[(usize, Box)],
        labels: &[usize],
        image_sizes: &[(usize, usize)],
    ) -> crate::roi_heads::mask_head::MaskProbabilities {
        let fine_features = FineFeatures::new(&levels[0]);
        let inference = PointRendInference {
            coarse_head: &self.coarse_head,
            point_head: &self.point_head,
            fine_features: &fine_features,
            fine_scale: crate::roi_heads::poolers::level_scale(&levels[0], image_sizes),
        };
        let (probs, side) = inference.masks(rois, labels);
        crate::roi_heads::mask_head::MaskProbabilities { probs, side, pooled: None, logits: None }
    }
}
