//! burn's own conv2d backward on flex (burn-backend's generic defaults) against direct f64 loops,
//! through burn's autodiff. The GEMM kernels the model uses instead are tested in
//! `crates/maskrcnn-kernels`.

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use maskrcnn::tensor_util::tensor_to_vec;

#[test]
fn conv2d_gradients_match_direct_loops() {
    let device = Device::flex().autodiff();
    let (n, ci, h, w, co, k, stride, pad, dil) = (2, 3, 9, 11, 4, 3, 2, 1, 2);
    let x: Tensor<4> = Tensor::random([n, ci, h, w], Distribution::Uniform(-1.0, 1.0), &device).require_grad();
    let wt: Tensor<4> = Tensor::random([co, ci, k, k], Distribution::Uniform(-1.0, 1.0), &device).require_grad();
    let y = conv2d(x.clone(), wt.clone(), None, ConvOptions::new([stride; 2], [pad; 2], [dil; 2], 1));
    let [_, _, oh, ow] = y.dims();
    let r: Tensor<4> = Tensor::random([n, co, oh, ow], Distribution::Uniform(-1.0, 1.0), &device);
    let grads = (y * r.clone()).sum().backward();
    let gx = tensor_to_vec(x.grad(&grads).unwrap());
    let gw = tensor_to_vec(wt.grad(&grads).unwrap());
    let (xv, wv, rv) = (tensor_to_vec(x), tensor_to_vec(wt), tensor_to_vec(r));
    let mut ex = vec![0.0f64; xv.len()];
    let mut ew = vec![0.0f64; wv.len()];
    for b in 0..n {
        for o in 0..co {
            for oy in 0..oh {
                for ox in 0..ow {
                    let g = rv[((b * co + o) * oh + oy) * ow + ox] as f64;
                    for c in 0..ci {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * stride + ky * dil) as isize - pad as isize;
                                let ix = (ox * stride + kx * dil) as isize - pad as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xi = ((b * ci + c) * h + iy as usize) * w + ix as usize;
                                let wi = ((o * ci + c) * k + ky) * k + kx;
                                ew[wi] += g * xv[xi] as f64;
                                ex[xi] += g * wv[wi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    for (name, got, want) in [("weight", &gw, &ew), ("input", &gx, &ex)] {
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = got.iter().zip(want.iter()).fold(0.0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
        assert!(err / scale < 1e-4, "{name} gradient: relative error {:.2e}", err / scale);
    }
}
