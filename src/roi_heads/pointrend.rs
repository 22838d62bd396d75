//! PointRend mask head (Kirillov et al. 2020) as detectron2 and arcgis.learn build it: a coarse
//! 7x7 prediction from point features, refined by a point head at the most uncertain points while
//! the mask is upsampled to 224x224.

use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor};

use crate::layers::{Conv, Linear};
use crate::ops::boxes::Box;
use crate::ops::interpolate::resize_bilinear;
use crate::ops::point_sample::visit_point_taps;
use crate::tensor_util::{int_tensor_from_vec, tensor_from_vec, tensor_to_vec};
use crate::weights::{NamedTensors, TensorSlot};

/// Side of the point grid the coarse head reads, and of its prediction.
pub const COARSE_INPUT_SIDE: usize = 14;
pub const COARSE_OUTPUT_SIDE: usize = 7;
pub const SUBDIVISION_STEPS: usize = 5;
pub const SUBDIVISION_POINTS: usize = 784;
pub const TRAIN_POINTS: usize = 14 * 14;
pub const OVERSAMPLE_RATIO: usize = 3;
pub const IMPORTANCE_RATIO: f32 = 0.75;

/// `Conv1d(in, out, kernel_size=1)`, weight `[out, in, 1]` as PyTorch stores it.
#[derive(Module, Debug)]
pub struct PointConv {
    pub weight: Param<Tensor<3>>,
    pub bias: Param<Tensor<1>>,
}

impl PointConv {
    fn new(in_ch: usize, out_ch: usize, std: Option<f64>, device: &Device) -> Self {
        let dist = match std {
            Some(s) => Distribution::Normal(0.0, s),
            // c2_msra_fill: kaiming normal, fan_out, relu.
            None => Distribution::Normal(0.0, (2.0 / out_ch as f64).sqrt()),
        };
        Self { weight: Param::from_tensor(Tensor::random([out_ch, in_ch, 1], dist, device)), bias: Param::from_tensor(Tensor::zeros([out_ch], device)) }
    }

    /// `[R, in, P] -> [R, out, P]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [r, c, p] = x.dims();
        let [out, _, _] = self.weight.dims();
        let w: Tensor<2> = self.weight.val().reshape([out, c]);
        let y = x.swap_dims(1, 2).reshape([r * p, c]).matmul(w.transpose()) + self.bias.val().unsqueeze_dim(0);
        y.reshape([r, p, out]).swap_dims(1, 2)
    }

    /// The same layer on points laid out as rows: `[M, in] -> [M, out]` (no transposes).
    pub fn forward_rows(&self, x: Tensor<2>) -> Tensor<2> {
        let [out, c, _] = self.weight.dims();
        let w: Tensor<2> = self.weight.val().reshape([out, c]);
        x.matmul(w.transpose()) + self.bias.val().unsqueeze_dim(0)
    }
}

impl NamedTensors for PointConv {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        visit(format!("{prefix}.weight"), TensorSlot::Param3(&mut self.weight));
        visit(format!("{prefix}.bias"), TensorSlot::Param1(&mut self.bias));
    }
}

/// detectron2's `CoarseMaskHead` under arcgis.learn's key names (`roi_heads.mask_head.*`).
#[derive(Module, Debug)]
pub struct CoarseMaskHead {
    pub reduce_spatial_dim_conv: Conv,
    pub coarse_mask_fc1: Linear,
    pub coarse_mask_fc2: Linear,
    pub prediction: Linear,
}

impl CoarseMaskHead {
    pub fn new(channels: usize, num_classes: usize, device: &Device) -> Self {
        let mut reduce = Conv::new_kaiming_out(channels, channels, 2, 0, 1, device);
        reduce.stride = 2;
        let half = COARSE_INPUT_SIDE / 2;
        Self {
            reduce_spatial_dim_conv: reduce,
            coarse_mask_fc1: Linear::new(channels * half * half, 1024, device),
            coarse_mask_fc2: Linear::new(1024, 1024, device),
            prediction: Linear::new_normal(1024, num_classes * COARSE_OUTPUT_SIDE * COARSE_OUTPUT_SIDE, 0.001, device),
        }
    }

