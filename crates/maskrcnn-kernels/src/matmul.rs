//! The GEMM call and the parallelism policy shared by the gradient kernels.

use crate::element::GradElement;

/// Work (m * n * k) above which a single GEMM is worth splitting across rayon threads; the
/// threshold burn-flex uses for its forward convolution.
const GEMM_PARALLEL_WORK: usize = 192 * 192 * 192;

/// Elements below which rayon's dispatch costs more than it saves: a quarter of burn-flex's
/// (crate-private) `PARALLEL_THRESHOLD` of 256 Ki, since im2col/col2im do more work per element
/// than flex's elementwise ops.
const PARALLEL_ELEMENTS: usize = 256 * 1024 / 4;

/// `dst[m, n] (+)= lhs[m, k] * rhs[k, n]` with arbitrary element strides, each given as
/// (row stride, column stride).
///
/// # Safety
/// Every pointer must be valid for the elements its shape and strides address, and `dst` must
/// not overlap `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_strided<T: GradElement>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    dst_strides: (isize, isize),
    accumulate: bool,
    lhs: *const T,
    lhs_strides: (isize, isize),
    rhs: *const T,
    rhs_strides: (isize, isize),
    allow_parallel: bool,
) {
    let parallelism = if allow_parallel && m.saturating_mul(n).saturating_mul(k) >= GEMM_PARALLEL_WORK {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // gemm takes (column stride, row stride) pairs.
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

/// Runs `f(index, chunk)` over `data.chunks_mut(chunk_len)`, on rayon when `parallel`.
pub(crate) fn for_each_chunk<T: Send, F>(data: &mut [T], chunk_len: usize, parallel: bool, f: F)
where
    F: Fn(usize, &mut [T]) + Send + Sync,
{
    if chunk_len == 0 {
        return;
    }
    if parallel && data.len() > chunk_len {
        use rayon::prelude::*;
        data.par_chunks_mut(chunk_len).enumerate().for_each(|(i, chunk)| f(i, chunk));
        return;
    }
    for (i, chunk) in data.chunks_mut(chunk_len).enumerate() {
        f(i, chunk);
    }
}

/// Whether a loop over `elements` elements is worth running on rayon.
pub(crate) fn worth_parallel(elements: usize) -> bool {
    elements >= PARALLEL_ELEMENTS && rayon::current_num_threads() > 1
}
