//! `MASKRCNN_CONV_BACKWARD=generic` makes the flex extension run burn-backend's defaults. Its own
//! test binary: the switch is read once per process.

mod common;

use burn::backend::Flex;
use burn::tensor::DType;
use common::{assert_close, cases, data, flex_tensor, naive_grads, values_of};
use maskrcnn_kernels::{conv2d_weight_backward, conv2d_x_backward, generic, ConvKernels};

#[test]
fn generic_switch_selects_the_default_backward() {
    std::env::set_var(generic::BACKWARD_ENV, "Generic");
    assert!(generic::use_generic());
    // Multi-tile: the two algorithms sum in different orders, so bit equality shows which ran.
    let (name, case) = cases().swap_remove(11);
    let d = data(&case, 13);
    let (dx_ref, dw_ref) = naive_grads(&case, &d);
    let x = flex_tensor(&d.x, &d.x_dims, DType::F32);
    let w = flex_tensor(&d.w, &d.w_dims, DType::F32);
    let dy = flex_tensor(&d.dy, &d.dy_dims, DType::F32);

    let dw = values_of(&<Flex as ConvKernels>::kernel_conv2d_weight_backward(
        x.clone(),
        w.clone(),
        dy.clone(),
        case.options(),
    ));
    assert_close(name, "switched dW", &dw, &dw_ref, 1e-4);
    let dw_generic = generic::conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), case.options());
    assert_eq!(dw, values_of(&dw_generic), "{name}: switched dW is not the generic default's");
    let dw_gemm = conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), &case.options());
    assert_ne!(dw, values_of(&dw_gemm), "{name}: GEMM and generic dW coincide bitwise, test cannot tell them apart");

    let dx =
        values_of(&<Flex as ConvKernels>::kernel_conv2d_x_backward(x.clone(), w.clone(), dy.clone(), case.options()));
    assert_close(name, "switched dX", &dx, &dx_ref, 1e-4);
    assert_eq!(dx, values_of(&generic::conv2d_x_backward(x.clone(), w.clone(), dy.clone(), case.options())));
    assert_ne!(dx, values_of(&conv2d_x_backward(x, w, dy, &case.options())), "{name}: GEMM and generic dX coincide");
}