    /// `[R, C, 14, 14]` point features to coarse logits `[R, K, 7, 7]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let r = x.dims()[0];
        let x: Tensor<2> = relu(self.reduce_spatial_dim_conv.forward(x)).flatten(1, 3);
        let x = relu(self.coarse_mask_fc2.forward(relu(self.coarse_mask_fc1.forward(x))));
        let k = self.prediction.out_features() / (COARSE_OUTPUT_SIDE * COARSE_OUTPUT_SIDE);
        self.prediction.forward(x).reshape([r, k, COARSE_OUTPUT_SIDE, COARSE_OUTPUT_SIDE])
    }
}

impl NamedTensors for CoarseMaskHead {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        self.reduce_spatial_dim_conv.visit_named(&format!("{prefix}.reduce_spatial_dim_conv"), visit);
        self.coarse_mask_fc1.visit_named(&format!("{prefix}.coarse_mask_fc1"), visit);
        self.coarse_mask_fc2.visit_named(&format!("{prefix}.coarse_mask_fc2"), visit);
        self.prediction.visit_named(&format!("{prefix}.prediction"), visit);
    }
}

/// detectron2's `StandardPointHead` (3 layers of 256, coarse logits concatenated before every
/// layer and the class-specific predictor), under `roi_heads.mask_predictor.mask_point_head.*`.
#[derive(Module, Debug)]
pub struct PointHead {
    pub fc1: PointConv,
    pub fc2: PointConv,
    pub fc3: PointConv,
    pub predictor: PointConv,
}

impl PointHead {
    pub fn new(channels: usize, num_classes: usize, device: &Device) -> Self {
        let width = 256;
        Self {
            fc1: PointConv::new(channels + num_classes, width, None, device),
            fc2: PointConv::new(width + num_classes, width, None, device),
            fc3: PointConv::new(width + num_classes, width, None, device),
            predictor: PointConv::new(width + num_classes, num_classes, Some(0.001), device),
        }
    }

    /// Fine features `[R, C, P]` and coarse logits at the same points `[R, K, P]` to point logits
    /// `[R, K, P]`.
    pub fn forward(&self, fine: Tensor<3>, coarse: Tensor<3>) -> Tensor<3> {
        let mut x = Tensor::cat(vec![fine, coarse.clone()], 1);
        for layer in [&self.fc1, &self.fc2, &self.fc3] {
            x = Tensor::cat(vec![relu(layer.forward(x)), coarse.clone()], 1);
        }
        self.predictor.forward(x)
    }

    /// [`Self::forward`] on row-laid-out points: fine `[M, C]`, coarse `[M, K]` to `[M, K]`.
    pub fn forward_rows(&self, fine: Tensor<2>, coarse: Tensor<2>) -> Tensor<2> {
        let mut x = Tensor::cat(vec![fine, coarse.clone()], 1);
        for layer in [&self.fc1, &self.fc2, &self.fc3] {
            x = Tensor::cat(vec![relu(layer.forward_rows(x)), coarse.clone()], 1);
        }
        self.predictor.forward_rows(x)
    }
}

impl NamedTensors for PointHead {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        self.fc1.visit_named(&format!("{prefix}.fc1"), visit);
        self.fc2.visit_named(&format!("{prefix}.fc2"), visit);
        self.fc3.visit_named(&format!("{prefix}.fc3"), visit);
        self.predictor.visit_named(&format!("{prefix}.predictor"), visit);
    }
}

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
pub fn sample_box_points(feature: &Tensor<4>, scale: f32, rois: &[(usize, Box)], points: &[Vec<[f32; 2]>]) -> Tensor<3> {
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
    let gathered = flat.select(0, int_tensor_from_vec(rows, &device)) * tensor_from_vec::<2>(weights, [taps, 1], &device);
    let sampled: Tensor<3> = gathered.reshape([rois.len() * p, 4, c]).sum_dim(1).reshape([rois.len(), p, c]);
    sampled.swap_dims(1, 2)
}

