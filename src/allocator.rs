//! The process allocator of the `maskrcnn` binary and the benchmarks: mimalloc, with its purge
//! delay raised.
//!
//! glibc's malloc serves every block above its mmap threshold (32 MB at most) with a fresh mmap
//! and unmaps it on free, so each training step and each large image faulted its activations in
//! again (system time was a fifth of a training run). mimalloc reuses freed segments, but by
//! default gives their pages back after 10 ms, which a layer-by-layer forward pass outlasts, so
//! the faults came back (`perf`: 15% of a prediction in the kernel's page clearing). Keeping freed
//! memory for [`PURGE_DELAY_MS`] removes them (prediction system time 2.5 s -> 0.5 s for five
//! images) while idle memory still returns to the system.
//!
//! mimalloc is C, built from its bundled sources by cc: there is no pure-Rust general-purpose
//! allocator of comparable maturity.

use std::ffi::{c_int, c_long};

/// The allocator type to put behind `#[global_allocator]`.
pub type Allocator = mimalloc::MiMalloc;

/// How long freed memory stays mapped before mimalloc returns it to the system.
pub const PURGE_DELAY_MS: c_long = 5_000;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (include/mimalloc.h of the bundled v3
/// sources; libmimalloc-sys lists `mi_option_use_numa_nodes`, the next one, as 16).
const MI_OPTION_PURGE_DELAY: c_int = 15;

extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
}

/// Sets the allocator's options; call first thing in `main`.
pub fn configure() {
    // SAFETY: mi_option_set only stores the value; the option id is mimalloc's own constant.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}
