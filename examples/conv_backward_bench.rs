//! Times a ResNet-50 body (conv1 .. layer4, frozen batch norm) at batch 1 on the flex backend:
//! forward alone (plain device) and forward + backward of `sum(layer4)` w.r.t. every conv weight
//! (autodiff device). Companion of `bench/conv_backward_bench.py`, which times torchvision the same
//! way; `bench/run_conv_backward_bench.sh` runs both and `bench/conv_backward.md` has the figures.
//!
//! Usage: conv_backward_bench [SIZE=512] [RUNS=5]
//! Threads: RAYON_NUM_THREADS. `BURN_FLEX_CONV_BACKWARD=generic` selects burn-backend's default
//! conv2d backward (what flex 0.22.1 shipped) instead of the patched GEMM kernels.
//! Prints one line: `flex <backward> threads=<t> size=<s> forward_median_s=<f> fwd_bwd_median_s=<b>
//! forward_cpu_median_s=.. fwd_bwd_cpu_median_s=.. ...` (wall and process-CPU medians).

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use maskrcnn::backbone::resnet::ResNet;

/// CPU time of all threads of this process so far, in seconds (Linux: per-thread schedstat).
/// Under load from other processes, single-thread CPU time tracks the work done much more
/// steadily than wall time; `None` where /proc is unavailable.
fn process_cpu_seconds() -> Option<f64> {
    let mut total_ns: u64 = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total_ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total_ns as f64 * 1e-9)
}

/// Runs `f`, returning (wall seconds, process CPU seconds or NaN).
fn timed(f: impl FnOnce()) -> (f64, f64) {
    let cpu_start = process_cpu_seconds();
    let start = Instant::now();
    f();
    let wall = start.elapsed().as_secs_f64();
    let cpu = match (cpu_start, process_cpu_seconds()) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    (wall, cpu)
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let parse = |i: usize, default: usize| -> usize {
        args.get(i).map(|s| s.parse().unwrap_or_else(|_| panic!("argument {i} must be a positive integer, got {s:?}"))).unwrap_or(default)
    };
    let size = parse(1, 512);
    let runs = parse(2, 5).max(1);
    let backward_kind = match std::env::var("BURN_FLEX_CONV_BACKWARD") {
        Ok(v) if v.eq_ignore_ascii_case("generic") => "generic",
        _ => "gemm",
    };
    let threads = rayon::current_num_threads();

    let plain = Device::default();
    let model = ResNet::new(50, 3, 4, &plain);
    let input = Tensor::<4>::random([1, 3, size, size], Distribution::Normal(0.0, 1.0), &plain);
    let (mut forward, mut forward_cpu) = (Vec::new(), Vec::new());
    for run in 0..=runs {
        let mut checksum = 0.0f32;
        let (wall, cpu) = timed(|| {
            let out = model.forward(input.clone(), &[4]);
            checksum = out[0].clone().sum().into_scalar();
        });
        assert!(checksum.is_finite(), "forward produced {checksum}");
        if run > 0 {
            // run 0 warms caches and the allocator
            forward.push(wall);
            forward_cpu.push(cpu);
        }
    }
    drop(model);

    let autodiff = Device::default().autodiff();
    let model = ResNet::new(50, 3, 4, &autodiff);
    let input = Tensor::<4>::random([1, 3, size, size], Distribution::Normal(0.0, 1.0), &autodiff);
    let (mut fwd_bwd, mut fwd_bwd_cpu) = (Vec::new(), Vec::new());
    for run in 0..=runs {
        let mut grads = None;
        let (wall, cpu) = timed(|| {
            let out = model.forward(input.clone(), &[4]);
            grads = Some(out[0].clone().sum().backward());
        });
        let grads = grads.expect("backward ran");
        // The stem's weight gradient is the last one backward produces; it must exist and be finite.
        let stem_grad = model.conv1.weight.grad(&grads).expect("conv1 weight has no gradient");
        let norm: f32 = stem_grad.abs().sum().into_scalar();
        assert!(norm.is_finite() && norm > 0.0, "conv1 weight gradient norm {norm}");
        if run > 0 {
            fwd_bwd.push(wall);
            fwd_bwd_cpu.push(cpu);
        }
    }

    let fmt = |v: &[f64]| v.iter().map(|s| format!("{s:.3}")).collect::<Vec<_>>().join(",");
    println!(
        "flex {backward_kind} threads={threads} size={size} forward_median_s={:.3} fwd_bwd_median_s={:.3} \
         forward_cpu_median_s={:.3} fwd_bwd_cpu_median_s={:.3} forward_runs=[{}] fwd_bwd_runs=[{}]",
        median(forward.clone()),
        median(fwd_bwd.clone()),
        median(forward_cpu),
        median(fwd_bwd_cpu),
        fmt(&forward),
        fmt(&fwd_bwd)
    );
}