/// Box-relative points as `[0, 1]` coordinates of a feature map covering `extent_x x extent_y`
/// image pixels (the padded batch), as detectron2 normalises them for `grid_sample`.
fn box_points_in_map(b: &Box, points: &[[f32; 2]], extent_x: f32, extent_y: f32) -> Vec<[f32; 2]> {
    points.iter().map(|pt| [(b[0] + pt[0] * (b[2] - b[0])) / extent_x, (b[1] + pt[1] * (b[3] - b[1])) / extent_y]).collect()
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
pub fn sample_box_points_host(feature: &HostFeatures, scale: f32, rois: &[(usize, Box)], points: &[Vec<[f32; 2]>]) -> Vec<f32> {
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

/// Indices and box-relative centres of the `k` most uncertain cells (highest value) of an
/// `h x w` map, as detectron2's `get_uncertain_point_coords_on_grid`.
pub fn most_uncertain_cells(uncertainty: &[f32], h: usize, w: usize, k: usize) -> (Vec<usize>, Vec<[f32; 2]>) {
    let indices = crate::proposal::rpn::top_k_indices(uncertainty, k.min(h * w));
    let (w_step, h_step) = (1.0 / w as f32, 1.0 / h as f32);
    let coords = indices.iter().map(|&i| [w_step / 2.0 + (i % w) as f32 * w_step, h_step / 2.0 + (i / w) as f32 * h_step]).collect();
    (indices, coords)
}

/// PointRend inference for detections: coarse logits, then adaptive subdivision up to 224x224.
/// Only each detection's predicted class is refined (the other channels never reach the output),
/// and RoIs are processed in chunks so memory stays bounded.
pub struct PointRendInference<'a> {
    pub coarse_head: &'a CoarseMaskHead,
    pub point_head: &'a PointHead,
    /// The stride-4 FPN level ('0') on the host, and its scale.
    pub fine_features: &'a HostFeatures,
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
        let rows = sample_box_points_host(self.fine_features, self.fine_scale, rois, &grid_points);
        let point_features: Tensor<4> =
            tensor_from_vec(rows, [r, COARSE_INPUT_SIDE, COARSE_INPUT_SIDE, c], &device).permute([0, 3, 1, 2]);
        let coarse = self.coarse_head.forward(point_features);
        let [_, k, s7, _] = coarse.dims();
        let coarse_host = tensor_to_vec(coarse);
        let mut logits: Vec<Vec<f32>> = (0..r).map(|i| coarse_host[(i * k + labels[i]) * s7 * s7..(i * k + labels[i] + 1) * s7 * s7].to_vec()).collect();
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
            let fine = tensor_from_vec(sample_box_points_host(self.fine_features, self.fine_scale, rois, &coords), [r * p, c], &device);
            let coarse_at_points = tensor_from_vec(sample_coarse_host(&coarse_host, k, s7, &coords), [r * p, k], &device);
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

/// `point_sample` of coarse logits `[R, K, 7, 7]` at box-relative points: `[R, K, P]`.
pub fn sample_coarse(coarse: &Tensor<4>, points: &[Vec<[f32; 2]>]) -> Tensor<3> {
    let [r, _, s, _] = coarse.dims();
    // The coarse map spans exactly the box, so box-relative points are map-relative points.
    let unit_boxes: Vec<(usize, Box)> = (0..r).map(|i| (i, [0.0, 0.0, s as f32, s as f32])).collect();
    sample_box_points(coarse, 1.0, &unit_boxes, points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_points_are_cell_centres() {
        let g = regular_grid(2);
        assert_eq!(g, vec![[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]);
    }

    #[test]
    fn uncertain_cells_are_the_largest_values_with_centres() {
        let u = [0.0, -3.0, -0.1, -2.0, -0.5, -4.0];
        let (idx, pts) = most_uncertain_cells(&u, 2, 3, 3);
        assert_eq!(idx, vec![0, 2, 4]);
        assert!((pts[1][0] - 2.5 / 3.0).abs() < 1e-6 && pts[1][1] == 0.25);
        assert!((pts[2][0] - 1.5 / 3.0).abs() < 1e-6 && pts[2][1] == 0.75);
    }

    #[test]
    fn box_points_read_the_right_pixels() {
        let device = Device::default();
        // A 1x1x4x4 map holding its own flat index; stride 2 means an 8x8 image.
        let map: Tensor<4> = tensor_from_vec((0..16).map(|v| v as f32).collect(), [1, 1, 4, 4], &device);
        // The centre of feature pixel (x=1, y=2) is image point (3, 5).
        let rois = vec![(0, [2.0, 4.0, 4.0, 6.0])];
        let sampled = tensor_to_vec(sample_box_points(&map, 0.5, &rois, &[vec![[0.5, 0.5]]]));
        assert!((sampled[0] - 9.0).abs() < 1e-5, "{sampled:?}");
    }

    /// The inference path (host features, point rows) reads exactly what the training path's
    /// tensor gather reads, for several RoIs, images and points partly outside the map.
    #[test]
    fn host_sampling_and_row_layout_match_the_tensor_path() {
        let device = Device::default();
        let (n, c, h, w) = (2, 5, 6, 7);
        let values: Vec<f32> = (0..n * c * h * w).map(|i| ((i as f32) * 0.37).sin()).collect();
        let map: Tensor<4> = tensor_from_vec(values, [n, c, h, w], &device);
        let rois = vec![(0, [1.0, 2.0, 20.0, 15.0]), (1, [-3.0, 0.5, 10.0, 30.0]), (1, [5.0, 5.0, 6.0, 6.5])];
        let points: Vec<Vec<[f32; 2]>> = (0..3).map(|r| (0..9).map(|j| [(j as f32 * 0.13 + r as f32 * 0.2) % 1.0, (j as f32 * 0.29) % 1.0]).collect()).collect();
        let tensor = tensor_to_vec(sample_box_points(&map, 0.25, &rois, &points)); // [R, C, P]
        let host = sample_box_points_host(&HostFeatures::from_tensor(&map), 0.25, &rois, &points); // [R * P, C]
        for r in 0..3 {
            for ch in 0..c {
                for j in 0..9 {
                    let (a, b) = (tensor[(r * c + ch) * 9 + j], host[(r * 9 + j) * c + ch]);
                    assert!((a - b).abs() < 1e-6, "roi {r} channel {ch} point {j}: {a} vs {b}");
                }
            }
        }
        // Coarse logits sampled on the host equal the tensor path too.
        let coarse: Tensor<4> = tensor_from_vec((0..3 * 4 * 49).map(|i| (i as f32 * 0.11).cos()).collect(), [3, 4, 7, 7], &device);
        let t = tensor_to_vec(sample_coarse(&coarse, &points));
        let hst = sample_coarse_host(&tensor_to_vec(coarse.clone()), 4, 7, &points);
        for r in 0..3 {
            for k in 0..4 {
                for j in 0..9 {
                    assert!((t[(r * 4 + k) * 9 + j] - hst[(r * 9 + j) * 4 + k]).abs() < 1e-6);
                }
            }
        }
        // And the point head gives the same logits in either layout.
        let head = PointHead::new(c, 4, &device);
        let fine = sample_box_points(&map, 0.25, &rois, &points);
        let by_roi = tensor_to_vec(head.forward(fine, sample_coarse(&coarse, &points)));
        let by_row = tensor_to_vec(head.forward_rows(tensor_from_vec(host, [27, c], &device), tensor_from_vec(hst, [27, 4], &device)));
        for r in 0..3 {
            for k in 0..4 {
                for j in 0..9 {
                    assert!((by_roi[(r * 4 + k) * 9 + j] - by_row[(r * 9 + j) * 4 + k]).abs() < 1e-4);
                }
            }
        }
    }

    #[test]
    fn subdivision_reaches_224_with_the_published_schedule() {
        // 7 -> 14 (skipped: 784 >= 4 * 14^2), 28 (all 784 cells), 56, 112, 224.
        let mut side = COARSE_OUTPUT_SIDE;
        let mut refined = Vec::new();
        for step in 0..SUBDIVISION_STEPS {
            side *= 2;
            if SUBDIVISION_POINTS >= 4 * side * side && step < SUBDIVISION_STEPS - 1 {
                continue;
            }
            refined.push(side);
        }
        assert_eq!(refined, vec![28, 56, 112, 224]);
    }
}
