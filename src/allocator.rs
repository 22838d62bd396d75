//! The process allocator of the `maskrcnn` binary and the benchmarks: mimalloc, with its purge
//! delay raised and purges that reset instead of decommitting.
//!
//! glibc's malloc serves every block above its mmap threshold (32 MB at most) with a fresh mmap
//! and unmaps it on free, so each training step and each large image faulted its activations in
//! again (system time was a fifth of a training run). mimalloc reuses freed segments, but by
//! default gives their pages back after 10 ms, which a layer-by-layer forward pass outlasts, so
//! the faults came back (`perf`: 15% of a prediction in the kernel's page clearing). Keeping freed
//! memory for [`PURGE_DELAY_MS`] removes most of them (prediction system time 2.5 s -> 0.5 s for
//! five images). The delay is wall time, and on a loaded machine a training step's backward pass
//! still outlasted it: with purges that decommit (`MADV_DONTNEED`) `perf` found 17% of an R18
//! training step in `clear_page_erms` (transparent huge pages zeroed on every re-fault). Purging
//! with `MADV_FREE` instead ([`MI_OPTION_PURGE_DECOMMITS`] = 0) hands the pages to the kernel to
//! take when it needs memory, and a page it has not taken is reused without a fault: R18 training
//! process system time 8.1 s -> 4.6 s for three steps (the rest is first touch), while idle memory
//! still returns to the system under pressure (it stays counted in RSS until the kernel takes it).
//!
//! `MIMALLOC_PURGE_DELAY` / `MIMALLOC_PURGE_DECOMMITS` in the environment override these choices,
//! so they can be measured without a rebuild.
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

/// `mi_option_purge_decommits` (same enum): 1 purges with `MADV_DONTNEED`, 0 with `MADV_FREE`.
const MI_OPTION_PURGE_DECOMMITS: c_int = 5;

extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
}

/// Sets the allocator's options; call first thing in `main`. An option named in the environment
/// wins (mimalloc reads it itself when it was not set here).
pub fn configure() {
    for (option, name, value) in [
        (MI_OPTION_PURGE_DELAY, "MIMALLOC_PURGE_DELAY", PURGE_DELAY_MS),
        (MI_OPTION_PURGE_DECOMMITS, "MIMALLOC_PURGE_DECOMMITS", 0),
    ] {
        if std::env::var_os(name).is_none() {
            // SAFETY: mi_option_set only stores the value; the option ids are mimalloc's own constants.
            unsafe { mi_option_set(option, value) };
        }
    }
}
