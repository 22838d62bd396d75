//! conv2d forward on flex: im2col + GEMM straight into the NCHW output, and Winograd F(2x2, 3x3)
//! for stride-1 3x3 convolutions at inference.
//!
//! burn-flex 0.22.1's conv2d copies the whole input to NHWC, re-lays out the weight on every call,
//! allocates and zeroes an im2col buffer per tile and scatters each tile's result into NCHW with
//! scalar stores (`bench/predict-findings.md`: ~78 GFLOP/s where oneDNN does 92–103). Here the
//! weight `[co, (ci, kh, kw)]` is the GEMM's left operand as stored, columns are built from the
//! NCHW planes into per-thread scratch (never zeroed), and the GEMM writes the output rows in
//! place, on top of the bias. Pointwise convolutions skip im2col.
//!
//! Winograd F(2x2, 3x3) does the multiply-adds of a 3x3 stride-1 convolution in 16 GEMMs of
//! `[co, ci] x [ci, tiles]` over 4x4 input tiles with stride 2: 2.25x fewer than the direct form.
//! It rounds differently (transforms with ±0.5 weights, sums of up to 9 terms regrouped), a few
//! float32 ulps more than direct convolution (relative error ~1e-6 on the parity models). Training
//! uses it too: the gradients are computed from the input and weight, not from the forward's
//! rounding. `MASKRCNN_CONV_FORWARD=gemm` turns it off.

use std::sync::OnceLock;

use burn::tensor::ops::ConvOptions;
use burn::tensor::{Bytes, DType, Shape};
use burn_flex::{FlexTensor, Layout};

use crate::columns::im2col_rows;
use crate::geometry::Conv2dGeometry;
use crate::matmul::gemm_strided;
use crate::scratch::with_scratch;

/// Environment variable selecting the forward algorithm for comparisons in one binary:
/// `flex` (burn-flex's own conv2d), `gemm` (im2col + GEMM only, no Winograd), anything else or
/// unset: the default (Winograd where allowed, GEMM otherwise).
pub const FORWARD_ENV: &str = "MASKRCNN_CONV_FORWARD";

/// What [`FORWARD_ENV`] selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardAlgorithm {
    /// burn-flex's conv2d.
    Flex,
    /// im2col + GEMM for every convolution.
    Gemm,
    /// Winograd for eligible 3x3 convolutions when the caller allows it, GEMM otherwise.
    Fast,
}

/// The algorithm [`FORWARD_ENV`] asks for; read once per process.
pub fn forward_algorithm() -> ForwardAlgorithm {
    static ALGORITHM: OnceLock<ForwardAlgorithm> = OnceLock::new();
    *ALGORITHM.get_or_init(|| match std::env::var(FORWARD_ENV).map(|v| v.to_ascii_lowercase()).as_deref() {
        Ok("flex") => ForwardAlgorithm::Flex,
        Ok("gemm") => ForwardAlgorithm::Gemm,
        _ => ForwardAlgorithm::Fast,
    })
}

/// Winograd tiles (2x2 outputs each) per block: large enough that the 16 GEMMs amortise packing
/// the transformed weights, small enough that a block's transformed input and products (16 x
/// channels x tiles each) stay in the last-level cache.
const WINOGRAD_BLOCK_TILES: usize = 384;

/// Winograd runs for feature maps of at least this many tiles per image (the mask head's 14x14
/// RoIs have 49). Counted per image, never per batch: the algorithm, and so the rounding, of one
/// image must not depend on what it is batched with (`detect --batch-size` gives the same file).
const WINOGRAD_MIN_TILES: usize = 49;

