//! `maskrcnn_kernels::conv2d` end to end: forward on a plain device, and forward + backward on
//! an autodiff device, against direct loops and burn's own `conv2d` (upstream default backward).

mod common;

use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use common::{assert_close, cases, data, naive_bias_grad, naive_grads, random_values, Case, Data};

fn tensor<const D: usize>(values: &[f64], dims: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values.iter().map(|&v| v as f32).collect(), dims.to_vec()), device)
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f64> {
    tensor.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 data").into_iter().map(f64::from).collect()
}

/// Forward from the definition, f64.
fn naive_forward(case: &Case, d: &Data, bias: &[f64]) -> Vec<f64> {
    let [n_b, c_in, h, w] = d.x_dims;
    let [c_out, cg, kh_n, kw_n] = d.w_dims;
    let [_, _, oh_n, ow_n] = d.dy_dims;
    let cog = c_out / case.groups;
    let mut y = vec![0.0; n_b * c_out * oh_n * ow_n];
    for n in 0..n_b {
        for co in 0..c_out {
            for oh in 0..oh_n {
                for ow in 0..ow_n {
                    let mut sum = bias[co];
                    for ci in 0..cg {
                        let c = (co / cog) * cg + ci;
                        for kh in 0..kh_n {
                            let ih =
                                (oh * case.stride[0] + kh * case.dilation[0]) as isize - case.padding[0].0 as isize;
                            for kw in 0..kw_n {
                                let iw =
                                    (ow * case.stride[1] + kw * case.dilation[1]) as isize - case.padding[1].0 as isize;
                                if ih < 0 || ih >= h as isize || iw < 0 || iw >= w as isize {
                                    continue;
                                }
                                sum += d.w[((co * cg + ci) * kh_n + kh) * kw_n + kw]
                                    * d.x[((n * c_in + c) * h + ih as usize) * w + iw as usize];
                            }
                        }
                    }
                    y[((n * c_out + co) * oh_n + oh) * ow_n + ow] = sum;
                }
            }
        }
    }
    y
}

/// x, weight and bias gradients of `sum(conv(x, w, b) * dy)`, i.e. of an output gradient `dy`.
type Conv2dFn = fn(Tensor<4>, Tensor<4>, Option<Tensor<1>>, ConvOptions<2>) -> Tensor<4>;

fn autodiff_grads(conv: Conv2dFn, case: &Case, d: &Data, bias: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let device = Device::flex().autodiff();
    let x = tensor(&d.x, d.x_dims, &device).require_grad();
    let w = tensor(&d.w, d.w_dims, &device).require_grad();
    let b = tensor(bias, [case.c_out], &device).require_grad();
    let dy = tensor(&d.dy, d.dy_dims, &device);
    let y = conv(x.clone(), w.clone(), Some(b.clone()), case.options());
    assert!(y.is_tracked(), "conv2d output is not tracked by autodiff");
    let grads = (y * dy).sum().backward();
    let grad = |g: Option<Tensor<4>>, what: &str| values(g.unwrap_or_else(|| panic!("no {what} gradient")));
    let db = values(b.grad(&grads).expect("no bias gradient"));
    (grad(x.grad(&grads), "x"), grad(w.grad(&grads), "weight"), db)
}

#[test]
fn autodiff_gradients_match_direct_loops_and_burn_conv2d() {
    for (i, (name, case)) in cases().into_iter().enumerate() {
        let d = data(&case, 300 + i as u64);
        let bias = random_values(case.c_out, 900 + i as u64);
        let (dx_ref, dw_ref) = naive_grads(&case, &d);
        let db_ref = naive_bias_grad(&d.dy, d.dy_dims);

        let (dx, dw, db) = autodiff_grads(maskrcnn_kernels::conv2d, &case, &d, &bias);
        assert_close(name, "autodiff dX", &dx, &dx_ref, 1e-4);
        assert_close(name, "autodiff dW", &dw, &dw_ref, 1e-4);
        assert_close(name, "autodiff db", &db, &db_ref, 1e-4);

        let (dx_burn, dw_burn, db_burn) = autodiff_grads(burn::tensor::module::conv2d, &case, &d, &bias);
        assert_close(name, "dX vs burn conv2d", &dx, &dx_burn, 1e-4);
        assert_close(name, "dW vs burn conv2d", &dw, &dw_burn, 1e-4);
        assert_close(name, "db vs burn conv2d", &db, &db_burn, 1e-4);
    }
}

