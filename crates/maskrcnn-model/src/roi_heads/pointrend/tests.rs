use burn::tensor::Tensor;

use super::*;
use crate::tensor_util::{tensor_from_vec, tensor_to_vec};

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
    let device = Device::flex();
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
    let device = Device::flex();
    let (n, c, h, w) = (2, 5, 6, 7);
    let values: Vec<f32> = (0..n * c * h * w).map(|i| ((i as f32) * 0.37).sin()).collect();
    let map: Tensor<4> = tensor_from_vec(values, [n, c, h, w], &device);
    let rois = vec![(0, [1.0, 2.0, 20.0, 15.0]), (1, [-3.0, 0.5, 10.0, 30.0]), (1, [5.0, 5.0, 6.0, 6.5])];
    let points: Vec<Vec<[f32; 2]>> = (0..3)
        .map(|r| (0..9).map(|j| [(j as f32 * 0.13 + r as f32 * 0.2) % 1.0, (j as f32 * 0.29) % 1.0]).collect())
        .collect();
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
    let coarse: Tensor<4> =
        tensor_from_vec((0..3 * 4 * 49).map(|i| (i as f32 * 0.11).cos()).collect(), [3, 4, 7, 7], &device);
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
    let by_row = tensor_to_vec(
        head.forward_rows(tensor_from_vec(host, [27, c], &device), tensor_from_vec(hst, [27, 4], &device)),
    );
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