/// `y = conv2d(x, weight) + bias` for f32 tensors; `None` for any other dtype (the caller then
/// runs flex's own conv2d). `winograd` allows Winograd F(2x2, 3x3) for eligible layers.
pub fn conv2d_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
    options: &ConvOptions<2>,
    winograd: bool,
) -> Option<FlexTensor> {
    if x.dtype() != DType::F32 || weight.dtype() != DType::F32 || bias.is_some_and(|b| b.dtype() != DType::F32) {
        return None;
    }
    let x = x.to_contiguous();
    let weight = weight.to_contiguous();
    let bias = bias.map(|b| b.to_contiguous());
    let x_shape = x.layout().shape().to_vec();
    let w_shape = weight.layout().shape().to_vec();
    assert!(x_shape.len() == 4 && w_shape.len() == 4, "conv2d: input and weight must be rank 4");
    let out_shape = [
        x_shape[0],
        w_shape[0],
        out_size(x_shape[2], w_shape[2], options, 0),
        out_size(x_shape[3], w_shape[3], options, 1),
    ];
    let geo = Conv2dGeometry::new(&x_shape, &w_shape, &out_shape, options);
    let bias: Option<&[f32]> = bias.as_ref().map(|b| b.storage());
    if let Some(b) = bias {
        assert_eq!(b.len(), geo.channels_out, "conv2d: bias size does not match output channels");
    }
    let (xs, ws): (&[f32], &[f32]) = (x.storage(), weight.storage());
    let mut y = vec![0.0f32; out_shape.iter().product()];
    if winograd && winograd_eligible(&geo) {
        winograd_forward(xs, ws, bias, &geo, &mut y);
    } else {
        gemm_forward(xs, ws, bias, &geo, &mut y);
    }
    Some(FlexTensor::new(Bytes::from_elems(y), Layout::contiguous(Shape::from(out_shape.to_vec())), DType::F32))
}

/// Output size along `axis`, PyTorch's formula (begin and end padding may differ).
fn out_size(input: usize, kernel: usize, options: &ConvOptions<2>, axis: usize) -> usize {
    let (begin, end) = (options.padding_begin()[axis], options.padding_end()[axis]);
    let span = options.dilation[axis] * (kernel - 1) + 1;
    let padded = input + begin + end;
    assert!(
        padded >= span,
        "conv2d: kernel {kernel} (dilation {}) larger than the padded input {padded}",
        options.dilation[axis]
    );
    (padded - span) / options.stride[axis] + 1
}

/// Writes `bias[co]` (or zero) into every output plane of `y_item` (`[co, plane]`).
fn fill_bias(y_item: &mut [f32], bias: Option<&[f32]>, plane: usize) {
    match bias {
        Some(bias) => {
            for (row, &b) in y_item.chunks_mut(plane).zip(bias) {
                row.fill(b);
            }
        }
        None => y_item.fill(0.0),
    }
}

/// Runs `f(batch_index, y_item)` over the batch items' outputs: concurrently (single-threaded
/// GEMMs) when there are at least as many items as threads, otherwise in order with the GEMMs
/// using the threads. `f`'s second argument says whether its GEMMs may go parallel.
fn over_batch(y: &mut [f32], item_len: usize, batch: usize, f: impl Fn(usize, &mut [f32], bool) + Send + Sync) {
    let threads = rayon::current_num_threads();
    if item_len == 0 {
        return;
    }
    if threads > 1 && batch >= threads {
        use rayon::prelude::*;
        y.par_chunks_mut(item_len).enumerate().for_each(|(b, item)| f(b, item, false));
    } else {
        for (b, item) in y.chunks_mut(item_len).enumerate() {
            f(b, item, true);
        }
    }
}

/// im2col + GEMM, any geometry.
fn gemm_forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, geo: &Conv2dGeometry, y: &mut [f32]) {
    let out_plane = geo.out_plane();
    let (m, k) = (geo.out_per_group(), geo.column_rows());
    let item_len = geo.channels_out * out_plane;
    over_batch(y, item_len, geo.batch, |b, y_item, parallel| {
        fill_bias(y_item, bias, out_plane);
        for g in 0..geo.groups {
            let x_group = &x[(b * geo.channels_in + g * geo.in_per_group()) * geo.in_plane()..]
                [..geo.in_per_group() * geo.in_plane()];
            let w_group = &w[g * m * k..][..m * k];
            let y_group = &mut y_item[g * m * out_plane..][..m * out_plane];
            if geo.is_pointwise_identity() {
                // SAFETY: y_group is [m, out_plane], w_group [m, k], x_group [k, out_plane] (k is
                // the group's input channels for a pointwise conv), all row-major.
                unsafe {
                    gemm_strided(
                        (m, out_plane, k),
                        y_group.as_mut_ptr(),
                        (out_plane as isize, 1),
                        true,
                        w_group.as_ptr(),
                        (k as isize, 1),
                        x_group.as_ptr(),
                        (out_plane as isize, 1),
                        parallel,
                    );
                }
                continue;
            }
            let tile_rows = geo.tile_rows();
            with_scratch::<f32, _>(k * tile_rows * geo.out_w, |scratch| {
                let mut oh_start = 0;
                while oh_start < geo.out_h {
                    let rows = tile_rows.min(geo.out_h - oh_start);
                    let tile_cols = rows * geo.out_w;
                    let columns = &mut scratch[..k * tile_cols];
                    im2col_rows(columns, x_group, geo, oh_start, rows, false);
                    // SAFETY: the destination is output rows oh_start..oh_start + rows of each of
                    // the group's m planes (row stride out_plane, tile_cols contiguous columns);
                    // columns is [k, tile_cols] row-major; w_group [m, k].
                    unsafe {
                        gemm_strided(
                            (m, tile_cols, k),
                            y_group.as_mut_ptr().add(oh_start * geo.out_w),
                            (out_plane as isize, 1),
                            true,
                            w_group.as_ptr(),
                            (k as isize, 1),
                            columns.as_ptr(),
                            (tile_cols as isize, 1),
                            parallel,
                        );
                    }
                    oh_start += rows;
                }
            });
        }
    });
}

