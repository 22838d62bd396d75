//! Training-mode batch norm (`BatchNorm2d` with batch statistics) as one fused pass per channel,
//! forward and backward, for flex.
//!
//! Written as tensor operations (burn-backend's default `batch_norm_train`, or our model's own
//! mean/centre/square/mean/sqrt/recip/mul/mul/add chain) a trainable batch norm makes about ten full
//! passes over the activation forward and as many backward, each allocating a tensor the size of
//! the activation; ResNet-50 has 53 of them, at 4x ResNet-18's channels. Here a channel's slices
//! (one `H*W` plane per image) are summed, then its centred squares, then written normalised while
//! they are still in cache; the backward sums `dy` and `dy * (x - mean)` the same way and writes
//! `dx`. Channels run in parallel on rayon.
//!
//! Reductions add f32 lanes over blocks of [`BLOCK`] elements and the block sums in f64, so a
//! channel of 131,072 elements (the stem at 512 px, batch 2) sums with f64-like accuracy at f32
//! speed. Variance is the mean of centred squares (two passes), not `E[x²] - E[x]²`, as PyTorch
//! computes it.

use rayon::prelude::*;

/// Elements summed in f32 lanes before the partial sum is added in f64.
const BLOCK: usize = 1024;
/// Independent f32 accumulators: enough to keep the adds vectorised and pipelined.
const LANES: usize = 16;

/// `sum(f(v))` over `values`: f32 lanes within blocks, f64 across them.
#[inline]
fn sum_by(values: &[f32], f: impl Fn(f32) -> f32 + Copy) -> f64 {
    let mut total = 0.0f64;
    for block in values.chunks(BLOCK) {
        let mut lanes = [0.0f32; LANES];
        let chunks = block.chunks_exact(LANES);
        let tail = chunks.remainder();
        for chunk in chunks {
            for (lane, &v) in lanes.iter_mut().zip(chunk) {
                *lane += f(v);
            }
        }
        let mut partial = 0.0f32;
        for lane in lanes {
            partial += lane;
        }
        for &v in tail {
            partial += f(v);
        }
        total += partial as f64;
    }
    total
}

/// `sum(f(a, b))` over two equal-length slices, accumulated as [`sum_by`] does.
#[inline]
fn sum_pairs_by(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Copy) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let mut total = 0.0f64;
    for (block_a, block_b) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let mut lanes = [0.0f32; LANES];
        let chunks_a = block_a.chunks_exact(LANES);
        let chunks_b = block_b.chunks_exact(LANES);
        let (tail_a, tail_b) = (chunks_a.remainder(), chunks_b.remainder());
        for (ca, cb) in chunks_a.zip(chunks_b) {
            for ((lane, &va), &vb) in lanes.iter_mut().zip(ca).zip(cb) {
                *lane += f(va, vb);
            }
        }
        let mut partial = 0.0f32;
        for lane in lanes {
            partial += lane;
        }
        for (&va, &vb) in tail_a.iter().zip(tail_b) {
            partial += f(va, vb);
        }
        total += partial as f64;
    }
    total
}

/// The `[batch, channels, plane]` slices of channel `c`, one per image.
fn channel_planes(data: &[f32], [batch, channels, plane]: [usize; 3], c: usize) -> impl Iterator<Item = &[f32]> {
    (0..batch).map(move |b| {
        let start = (b * channels + c) * plane;
        &data[start..start + plane]
    })
}

/// The mutable plane slices of `out` grouped by channel: `result[c][b]` is image `b`'s plane of
/// channel `c`. Lets rayon hand each channel its own disjoint slices without unsafe code.
fn planes_by_channel(out: &mut [f32], channels: usize, plane: usize) -> Vec<Vec<&mut [f32]>> {
    let mut by_channel: Vec<Vec<&mut [f32]>> = (0..channels).map(|_| Vec::new()).collect();
    if plane == 0 {
        return by_channel;
    }
    for (i, slice) in out.chunks_mut(plane).enumerate() {
        by_channel[i % channels].push(slice);
    }
    by_channel
}

/// Output and batch statistics of [`batch_norm_train_forward`].
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormForward {
    /// Normalised, scaled and shifted input, `[batch, channels, plane]`.
    pub output: Vec<f32>,
    /// Per-channel mean.
    pub mean: Vec<f32>,
    /// Per-channel biased (divided by `batch * plane`) variance.
    pub variance: Vec<f32>,
}

