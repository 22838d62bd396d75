//! Conv shapes, deterministic data and direct-loop reference gradients shared by the tests.

#![allow(dead_code)] // each test binary uses a different subset

use burn::tensor::ops::ConvOptions;
use burn::tensor::{bf16, f16, DType, TensorData};
use burn_flex::FlexTensor;

/// One conv2d configuration: input `[batch, c_in, h, w]`, weight `[c_out, c_in / groups, kh, kw]`.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub batch: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    pub padding: [(usize, usize); 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Case {
    pub fn options(&self) -> ConvOptions<2> {
        ConvOptions::new_with_padding(self.stride, self.padding, self.dilation, self.groups)
    }

    fn out_size(&self, axis: usize) -> usize {
        let (size, k) = if axis == 0 { (self.h, self.kh) } else { (self.w, self.kw) };
        let (begin, end) = self.padding[axis];
        (size + begin + end - self.dilation[axis] * (k - 1) - 1) / self.stride[axis] + 1
    }
}

fn base(c_in: usize, c_out: usize, h: usize, w: usize, k: usize) -> Case {
    Case {
        batch: 2,
        c_in,
        c_out,
        h,
        w,
        kh: k,
        kw: k,
        stride: [1, 1],
        padding: [(0, 0), (0, 0)],
        dilation: [1, 1],
        groups: 1,
    }
}

/// The 12 shapes every kernel is checked on.
pub fn cases() -> Vec<(&'static str, Case)> {
    let pad = |p: usize| [(p, p), (p, p)];
    vec![
        ("3x3 stride 1 pad 1", Case { padding: pad(1), ..base(4, 6, 9, 11, 3) }),
        ("3x3 stride 2 pad 1", Case { stride: [2, 2], padding: pad(1), ..base(5, 7, 13, 10, 3) }),
        ("3x3 dilation 2 pad 2", Case { dilation: [2, 2], padding: pad(2), ..base(3, 5, 12, 9, 3) }),
        ("3x3 groups 2", Case { groups: 2, padding: pad(1), ..base(4, 6, 8, 8, 3) }),
        ("1x1 pointwise", base(8, 16, 7, 9, 1)),
        ("1x1 stride 2", Case { stride: [2, 2], ..base(8, 12, 9, 8, 1) }),
        ("7x7 stride 2 pad 3 stem", Case { stride: [2, 2], padding: pad(3), ..base(3, 8, 19, 17, 7) }),
        ("asymmetric pad stride 2", Case { stride: [2, 2], padding: [(1, 2), (0, 1)], ..base(4, 6, 10, 11, 3) }),
        ("depthwise 3x3", Case { groups: 6, padding: pad(1), ..base(6, 6, 9, 9, 3) }),
        (
            "stride 2 dilation 2 groups 2 rect kernel",
            Case {
                kh: 3,
                kw: 2,
                stride: [2, 1],
                padding: [(2, 2), (1, 1)],
                dilation: [2, 2],
                groups: 2,
                ..base(4, 8, 12, 10, 3)
            },
        ),
        ("kernel larger than padded input tail", Case { stride: [3, 3], padding: pad(1), ..base(2, 3, 8, 7, 5) }),
        // 576 column rows x 64 output columns per row: more than one column tile.
        ("3x3 multi-tile", Case { padding: pad(1), ..base(64, 8, 64, 64, 3) }),
    ]
}

/// Deterministic values in [-1, 1).
pub fn random_values(len: usize, seed: u64) -> Vec<f64> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

/// Input, weight and output gradient of one case, in f64, with their shapes.
pub struct Data {
    pub x: Vec<f64>,
    pub w: Vec<f64>,
    pub dy: Vec<f64>,
    pub x_dims: [usize; 4],
    pub w_dims: [usize; 4],
    pub dy_dims: [usize; 4],
}

pub fn data(case: &Case, seed: u64) -> Data {
    let x_dims = [case.batch, case.c_in, case.h, case.w];
    let w_dims = [case.c_out, case.c_in / case.groups, case.kh, case.kw];
    let dy_dims = [case.batch, case.c_out, case.out_size(0), case.out_size(1)];
    Data {
        x: random_values(x_dims.iter().product(), seed),
        w: random_values(w_dims.iter().product(), seed + 1),
        dy: random_values(dy_dims.iter().product(), seed + 2),
        x_dims,
        w_dims,
        dy_dims,
    }
}

