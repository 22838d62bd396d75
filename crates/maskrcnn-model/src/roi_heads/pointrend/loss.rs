//! PointRend's training losses (detectron2's recipe, as arcgis.learn trains it): BCE on the 7x7
//! coarse logits, and BCE at 196 points per RoI chosen mostly where the coarse mask is uncertain.

use anyhow::Result;
use burn::tensor::Tensor;

use super::{
    regular_grid, sample_box_points, sample_coarse, PointRendHeads, COARSE_INPUT_SIDE, COARSE_OUTPUT_SIDE,
    IMPORTANCE_RATIO, OVERSAMPLE_RATIO, TRAIN_POINTS,
};
use crate::ops::boxes::Box;
use crate::ops::losses::bce_with_logits_mean;
use crate::ops::point_sample::point_sample_host;
use crate::ops::roi_align::{roi_align_host, RoiAlignParams};
use crate::proposal::rpn::top_k_indices;
use crate::roi_heads::poolers::level_scale;
use crate::roi_heads::sampling::SampledRois;
use crate::sampling::Sampler;
use crate::targets::TrainTarget;
use crate::tensor_util::{int_tensor_from_vec, tensor_from_vec, tensor_to_vec};

impl PointRendHeads {
    /// `(coarse mask loss, point loss)` for the positive RoIs, read from the stride-4 FPN level
    /// (the first of `levels`).
    pub fn losses(
        &self,
        levels: &[Tensor<4>],
        sampled: &SampledRois,
        targets: &[TrainTarget],
        image_sizes: &[(usize, usize)],
        sampler: &mut dyn Sampler,
    ) -> Result<(Tensor<1>, Tensor<1>)> {
        let fine = &levels[0];
        let fine_scale = level_scale(fine, image_sizes);
        let positives = &sampled.positives;
        let device = fine.device();
        let r = positives.len();
        let rois: Vec<(usize, Box)> = positives.iter().map(|p| (p.image, p.bbox)).collect();
        let grid = vec![regular_grid(COARSE_INPUT_SIDE); r];
        let point_features = sample_box_points(fine, fine_scale, &rois, &grid);
        let c = point_features.dims()[1];
        let coarse = self.coarse_head.forward(point_features.reshape([r, c, COARSE_INPUT_SIDE, COARSE_INPUT_SIDE]));
        let [_, k, s, _] = coarse.dims();
        let cells = s * s;

        // Coarse loss: the GT-class channel against the instance mask pooled to 7x7, as the plain
        // head's loss does at 28x28.
        let params = RoiAlignParams {
            output_h: COARSE_OUTPUT_SIDE,
            output_w: COARSE_OUTPUT_SIDE,
            spatial_scale: 1.0,
            sampling_ratio: -1,
            aligned: false,
        };
        let mut coarse_targets = Vec::with_capacity(r * cells);
        for p in positives {
            let (h, w) = image_sizes[p.image];
            let gt = targets[p.image].mask_f32(p.gt);
            coarse_targets.extend(roi_align_host(&gt, 1, h, w, &[p.bbox], &params));
        }
        let rows: Vec<i64> = positives.iter().enumerate().map(|(i, p)| (i * k + p.label) as i64).collect();
        let picked: Tensor<2> =
            coarse.clone().reshape([r * k, cells]).select(0, int_tensor_from_vec(rows.clone(), &device));
        let coarse_loss =
            bce_with_logits_mean(picked.reshape([r * cells]), tensor_from_vec(coarse_targets, [r * cells], &device));

        // Points: 147 of 588 uniform candidates where |coarse logit| is smallest, plus 49 uniform.
        let coarse_host = tensor_to_vec(coarse.clone());
        let num_uncertain = (IMPORTANCE_RATIO * TRAIN_POINTS as f32) as usize;
        let mut points = Vec::with_capacity(r);
        let mut point_targets = Vec::with_capacity(r * TRAIN_POINTS);
        for (i, p) in positives.iter().enumerate() {
            let channel = &coarse_host[(i * k + p.label) * cells..(i * k + p.label + 1) * cells];
            let candidates = sampler.uniform_points(TRAIN_POINTS * OVERSAMPLE_RATIO);
            let logits = point_sample_host(channel, 1, s, s, &candidates);
            let uncertainty: Vec<f32> = logits.iter().map(|v| -v.abs()).collect();
            let mut chosen: Vec<[f32; 2]> =
                top_k_indices(&uncertainty, num_uncertain).into_iter().map(|j| candidates[j]).collect();
            chosen.extend(sampler.uniform_points(TRAIN_POINTS - num_uncertain));
            // Targets: the full-image instance mask read at the same points.
            let (h, w) = image_sizes[p.image];
            let b = p.bbox;
            let in_image: Vec<[f32; 2]> = chosen
                .iter()
                .map(|pt| [(b[0] + pt[0] * (b[2] - b[0])) / w as f32, (b[1] + pt[1] * (b[3] - b[1])) / h as f32])
                .collect();
            let gt = targets[p.image].mask_f32(p.gt);
            point_targets.extend(point_sample_host(&gt, 1, h, w, &in_image));
            points.push(chosen);
        }
        let fine_at_points = sample_box_points(fine, fine_scale, &rois, &points);
        let coarse_at_points = sample_coarse(&coarse, &points);
        let point_logits = self.point_head.forward(fine_at_points, coarse_at_points);
        let picked: Tensor<2> =
            point_logits.reshape([r * k, TRAIN_POINTS]).select(0, int_tensor_from_vec(rows, &device));
        let n = r * TRAIN_POINTS;
        let point_loss = bce_with_logits_mean(picked.reshape([n]), tensor_from_vec(point_targets, [n], &device));
        Ok((coarse_loss, point_loss))
    }
}
