//! Backward passes of 2D convolution as im2col/col2im + GEMM.
//!
//! Not part of upstream burn-flex 0.22.1 (added in this vendored copy).
//!
//! burn-backend's default `conv2d_weight_backward` computes the weight
//! gradient as a forward convolution of the input (channels and batch
//! swapped) by the output gradient used as the kernel. For flex that turns
//! into one tiny GEMM per input channel with a huge reduction dimension and
//! a matrix-vector shape, which made ResNet training ~2.4x slower than its
//! forward pass alone would suggest. Here both gradients are one GEMM per
//! (batch, group, spatial tile), fed by the NCHW im2col/col2im layout so
//! that neither the input nor the output gradient needs re-layout:
//!
//! * weight: `dW_g[co, (ci,kh,kw)] += dY_g[co, p] * col_g[(ci,kh,kw), p]^T`
//! * input:  `dcol_g[(ci,kh,kw), p] = W_g[co, (ci,kh,kw)]^T * dY_g[co, p]`,
//!   then `dcol` is scatter-added back onto `dX` (col2im).
//!
//! Asymmetric padding needs no explicit pad/crop: only the begin padding
//! fixes where a kernel tap lands, and the output-gradient shape already
//! reflects the end padding, so taps past the input edge are simply skipped.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_backend::ops::ConvOptions;
use burn_std::{Bytes, Shape, bf16, f16};

use crate::{FlexTensor, Layout};

/// Upper bound on elements of one im2col/col2im tile. Tiles are whole output
/// rows, so memory stays bounded for large images (ResNet's 7x7 stem at
/// 1024^2 would otherwise need a 600 MB column buffer) while each GEMM still
/// gets a reduction/column dimension of thousands.
const COLUMN_TILE_ELEMENTS: usize = 1 << 21;

/// Work (m * n * k) above which a single GEMM is worth splitting across rayon
/// threads; same threshold flex uses for its forward convolution.
#[cfg(feature = "rayon")]
const GEMM_PARALLEL_WORK: usize = 192 * 192 * 192;

/// Element types with a native GEMM kernel; f16/bf16 are computed in f32.
pub trait GradElement:
    bytemuck::Pod
    + Copy
    + Send
    + Sync
    + 'static
    + core::ops::Add<Output = Self>
    + core::ops::AddAssign
    + burn_backend::Element
{
    const ZERO: Self;
    const ONE: Self;
}

impl GradElement for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

impl GradElement for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

/// Geometry of one conv2d, resolved from the tensor shapes and options.
#[derive(Clone, Copy, Debug)]
struct Conv2dGeometry {
    batch: usize,
    channels_in: usize,
    in_h: usize,
    in_w: usize,
    channels_out: usize,
    out_h: usize,
    out_w: usize,
    kernel_h: usize,
    kernel_w: usize,
    stride: [usize; 2],
    padding_begin: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
}

impl Conv2dGeometry {
    fn new(
        x_shape: &[usize],
        weight_shape: &[usize],
        grad_shape: &[usize],
        options: &ConvOptions<2>,
    ) -> Self {
        assert_eq!(x_shape.len(), 4, "conv2d backward: input must be rank 4");
        assert_eq!(weight_shape.len(), 4, "conv2d backward: weight must be rank 4");
        assert_eq!(grad_shape.len(), 4, "conv2d backward: output grad must be rank 4");
        let groups = options.groups;
        assert!(groups >= 1, "conv2d backward: groups must be >= 1");
        let geometry = Self {
            batch: x_shape[0],
            channels_in: x_shape[1],
            in_h: x_shape[2],
            in_w: x_shape[3],
            channels_out: weight_shape[0],
            out_h: grad_shape[2],
            out_w: grad_shape[3],
            kernel_h: weight_shape[2],
            kernel_w: weight_shape[3],
            stride: options.stride,
            padding_begin: options.padding_begin(),
            dilation: options.dilation,
            groups,
        };
        assert_eq!(
            weight_shape[1] * groups,
            geometry.channels_in,
            "conv2d backward: weight {weight_shape:?} and groups {groups} do not match input channels {}",
            geometry.channels_in
        );
        assert_eq!(
            geometry.channels_out % groups,
            0,
            "conv2d backward: output channels not divisible by groups"
        );
        assert_eq!(
            (grad_shape[0], grad_shape[1]),
            (geometry.batch, geometry.channels_out),
            "conv2d backward: output grad {grad_shape:?} does not match batch/out channels"
        );
        geometry
    }

    fn in_per_group(&self) -> usize {
        self.channels_in / self.groups
    }

    fn out_per_group(&self) -> usize {
        self.channels_out / self.groups
    }

    fn kernel_taps(&self) -> usize {
        self.kernel_h * self.kernel_w
    }