/// Direct-loop gradients in f64, (dX, dW), straight from the definition
/// y[n, co, oh, ow] = sum w[co, ci, kh, kw] * x[n, g*cg + ci, oh*s + kh*d - pb, ow*s + kw*d - pb].
pub fn naive_grads(case: &Case, d: &Data) -> (Vec<f64>, Vec<f64>) {
    let [n_b, c_in, h, w] = d.x_dims;
    let [c_out, cg, kh_n, kw_n] = d.w_dims;
    let [_, _, oh_n, ow_n] = d.dy_dims;
    let cog = c_out / case.groups;
    let mut dx = vec![0.0; d.x.len()];
    let mut dw = vec![0.0; d.w.len()];
    for n in 0..n_b {
        for co in 0..c_out {
            let g = co / cog;
            for oh in 0..oh_n {
                for ow in 0..ow_n {
                    let gy = d.dy[((n * c_out + co) * oh_n + oh) * ow_n + ow];
                    for ci in 0..cg {
                        let c = g * cg + ci;
                        for kh in 0..kh_n {
                            let ih =
                                (oh * case.stride[0] + kh * case.dilation[0]) as isize - case.padding[0].0 as isize;
                            if ih < 0 || ih >= h as isize {
                                continue;
                            }
                            for kw in 0..kw_n {
                                let iw =
                                    (ow * case.stride[1] + kw * case.dilation[1]) as isize - case.padding[1].0 as isize;
                                if iw < 0 || iw >= w as isize {
                                    continue;
                                }
                                let xi = ((n * c_in + c) * h + ih as usize) * w + iw as usize;
                                let wi = ((co * cg + ci) * kh_n + kh) * kw_n + kw;
                                dw[wi] += gy * d.x[xi];
                                dx[xi] += gy * d.w[wi];
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw)
}

/// Bias gradient from the definition: the output gradient summed over batch and space.
pub fn naive_bias_grad(dy: &[f64], dims: [usize; 4]) -> Vec<f64> {
    let [_, channels, h, w] = dims;
    let mut sums = vec![0.0; channels];
    for (i, v) in dy.iter().enumerate() {
        sums[(i / (h * w)) % channels] += v;
    }
    sums
}

/// Every element within `tol` of the reference, relative to max(|reference element|, RMS of the
/// reference).
pub fn assert_close(name: &str, what: &str, actual: &[f64], expected: &[f64], tol: f64) {
    assert_eq!(actual.len(), expected.len(), "{name}: {what} length");
    let rms = (expected.iter().map(|v| v * v).sum::<f64>() / expected.len().max(1) as f64).sqrt();
    assert!(rms > 0.0, "{name}: {what} reference is all zero, test is vacuous");
    let mut worst = 0.0f64;
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let rel = (a - e).abs() / e.abs().max(rms);
        assert!(rel <= tol, "{name}: {what}[{i}] = {a}, expected {e} (relative error {rel:e})");
        worst = worst.max(rel);
    }
    println!("{name}: {what} worst relative error {worst:e}");
}

/// A contiguous flex tensor of `values` rounded to `dtype`.
pub fn flex_tensor(values: &[f64], dims: &[usize], dtype: DType) -> FlexTensor {
    let shape = dims.to_vec();
    let data = match dtype {
        DType::F64 => TensorData::new(values.to_vec(), shape),
        DType::F32 => TensorData::new(values.iter().map(|&v| v as f32).collect(), shape),
        DType::F16 => TensorData::new(values.iter().map(|&v| f16::from_f64(v)).collect(), shape),
        DType::BF16 => TensorData::new(values.iter().map(|&v| bf16::from_f64(v)).collect(), shape),
        other => panic!("unexpected dtype {other:?}"),
    };
    FlexTensor::from_data(data)
}

/// The elements of `tensor` in logical (row-major) order, as f64.
pub fn values_of(tensor: &FlexTensor) -> Vec<f64> {
    let tensor = tensor.to_contiguous();
    match tensor.dtype() {
        DType::F32 => tensor.storage::<f32>().iter().map(|&v| v as f64).collect(),
        DType::F64 => tensor.storage::<f64>().to_vec(),
        DType::F16 => tensor.storage::<f16>().iter().map(|v| v.to_f64()).collect(),
        DType::BF16 => tensor.storage::<bf16>().iter().map(|v| v.to_f64()).collect(),
        other => panic!("unexpected dtype {other:?}"),
    }
}
