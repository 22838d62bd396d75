//! `maskrcnn_kernels::conv_transpose2d` against burn's own conv_transpose2d on flex.

use burn::tensor::module::conv_transpose2d as burn_conv_transpose2d;
use burn::tensor::ops::ConvTransposeOptions;
use burn::tensor::{Device, Distribution, Tensor};

fn max_relative_error(a: Tensor<4>, b: Tensor<4>) -> f32 {
    let a = a.into_data().try_to_vec::<f32>().expect("f32");
    let b = b.into_data().try_to_vec::<f32>().expect("f32");
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(&b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn matches_burn_for_stride_equal_kernel_and_falls_back_otherwise() {
    let device = Device::flex();
    // (batch, ci, co, h, w, kernel [kh, kw], stride): the non-overlapping fast path (square and
    // rectangular, the mask head's 2x2) and an overlapping layer that burn runs.
    let cases = [
        (3, 5, 4, 7, 6, [2, 2], [2, 2]),
        (1, 8, 3, 4, 9, [3, 2], [3, 2]),
        (2, 16, 8, 14, 14, [2, 2], [2, 2]),
        (2, 4, 3, 5, 5, [3, 3], [2, 2]),
    ];
    for (n, (batch, ci, co, h, w, kernel, stride)) in cases.into_iter().enumerate() {
        let x: Tensor<4> = Tensor::random([batch, ci, h, w], Distribution::Uniform(-1.0, 1.0), &device);
        let weight: Tensor<4> =
            Tensor::random([ci, co, kernel[0], kernel[1]], Distribution::Uniform(-1.0, 1.0), &device);
        let bias: Tensor<1> = Tensor::random([co], Distribution::Uniform(-1.0, 1.0), &device);
        let options = ConvTransposeOptions::new(stride, [0, 0], [0, 0], [1, 1], 1);
        let ours = maskrcnn_kernels::conv_transpose2d(x.clone(), weight.clone(), Some(bias.clone()), options.clone());
        let theirs = burn_conv_transpose2d(x, weight, Some(bias), options);
        assert_eq!(ours.dims(), theirs.dims(), "case {n}: shape");
        let err = max_relative_error(ours, theirs);
        assert!(err < 1e-5, "case {n}: relative error {err}");
    }
}
