//! The GEMM gradient kernels against direct f64 loops and burn-backend's default algorithms.

mod common;

use burn::backend::Flex;
use burn::tensor::DType;
use common::{assert_close, cases, data, flex_tensor, naive_bias_grad, naive_grads, random_values, values_of};
use maskrcnn_kernels::{conv2d_bias_backward, conv2d_weight_backward, conv2d_x_backward, generic, ConvKernels};

#[test]
fn f32_gradients_match_direct_loops_and_generic_defaults() {
    for (i, (name, case)) in cases().into_iter().enumerate() {
        let d = data(&case, 17 + i as u64);
        let (dx_ref, dw_ref) = naive_grads(&case, &d);
        let x = flex_tensor(&d.x, &d.x_dims, DType::F32);
        let w = flex_tensor(&d.w, &d.w_dims, DType::F32);
        let dy = flex_tensor(&d.dy, &d.dy_dims, DType::F32);

        let dw = conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), &case.options());
        assert_eq!(dw.layout().shape().to_vec(), d.w_dims.to_vec(), "{name}: dW shape");
        assert_close(name, "dW", &values_of(&dw), &dw_ref, 1e-4);
        let dx = conv2d_x_backward(x.clone(), w.clone(), dy.clone(), &case.options());
        assert_eq!(dx.layout().shape().to_vec(), d.x_dims.to_vec(), "{name}: dX shape");
        assert_close(name, "dX", &values_of(&dx), &dx_ref, 1e-4);

        // The generic defaults (what upstream flex runs) agree with both.
        let dw_generic = generic::conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), case.options());
        assert_close(name, "generic dW", &values_of(&dw_generic), &values_of(&dw), 1e-4);
        let dx_generic = generic::conv2d_x_backward(x, w, dy, case.options());
        assert_close(name, "generic dX", &values_of(&dx_generic), &values_of(&dx), 1e-4);
    }
}

#[test]
fn f64_gradients_match_direct_loops_tightly() {
    for (i, (name, case)) in cases().into_iter().enumerate() {
        let d = data(&case, 101 + i as u64);
        let (dx_ref, dw_ref) = naive_grads(&case, &d);
        let x = flex_tensor(&d.x, &d.x_dims, DType::F64);
        let w = flex_tensor(&d.w, &d.w_dims, DType::F64);
        let dy = flex_tensor(&d.dy, &d.dy_dims, DType::F64);
        let dw = conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), &case.options());
        assert_eq!(dw.dtype(), DType::F64);
        assert_close(name, "f64 dW", &values_of(&dw), &dw_ref, 1e-10);
        let dx = conv2d_x_backward(x, w, dy, &case.options());
        assert_eq!(dx.dtype(), DType::F64);
        assert_close(name, "f64 dX", &values_of(&dx), &dx_ref, 1e-10);
    }
}

#[test]
fn half_precision_inputs_keep_their_dtype() {
    let (name, case) = cases().swap_remove(1);
    let d = data(&case, 5);
    let (dx_ref, dw_ref) = naive_grads(&case, &d);
    for dtype in [DType::F16, DType::BF16] {
        let x = flex_tensor(&d.x, &d.x_dims, dtype);
        let w = flex_tensor(&d.w, &d.w_dims, dtype);
        let dy = flex_tensor(&d.dy, &d.dy_dims, dtype);
        let dw = conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), &case.options());
        let dx = conv2d_x_backward(x, w, dy, &case.options());
        assert_eq!((dw.dtype(), dx.dtype()), (dtype, dtype));
        // Rounding the inputs and the result to 8 (bf16) mantissa bits.
        assert_close(name, "half dW", &values_of(&dw), &dw_ref, 5e-2);
        assert_close(name, "half dX", &values_of(&dx), &dx_ref, 5e-2);
    }
}

#[test]
fn non_contiguous_inputs_are_read_in_logical_order() {
    let (name, case) = cases().swap_remove(0);
    let d = data(&case, 9);
    let (dx_ref, dw_ref) = naive_grads(&case, &d);
    // Store x and dy with H and W swapped in memory, then view them back.
    let swapped = |v: &[f64], dims: [usize; 4]| {
        let [n, c, h, w] = dims;
        let mut t = vec![0.0; v.len()];
        for p in 0..n * c {
            for i in 0..h {
                for j in 0..w {
                    t[(p * w + j) * h + i] = v[(p * h + i) * w + j];
                }
            }
        }
        flex_tensor(&t, &[n, c, w, h], DType::F32).transpose(2, 3)
    };
    let x = swapped(&d.x, d.x_dims);
    let dy = swapped(&d.dy, d.dy_dims);
    assert!(!x.is_contiguous() && !dy.is_contiguous());
    let w = flex_tensor(&d.w, &d.w_dims, DType::F32);
    let dw = conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), &case.options());
    assert_close(name, "strided dW", &values_of(&dw), &dw_ref, 1e-4);
    let dx = conv2d_x_backward(x, w, dy, &case.options());
    assert_close(name, "strided dX", &values_of(&dx), &dx_ref, 1e-4);
}

#[test]
fn bias_gradient_sums_batch_and_space() {
    let dims = [2, 5, 7, 9];
    let dy_values = random_values(dims.iter().product(), 3);
    let expected = naive_bias_grad(&dy_values, dims);
    let dy = flex_tensor(&dy_values, &dims, DType::F32);
    let bias = flex_tensor(&[0.0; 5], &[5], DType::F32);
    let grad = conv2d_bias_backward(bias.clone(), dy.clone());
    assert_eq!(grad.layout().shape().to_vec(), vec![5]);
    assert_close("bias", "db", &values_of(&grad), &expected, 1e-5);
    let x = flex_tensor(&random_values(2 * 3 * 9 * 11, 4), &[2, 3, 9, 11], DType::F32);
    let generic = generic::conv2d_bias_backward(x, bias, dy);
    assert_close("bias", "generic db", &values_of(&generic), &expected, 1e-5);
}

#[test]
fn flex_extension_hooks_run_the_gemm_kernels() {
    // Multi-tile: the GEMM kernels and the generic defaults sum in different orders there, so
    // bit-identical results show which one ran.
    let (name, case) = cases().swap_remove(11);
    let d = data(&case, 77);
    let (dx_ref, dw_ref) = naive_grads(&case, &d);
    let x = flex_tensor(&d.x, &d.x_dims, DType::F32);
    let w = flex_tensor(&d.w, &d.w_dims, DType::F32);
    let dy = flex_tensor(&d.dy, &d.dy_dims, DType::F32);
    let dw = <Flex as ConvKernels>::kernel_conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), case.options());
    assert_close(name, "extension dW", &values_of(&dw), &dw_ref, 1e-4);
    let direct = conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), &case.options());
    assert_eq!(values_of(&dw), values_of(&direct), "{name}: extension dW is not the GEMM kernel's");
    let dx = <Flex as ConvKernels>::kernel_conv2d_x_backward(x.clone(), w.clone(), dy.clone(), case.options());
    assert_close(name, "extension dX", &values_of(&dx), &dx_ref, 1e-4);
    let direct = conv2d_x_backward(x, w, dy, &case.options());
    assert_eq!(values_of(&dx), values_of(&direct), "{name}: extension dX is not the GEMM kernel's");
}