    /// Rows of the per-group column matrix: one per (input channel, kh, kw).
    fn column_rows(&self) -> usize {
        self.in_per_group() * self.kernel_taps()
    }

    fn in_plane(&self) -> usize {
        self.in_h * self.in_w
    }

    fn out_plane(&self) -> usize {
        self.out_h * self.out_w
    }

    /// A pointwise conv reads the input exactly at the output positions, so
    /// the input plane *is* the column matrix.
    fn is_pointwise_identity(&self) -> bool {
        self.kernel_h == 1
            && self.kernel_w == 1
            && self.stride == [1, 1]
            && self.padding_begin == [0, 0]
            && self.out_h == self.in_h
            && self.out_w == self.in_w
    }

    /// Output rows per column tile.
    fn tile_rows(&self) -> usize {
        let per_row = (self.column_rows() * self.out_w).max(1);
        (COLUMN_TILE_ELEMENTS / per_row).clamp(1, self.out_h.max(1))
    }

    /// Half-open range of output columns `ow` whose tap `kw` lands inside the input.
    fn valid_out_cols(&self, kw: usize) -> (usize, usize) {
        valid_range(
            kw * self.dilation[1],
            self.padding_begin[1],
            self.stride[1],
            self.in_w,
            self.out_w,
        )
    }

    /// Input row read by output row `oh` through tap `kh`, if inside the input.
    fn input_row(&self, oh: usize, kh: usize) -> Option<usize> {
        let ih = (oh * self.stride[0] + kh * self.dilation[0]) as isize
            - self.padding_begin[0] as isize;
        (ih >= 0 && (ih as usize) < self.in_h).then_some(ih as usize)
    }
}

/// Half-open range of output positions `o` for which `o * stride + offset - pad`
/// lies inside `[0, in_size)`, clipped to `[0, out_size)`.
#[inline]
fn valid_range(
    offset: usize,
    pad: usize,
    stride: usize,
    in_size: usize,
    out_size: usize,
) -> (usize, usize) {
    let start = if offset >= pad {
        0
    } else {
        (pad - offset).div_ceil(stride)
    };
    let limit = in_size + pad;
    let end = if offset >= limit {
        0
    } else {
        (limit - offset).div_ceil(stride)
    };
    let end = end.min(out_size);
    (start.min(end), end)
}

