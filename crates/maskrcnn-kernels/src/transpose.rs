//! Transposed convolution whose stride equals its kernel (the mask head's 2x2 stride-2 upsampling):
//! the kernel windows do not overlap, so it is one GEMM `[co * k * k, ci] x [ci, h * w]` per image
//! followed by a scatter of each product row into its output phase, with the bias added there.
//! burn-flex's general conv_transpose2d took ~1.3x torchvision's time on this layer.

use burn::tensor::ops::ConvTransposeOptions;
use burn::tensor::{Bytes, DType, Shape};
use burn_flex::{FlexTensor, Layout};

use crate::matmul::gemm_strided;
use crate::scratch::with_scratch;

/// Whether [`conv_transpose2d_nonoverlapping`] handles `options` for a kernel of `kernel` (kh, kw).
pub fn is_nonoverlapping(options: &ConvTransposeOptions<2>, kernel: [usize; 2]) -> bool {
    options.stride == kernel
        && options.padding == [0, 0]
        && options.padding_out == [0, 0]
        && options.dilation == [1, 1]
        && options.groups == 1
}

/// `conv_transpose2d(x, weight, bias)` for f32 tensors when [`is_nonoverlapping`]; `None` otherwise
/// (other dtypes or geometries), for the caller to run flex's own op.
pub fn conv_transpose2d_nonoverlapping(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
    options: &ConvTransposeOptions<2>,
) -> Option<FlexTensor> {
    if x.dtype() != DType::F32 || weight.dtype() != DType::F32 || bias.is_some_and(|b| b.dtype() != DType::F32) {
        return None;
    }
    let x_shape = x.layout().shape().to_vec();
    let w_shape = weight.layout().shape().to_vec();
    if x_shape.len() != 4 || w_shape.len() != 4 || !is_nonoverlapping(options, [w_shape[2], w_shape[3]]) {
        return None;
    }
    let [batch, ci, h, w] = [x_shape[0], x_shape[1], x_shape[2], x_shape[3]];
    let [w_ci, co, kh, kw] = [w_shape[0], w_shape[1], w_shape[2], w_shape[3]];
    assert_eq!(w_ci, ci, "conv_transpose2d: weight {w_shape:?} does not match input channels {ci}");
    let x = x.to_contiguous();
    let weight = weight.to_contiguous();
    let bias = bias.map(|b| b.to_contiguous());
    let bias: Option<&[f32]> = bias.as_ref().map(|b| b.storage());
    if let Some(b) = bias {
        assert_eq!(b.len(), co, "conv_transpose2d: bias size does not match output channels");
    }
    let (xs, ws): (&[f32], &[f32]) = (x.storage(), weight.storage());
    let (out_h, out_w) = (h * kh, w * kw);
    let plane = h * w;
    let rows = co * kh * kw;
    let mut y = vec![0.0f32; batch * co * out_h * out_w];
    let item_len = co * out_h * out_w;
    let run = |b: usize, y_item: &mut [f32], parallel: bool| {
        with_scratch::<f32, _>(rows * plane, |products| {
            // SAFETY: products is [rows, plane]; the weight [ci, rows] is read transposed as
            // [rows, ci]; x_b is [ci, plane]; all row-major and inside their buffers.
            unsafe {
                gemm_strided(
                    (rows, plane, ci),
                    products.as_mut_ptr(),
                    (plane as isize, 1),
                    false,
                    ws.as_ptr(),
                    (1, rows as isize),
                    xs.as_ptr().add(b * ci * plane),
                    (plane as isize, 1),
                    parallel,
                );
            }
            for c in 0..co {
                let bias_v = bias.map_or(0.0, |bias| bias[c]);
                let out_plane = &mut y_item[c * out_h * out_w..][..out_h * out_w];
                for i in 0..kh {
                    for j in 0..kw {
                        let src = &products[((c * kh + i) * kw + j) * plane..][..plane];
                        for (r, src_row) in src.chunks_exact(w).enumerate() {
                            let dst = &mut out_plane[(r * kh + i) * out_w..][..out_w];
                            for (d, &s) in dst.iter_mut().skip(j).step_by(kw).zip(src_row) {
                                *d = s + bias_v;
                            }
                        }
                    }
                }
            }
        });
    };
    let threads = rayon::current_num_threads();
    if item_len > 0 {
        if threads > 1 && batch >= threads {
            use rayon::prelude::*;
            y.par_chunks_mut(item_len).enumerate().for_each(|(b, item)| run(b, item, false));
        } else {
            for (b, item) in y.chunks_mut(item_len).enumerate() {
                run(b, item, true);
            }
        }
    }
    Some(FlexTensor::new(
        Bytes::from_elems(y),
        Layout::contiguous(Shape::from(vec![batch, co, out_h, out_w])),
        DType::F32,
    ))
}