/// Gradients returned by [`batch_norm_train_backward`].
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormBackward {
    /// Gradient of the input, `[batch, channels, plane]`.
    pub x_grad: Vec<f32>,
    /// Gradient of the scale, per channel.
    pub gamma_grad: Vec<f32>,
    /// Gradient of the shift, per channel.
    pub beta_grad: Vec<f32>,
}

/// `y = (x - mean) / sqrt(var + eps) * gamma + beta` with `x` of shape `[batch, channels, plane]`
/// (contiguous) and the statistics of the batch itself: PyTorch's `BatchNorm2d` in training mode.
pub fn batch_norm_train_forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    dims @ [batch, channels, plane]: [usize; 3],
    epsilon: f64,
) -> BatchNormForward {
    assert_eq!(x.len(), batch * channels * plane, "batch_norm_train_forward: input size does not match its shape");
    assert!(gamma.len() == channels && beta.len() == channels, "batch_norm_train_forward: affine terms per channel");
    let count = (batch * plane) as f64;
    let mut output = vec![0.0f32; x.len()];
    let stats: Vec<(f32, f32)> = planes_by_channel(&mut output, channels, plane)
        .into_par_iter()
        .enumerate()
        .map(|(c, out_planes)| {
            let sum: f64 = channel_planes(x, dims, c).map(|p| sum_by(p, |v| v)).sum();
            let mean = (sum / count) as f32;
            let squares: f64 = channel_planes(x, dims, c)
                .map(|p| {
                    sum_by(p, |v| {
                        let d = v - mean;
                        d * d
                    })
                })
                .sum();
            let variance = squares / count;
            let inv_std = (1.0 / (variance + epsilon).sqrt()) as f32;
            let (scale, shift) = (gamma[c] * inv_std, beta[c]);
            for (src, dst) in channel_planes(x, dims, c).zip(out_planes) {
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = (v - mean) * scale + shift;
                }
            }
            (mean, variance as f32)
        })
        .collect();
    let (mean, variance) = stats.into_iter().unzip();
    BatchNormForward { output, mean, variance }
}

