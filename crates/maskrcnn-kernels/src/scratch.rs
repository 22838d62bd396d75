//! Per-thread scratch memory that outlives a kernel call.
//!
//! The column tiles and Winograd blocks are megabytes; allocating them per call (per tile, per
//! layer, per step) meant an mmap, a page-fault storm on first touch and an munmap every time:
//! most of a training run's system time. A thread keeps its largest buffer and hands it out again,
//! without zeroing (every kernel writes all the elements it later reads).

use std::cell::RefCell;

thread_local! {
    // u64 words: aligned for every element type the kernels use (f32, f64).
    static SCRATCH: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a slice of `len` elements of this thread's scratch memory, contents unspecified.
///
/// Re-entrant: if the thread is already inside `with_scratch` (rayon can run a stolen job that
/// calls a kernel while this thread waits inside a parallel GEMM), the inner call gets a fresh
/// buffer instead of panicking.
pub(crate) fn with_scratch<T: bytemuck::Pod, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    assert!(std::mem::align_of::<T>() <= std::mem::align_of::<u64>(), "scratch: element alignment above 8");
    let words = (len * std::mem::size_of::<T>()).div_ceil(std::mem::size_of::<u64>());
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => {
            if buffer.len() < words {
                // Only the growth is written (resize), once per thread and size class.
                buffer.resize(words, 0);
            }
            let slice: &mut [T] = &mut bytemuck::cast_slice_mut(&mut buffer[..words])[..len];
            f(slice)
        }
        Err(_) => {
            let mut buffer = vec![0u64; words];
            let slice: &mut [T] = &mut bytemuck::cast_slice_mut(&mut buffer[..])[..len];
            f(slice)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::with_scratch;

    #[test]
    fn nested_calls_get_distinct_buffers() {
        with_scratch::<f32, _>(16, |outer| {
            outer.fill(1.0);
            with_scratch::<f32, _>(16, |inner| inner.fill(2.0));
            assert!(outer.iter().all(|&v| v == 1.0), "inner scratch aliased the outer one");
        });
    }

    #[test]
    fn memory_is_reused_across_calls() {
        let first = with_scratch::<f64, _>(1000, |s| s.as_ptr() as usize);
        let second = with_scratch::<f32, _>(500, |s| s.as_ptr() as usize);
        assert_eq!(first, second, "a smaller request should reuse the thread's buffer");
    }
}
