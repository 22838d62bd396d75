//! Bias gradient: the output gradient summed over batch and space, read in place (burn-backend's
//! default first copies it into channel-major order).

use burn_flex::FlexTensor;

use crate::element::{run_typed, to_compute_dtype, GradElement};

/// Per-channel sums of a contiguous `[batch, channels, plane]` buffer.
fn sum_channels<T: GradElement>(dy: &[T], batch: usize, channels: usize, plane: usize) -> Vec<T> {
    let mut sums = vec![T::ZERO; channels];
    for b in 0..batch {
        for (c, sum) in sums.iter_mut().enumerate() {
            let start = (b * channels + c) * plane;
            // Independent partial sums keep the reduction vectorisable.
            let mut lanes = [T::ZERO; 8];
            let chunks = dy[start..start + plane].chunks_exact(8);
            let tail = chunks.remainder();
            for chunk in chunks {
                for (lane, &v) in lanes.iter_mut().zip(chunk) {
                    *lane += v;
                }
            }
            let mut total = T::ZERO;
            for lane in lanes {
                total += lane;
            }
            for &v in tail {
                total += v;
            }
            *sum += total;
        }
    }
    sums
}

/// Gradient of `conv2d(x, weight, bias)` with respect to `bias`, in `bias`'s dtype.
pub fn conv2d_bias_backward(bias: FlexTensor, output_grad: FlexTensor) -> FlexTensor {
    let dtype = bias.dtype();
    let bias_shape = bias.layout().shape().clone();
    let dy = to_compute_dtype(&output_grad, dtype);
    let dims = dy.layout().shape().to_vec();
    assert_eq!(dims.len(), 4, "conv2d_bias_backward: output grad must be rank 4");
    let (batch, channels, plane) = (dims[0], dims[1], dims[2] * dims[3]);
    assert_eq!(bias_shape.num_elements(), channels, "conv2d_bias_backward: bias size does not match output channels");
    run_typed(
        dtype,
        bias_shape,
        || sum_channels::<f32>(dy.storage(), batch, channels, plane),
        || sum_channels::<f64>(dy.storage(), batch, channels, plane),
        "conv2d_bias_backward",
    )
}
