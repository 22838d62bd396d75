//! torchvision's `MultiScaleRoIAlign`: each RoI is pooled from the FPN level that fits its size.

use burn::tensor::Tensor;

use crate::ops::boxes::{box_area, Box};
use crate::ops::roi_align::{sampling_plan, RoiAlignParams};
use crate::tensor_util::{int_tensor_from_vec, select_indices, tensor_from_vec};

/// Caps the gathered intermediate (`rois x cells x taps x channels`) so inference memory stays
/// bounded however many proposals there are.
const ROIS_PER_CHUNK: usize = 256;

/// Level scale as torchvision infers it: the power of two nearest to feature / image height.
pub fn infer_scale(feature_height: usize, image_height: usize) -> f32 {
    let approx = feature_height as f32 / image_height as f32;
    2f32.powf(approx.log2().round())
}

/// Scale (feature / image pixels) of `feature` in a padded batch of images of `image_sizes`:
/// [`infer_scale`] against the tallest image, as `MultiScaleRoIAlign` infers it, or against the
/// widest where the batch is wider than tall. torchvision infers from both sides and asserts they
/// agree, which they do except for slivers: a 1333x1 image padded to 1344x32 has a stride-4 map
/// 8 rows high, which would read as scale 8 from the height.
pub fn level_scale(feature: &Tensor<4>, image_sizes: &[(usize, usize)]) -> f32 {
    let max_image_h = image_sizes.iter().map(|s| s.0).max().unwrap_or(1);
    let max_image_w = image_sizes.iter().map(|s| s.1).max().unwrap_or(1);
    let [_, _, feature_h, feature_w] = feature.dims();
    if max_image_w > max_image_h {
        infer_scale(feature_w, max_image_w)
    } else {
        infer_scale(feature_h, max_image_h)
    }
}

/// torchvision's `LevelMapper` (canonical size 224 at level 4, eps 1e-6), as indices into the
/// pooled levels.
pub fn map_levels(boxes: &[Box], k_min: i32, k_max: i32) -> Vec<usize> {
    boxes
        .iter()
        .map(|b| {
            let s = box_area(b).sqrt();
            let level = (4.0f32 + (s / 224.0).log2() + 1e-6).floor();
            (level.clamp(k_min as f32, k_max as f32) as i32 - k_min) as usize
        })
        .collect()
}

/// RoIAlign one level for RoIs given as `(image index, box)`; output `[R, C, out, out]`.
pub fn roi_align_level(feature: &Tensor<4>, rois: &[(usize, Box)], params: &RoiAlignParams) -> Tensor<4> {
    let [n, c, h, w] = feature.dims();
    let device = feature.device();
    if rois.is_empty() {
        return Tensor::zeros([0, c, params.output_h, params.output_w], &device);
    }
    let flat: Tensor<2> = feature.clone().permute([0, 2, 3, 1]).reshape([n * h * w, c]);
    // Inference on the CPU accumulates on host memory (no gathered intermediate); on a GPU the
    // gather below stays on the device, which beats reading the feature map back.
    if !feature.is_tracked() && crate::device::is_cpu(&device) {
        return crate::ops::roi_align_cpu::roi_align_level_host(flat, rois, (c, h, w), params);
    }
    let mut chunks = Vec::new();
    for chunk in rois.chunks(ROIS_PER_CHUNK) {
        let plan = sampling_plan(chunk, h, w, params);
        let taps = plan.rows.len();
        let weights: Tensor<2> = tensor_from_vec(plan.weights, [taps, 1], &device);
        let gathered = select_indices(flat.clone(), 0, plan.rows) * weights;
        let pooled: Tensor<3> = gathered
            .reshape([chunk.len() * plan.cells, plan.taps_per_cell, c])
            .sum_dim(1)
            .reshape([chunk.len(), plan.cells, c]);
        chunks.push(pooled.swap_dims(1, 2).reshape([chunk.len(), c, params.output_h, params.output_w]));
    }
    Tensor::cat(chunks, 0)
}

/// Pools every RoI from its level; output rows follow the order of `rois`.
pub fn multiscale_roi_align(
    features: &[Tensor<4>],
    rois: &[(usize, Box)],
    image_sizes: &[(usize, usize)],
    output_size: usize,
    sampling_ratio: i32,
) -> Tensor<4> {
    let scales: Vec<f32> = features.iter().map(|f| level_scale(f, image_sizes)).collect();
    let params_for = |scale: f32| RoiAlignParams {
        output_h: output_size,
        output_w: output_size,
        spatial_scale: scale,
        sampling_ratio,
        aligned: false,
    };
    if features.len() == 1 {
        return roi_align_level(&features[0], rois, &params_for(scales[0]));
    }
    let k_min = -scales[0].log2().round() as i32;
    let k_max = -scales[scales.len() - 1].log2().round() as i32;
    let boxes: Vec<Box> = rois.iter().map(|r| r.1).collect();
    let levels = map_levels(&boxes, k_min, k_max);
    let mut pooled = Vec::new();
    let mut order = Vec::with_capacity(rois.len());
    for (level, feature) in features.iter().enumerate() {
        let members: Vec<usize> = (0..rois.len()).filter(|&i| levels[i] == level).collect();
        if members.is_empty() {
            continue;
        }
        let level_rois: Vec<(usize, Box)> = members.iter().map(|&i| rois[i]).collect();
        pooled.push(roi_align_level(feature, &level_rois, &params_for(scales[level])));
        order.extend(members);
    }
    let c = features[0].dims()[1];
    if pooled.is_empty() {
        return Tensor::zeros([0, c, output_size, output_size], &features[0].device());
    }
    let stacked = Tensor::cat(pooled, 0);
    // `order[k]` is the RoI in row k; invert it to restore the input order.
    let mut inverse = vec![0i64; order.len()];
    for (row, &roi) in order.iter().enumerate() {
        inverse[roi] = row as i64;
    }
    let device = stacked.device();
    stacked.select(0, int_tensor_from_vec(inverse, &device))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_mapper_matches_torchvision() {
        // sqrt(area) 224 -> level 4; 112 -> 3; 10 -> clamped to k_min.
        let boxes =
            [[0.0, 0.0, 224.0, 224.0], [0.0, 0.0, 112.0, 112.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 2000.0, 2000.0]];
        assert_eq!(map_levels(&boxes, 2, 5), vec![2, 1, 0, 3]);
        assert_eq!(infer_scale(200, 800), 0.25);
        assert_eq!(infer_scale(25, 800), 0.03125);
    }
}