fn winograd_eligible(geo: &Conv2dGeometry) -> bool {
    let tiles = geo.out_h.div_ceil(2) * geo.out_w.div_ceil(2);
    geo.kernel_h == 3
        && geo.kernel_w == 3
        && geo.stride == [1, 1]
        && geo.dilation == [1, 1]
        && geo.groups == 1
        && tiles >= WINOGRAD_MIN_TILES
}

/// `U[ξ][co][ci] = (G g G^T)[ξ]` for every 3x3 kernel `g = w[co][ci]`, with
/// G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]].
fn winograd_weights(w: &[f32], co: usize, ci: usize) -> Vec<f32> {
    let pairs = co * ci;
    let mut u = vec![0.0f32; 16 * pairs];
    for (p, g) in w.chunks_exact(9).enumerate() {
        // Rows of G g (4 x 3).
        let mut gg = [[0.0f32; 3]; 4];
        for c in 0..3 {
            let (g0, g1, g2) = (g[c], g[3 + c], g[6 + c]);
            gg[0][c] = g0;
            gg[1][c] = 0.5 * (g0 + g1 + g2);
            gg[2][c] = 0.5 * (g0 - g1 + g2);
            gg[3][c] = g2;
        }
        for (i, row) in gg.iter().enumerate() {
            let (a, b, c) = (row[0], row[1], row[2]);
            u[(i * 4) * pairs + p] = a;
            u[(i * 4 + 1) * pairs + p] = 0.5 * (a + b + c);
            u[(i * 4 + 2) * pairs + p] = 0.5 * (a - b + c);
            u[(i * 4 + 3) * pairs + p] = c;
        }
    }
    u
}

/// Winograd F(2x2, 3x3): stride 1, dilation 1, one group, any padding.
fn winograd_forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, geo: &Conv2dGeometry, y: &mut [f32]) {
    let (co, ci) = (geo.channels_out, geo.channels_in);
    let u = winograd_weights(w, co, ci);
    let tiles_y = geo.out_h.div_ceil(2);
    let tiles_x = geo.out_w.div_ceil(2);
    // Blocks are runs of whole tile rows of the flattened (batch, tile row) sequence, so one
    // block may span several small images (the mask head's 14x14 RoIs).
    let total_rows = geo.batch * tiles_y;
    let rows_per_block = (WINOGRAD_BLOCK_TILES / tiles_x).max(1);
    let blocks = total_rows.div_ceil(rows_per_block);
    let block_len = rows_per_block * tiles_x;
    // Padded input row length the input transform reads: 2 * tiles_x + 2 columns.
    let row_len = 2 * tiles_x + 2;
    let scratch_len = 16 * (ci + co) * block_len + 4 * row_len + 8 * (tiles_x + 1) + 4 * block_len;
    let out_ptr = SendPtr(y.as_mut_ptr());
    let run_block = |block: usize, parallel: bool| {
        let first_row = block * rows_per_block;
        let rows = rows_per_block.min(total_rows - first_row);
        let tiles = rows * tiles_x;
        with_scratch::<f32, _>(scratch_len, |scratch| {
            let (v, rest) = scratch.split_at_mut(16 * ci * block_len);
            let (mm, rest) = rest.split_at_mut(16 * co * block_len);
            let (corners, rows_buf) = rest.split_at_mut(4 * block_len);
            input_transform(x, geo, first_row, rows, tiles_x, tiles_y, block_len, v, rows_buf);
            for xi in 0..16 {
                // SAFETY: u[ξ] is [co, ci], v[ξ] [ci, tiles] with row stride block_len, mm[ξ]
                // [co, tiles] with row stride block_len; all inside their buffers.
                unsafe {
                    gemm_strided(
                        (co, tiles, ci),
                        mm.as_mut_ptr().add(xi * co * block_len),
                        (block_len as isize, 1),
                        false,
                        u.as_ptr().add(xi * co * ci),
                        (ci as isize, 1),
                        v.as_ptr().add(xi * ci * block_len),
                        (block_len as isize, 1),
                        parallel,
                    );
                }
            }
            output_transform(mm, bias, geo, first_row, rows, tiles_x, tiles_y, block_len, out_ptr, corners);
        });
    };
    let threads = rayon::current_num_threads();
    if threads > 1 && blocks >= threads {
        use rayon::prelude::*;
        (0..blocks).into_par_iter().for_each(|b| run_block(b, false));
    } else {
        for b in 0..blocks {
            run_block(b, true);
        }
    }
}