/// `dst[m, n] (+)= lhs[m, k] * rhs[k, n]` with arbitrary element strides
/// (given as (row stride, column stride)).
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_strided<T: GradElement>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_strides: (isize, isize),
    accumulate: bool,
    lhs: *const T,
    lhs_strides: (isize, isize),
    rhs: *const T,
    rhs_strides: (isize, isize),
    allow_parallel: bool,
) {
    #[cfg(feature = "rayon")]
    let parallelism = if allow_parallel && m.saturating_mul(n).saturating_mul(k) >= GEMM_PARALLEL_WORK
    {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    #[cfg(not(feature = "rayon"))]
    let parallelism = {
        let _ = allow_parallel;
        gemm::Parallelism::None
    };
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_strides.1,
            dst_strides.0,
            accumulate,
            lhs,
            lhs_strides.1,
            lhs_strides.0,
            rhs,
            rhs_strides.1,
            rhs_strides.0,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Runs `f(index, chunk)` over `data.chunks_mut(chunk_len)`, in parallel when
/// there is enough total work to pay for rayon's dispatch.
fn for_each_chunk<T: Send, F>(data: &mut [T], chunk_len: usize, parallel: bool, f: F)
where
    F: Fn(usize, &mut [T]) + Send + Sync,
{
    if chunk_len == 0 {
        return;
    }
    #[cfg(feature = "rayon")]
    if parallel && data.len() > chunk_len {
        use rayon::prelude::*;
        data.par_chunks_mut(chunk_len)
            .enumerate()
            .for_each(|(i, chunk)| f(i, chunk));
        return;
    }
    let _ = parallel;
    for (i, chunk) in data.chunks_mut(chunk_len).enumerate() {
        f(i, chunk);
    }
}

fn worth_parallel(elements: usize) -> bool {
    #[cfg(feature = "rayon")]
    {
        elements >= super::PARALLEL_THRESHOLD / 4 && rayon::current_num_threads() > 1
    }
    #[cfg(not(feature = "rayon"))]
    {
        let _ = elements;
        false
    }
}

/// Fills `columns` (`[column_rows, rows * out_w]`, row-major) with the input
/// taps of output rows `oh_start..oh_start + rows` for one (batch, group).
fn im2col_rows<T: GradElement>(
    columns: &mut [T],
    x_group: &[T],
    geo: &Conv2dGeometry,
    oh_start: usize,
    rows: usize,
    parallel: bool,
) {
    let tile_cols = rows * geo.out_w;
    let taps = geo.kernel_taps();
    for_each_chunk(columns, tile_cols, parallel, |row, column_row| {
        let ci = row / taps;
        let kh = (row % taps) / geo.kernel_w;
        let kw = row % geo.kernel_w;
        let plane = &x_group[ci * geo.in_plane()..(ci + 1) * geo.in_plane()];
        let (ow_start, ow_end) = geo.valid_out_cols(kw);
        let iw_first = (ow_start * geo.stride[1] + kw * geo.dilation[1]).wrapping_sub(geo.padding_begin[1]);
        for (r, out_row) in column_row.chunks_mut(geo.out_w).enumerate() {
            let Some(ih) = geo.input_row(oh_start + r, kh) else {
                out_row.fill(T::ZERO);
                continue;
            };
            out_row[..ow_start].fill(T::ZERO);
            out_row[ow_end..].fill(T::ZERO);
            if ow_start == ow_end {
                continue;
            }
            let src = &plane[ih * geo.in_w..(ih + 1) * geo.in_w];
            let dst = &mut out_row[ow_start..ow_end];
            if geo.stride[1] == 1 {
                dst.copy_from_slice(&src[iw_first..iw_first + dst.len()]);
            } else {
                for (j, d) in dst.iter_mut().enumerate() {
                    *d = src[iw_first + j * geo.stride[1]];
                }
            }
        }
    });
}

/// Scatter-adds `columns` (same layout as [`im2col_rows`]) onto the input
/// gradient planes of one (batch, group).
fn col2im_rows<T: GradElement>(
    dx_group: &mut [T],
    columns: &[T],
    geo: &Conv2dGeometry,
    oh_start: usize,
    rows: usize,
    parallel: bool,
) {
    let tile_cols = rows * geo.out_w;
    let taps = geo.kernel_taps();
    // Each input channel owns its plane, so channels can be processed
    // concurrently without write conflicts.
    for_each_chunk(dx_group, geo.in_plane(), parallel, |ci, plane| {
        for tap in 0..taps {
            let kh = tap / geo.kernel_w;
            let kw = tap % geo.kernel_w;
            let (ow_start, ow_end) = geo.valid_out_cols(kw);
            if ow_start == ow_end {
                continue;
            }
            let iw_first = (ow_start * geo.stride[1] + kw * geo.dilation[1]).wrapping_sub(geo.padding_begin[1]);
            let column_row = &columns[(ci * taps + tap) * tile_cols..][..tile_cols];
            for (r, src_row) in column_row.chunks(geo.out_w).enumerate() {
                let Some(ih) = geo.input_row(oh_start + r, kh) else {
                    continue;
                };
                let dst = &mut plane[ih * geo.in_w..(ih + 1) * geo.in_w];
                let src = &src_row[ow_start..ow_end];
                if geo.stride[1] == 1 {
                    for (d, &s) in dst[iw_first..iw_first + src.len()].iter_mut().zip(src) {
                        *d += s;
                    }
                } else {
                    for (j, &s) in src.iter().enumerate() {
                        dst[iw_first + j * geo.stride[1]] += s;
                    }
                }
            }
        }
    });
}

/// Weight gradient of one group, summed over the batch, written to
/// `dw_group` (`[out_per_group, column_rows]`, row-major).
fn weight_grad_group<T: GradElement>(
    dw_group: &mut [T],
    x: &[T],
    dy: &[T],
    geo: &Conv2dGeometry,
    group: usize,
    inner_parallel: bool,
) {
    let m = geo.out_per_group();
    let n = geo.column_rows();
    let out_plane = geo.out_plane();
    let tile_rows = geo.tile_rows();
    let mut columns: Vec<T> = Vec::new();
    let mut accumulate = false;
    for b in 0..geo.batch {
        let x_group = &x[(b * geo.channels_in + group * geo.in_per_group()) * geo.in_plane()..]
            [..geo.in_per_group() * geo.in_plane()];
        let dy_group = &dy[(b * geo.channels_out + group * m) * out_plane..][..m * out_plane];
        if geo.is_pointwise_identity() {
            // rhs[p, ci] = x[ci, p]
            unsafe {
                gemm_strided(
                    m,
                    n,
                    out_plane,
                    dw_group.as_mut_ptr(),
                    (n as isize, 1),
                    accumulate,
                    dy_group.as_ptr(),
                    (out_plane as isize, 1),
                    x_group.as_ptr(),
                    (1, out_plane as isize),
                    inner_parallel,
                );
            }
            accumulate = true;
            continue;
        }
        let mut oh_start = 0;
        while oh_start < geo.out_h {
            let rows = tile_rows.min(geo.out_h - oh_start);
            let tile_cols = rows * geo.out_w;
            columns.resize(n * tile_cols, T::ZERO);
            im2col_rows(
                &mut columns[..n * tile_cols],
                x_group,
                geo,
                oh_start,
                rows,
                inner_parallel && worth_parallel(n * tile_cols),
            );
            // rhs[p, j] = columns[j, p]
            unsafe {
                gemm_strided(
                    m,
                    n,
                    tile_cols,
                    dw_group.as_mut_ptr(),
                    (n as isize, 1),
                    accumulate,
                    dy_group.as_ptr().add(oh_start * geo.out_w),
                    (out_plane as isize, 1),
                    columns.as_ptr(),
                    (1, tile_cols as isize),
                    inner_parallel,
                );
            }
            accumulate = true;
            oh_start += rows;
        }
    }
    if !accumulate {
        // Empty batch or empty output: the gradient is zero, and gemm never ran.
        dw_group.fill(T::ZERO);
    }
}

/// Input gradient of one (batch, group), written to `dx_group`
/// (`[in_per_group, in_h, in_w]`).
fn input_grad_group<T: GradElement>(
    dx_group: &mut [T],
    w: &[T],
    dy: &[T],
    geo: &Conv2dGeometry,
    batch: usize,
    group: usize,
    inner_parallel: bool,
) {
    let m = geo.column_rows();
    let k = geo.out_per_group();
    let out_plane = geo.out_plane();
    let w_group = &w[group * k * m..][..k * m];
    let dy_group = &dy[(batch * geo.channels_out + group * k) * out_plane..][..k * out_plane];
    if geo.is_pointwise_identity() {
        // dX[ci, p] = sum_co W[co, ci] dY[co, p]
        unsafe {
            gemm_strided(
                m,
                out_plane,
                k,
                dx_group.as_mut_ptr(),
                (out_plane as isize, 1),
                false,
                w_group.as_ptr(),
                (1, m as isize),
                dy_group.as_ptr(),
                (out_plane as isize, 1),
                inner_parallel,
            );
        }
        return;
    }
    dx_group.fill(T::ZERO);
    let tile_rows = geo.tile_rows();
    let mut columns: Vec<T> = Vec::new();
    let mut oh_start = 0;
    while oh_start < geo.out_h {
        let rows = tile_rows.min(geo.out_h - oh_start);
        let tile_cols = rows * geo.out_w;
        columns.resize(m * tile_cols, T::ZERO);
        unsafe {
            gemm_strided(
                m,
                tile_cols,
                k,
                columns.as_mut_ptr(),
                (tile_cols as isize, 1),
                false,
                w_group.as_ptr(),
                (1, m as isize),
                dy_group.as_ptr().add(oh_start * geo.out_w),
                (out_plane as isize, 1),
                inner_parallel,
            );
        }
        col2im_rows(
            dx_group,
            &columns[..m * tile_cols],
            geo,
            oh_start,
            rows,
            inner_parallel && worth_parallel(m * tile_cols),
        );
        oh_start += rows;
    }
}

fn weight_backward_typed<T: GradElement>(
    x: &FlexTensor,
    weight_shape: &[usize],
    output_grad: &FlexTensor,
    options: &ConvOptions<2>,
) -> Vec<T> {
    let geo = Conv2dGeometry::new(
        x.layout().shape(),
        weight_shape,
        output_grad.layout().shape(),
        options,
    );
    let x: &[T] = x.storage();
    let dy: &[T] = output_grad.storage();
    let group_len = geo.out_per_group() * geo.column_rows();
    let mut dw = vec![T::ZERO; geo.channels_out * geo.column_rows()];
    // Groups write disjoint weight rows: run them concurrently when there are
    // several, otherwise let the single GEMM use the threads.
    let across_groups = geo.groups > 1 && worth_parallel(x.len());
    for_each_chunk(&mut dw, group_len, across_groups, |g, dw_group| {
        weight_grad_group(dw_group, x, dy, &geo, g, !across_groups);
    });
    dw
}

fn input_backward_typed<T: GradElement>(
    x_shape: &[usize],
    weight: &FlexTensor,
    output_grad: &FlexTensor,
    options: &ConvOptions<2>,
) -> Vec<T> {
    let geo = Conv2dGeometry::new(
        x_shape,
        weight.layout().shape(),
        output_grad.layout().shape(),
        options,
    );
    let w: &[T] = weight.storage();
    let dy: &[T] = output_grad.storage();
    let group_len = geo.in_per_group() * geo.in_plane();
    let mut dx = vec![T::ZERO; geo.batch * geo.channels_in * geo.in_plane()];
    let units = geo.batch * geo.groups;
    let across_units = units > 1 && worth_parallel(dx.len()) && {
        // One (batch, group) per thread only pays off when there are enough
        // of them; a single large image keeps its threads inside the GEMM.
        #[cfg(feature = "rayon")]
        {
            units >= rayon::current_num_threads()
        }
        #[cfg(not(feature = "rayon"))]
        {
            false
        }
    };
    for_each_chunk(&mut dx, group_len, across_units, |unit, dx_group| {
        input_grad_group(
            dx_group,
            w,
            dy,
            &geo,
            unit / geo.groups,
            unit % geo.groups,
            !across_units,
        );
    });
    dx
}

fn to_f32(tensor: &FlexTensor) -> FlexTensor {
    match tensor.dtype() {
        DType::F16 => super::module::cast_to_f32::<f16>(tensor.clone(), f16::to_f32),
        DType::BF16 => super::module::cast_to_f32::<bf16>(tensor.clone(), bf16::to_f32),
        _ => tensor.to_contiguous(),
    }
}

fn from_f32(tensor: FlexTensor, dtype: DType) -> FlexTensor {
    match dtype {
        DType::F16 => super::module::cast_from_f32::<f16>(tensor, f16::from_f32),
        DType::BF16 => super::module::cast_from_f32::<bf16>(tensor, bf16::from_f32),
        _ => tensor,
    }
}

fn dispatch<F32Fn, F64Fn>(dtype: DType, shape: Shape, f32_fn: F32Fn, f64_fn: F64Fn, what: &str) -> FlexTensor
where
    F32Fn: FnOnce() -> Vec<f32>,
    F64Fn: FnOnce() -> Vec<f64>,
{
    match dtype {
        DType::F64 => FlexTensor::new(
            Bytes::from_elems(f64_fn()),
            Layout::contiguous(shape),
            DType::F64,
        ),
        DType::F32 | DType::F16 | DType::BF16 => from_f32(
            FlexTensor::new(
                Bytes::from_elems(f32_fn()),
                Layout::contiguous(shape),
                DType::F32,
            ),
            dtype,
        ),
        other => panic!("{what}: unsupported dtype {other:?}"),
    }
}

/// Gradient of `conv2d(x, weight)` with respect to `weight`.
pub fn conv2d_weight_backward(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let dtype = weight.dtype();
    let weight_shape: Vec<usize> = weight.layout().shape().to_vec();
    let x = to_f32_or_f64(&x, dtype);
    let dy = to_f32_or_f64(&output_grad, dtype);
    dispatch(
        dtype,
        Shape::from(weight_shape.clone()),
        || weight_backward_typed::<f32>(&x, &weight_shape, &dy, options),
        || weight_backward_typed::<f64>(&x, &weight_shape, &dy, options),
        "conv2d_weight_backward",
    )
}

/// Gradient of `conv2d(x, weight)` with respect to `x`.
pub fn conv2d_x_backward(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let dtype = x.dtype();
    let x_shape: Vec<usize> = x.layout().shape().to_vec();
    drop(x);
    let w = to_f32_or_f64(&weight, dtype);
    let dy = to_f32_or_f64(&output_grad, dtype);
    dispatch(
        dtype,
        Shape::from(x_shape.clone()),
        || input_backward_typed::<f32>(&x_shape, &w, &dy, options),
        || input_backward_typed::<f64>(&x_shape, &w, &dy, options),
        "conv2d_x_backward",
    )
}

/// Gradient of `conv2d(x, weight, bias)` with respect to `bias`: the output
/// gradient summed over batch and space, read in place (the default
/// implementation first copies it into a channel-major layout).
pub fn conv2d_bias_backward(bias: FlexTensor, output_grad: FlexTensor) -> FlexTensor {
    let dtype = bias.dtype();
    let bias_shape = bias.layout().shape().clone();
    let dy = to_f32_or_f64(&output_grad, dtype);
    let dims = dy.layout().shape().to_vec();
    assert_eq!(dims.len(), 4, "conv2d_bias_backward: output grad must be rank 4");
    let (batch, channels, plane) = (dims[0], dims[1], dims[2] * dims[3]);
    assert_eq!(
        bias_shape.num_elements(),
        channels,
        "conv2d_bias_backward: bias size does not match output channels"
    );
    fn sum_channels<T: GradElement>(dy: &[T], batch: usize, channels: usize, plane: usize) -> Vec<T> {
        let mut sums = vec![T::ZERO; channels];
        for b in 0..batch {
            for (c, sum) in sums.iter_mut().enumerate() {
                let start = (b * channels + c) * plane;
                // Independent partial sums keep the reduction vectorisable.
                let mut lanes = [T::ZERO; 8];
                let chunks = dy[start..start + plane].chunks_exact(8);
                let tail = chunks.remainder();
                for chunk in chunks {
                    for (lane, &v) in lanes.iter_mut().zip(chunk) {
                        *lane += v;
                    }
                }
                let mut total = T::ZERO;
                for lane in lanes {
                    total += lane;
                }
                for &v in tail {
                    total += v;
                }
                *sum += total;
            }
        }
        sums
    }
    dispatch(
        dtype,
        bias_shape,
        || sum_channels::<f32>(dy.storage(), batch, channels, plane),
        || sum_channels::<f64>(dy.storage(), batch, channels, plane),
        "conv2d_bias_backward",
    )
}

/// Contiguous copy in the compute dtype: f64 stays f64, everything else is f32.
fn to_f32_or_f64(tensor: &FlexTensor, compute_for: DType) -> FlexTensor {
    match compute_for {
        DType::F64 => tensor.to_contiguous(),
        _ => to_f32(tensor),
    }
}

/// burn-backend 0.22.1's default conv2d backward algorithms, expressed with
/// flex's own ops. Kept as the reference for tests and for before/after
/// benchmarks (`BURN_FLEX_CONV_BACKWARD=generic`).
pub mod generic {
    use alloc::vec;
    use burn_backend::TensorMetadata;
    use burn_backend::ops::conv::{calculate_padding_out, pad_asymmetric_conv_input};
    use burn_backend::ops::{ConvOptions, ConvTransposeOptions, FloatTensorOps, ModuleOps};
    use burn_std::{Shape, Slice};

    use crate::{Flex, FlexTensor};

    /// burn-backend's `conv2d_weight_backward`: a convolution of the swapped
    /// input by the swapped output gradient.
    pub fn conv2d_weight_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let (x, options) = pad_asymmetric_conv_input::<Flex, 2>(x, options);
        let weight_shape = weight.shape();
        let [channels_out, in_per_group, kh, kw] = weight_shape.dims();
        let out_per_group = channels_out / options.groups;
        let x_swapped = Flex::float_swap_dims(x, 0, 1);
        let dy_swapped = Flex::float_swap_dims(output_grad, 0, 1);
        let mut weight_grad = Flex::float_zeros(weight_shape.clone(), &Default::default(), weight.dtype().into());
        for g in 0..options.groups {
            let x_g = Flex::float_slice(
                x_swapped.clone(),
                &[Slice::from(g * in_per_group..(g + 1) * in_per_group)],
            );
            let dy_g = Flex::float_slice(
                dy_swapped.clone(),
                &[Slice::from(g * out_per_group..(g + 1) * out_per_group)],
            );
            let grad = Flex::conv2d(
                x_g,
                dy_g,
                None,
                ConvOptions::new(options.dilation, options.padding_begin(), options.stride, 1),
            );
            let grad = Flex::float_swap_dims(grad, 0, 1);
            let grad = Flex::float_slice(
                grad,
                &[
                    Slice::from(0..out_per_group),
                    Slice::from(0..in_per_group),
                    Slice::from(0..kh),
                    Slice::from(0..kw),
                ],
            );
            weight_grad = Flex::float_slice_assign(
                weight_grad,
                &[
                    Slice::from(g * out_per_group..(g + 1) * out_per_group),
                    Slice::from(0..in_per_group),
                    Slice::from(0..kh),
                    Slice::from(0..kw),
                ],
                grad,
            );
        }
        weight_grad
    }

    /// burn-backend's `conv2d_x_backward`: a transposed convolution of the
    /// output gradient (on the explicitly padded input, then cropped, when
    /// the padding is asymmetric).
    pub fn conv2d_x_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let input_dims: [usize; 4] = x.shape().dims();
        let padding = options.padding;
        let asymmetric = options.is_asymmetric();
        let (x, options) = pad_asymmetric_conv_input::<Flex, 2>(x, options);
        let [_, _, in_h, in_w] = x.shape().dims();
        let [_, _, out_h, out_w] = output_grad.shape().dims();
        let [_, _, kh, kw] = weight.shape().dims();
        let begin = options.padding_begin();
        let pad_out = [
            calculate_padding_out(kh, options.stride[0], begin[0], options.dilation[0], in_h, out_h),
            calculate_padding_out(kw, options.stride[1], begin[1], options.dilation[1], in_w, out_w),
        ];
        let grad = Flex::conv_transpose2d(
            output_grad,
            weight,
            None,
            ConvTransposeOptions::new(options.stride, begin, pad_out, options.dilation, options.groups),
        );
        if !asymmetric {
            return grad;
        }
        let ranges = vec![
            Slice::from(0..input_dims[0]),
            Slice::from(0..input_dims[1]),
            Slice::from(padding[0].0..padding[0].0 + input_dims[2]),
            Slice::from(padding[1].0..padding[1].0 + input_dims[3]),
        ];
        Flex::float_slice(grad, &ranges)
    }

    /// burn-backend's `conv2d_bias_backward`: channel-major copy, then a sum.
    pub fn conv2d_bias_backward(bias: FlexTensor, output_grad: FlexTensor) -> FlexTensor {
        let [batch, channels, out_h, out_w] = output_grad.shape().dims();
        let grad = Flex::float_swap_dims(output_grad, 0, 1);
        let grad = Flex::float_reshape(grad, Shape::new([channels, batch * out_h * out_w]));
        let grad = Flex::float_sum_dim(grad, 1);
        Flex::float_reshape(grad, bias.shape())
    }
}

