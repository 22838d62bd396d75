//! Process CPU and wall time of single training steps on real COCO-format data, the same step the
//! trainer takes (forward, backward, clip, AdamW on host copies, running batch-norm statistics).
//! Driven by `tools/bench/side_by_side.py`, which times torchvision's step the same way.
//!
//! usage: train_step_bench <depth> <annotations.json> <image_dir> <size> <batch> <steps> [warmup]
//!
//! From scratch, all five stages trainable, trainable batch norm (`--norm batch`, torchvision's
//! choice with `weights=None`), AdamW (0.9, 0.99, weight decay 0.01, eps 1e-5), lr 1e-4, clip 10,
//! min_size = max_size = size, images `warmup * batch ..` in file order. Prints one JSON object:
//! `{"depth", "size", "batch", "threads", "allocator", "steps": [{"cpu_s", "wall_s", "loss"}], "peak_rss_kb"}`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::Device;
use maskrcnn::config::{MaskRcnnConfig, NormKind};
use maskrcnn::train::optim::{clip_gradients, OptimizerConfig, OptimizerKind, OptimizerState};
use maskrcnn::train::params::{freeze_layers, gradients_by_name, parameter_values, set_parameters};
use maskrcnn::train::trainer::{load_example, step_rng};
use maskrcnn::train::RandomSampler;
use maskrcnn::MaskRcnn;
use maskrcnn_data::coco::CocoDataset;
use maskrcnn_data::Dataset;

/// The `maskrcnn` binary's allocator (mimalloc, `maskrcnn::allocator`), or glibc's with `MASKRCNN_BENCH_ALLOC=system`, so
/// one build measures both.
struct BenchAllocator;

static ALLOCATOR_CHOICE: AtomicU8 = AtomicU8::new(0);

extern "C" {
    fn getenv(name: *const std::ffi::c_char) -> *const std::ffi::c_char;
}

impl BenchAllocator {
    fn system() -> bool {
        match ALLOCATOR_CHOICE.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => {
                // getenv does not allocate; concurrent first calls compute the same answer.
                // SAFETY: a NUL-terminated name; the result is read only when not null.
                let v = unsafe { getenv(c"MASKRCNN_BENCH_ALLOC".as_ptr()) };
                let system = !v.is_null() && unsafe { *v } as u8 == b's';
                ALLOCATOR_CHOICE.store(if system { 1 } else { 2 }, Ordering::Relaxed);
                system
            }
        }
    }
}

// SAFETY: forwards to one of two allocators, the same one for the whole process.
unsafe impl GlobalAlloc for BenchAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::system() {
            unsafe { System.alloc(layout) }
        } else {
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::system() {
            unsafe { System.dealloc(ptr, layout) }
        } else {
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::system() {
            unsafe { System.alloc_zeroed(layout) }
        } else {
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Self::system() {
            unsafe { System.realloc(ptr, layout, new_size) }
        } else {
            unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
        }
    }
}

#[global_allocator]
static ALLOCATOR: BenchAllocator = BenchAllocator;

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

extern "C" {
    fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
}

/// CPU time of the whole process (all threads), as Python's `time.process_time()`.
fn cpu_seconds() -> f64 {
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut ts = Timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the struct we pass; the clock id is Linux's constant.
    let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<()> {
    if !BenchAllocator::system() {
        maskrcnn::allocator::configure();
    }
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 7,
        "usage: train_step_bench <depth> <annotations.json> <image_dir> <size> <batch> <steps> [warmup]"
    );
    let parse = |i: usize, what: &str| -> Result<usize> {
        args[i].parse().with_context(|| format!("{what} {:?}: not a whole number", args[i]))
    };
    let depth = parse(1, "depth")?;
    let (size, batch, steps) = (parse(4, "size")?, parse(5, "batch")?, parse(6, "steps")?);
    let warmup = if args.len() > 7 { parse(7, "warmup")? } else { 1 };
    let dataset = CocoDataset::open(Path::new(&args[2]), Path::new(&args[3]))?;
    let needed = (warmup + steps) * batch;
    anyhow::ensure!(dataset.len() >= needed, "{}: {} images, {needed} needed", args[2], dataset.len());

    let device = Device::flex().autodiff();
    // The same initial weights in every process (torchvision's side calls torch.manual_seed(0)): unseeded, the
    // proposals, sampled RoIs and so the cost of a step differed from process to process.
    device.seed(0);
    let mut config = MaskRcnnConfig::for_classes(depth, dataset.class_names(), 3, 5);
    config.backbone.norm = NormKind::Batch;
    config.transform.min_size = size;
    config.transform.max_size = size;
    let mut model = MaskRcnn::new(config, &device)?;
    freeze_layers(&mut model.net, 5);
    let optimizer = OptimizerConfig::defaults(OptimizerKind::Adamw);
    let mut state = OptimizerState::default();

    let mut records = Vec::new();
    for step in 0..warmup + steps {
        let mut images = Vec::with_capacity(batch);
        let mut targets = Vec::with_capacity(batch);
        for i in step * batch..(step + 1) * batch {
            let ex = load_example(&dataset, i, 0, 0, None, 255.0, 3)?;
            images.push(ex.image);
            targets.push(ex.target);
        }
        let (cpu0, wall0) = (cpu_seconds(), Instant::now());
        let mut rng = step_rng(0, step);
        let losses = model.forward_train(&images, &targets, &mut RandomSampler { rng: &mut rng })?;
        let loss: f32 = losses.values().iter().sum();
        let grads = losses.total().backward();
        let mut g = gradients_by_name(&mut model.net, &grads);
        drop(grads);
        clip_gradients(&mut g, 10.0);
        let mut params = parameter_values(&mut model.net, Some(&|n: &str| g.contains_key(n)));
        state.step(&optimizer, 1e-4, &mut params, &g);
        set_parameters(&mut model.net, &params, &device);
        if !losses.batch_norm_stats.is_empty() {
            model.net.backbone.body.update_running_stats(&losses.batch_norm_stats)?;
        }
        let (cpu, wall) = (cpu_seconds() - cpu0, wall0.elapsed().as_secs_f64());
        eprintln!("step {step}: {cpu:.3} CPU-s, {wall:.3} s wall, loss {loss:.4}");
        if step >= warmup {
            records.push(serde_json::json!({"cpu_s": cpu, "wall_s": wall, "loss": loss}));
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "depth": depth, "size": size, "batch": batch, "threads": rayon::current_num_threads(),
            "allocator": if BenchAllocator::system() { "glibc" } else { "mimalloc" },
            "steps": records, "peak_rss_kb": peak_rss_kb(),
        })
    );
    Ok(())
}
