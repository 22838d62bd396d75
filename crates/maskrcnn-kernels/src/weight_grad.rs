//! Weight gradient: per group, summed over the batch,
//! `dW_g[co, (ci,kh,kw)] += dY_g[co, p] · col_g[(ci,kh,kw), p]ᵀ`.
//!
//! burn-backend's default computes this as a forward convolution of the input (batch and channels
//! swapped) by the output gradient used as the kernel, which on flex is one matrix-vector-shaped
//! GEMM per input channel with the whole feature map as the reduction.

use burn::tensor::ops::ConvOptions;
use burn::tensor::Shape;
use burn_flex::FlexTensor;

use crate::columns::im2col_rows;
use crate::element::{run_typed, to_compute_dtype, GradElement};
use crate::geometry::Conv2dGeometry;
use crate::matmul::{for_each_chunk, gemm_strided, worth_parallel};
use crate::scratch::with_scratch;

/// Weight gradient of one group, summed over the batch, written to `dw_group`
/// (`[out_per_group, column_rows]`, row-major).
fn weight_grad_group<T: GradElement>(
    dw_group: &mut [T],
    x: &[T],
    dy: &[T],
    geo: &Conv2dGeometry,
    group: usize,
    inner_parallel: bool,
) {
    let n = geo.column_rows();
    let tile_rows = geo.tile_rows();
    // Per-thread scratch, reused across layers and steps (a fresh column buffer per call was an
    // mmap + page faults + munmap of up to 8 MB each time).
    let scratch_len = if geo.is_pointwise_identity() { 0 } else { n * tile_rows * geo.out_w };
    with_scratch::<T, _>(scratch_len, |scratch| {
        weight_grad_tiles(dw_group, x, dy, geo, group, inner_parallel, scratch)
    });
}

/// [`weight_grad_group`] with `scratch` for the column tiles.
fn weight_grad_tiles<T: GradElement>(
    dw_group: &mut [T],
    x: &[T],
    dy: &[T],
    geo: &Conv2dGeometry,
    group: usize,
    inner_parallel: bool,
    scratch: &mut [T],
) {
    let m = geo.out_per_group();
    let n = geo.column_rows();
    let out_plane = geo.out_plane();
    let tile_rows = geo.tile_rows();
    // The first GEMM overwrites, later ones (other batch items, other tiles) accumulate in place.
    let mut accumulate = false;
    for b in 0..geo.batch {
        let x_group = &x[(b * geo.channels_in + group * geo.in_per_group()) * geo.in_plane()..]
            [..geo.in_per_group() * geo.in_plane()];
        let dy_group = &dy[(b * geo.channels_out + group * m) * out_plane..][..m * out_plane];
        if geo.is_pointwise_identity() {
            // SAFETY: dw_group is [m, n]; dy_group is [m, out_plane]; x_group read transposed as
            // [out_plane, n] (n == in_per_group here); all bounds follow from the slices above.
            unsafe {
                gemm_strided(
                    (m, n, out_plane),
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
            let columns = &mut scratch[..n * tile_cols];
            im2col_rows(columns, x_group, geo, oh_start, rows, inner_parallel && worth_parallel(n * tile_cols));
            // SAFETY: columns holds [n, tile_cols], read transposed as [tile_cols, n]; the dy
            // tile starts at row oh_start of each [out_h, out_w] plane and spans tile_cols
            // columns with row stride out_plane, inside dy_group.
            unsafe {
                gemm_strided(
                    (m, n, tile_cols),
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

fn weight_grad_typed<T: GradElement>(
    x: &FlexTensor,
    weight_shape: &[usize],
    output_grad: &FlexTensor,
    options: &ConvOptions<2>,
) -> Vec<T> {
    let geo = Conv2dGeometry::new(x.layout().shape(), weight_shape, output_grad.layout().shape(), options);
    let x: &[T] = x.storage();
    let dy: &[T] = output_grad.storage();
    let group_len = geo.out_per_group() * geo.column_rows();
    let mut dw = vec![T::ZERO; geo.channels_out * geo.column_rows()];
    // Groups write disjoint weight rows: run them concurrently when there are several, otherwise
    // let the single GEMM use the threads.
    let across_groups = geo.groups > 1 && worth_parallel(x.len());
    for_each_chunk(&mut dw, group_len, across_groups, |g, dw_group| {
        weight_grad_group(dw_group, x, dy, &geo, g, !across_groups);
    });
    dw
}

/// Gradient of `conv2d(x, weight)` with respect to `weight`, in `weight`'s dtype.
///
/// Any strides, dilation, groups and symmetric or asymmetric padding; inputs may be
/// non-contiguous. Column tiles are whole output rows of at most 2M elements.
pub fn conv2d_weight_backward(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let dtype = weight.dtype();
    let weight_shape: Vec<usize> = weight.layout().shape().to_vec();
    drop(weight);
    let x = to_compute_dtype(&x, dtype);
    let dy = to_compute_dtype(&output_grad, dtype);
    run_typed(
        dtype,
        Shape::from(weight_shape.clone()),
        || weight_grad_typed::<f32>(&x, &weight_shape, &dy, options),
        || weight_grad_typed::<f64>(&x, &weight_shape, &dy, options),
        "conv2d_weight_backward",
    )
}
