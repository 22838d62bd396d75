//! PyTorch's `interpolate` index arithmetic (bilinear and nearest, `align_corners=False`).

/// Source position and blend weight for one output index of a bilinear resize, as PyTorch's
/// `upsample_bilinear2d` computes them in f32 (scale = in/out, negative sources clamp to 0).
#[derive(Debug, Clone, Copy)]
pub struct LinearTap {
    pub lo: usize,
    pub hi: usize,
    pub w_lo: f32,
    pub w_hi: f32,
}

pub fn linear_taps(in_size: usize, out_size: usize) -> Vec<LinearTap> {
    let scale = in_size as f32 / out_size as f32;
    (0..out_size)
        .map(|dst| {
            let src = ((dst as f32 + 0.5) * scale - 0.5).max(0.0);
            let lo = (src as usize).min(in_size - 1);
            let hi = if lo < in_size - 1 { lo + 1 } else { lo };
            let w_hi = src - lo as f32;
            LinearTap { lo, hi, w_lo: 1.0 - w_hi, w_hi }
        })
        .collect()
}

/// Bilinear resize of a `[channels, in_h, in_w]` row-major buffer to `[channels, out_h, out_w]`.
pub fn resize_bilinear(input: &[f32], channels: usize, in_hw: (usize, usize), out_hw: (usize, usize)) -> Vec<f32> {
    let (in_h, in_w) = in_hw;
    let (out_h, out_w) = out_hw;
    let ty = linear_taps(in_h, out_h);
    let tx = linear_taps(in_w, out_w);
    let mut out = vec![0.0f32; channels * out_h * out_w];
    for c in 0..channels {
        let plane = &input[c * in_h * in_w..(c + 1) * in_h * in_w];
        let dst = &mut out[c * out_h * out_w..(c + 1) * out_h * out_w];
        for (oy, y) in ty.iter().enumerate() {
            let r0 = &plane[y.lo * in_w..(y.lo + 1) * in_w];
            let r1 = &plane[y.hi * in_w..(y.hi + 1) * in_w];
            for (ox, x) in tx.iter().enumerate() {
                dst[oy * out_w + ox] =
                    y.w_lo * (x.w_lo * r0[x.lo] + x.w_hi * r0[x.hi]) + y.w_hi * (x.w_lo * r1[x.lo] + x.w_hi * r1[x.hi]);
            }
        }
    }
    out
}

/// Source index for each output index of `interpolate(mode="nearest")`.
pub fn nearest_indices(in_size: usize, out_size: usize) -> Vec<usize> {
    if in_size == out_size {
        return (0..out_size).collect();
    }
    if out_size == 2 * in_size {
        return (0..out_size).map(|i| i >> 1).collect();
    }
    let scale = in_size as f32 / out_size as f32;
    (0..out_size).map(|i| ((i as f32 * scale).floor() as usize).min(in_size - 1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_two_by_two_matches_pytorch() {
        // torch.nn.functional.interpolate(torch.tensor([[[[1.,2.],[3.,4.]]]]), size=(4,4), mode="bilinear")
        let out = resize_bilinear(&[1.0, 2.0, 3.0, 4.0], 1, (2, 2), (4, 4));
        let expected = [1.0, 1.25, 1.75, 2.0, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3.0, 3.25, 3.75, 4.0];
        for (a, b) in out.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn identity_resize_is_exact() {
        let input: Vec<f32> = (0..12).map(|v| v as f32).collect();
        assert_eq!(resize_bilinear(&input, 1, (3, 4), (3, 4)), input);
    }
}