/// A raw output pointer shared by blocks that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: only used for disjoint writes (see `winograd_forward`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `V[ξ][c][t] = (B^T d B)[ξ]` for the 4x4 input tile `d` of every tile `t` in the block and
/// channel `c`, with B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]; taps
/// outside the input read as zero.
///
/// Per (tile row, channel): the four input rows (zero-padded) are combined column-wise (B^T d)
/// straight into even and odd columns, so that the row-wise step (· B) is contiguous arithmetic
/// over the tiles of the row that the compiler vectorises.
#[allow(clippy::too_many_arguments)]
fn input_transform(
    x: &[f32],
    geo: &Conv2dGeometry,
    first_row: usize,
    rows: usize,
    tiles_x: usize,
    tiles_y: usize,
    block_len: usize,
    v: &mut [f32],
    rows_buf: &mut [f32],
) {
    let ci_n = geo.channels_in;
    let row_len = 2 * tiles_x + 2;
    let half = tiles_x + 1;
    let (pad_h, pad_w) = (geo.padding_begin[0] as isize, geo.padding_begin[1] as isize);
    let (in_h, in_w) = (geo.in_h as isize, geo.in_w as isize);
    // Input columns the padded row covers: iw = col - pad_w for col in 0..row_len.
    let col_start = (pad_w.max(0) as usize).min(row_len);
    let col_end = ((in_w + pad_w).max(0) as usize).clamp(col_start, row_len);
    let iw0 = (col_start as isize - pad_w) as usize;
    let (d, eo) = rows_buf.split_at_mut(4 * row_len);
    let (even, odd) = eo[..8 * half].split_at_mut(4 * half);
    for local in 0..rows {
        let r = first_row + local;
        let (b, ty) = (r / tiles_y, r % tiles_y);
        let base = local * tiles_x;
        for c in 0..ci_n {
            let plane = &x[(b * ci_n + c) * geo.in_plane()..][..geo.in_plane()];
            for i in 0..4 {
                let row = &mut d[i * row_len..(i + 1) * row_len];
                let ih = (2 * ty) as isize + i as isize - pad_h;
                if ih < 0 || ih >= in_h || col_start == col_end {
                    row.fill(0.0);
                    continue;
                }
                let src = &plane[ih as usize * geo.in_w + iw0..][..col_end - col_start];
                row[..col_start].fill(0.0);
                row[col_end..].fill(0.0);
                for (dst, &s) in row[col_start..col_end].iter_mut().zip(src) {
                    *dst = s;
                }
            }
            {
                let (d0, rest) = d.split_at(row_len);
                let (d1, rest) = rest.split_at(row_len);
                let (d2, d3) = rest.split_at(row_len);
                for k in 0..half {
                    let (j0, j1) = (2 * k, 2 * k + 1);
                    even[k] = d0[j0] - d2[j0];
                    even[half + k] = d1[j0] + d2[j0];
                    even[2 * half + k] = d2[j0] - d1[j0];
                    even[3 * half + k] = d1[j0] - d3[j0];
                    odd[k] = d0[j1] - d2[j1];
                    odd[half + k] = d1[j1] + d2[j1];
                    odd[2 * half + k] = d2[j1] - d1[j1];
                    odd[3 * half + k] = d1[j1] - d3[j1];
                }
            }
            for i in 0..4 {
                let e = &even[i * half..(i + 1) * half];
                let o = &odd[i * half..(i + 1) * half];
                let at = |k: usize| ((i * 4 + k) * ci_n + c) * block_len + base;
                let (v0, rest) = v[at(0)..].split_at_mut(at(1) - at(0));
                let (v1, rest) = rest.split_at_mut(at(2) - at(1));
                let (v2, v3) = rest.split_at_mut(at(3) - at(2));
                let (v0, v1, v2, v3) = (&mut v0[..tiles_x], &mut v1[..tiles_x], &mut v2[..tiles_x], &mut v3[..tiles_x]);
                for tx in 0..tiles_x {
                    let (e0, e1, o0, o1) = (e[tx], e[tx + 1], o[tx], o[tx + 1]);
                    v0[tx] = e0 - e1;
                    v1[tx] = o0 + e1;
                    v2[tx] = e1 - o0;
                    v3[tx] = o0 - o1;
                }
            }
        }
    }
}

