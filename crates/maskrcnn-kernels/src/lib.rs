//! Fast conv2d backward for burn's CPU backend flex, and the conv2d entry point that uses it.
//!
//! burn-flex 0.22.1 does not override `ModuleOps::conv2d_{x,weight,bias}_backward`, so
//! burn-backend's generic defaults run, and ResNet-50 forward+backward took 2.1x PyTorch's CPU
//! time while the forward alone took 1.15x (`bench/conv_backward.md`). This crate supplies
//! im2col + GEMM gradients ([`conv2d_weight_backward`], [`conv2d_x_backward`],
//! [`conv2d_bias_backward`], on flex's `FlexTensor`) and routes convolutions to them through a
//! burn backend extension ([`ConvKernels`]); models call [`conv2d`] instead of
//! `burn::tensor::module::conv2d`.
//!
//! Training-mode batch norm runs as one fused kernel forward and one backward on flex
//! ([`batch_norm_train`], [`BatchNormKernels`]); `MASKRCNN_BATCH_NORM=tensor-ops` turns it off.
//!
//! Set `MASKRCNN_CONV_BACKWARD=generic` ([`generic::BACKWARD_ENV`]) to run burn's default
//! backward instead, for comparison in the same binary.

pub mod batch_norm;
mod batch_norm_op;
mod bias_grad;
mod columns;
mod element;
mod extension;
pub mod forward;
pub mod generic;
mod geometry;
mod input_grad;
mod matmul;
mod scratch;
pub mod transpose;
mod weight_grad;

use burn::backend::{Dispatch, DispatchDevice};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::Tensor;

pub use batch_norm_op::{batch_norm_train, BatchNormKernels, BatchNormTrainOutput, BATCH_NORM_ENV};
pub use bias_grad::conv2d_bias_backward;
pub use element::GradElement;
pub use extension::ConvKernels;
pub use input_grad::conv2d_x_backward;
pub use weight_grad::conv2d_weight_backward;

/// 2D convolution of `x` (`[batch, c_in, h, w]`) by `weight` (`[c_out, c_in / groups, kh, kw]`),
/// plus `bias` (`[c_out]`); same result as `burn::tensor::module::conv2d`.
///
/// On flex (with or without autodiff) it goes through [`ConvKernels`], so its gradients are this
/// crate's GEMM kernels; on any backend the extension does not list, it is burn's own conv2d.
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, options: ConvOptions<2>) -> Tensor<4> {
    // The generated dispatch panics on an unlisted backend; fall back instead.
    if !matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_)) {
        return burn::tensor::module::conv2d(x, weight, bias, options);
    }
    let [_, channels_in, _, _] = x.dims();
    let [_, weight_in, _, _] = weight.dims();
    // burn's conv2d checks this too; without it a mismatch would surface as an index panic deep
    // inside a kernel.
    assert_eq!(
        weight_in * options.groups,
        channels_in,
        "conv2d: weight {:?} with groups {} does not match input channels {channels_in}",
        weight.dims(),
        options.groups
    );
    let (x, weight) = (x.into_dispatch(), weight.into_dispatch());
    Tensor::from_dispatch(match bias {
        Some(bias) => <Dispatch as ConvKernels>::kernel_conv2d_with_bias(x, weight, bias.into_dispatch(), options),
        None => <Dispatch as ConvKernels>::kernel_conv2d(x, weight, options),
    })
}

/// `burn::tensor::module::conv_transpose2d(x, weight, bias, options)`; on flex without autodiff,
/// a stride-equals-kernel layer (the mask head's 2x2 upsampling) runs as one GEMM per image
/// ([`transpose::conv_transpose2d_nonoverlapping`]). Anything else is burn's own op.
pub fn conv_transpose2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvTransposeOptions<2>,
) -> Tensor<4> {
    let flex = matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_));
    let [_, _, kh, kw] = weight.dims();
    match bias {
        Some(bias) if flex && !x.device().is_autodiff() && transpose::is_nonoverlapping(&options, [kh, kw]) => {
            Tensor::from_dispatch(<Dispatch as ConvKernels>::kernel_conv_transpose2d_inference_with_bias(
                x.into_dispatch(),
                weight.into_dispatch(),
                bias.into_dispatch(),
                options,
            ))
        }
        bias => burn::tensor::module::conv_transpose2d(x, weight, bias, options),
    }
}