/// Whether `BURN_FLEX_CONV_BACKWARD=generic` asks for burn-backend's default
/// algorithms (read once), to measure the speedup in the same binary.
pub fn use_generic() -> bool {
    #[cfg(feature = "std")]
    {
        static GENERIC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *GENERIC.get_or_init(|| {
            std::env::var("BURN_FLEX_CONV_BACKWARD").is_ok_and(|v| v.eq_ignore_ascii_case("generic"))
        })
    }
    #[cfg(not(feature = "std"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use burn_backend::ops::ModuleOps;

    use crate::Flex;

    /// One conv2d configuration: input `[batch, c_in, h, w]`, weight
    /// `[c_out, c_in / groups, kh, kw]`.
    #[derive(Clone, Copy, Debug)]
    struct Case {
        batch: usize,
        c_in: usize,
        c_out: usize,
        h: usize,
        w: usize,
        kh: usize,
        kw: usize,
        stride: [usize; 2],
        padding: [(usize, usize); 2],
        dilation: [usize; 2],
        groups: usize,
    }

    impl Case {
        fn options(&self) -> ConvOptions<2> {
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

    fn cases() -> Vec<(&'static str, Case)> {
        let pad = |p: usize| [(p, p), (p, p)];
        vec![
            ("3x3 stride 1 pad 1", Case { padding: pad(1), ..base(4, 6, 9, 11, 3) }),
            ("3x3 stride 2 pad 1", Case { stride: [2, 2], padding: pad(1), ..base(5, 7, 13, 10, 3) }),
            ("3x3 dilation 2 pad 2", Case { dilation: [2, 2], padding: pad(2), ..base(3, 5, 12, 9, 3) }),
            ("3x3 groups 2", Case { groups: 2, padding: pad(1), ..base(4, 6, 8, 8, 3) }),
            ("1x1 pointwise", base(8, 16, 7, 9, 1)),
            ("1x1 stride 2", Case { stride: [2, 2], ..base(8, 12, 9, 8, 1) }),
            ("7x7 stride 2 pad 3 stem", Case { stride: [2, 2], padding: pad(3), ..base(3, 8, 19, 17, 7) }),
            (
                "asymmetric pad stride 2",
                Case { stride: [2, 2], padding: [(1, 2), (0, 1)], ..base(4, 6, 10, 11, 3) },
            ),
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
    fn random_values(len: usize, seed: u64) -> Vec<f64> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    fn tensor_f32(values: &[f64], dims: &[usize]) -> FlexTensor {
        let data: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(Shape::from(dims.to_vec())), DType::F32)
    }

    fn tensor_f64(values: &[f64], dims: &[usize]) -> FlexTensor {
        FlexTensor::new(
            Bytes::from_elems(values.to_vec()),
            Layout::contiguous(Shape::from(dims.to_vec())),
            DType::F64,
        )
    }

    fn values_of(tensor: &FlexTensor) -> Vec<f64> {
        let tensor = tensor.to_contiguous();
        match tensor.dtype() {
            DType::F32 => tensor.storage::<f32>().iter().map(|&v| v as f64).collect(),
            DType::F64 => tensor.storage::<f64>().to_vec(),
            DType::F16 => tensor.storage::<f16>().iter().map(|v| v.to_f64()).collect(),
            DType::BF16 => tensor.storage::<bf16>().iter().map(|v| v.to_f64()).collect(),
            other => panic!("unexpected dtype {other:?}"),
        }
    }

    struct Data {
        x: Vec<f64>,
        w: Vec<f64>,
        dy: Vec<f64>,
        x_dims: [usize; 4],
        w_dims: [usize; 4],
        dy_dims: [usize; 4],
    }

    fn data(case: &Case, seed: u64) -> Data {
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

    /// Direct-loop gradients in f64: (dX, dW), straight from the definition
    /// y[n, co, oh, ow] = sum w[co, ci, kh, kw] * x[n, g*cg + ci, oh*s + kh*d - pb, ow*s + kw*d - pb].
    fn naive_grads(case: &Case, d: &Data) -> (Vec<f64>, Vec<f64>) {
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
                                let ih = (oh * case.stride[0] + kh * case.dilation[0]) as isize
                                    - case.padding[0].0 as isize;
                                if ih < 0 || ih >= h as isize {
                                    continue;
                                }
                                for kw in 0..kw_n {
                                    let iw = (ow * case.stride[1] + kw * case.dilation[1]) as isize
                                        - case.padding[1].0 as isize;
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

    /// Every element within `tol` of the reference, relative to
    /// max(|reference element|, RMS of the reference).
    fn assert_close(name: &str, what: &str, actual: &[f64], expected: &[f64], tol: f64) {
        assert_eq!(actual.len(), expected.len(), "{name}: {what} length");
        let rms = (expected.iter().map(|v| v * v).sum::<f64>() / expected.len().max(1) as f64).sqrt();
        assert!(rms > 0.0, "{name}: {what} reference is all zero, test is vacuous");
        let mut worst = 0.0f64;
        for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
            let rel = (a - e).abs() / e.abs().max(rms);
            assert!(rel <= tol, "{name}: {what}[{i}] = {a}, expected {e} (relative error {rel:e})");
            worst = worst.max(rel);
        }
        std::println!("{name}: {what} worst relative error {worst:e}");
    }

    #[test]
    fn f32_gradients_match_direct_loops_and_generic_defaults() {
        for (i, (name, case)) in cases().into_iter().enumerate() {
            let d = data(&case, 17 + i as u64);
            let (dx_ref, dw_ref) = naive_grads(&case, &d);
            let x = tensor_f32(&d.x, &d.x_dims);
            let w = tensor_f32(&d.w, &d.w_dims);
            let dy = tensor_f32(&d.dy, &d.dy_dims);

            let dw = conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), &case.options());
            assert_eq!(dw.layout().shape().to_vec(), d.w_dims.to_vec(), "{name}: dW shape");
            assert_close(name, "dW", &values_of(&dw), &dw_ref, 1e-4);
            let dx = conv2d_x_backward(x.clone(), w.clone(), dy.clone(), &case.options());
            assert_eq!(dx.layout().shape().to_vec(), d.x_dims.to_vec(), "{name}: dX shape");
            assert_close(name, "dX", &values_of(&dx), &dx_ref, 1e-4);

            // The generic defaults (what flex ran before) agree with both.
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
            let x = tensor_f64(&d.x, &d.x_dims);
            let w = tensor_f64(&d.w, &d.w_dims);
            let dy = tensor_f64(&d.dy, &d.dy_dims);
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
            let cast = |v: &[f64], dims: &[usize]| {
                let t = tensor_f32(v, dims);
                match dtype {
                    DType::F16 => super::super::module::cast_from_f32::<f16>(t, f16::from_f32),
                    _ => super::super::module::cast_from_f32::<bf16>(t, bf16::from_f32),
                }
            };
            let (x, w, dy) = (cast(&d.x, &d.x_dims), cast(&d.w, &d.w_dims), cast(&d.dy, &d.dy_dims));
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
            tensor_f32(&t, &[n, c, w, h]).transpose(2, 3)
        };
        let x = swapped(&d.x, d.x_dims);
        let dy = swapped(&d.dy, d.dy_dims);
        assert!(!x.is_contiguous());
        let w = tensor_f32(&d.w, &d.w_dims);
        let dw = conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), &case.options());
        assert_close(name, "strided dW", &values_of(&dw), &dw_ref, 1e-4);
        let dx = conv2d_x_backward(x, w, dy, &case.options());
        assert_close(name, "strided dX", &values_of(&dx), &dx_ref, 1e-4);
    }

    #[test]
    fn bias_gradient_sums_batch_and_space() {
        let dims = [2, 5, 7, 9];
        let dy_values = random_values(dims.iter().product(), 3);
        let mut expected = vec![0.0; 5];
        for (i, v) in dy_values.iter().enumerate() {
            expected[(i / 63) % 5] += v;
        }
        let dy = tensor_f32(&dy_values, &dims);
        let bias = tensor_f32(&[0.0; 5], &[5]);
        let grad = conv2d_bias_backward(bias.clone(), dy.clone());
        assert_eq!(grad.layout().shape().to_vec(), vec![5]);
        assert_close("bias", "db", &values_of(&grad), &expected, 1e-5);
        let generic = generic::conv2d_bias_backward(bias, dy);
        assert_close("bias", "generic db", &values_of(&generic), &expected, 1e-5);
    }

    #[test]
    fn module_ops_dispatch_to_the_gemm_kernels() {
        let (name, case) = cases().swap_remove(3);
        let d = data(&case, 77);
        let (dx_ref, dw_ref) = naive_grads(&case, &d);
        let x = tensor_f32(&d.x, &d.x_dims);
        let w = tensor_f32(&d.w, &d.w_dims);
        let dy = tensor_f32(&d.dy, &d.dy_dims);
        let dw = Flex::conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), case.options());
        assert_close(name, "ModuleOps dW", &values_of(&dw), &dw_ref, 1e-4);
        let dx = Flex::conv2d_x_backward(x, w, dy, case.options());
        assert_close(name, "ModuleOps dX", &values_of(&dx), &dx_ref, 1e-4);
    }
}
