//! burn-backend 0.22.1's default conv2d backward algorithms on flex, and the switch that selects
//! them at run time.
//!
//! Upstream flex does not override these [`ModuleOps`] methods, so calling them on [`Flex`] runs
//! exactly the code flex ships: the reference for tests and the "before" of benchmarks.

use std::sync::OnceLock;

use burn::backend::ops::ModuleOps;
use burn::backend::Flex;
use burn::tensor::ops::ConvOptions;
use burn_flex::FlexTensor;

/// Environment variable that, set to `generic` (any case), makes [`crate::ConvKernels`] on flex
/// run burn-backend's default backward instead of the GEMM kernels. Read once per process.
pub const BACKWARD_ENV: &str = "MASKRCNN_CONV_BACKWARD";

/// Whether [`BACKWARD_ENV`] asks for burn-backend's default algorithms.
pub fn use_generic() -> bool {
    static GENERIC: OnceLock<bool> = OnceLock::new();
    *GENERIC.get_or_init(|| std::env::var(BACKWARD_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("generic")))
}

/// burn-backend's `conv2d_weight_backward`: a convolution of the swapped input by the swapped
/// output gradient, one group at a time.
pub fn conv2d_weight_backward(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: ConvOptions<2>,
) -> FlexTensor {
    <Flex as ModuleOps<Flex>>::conv2d_weight_backward(x, weight, output_grad, options)
}

/// burn-backend's `conv2d_x_backward`: a transposed convolution of the output gradient.
pub fn conv2d_x_backward(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: ConvOptions<2>,
) -> FlexTensor {
    <Flex as ModuleOps<Flex>>::conv2d_x_backward(x, weight, output_grad, options)
}

/// burn-backend's `conv2d_bias_backward`: a channel-major copy of the output gradient, then a sum.
pub fn conv2d_bias_backward(x: FlexTensor, bias: FlexTensor, output_grad: FlexTensor) -> FlexTensor {
    <Flex as ModuleOps<Flex>>::conv2d_bias_backward(x, bias, output_grad)
}