/// `y = A^T M A + bias` for every tile of the block, A^T = [[1, 1, 1, 0], [0, 1, -1, -1]],
/// written into the NCHW output (the last row/column of a tile is dropped at odd output sizes).
///
/// Per output channel the arithmetic runs over all tiles of the block at once (contiguous in the
/// products), into four planes of tile corners that are then interleaved into the output rows.
#[allow(clippy::too_many_arguments)]
fn output_transform(
    mm: &[f32],
    bias: Option<&[f32]>,
    geo: &Conv2dGeometry,
    first_row: usize,
    rows: usize,
    tiles_x: usize,
    tiles_y: usize,
    block_len: usize,
    y: SendPtr,
    corners: &mut [f32],
) {
    let co_n = geo.channels_out;
    let (out_h, out_w) = (geo.out_h, geo.out_w);
    let tiles = rows * tiles_x;
    let (y00, rest) = corners.split_at_mut(block_len);
    let (y01, rest) = rest.split_at_mut(block_len);
    let (y10, y11) = rest.split_at_mut(block_len);
    for co in 0..co_n {
        let bias_v = bias.map_or(0.0, |bias| bias[co]);
        let m: [&[f32]; 16] = std::array::from_fn(|xi| &mm[(xi * co_n + co) * block_len..][..tiles]);
        let (y00, y01, y10, y11) = (&mut y00[..tiles], &mut y01[..tiles], &mut y10[..tiles], &mut y11[..tiles]);
        for t in 0..tiles {
            // SAFETY: every m[k] has exactly `tiles` elements (sliced above) and t < tiles; the
            // checked form kept LLVM from vectorising this loop over 16 streams.
            let at = |k: usize| unsafe { *m[k].get_unchecked(t) };
            let s0: [f32; 4] = std::array::from_fn(|j| at(j) + at(4 + j) + at(8 + j));
            let s1: [f32; 4] = std::array::from_fn(|j| at(4 + j) - at(8 + j) - at(12 + j));
            y00[t] = s0[0] + s0[1] + s0[2] + bias_v;
            y01[t] = s0[1] - s0[2] - s0[3] + bias_v;
            y10[t] = s1[0] + s1[1] + s1[2] + bias_v;
            y11[t] = s1[1] - s1[2] - s1[3] + bias_v;
        }
        for local in 0..rows {
            let r = first_row + local;
            let (b, ty) = (r / tiles_y, r % tiles_y);
            let oh = 2 * ty;
            let row_start = (b * co_n + co) * geo.out_plane() + oh * out_w;
            let tile_range = local * tiles_x..(local + 1) * tiles_x;
            // SAFETY: output rows oh and oh + 1 (when it exists) of plane (b, co) lie inside the
            // `[batch, co, out_h, out_w]` output; blocks own disjoint tile rows, hence disjoint
            // output rows, so no other thread touches them.
            let top = unsafe { std::slice::from_raw_parts_mut(y.get().add(row_start), out_w) };
            interleave(top, &y00[tile_range.clone()], &y01[tile_range.clone()]);
            if oh + 1 < out_h {
                let bottom = unsafe { std::slice::from_raw_parts_mut(y.get().add(row_start + out_w), out_w) };
                interleave(bottom, &y10[tile_range.clone()], &y11[tile_range]);
            }
        }
    }
}