/// Gradients of [`batch_norm_train_forward`] given the output gradient `dy` and the `mean` and
/// (biased) `variance` that the forward returned:
/// `dbeta = sum(dy)`, `dgamma = sum(dy * xhat)`,
/// `dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat))`.
pub fn batch_norm_train_backward(
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    variance: &[f32],
    dy: &[f32],
    dims @ [batch, channels, plane]: [usize; 3],
    epsilon: f64,
) -> BatchNormBackward {
    let len = batch * channels * plane;
    assert!(x.len() == len && dy.len() == len, "batch_norm_train_backward: input or gradient size does not match");
    assert!(
        gamma.len() == channels && mean.len() == channels && variance.len() == channels,
        "batch_norm_train_backward: per-channel terms"
    );
    let count = (batch * plane) as f64;
    let mut x_grad = vec![0.0f32; len];
    let sums: Vec<(f32, f32)> = planes_by_channel(&mut x_grad, channels, plane)
        .into_par_iter()
        .enumerate()
        .map(|(c, grad_planes)| {
            let m = mean[c];
            let inv_std = 1.0 / (variance[c] as f64 + epsilon).sqrt();
            let (mut sum_dy, mut sum_dy_centred) = (0.0f64, 0.0f64);
            for (xp, gp) in channel_planes(x, dims, c).zip(channel_planes(dy, dims, c)) {
                sum_dy += sum_by(gp, |g| g);
                sum_dy_centred += sum_pairs_by(xp, gp, |v, g| (v - m) * g);
            }
            // dx = k * (dy - a - (x - mean) * b), all per-channel constants.
            let k = (gamma[c] as f64 * inv_std) as f32;
            let a = (sum_dy / count) as f32;
            let b = (sum_dy_centred * inv_std * inv_std / count) as f32;
            for ((xp, gp), dst) in channel_planes(x, dims, c).zip(channel_planes(dy, dims, c)).zip(grad_planes) {
                for ((d, &v), &g) in dst.iter_mut().zip(xp).zip(gp) {
                    *d = k * (g - a - (v - m) * b);
                }
            }
            (sum_dy as f32, (sum_dy_centred * inv_std) as f32)
        })
        .collect();
    let (beta_grad, gamma_grad) = sums.into_iter().unzip();
    BatchNormBackward { x_grad, gamma_grad, beta_grad }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values with a channel-dependent offset and spread (post-conv activations are
    /// not centred), so cancellation in the statistics would show.
    fn values([batch, channels, plane]: [usize; 3], seed: f32) -> Vec<f32> {
        (0..batch * channels * plane)
            .map(|i| {
                let c = (i / plane) % channels;
                let offset = 3.0 * c as f32 - 2.0;
                let spread = 0.5 + 0.25 * c as f32;
                offset + spread * ((i as f32 * 0.7311 + seed).sin() + 0.2 * (i % 13) as f32)
            })
            .collect()
    }

    /// (output, x_grad, mean, biased variance, gamma_grad, beta_grad).
    type Reference = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);

    /// The textbook formulas in f64, channel by channel.
    fn reference(
        x: &[f32],
        dy: &[f32],
        gamma: &[f32],
        beta: &[f32],
        [batch, channels, plane]: [usize; 3],
        eps: f64,
    ) -> Reference {
        let m = (batch * plane) as f64;
        let (mut y, mut dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        let (mut means, mut vars, mut dgamma, mut dbeta) = (vec![], vec![], vec![], vec![]);
        for c in 0..channels {
            let idx: Vec<usize> =
                (0..batch).flat_map(|b| (0..plane).map(move |k| (b * channels + c) * plane + k)).collect();
            let mean = idx.iter().map(|&i| x[i] as f64).sum::<f64>() / m;
            let var = idx.iter().map(|&i| (x[i] as f64 - mean).powi(2)).sum::<f64>() / m;
            let inv = 1.0 / (var + eps).sqrt();
            let sum_dy: f64 = idx.iter().map(|&i| dy[i] as f64).sum();
            let sum_dy_xhat: f64 = idx.iter().map(|&i| dy[i] as f64 * (x[i] as f64 - mean) * inv).sum();
            for &i in &idx {
                let xhat = (x[i] as f64 - mean) * inv;
                y[i] = xhat * gamma[c] as f64 + beta[c] as f64;
                dx[i] = gamma[c] as f64 * inv / m * (m * dy[i] as f64 - sum_dy - xhat * sum_dy_xhat);
            }
            means.push(mean);
            vars.push(var);
            dgamma.push(sum_dy_xhat);
            dbeta.push(sum_dy);
        }
        (y, dx, means, vars, dgamma, dbeta)
    }

    fn assert_close(what: &str, got: &[f32], want: &[f64], tolerance: f64) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(1.0f64, |acc, v| acc.max(v.abs()));
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!((g as f64 - w).abs() <= tolerance * scale, "{what}[{i}]: {g} vs {w}");
        }
    }

    fn check(dims: [usize; 3]) {
        let x = values(dims, 0.3);
        let dy = values(dims, 1.9).iter().map(|v| v * 0.1 - 0.05).collect::<Vec<_>>();
        let gamma: Vec<f32> =
            (0..dims[1]).map(|c| 0.5 + 0.3 * c as f32 * if c % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let beta: Vec<f32> = (0..dims[1]).map(|c| 0.1 * c as f32 - 0.2).collect();
        let eps = 1e-5;
        let forward = batch_norm_train_forward(&x, &gamma, &beta, dims, eps);
        let backward = batch_norm_train_backward(&x, &gamma, &forward.mean, &forward.variance, &dy, dims, eps);
        let (y, dx, means, vars, dgamma, dbeta) = reference(&x, &dy, &gamma, &beta, dims, eps);
        assert_close("output", &forward.output, &y, 1e-6);
        assert_close("mean", &forward.mean, &means, 1e-6);
        assert_close("variance", &forward.variance, &vars, 1e-6);
        assert_close("x_grad", &backward.x_grad, &dx, 1e-5);
        assert_close("gamma_grad", &backward.gamma_grad, &dgamma, 1e-5);
        assert_close("beta_grad", &backward.beta_grad, &dbeta, 1e-5);
    }

    #[test]
    fn small_shapes_match_the_formulas() {
        check([2, 3, 20]);
        check([1, 5, 7]);
        check([3, 1, 1]);
    }

    #[test]
    fn planes_longer_than_a_block_with_a_ragged_tail_match_the_formulas() {
        // 2 * 3 planes of 4,099 elements: four full blocks, a partial block and a lane remainder.
        check([2, 3, 4099]);
    }
}
