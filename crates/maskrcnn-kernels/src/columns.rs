//! NCHW im2col/col2im over tiles of whole output rows.
//!
//! The column matrix of one (batch, group) is `[(ci, kh, kw), (oh, ow)]`, row-major: the same
//! order as the weight's `[co, (ci, kh, kw)]` and the output gradient's `[co, (oh, ow)]`, so
//! neither the input nor the output gradient is ever re-laid out.

use crate::element::GradElement;
use crate::geometry::Conv2dGeometry;
use crate::matmul::for_each_chunk;

/// Fills `columns` (`[column_rows, rows * out_w]`, row-major) with the input taps of output rows
/// `oh_start..oh_start + rows` for one (batch, group); taps in the padding read as zero.
pub(crate) fn im2col_rows<T: GradElement>(
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
        let iw_first = geo.first_input_col(ow_start, kw);
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

/// Scatter-adds `columns` (same layout as [`im2col_rows`]) onto the input-gradient planes of one
/// (batch, group); taps in the padding are dropped.
pub(crate) fn col2im_rows<T: GradElement>(
    dx_group: &mut [T],
    columns: &[T],
    geo: &Conv2dGeometry,
    oh_start: usize,
    rows: usize,
    parallel: bool,
) {
    let tile_cols = rows * geo.out_w;
    let taps = geo.kernel_taps();
    // Each input channel owns its plane, so channels can run concurrently without write conflicts.
    for_each_chunk(dx_group, geo.in_plane(), parallel, |ci, plane| {
        for tap in 0..taps {
            let kh = tap / geo.kernel_w;
            let kw = tap % geo.kernel_w;
            let (ow_start, ow_end) = geo.valid_out_cols(kw);
            if ow_start == ow_end {
                continue;
            }
            let iw_first = geo.first_input_col(ow_start, kw);
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
