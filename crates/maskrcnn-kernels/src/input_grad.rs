//! Input gradient: per (batch, group), `dcol_g[(ci,kh,kw), p] = W_g[co, (ci,kh,kw)]ᵀ · dY_g[co, p]`
//! into a column tile, then col2im scatter-adds the tile onto `dX` (a pointwise conv writes the
//! GEMM straight into the gradient).

use burn::tensor::ops::ConvOptions;
use burn::tensor::Shape;
use burn_flex::FlexTensor;

use crate::columns::col2im_rows;
use crate::element::{run_typed, to_compute_dtype, GradElement};
use crate::geometry::Conv2dGeometry;
use crate::matmul::{for_each_chunk, gemm_strided, worth_parallel};
use crate::scratch::with_scratch;

/// Input gradient of one (batch, group), written to `dx_group` (`[in_per_group, in_h, in_w]`).
fn input_grad_group<T: GradElement>(
    dx_group: &mut [T],
    w: &[T],
    dy: &[T],
    geo: &Conv2dGeometry,
    (batch, group): (usize, usize),
    inner_parallel: bool,
) {
    let m = geo.column_rows();
    let k = geo.out_per_group();
    let out_plane = geo.out_plane();
    let w_group = &w[group * k * m..][..k * m];
    let dy_group = &dy[(batch * geo.channels_out + group * k) * out_plane..][..k * out_plane];
    if geo.is_pointwise_identity() {
        // dX[ci, p] = sum_co W[co, ci] dY[co, p].
        // SAFETY: dx_group is [m, out_plane]; w_group [k, m] read transposed; dy_group [k, out_plane].
        unsafe {
            gemm_strided(
                (m, out_plane, k),
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
    // Per-thread scratch reused across calls (see weight_grad.rs); the GEMM overwrites each tile.
    with_scratch::<T, _>(m * tile_rows * geo.out_w, |scratch| {
        let mut oh_start = 0;
        while oh_start < geo.out_h {
            let rows = tile_rows.min(geo.out_h - oh_start);
            let tile_cols = rows * geo.out_w;
            let columns = &mut scratch[..m * tile_cols];
            // SAFETY: columns is [m, tile_cols]; w_group [k, m] read transposed; the dy tile starts
            // at row oh_start of each plane and spans tile_cols columns with row stride out_plane.
            unsafe {
                gemm_strided(
                    (m, tile_cols, k),
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
            col2im_rows(dx_group, columns, geo, oh_start, rows, inner_parallel && worth_parallel(m * tile_cols));
            oh_start += rows;
        }
    });
}

fn input_grad_typed<T: GradElement>(
    x_shape: &[usize],
    weight: &FlexTensor,
    output_grad: &FlexTensor,
    options: &ConvOptions<2>,
) -> Vec<T> {
    let geo = Conv2dGeometry::new(x_shape, weight.layout().shape(), output_grad.layout().shape(), options);
    let w: &[T] = weight.storage();
    let dy: &[T] = output_grad.storage();
    let group_len = geo.in_per_group() * geo.in_plane();
    let mut dx = vec![T::ZERO; geo.batch * geo.channels_in * geo.in_plane()];
    let units = geo.batch * geo.groups;
    // One (batch, group) per thread only pays off when there are enough of them; a single large
    // image keeps its threads inside the GEMM.
    let across_units = units > 1 && worth_parallel(dx.len()) && units >= rayon::current_num_threads();
    for_each_chunk(&mut dx, group_len, across_units, |unit, dx_group| {
        input_grad_group(dx_group, w, dy, &geo, (unit / geo.groups, unit % geo.groups), !across_units);
    });
    dx
}

/// Gradient of `conv2d(x, weight)` with respect to `x`, in `x`'s dtype (only `x`'s shape is read).
///
/// Any strides, dilation, groups and symmetric or asymmetric padding; inputs may be
/// non-contiguous.
pub fn conv2d_x_backward(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let dtype = x.dtype();
    let x_shape: Vec<usize> = x.layout().shape().to_vec();
    drop(x);
    let w = to_compute_dtype(&weight, dtype);
    let dy = to_compute_dtype(&output_grad, dtype);
    run_typed(
        dtype,
        Shape::from(x_shape.clone()),
        || input_grad_typed::<f32>(&x_shape, &w, &dy, options),
        || input_grad_typed::<f64>(&x_shape, &w, &dy, options),
        "conv2d_x_backward",
    )
}