/// `row[2k] = left[k]`, `row[2k + 1] = right[k]`, stopping at the row's end (odd widths).
fn interleave(row: &mut [f32], left: &[f32], right: &[f32]) {
    let tail = left.get(row.len() / 2).copied();
    let mut pairs = row.chunks_exact_mut(2);
    for ((pair, &l), &r) in (&mut pairs).zip(left).zip(right) {
        pair[0] = l;
        pair[1] = r;
    }
    if let ([last], Some(l)) = (pairs.into_remainder(), tail) {
        *last = l;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    /// Direct convolution in f64, the reference for both algorithms.
    fn direct(x: &[f32], w: &[f32], bias: &[f32], geo: &Conv2dGeometry) -> Vec<f64> {
        let mut y = vec![0.0f64; geo.batch * geo.channels_out * geo.out_plane()];
        for b in 0..geo.batch {
            for co in 0..geo.channels_out {
                for oh in 0..geo.out_h {
                    for ow in 0..geo.out_w {
                        let mut sum = bias[co] as f64;
                        for ci in 0..geo.channels_in {
                            for kh in 0..3 {
                                for kw in 0..3 {
                                    let ih = (oh + kh) as isize - geo.padding_begin[0] as isize;
                                    let iw = (ow + kw) as isize - geo.padding_begin[1] as isize;
                                    if ih < 0 || iw < 0 || ih >= geo.in_h as isize || iw >= geo.in_w as isize {
                                        continue;
                                    }
                                    let xv = x
                                        [((b * geo.channels_in + ci) * geo.in_h + ih as usize) * geo.in_w + iw as usize]
                                        as f64;
                                    sum += xv * w[((co * geo.channels_in + ci) * 3 + kh) * 3 + kw] as f64;
                                }
                            }
                        }
                        y[((b * geo.channels_out + co) * geo.out_h + oh) * geo.out_w + ow] = sum;
                    }
                }
            }
        }
        y
    }

    #[test]
    fn winograd_matches_direct_convolution() {
        // (batch, ci, co, h, w, pad): odd and even sizes, zero/one/two padding, and a batch of
        // small images so that one block spans several of them.
        let cases = [
            (1, 3, 4, 8, 8, 1),
            (2, 5, 7, 17, 21, 1),
            (3, 4, 6, 9, 10, 0),
            (1, 2, 3, 7, 12, 2),
            (30, 3, 5, 7, 9, 1),
            (1, 6, 2, 5, 5, 3),
        ];
        for (n, (batch, ci, co, h, w, pad)) in cases.into_iter().enumerate() {
            let options = ConvOptions::new([1, 1], [pad, pad], [1, 1], 1);
            let out = [batch, co, h + 2 * pad - 2, w + 2 * pad - 2];
            let geo = Conv2dGeometry::new(&[batch, ci, h, w], &[co, ci, 3, 3], &out, &options);
            let x = values(batch * ci * h * w, 3 * n as u32);
            let wt = values(co * ci * 9, 3 * n as u32 + 1);
            let bias = values(co, 3 * n as u32 + 2);
            let expected = direct(&x, &wt, &bias, &geo);
            let mut win = vec![f32::NAN; expected.len()];
            winograd_forward(&x, &wt, Some(&bias), &geo, &mut win);
            let mut gemm = vec![f32::NAN; expected.len()];
            gemm_forward(&x, &wt, Some(&bias), &geo, &mut gemm);
            for (i, ((&a, &g), &e)) in win.iter().zip(&gemm).zip(&expected).enumerate() {
                assert!((a as f64 - e).abs() < 1e-5 * (1.0 + e.abs()), "case {n}: winograd[{i}] = {a}, direct {e}");
                assert!((g as f64 - e).abs() < 1e-5 * (1.0 + e.abs()), "case {n}: gemm[{i}] = {g}, direct {e}");
            }
        }
    }
}
