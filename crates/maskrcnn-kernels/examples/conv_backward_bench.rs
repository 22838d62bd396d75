//! Times a ResNet-50 body (conv1 .. layer4, frozen batch norm, torchvision v1.5 layout) at batch
//! 1 with every convolution through `maskrcnn_kernels::conv2d`: forward alone (plain device) and
//! forward + backward of `sum(layer4)` w.r.t. every conv weight (autodiff device). Companion of
//! `bench/conv_backward_bench.py`, which times torchvision the same way;
//! `bench/run_conv_backward_bench.sh` runs both and `bench/conv_backward.md` has the figures.
//!
//! Usage: conv_backward_bench [SIZE=512] [RUNS=5]
//! Threads: RAYON_NUM_THREADS. `MASKRCNN_CONV_BACKWARD=generic` selects burn-backend's default
//! conv2d backward (what upstream flex 0.22.1 runs) instead of the GEMM kernels.
//! Prints one line: `flex <backward> threads=<t> size=<s> forward_median_s=<f> fwd_bwd_median_s=<b>
//! forward_cpu_median_s=.. fwd_bwd_cpu_median_s=.. ...` (wall and process-CPU medians).

use std::time::Instant;

use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Distribution, Tensor};
use maskrcnn_kernels::{conv2d, generic};

/// A bias-free conv followed by frozen batch norm, which at initialisation (weight 1, bias 0,
/// mean 0, var 1) is a per-channel scale and shift that needs no gradient.
struct ConvBn {
    weight: Tensor<4>,
    scale: Tensor<4>,
    shift: Tensor<4>,
    stride: usize,
    padding: usize,
}

impl ConvBn {
    fn new(in_ch: usize, out_ch: usize, kernel: usize, stride: usize, padding: usize, device: &Device) -> Self {
        // Kaiming normal (fan_out, relu), as torchvision initialises ResNet.
        let std = (2.0 / (out_ch * kernel * kernel) as f64).sqrt();
        let weight = Tensor::random([out_ch, in_ch, kernel, kernel], Distribution::Normal(0.0, std), device);
        let scale = Tensor::<4>::ones([1, out_ch, 1, 1], device) / (1.0f64 + 1e-5).sqrt();
        Self { weight, scale, shift: Tensor::zeros([1, out_ch, 1, 1], device), stride, padding }
    }

    fn require_grad(mut self) -> Self {
        self.weight = self.weight.require_grad();
        self
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let options = ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], 1);
        conv2d(x, self.weight.clone(), None, options) * self.scale.clone() + self.shift.clone()
    }
}

/// torchvision's `Bottleneck` (stride on the 3x3 conv).
struct Bottleneck {
    convs: [ConvBn; 3],
    downsample: Option<ConvBn>,
}

impl Bottleneck {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [c1, c2, c3] = &self.convs;
        let out = c3.forward(relu(c2.forward(relu(c1.forward(x.clone())))));
        let identity = match &self.downsample {
            Some(d) => d.forward(x),
            None => x,
        };
        relu(out + identity)
    }
}

struct ResNet50 {
    stem: ConvBn,
    blocks: Vec<Bottleneck>,
}

impl ResNet50 {
    fn new(device: &Device, trainable: bool) -> Self {
        let grad = |c: ConvBn| if trainable { c.require_grad() } else { c };
        let mut blocks = Vec::new();
        let mut in_ch = 64;
        for (stage, count) in [3, 4, 6, 3].into_iter().enumerate() {
            let planes = 64 << stage;
            for b in 0..count {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                let downsample = (b == 0).then(|| grad(ConvBn::new(in_ch, planes * 4, 1, stride, 0, device)));
                let convs = [
                    grad(ConvBn::new(in_ch, planes, 1, 1, 0, device)),
                    grad(ConvBn::new(planes, planes, 3, stride, 1, device)),
                    grad(ConvBn::new(planes, planes * 4, 1, 1, 0, device)),
                ];
                blocks.push(Bottleneck { convs, downsample });
                in_ch = planes * 4;
            }
        }
        Self { stem: grad(ConvBn::new(3, 64, 7, 2, 3, device)), blocks }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = relu(self.stem.forward(x));
        let pool = MaxPoolOptions {
            kernel_size: [3, 3],
            stride: [2, 2],
            padding: [(1, 1), (1, 1)],
            dilation: [1, 1],
            ceil_mode: false,
        };
        self.blocks.iter().fold(max_pool2d(x, pool), |x, block| block.forward(x))
    }
}

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
        args.get(i)
            .map(|s| s.parse().unwrap_or_else(|_| panic!("argument {i} must be a positive integer, got {s:?}")))
            .unwrap_or(default)
    };
    let size = parse(1, 512);
    let runs = parse(2, 5).max(1);
    let backward_kind = if generic::use_generic() { "generic" } else { "gemm" };
    let threads = rayon::current_num_threads();

    let plain = Device::flex();
    let model = ResNet50::new(&plain, false);
    let input = Tensor::<4>::random([1, 3, size, size], Distribution::Normal(0.0, 1.0), &plain);
    let (mut forward, mut forward_cpu) = (Vec::new(), Vec::new());
    for run in 0..=runs {
        let mut checksum = 0.0f32;
        let (wall, cpu) = timed(|| checksum = model.forward(input.clone()).sum().into_scalar());
        assert!(checksum.is_finite(), "forward produced {checksum}");
        // Run 0 warms caches and the allocator.
        if run > 0 {
            forward.push(wall);
            forward_cpu.push(cpu);
        }
    }
    drop(model);

    let autodiff = Device::flex().autodiff();
    let model = ResNet50::new(&autodiff, true);
    let input = Tensor::<4>::random([1, 3, size, size], Distribution::Normal(0.0, 1.0), &autodiff);
    let (mut fwd_bwd, mut fwd_bwd_cpu) = (Vec::new(), Vec::new());
    for run in 0..=runs {
        let mut grads = None;
        let (wall, cpu) = timed(|| grads = Some(model.forward(input.clone()).sum().backward()));
        let grads = grads.expect("backward ran");
        // The stem's weight gradient is the last one backward produces; it must exist and be finite.
        let stem_grad = model.stem.weight.grad(&grads).expect("stem weight has no gradient");
        let norm: f32 = stem_grad.abs().sum().into_scalar();
        assert!(norm.is_finite() && norm > 0.0, "stem weight gradient norm {norm}");
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
