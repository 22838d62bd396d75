//! Reading features at points given relative to RoI boxes: each tensor routine (differentiable,
//! used in training) beside its host twin (inference, one channels-last copy of the map).

use burn::tensor::Tensor;

use crate::ops::boxes::Box;
use crate::ops::point_sample::visit_point_taps;
use crate::tensor_util::{select_indices, tensor_from_vec, tensor_to_vec};

/// Cell centres of a `side x side` grid in box-relative `[0, 1]` coordinates, row by row
/// (`affine_grid` with align_corners=False).
pub fn regular_grid(side: usize) -> Vec<[f32; 2]> {
    let mut points = Vec::with_capacity(side * side);
    for y in 0..side {
        for x in 0..side {
            points.push([(x as f32 + 0.5) / side as f32, (y as f32 + 0.5) / side as f32]);
        }
    }
    points
}

/// Samples a `[N, C, H, W]` feature map of the given scale (feature / image pixels) at points given
/// relative to each RoI's box: `[R, C, P]`, differentiable with respect to the features.
/// Follows detectron2's `point_sample_fine_grained_features`: points are normalised by the padded
/// feature extent and read with `grid_sample(align_corners=False)`.
pub fn sample_box_points(
    feature: &Tensor<4>,
    scale: f32,
    rois: &[(usize, Box)],
    points: &[Vec<[f32; 2]>],
) -> Tensor<3> {
    let [n, c, h, w] = feature.dims();
    let device = feature.device();
    let p = points.first().map_or(0, Vec::len);
    if rois.is_empty() || p == 0 {
        return Tensor::zeros([rois.len(), c, p], &device);
    }
    let extent_x = w as f32 / scale;
    let extent_y = h as f32 / scale;
    let mut rows = vec![0i64; rois.len() * p * 4];
    let mut weights = vec![0.0f32; rois.len() * p * 4];
    let mut filled = vec![0usize; rois.len() * p];
    for (r, ((batch, b), pts)) in rois.iter().zip(points).enumerate() {
        let normalised = box_points_in_map(b, pts, extent_x, extent_y);
        visit_point_taps(&normalised, h, w, |i, pos, wt| {
            let slot = r * p + i;
            let k = slot * 4 + filled[slot];
            rows[k] = (batch * h * w + pos) as i64;
            weights[k] = wt;
            filled[slot] += 1;
        });
    }
    let flat: Tensor<2> = feature.clone().permute([0, 2, 3, 1]).reshape([n * h * w, c]);
    let taps = rows.len();
    let gathered = select_indices(flat, 0, rows) * tensor_from_vec::<2>(weights, [taps, 1], &device);
    let sampled: Tensor<3> = gathered.reshape([rois.len() * p, 4, c]).sum_dim(1).reshape([rois.len(), p, c]);
    sampled.swap_dims(1, 2)
}

/// Box-relative points as `[0, 1]` coordinates of a feature map covering `extent_x x extent_y`
/// image pixels (the padded batch), as detectron2 normalises them for `grid_sample`.
fn box_points_in_map(b: &Box, points: &[[f32; 2]], extent_x: f32, extent_y: f32) -> Vec<[f32; 2]> {
    points
        .iter()
        .map(|pt| [(b[0] + pt[0] * (b[2] - b[0])) / extent_x, (b[1] + pt[1] * (b[3] - b[1])) / extent_y])
        .collect()
}

/// A feature map copied to the host once, channels last (`[N, H, W, C]`), so inference can read
/// the four bilinear taps of each point as contiguous channel vectors instead of gathering
/// through the tensor backend at every subdivision step.
pub struct HostFeatures {
    data: Vec<f32>,
    channels: usize,
    height: usize,
    width: usize,
}

impl HostFeatures {
    pub fn from_tensor(feature: &Tensor<4>) -> Self {
        let [_, c, h, w] = feature.dims();
        Self { data: tensor_to_vec(feature.clone().permute([0, 2, 3, 1])), channels: c, height: h, width: w }
    }

    pub fn channels(&self) -> usize {
        self.channels
    }
}

/// [`sample_box_points`] on [`HostFeatures`], returned as rows `[R * P, C]` (RoI-major).
pub fn sample_box_points_host(
    feature: &HostFeatures,
    scale: f32,
    rois: &[(usize, Box)],
    points: &[Vec<[f32; 2]>],
) -> Vec<f32> {
    let (c, h, w) = (feature.channels, feature.height, feature.width);
    let p = points.first().map_or(0, Vec::len);
    let mut out = vec![0.0f32; rois.len() * p * c];
    let extent_x = w as f32 / scale;
    let extent_y = h as f32 / scale;
    for (r, ((batch, b), pts)) in rois.iter().zip(points).enumerate() {
        let normalised = box_points_in_map(b, pts, extent_x, extent_y);
        let base = batch * h * w;
        visit_point_taps(&normalised, h, w, |i, pos, wt| {
            let src = &feature.data[(base + pos) * c..(base + pos + 1) * c];
            let dst = &mut out[(r * p + i) * c..(r * p + i + 1) * c];
            for (d, v) in dst.iter_mut().zip(src) {
                *d += wt * v;
            }
        });
    }
    out
}

/// [`sample_coarse`] on host coarse logits `[R, K, S, S]`, as rows `[R * P, K]`.
pub fn sample_coarse_host(coarse: &[f32], classes: usize, side: usize, points: &[Vec<[f32; 2]>]) -> Vec<f32> {
    let p = points.first().map_or(0, Vec::len);
    let mut out = vec![0.0f32; points.len() * p * classes];
    for (r, pts) in points.iter().enumerate() {
        let maps = &coarse[r * classes * side * side..(r + 1) * classes * side * side];
        visit_point_taps(pts, side, side, |i, pos, wt| {
            let dst = &mut out[(r * p + i) * classes..(r * p + i + 1) * classes];
            for (k, d) in dst.iter_mut().enumerate() {
                *d += wt * maps[k * side * side + pos];
            }
        });
    }
    out
}

/// `point_sample` of coarse logits `[R, K, 7, 7]` at box-relative points: `[R, K, P]`.
pub fn sample_coarse(coarse: &Tensor<4>, points: &[Vec<[f32; 2]>]) -> Tensor<3> {
    let [r, _, s, _] = coarse.dims();
    // The coarse map spans exactly the box, so box-relative points are map-relative points.
    let unit_boxes: Vec<(usize, Box)> = (0..r).map(|i| (i, [0.0, 0.0, s as f32, s as f32])).collect();
    sample_box_points(coarse, 1.0, &unit_boxes, points)
}