#[test]
fn autodiff_without_bias_and_with_frozen_input() {
    // ResNet's case: no bias, the image needs no gradient, the weight does.
    let (name, case) = cases().swap_remove(6);
    let d = data(&case, 41);
    let (_, dw_ref) = naive_grads(&case, &d);
    let device = Device::flex().autodiff();
    let x = tensor(&d.x, d.x_dims, &device);
    let w = tensor(&d.w, d.w_dims, &device).require_grad();
    let y = maskrcnn_kernels::conv2d(x.clone(), w.clone(), None, case.options());
    let grads = (y * tensor(&d.dy, d.dy_dims, &device)).sum().backward();
    assert!(x.grad(&grads).is_none(), "{name}: untracked input got a gradient");
    assert_close(name, "no-bias dW", &values(w.grad(&grads).expect("no weight gradient")), &dw_ref, 1e-4);
}

#[test]
fn forward_matches_direct_loops_without_autodiff() {
    for (i, (name, case)) in cases().into_iter().enumerate() {
        let d = data(&case, 500 + i as u64);
        let bias = random_values(case.c_out, 700 + i as u64);
        let expected = naive_forward(&case, &d, &bias);
        let device = Device::flex();
        assert!(!device.is_autodiff());
        let run = |bias: Option<Tensor<1>>| {
            maskrcnn_kernels::conv2d(
                tensor(&d.x, d.x_dims, &device),
                tensor(&d.w, d.w_dims, &device),
                bias,
                case.options(),
            )
        };
        let y = run(Some(tensor(&bias, [case.c_out], &device)));
        assert_eq!(y.dims(), d.dy_dims, "{name}: output shape");
        assert_close(name, "forward", &values(y), &expected, 1e-4);
        let no_bias = naive_forward(&case, &d, &vec![0.0; case.c_out]);
        assert_close(name, "forward without bias", &values(run(None)), &no_bias, 1e-4);
    }
}

#[test]
fn untracked_tensors_on_an_autodiff_device_run_forward_only() {
    // What the model does at inference on a training device: no parameter requires grad.
    let (name, case) = cases().swap_remove(3);
    let d = data(&case, 61);
    let bias = random_values(case.c_out, 62);
    let device = Device::flex().autodiff();
    let y = maskrcnn_kernels::conv2d(
        tensor(&d.x, d.x_dims, &device),
        tensor(&d.w, d.w_dims, &device),
        Some(tensor(&bias, [case.c_out], &device)),
        case.options(),
    );
    assert!(!y.is_tracked(), "{name}: output of untracked inputs is tracked");
    assert_close(name, "untracked forward", &values(y), &naive_forward(&case, &d, &bias), 1e-4);
}

#[test]
#[should_panic(expected = "does not match input channels")]
fn mismatched_channels_panic_with_the_shapes() {
    let device = Device::flex();
    let x = Tensor::<4>::zeros([1, 3, 8, 8], &device);
    let w = Tensor::<4>::zeros([4, 2, 3, 3], &device);
    let _ = maskrcnn_kernels::conv2d(x, w, None, ConvOptions::new([1, 1], [1, 1], [1, 1], 1));
}

#[test]
fn autodiff_backward_runs_the_gemm_kernels() {
    // Multi-tile: the GEMM kernels and burn's defaults sum in different orders there, so bit
    // equality with the kernel called directly shows the extension's backward ran.
    let (name, case) = cases().swap_remove(11);
    let d = data(&case, 83);
    let (_, dw, _) = autodiff_grads(maskrcnn_kernels::conv2d, &case, &d, &vec![0.0; case.c_out]);
    let flex = |v: &[f64], dims: [usize; 4]| common::flex_tensor(v, &dims, burn::tensor::DType::F32);
    let direct = maskrcnn_kernels::conv2d_weight_backward(
        flex(&d.x, d.x_dims),
        flex(&d.w, d.w_dims),
        flex(&d.dy, d.dy_dims),
        &case.options(),
    );
    assert_eq!(dw, common::values_of(&direct), "{name}: autodiff dW is not the GEMM kernel's");
    let (_, dw_burn, _) = autodiff_grads(burn::tensor::module::conv2d, &case, &d, &vec![0.0; case.c_out]);
    assert_ne!(dw, dw_burn, "{name}: GEMM and default dW coincide bitwise, test cannot tell them apart");
}
