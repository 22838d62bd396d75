//! Times `MaskRcnn::predict` on one image: per-run wall and process CPU time, where the time goes
//! by stage, and resident memory (after loading, and the peak while predicting). Driven by
//! `tools/bench/bench_predict.py`, which also times torchvision the same way.
//!
//! usage: bench_predict <model> <image> <runs> [min_size max_size] [--components PASSES] [--pointrend]
//!
//! `--pointrend` swaps the model's mask branch for a new (randomly initialised) PointRend head
//! before timing, so the plain and PointRend heads are timed on the same boxes: PointRend's cost
//! (5 subdivision steps of 784 points, 224x224 masks) does not depend on the head's values.
//!
//! `--components PASSES` also times the network's pieces one by one in process CPU time (which, unlike wall
//! time, hardly moves when other processes share the cores): ResNet convolutions vs the FrozenBN /
//! ReLU / residual element-wise ops per stage, FPN, RPN head, both RoIAligns, box MLP, each layer of
//! the mask head. `tools/bench/bench_predict.py` times the same pieces in torchvision.
//!
//! Prints one JSON object on stdout: `{"threads", "load_s", "rss_after_load_kb", "peak_rss_load_kb",
//! "peak_rss_inference_kb", "runs": [{"wall_s", "cpu_s", "detections", "stages": {..}}]}`.
//! Thread count follows `RAYON_NUM_THREADS` (burn-flex and gemm both run on rayon's global pool).

use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::Tensor;
use maskrcnn::image_io::load_image;
use maskrcnn::model::{ForwardTrace, MaskRcnn};
use maskrcnn::ops::boxes::resize_box;
use maskrcnn::ops::paste_masks::paste_mask;
use maskrcnn::proposal::rpn::{anchors_for, filter_proposals, sigmoid};
use maskrcnn::roi_heads::poolers::multiscale_roi_align;
use maskrcnn::roi_heads::postprocess_detections;
use maskrcnn::tensor_util::tensor_to_vec;
use maskrcnn::weights::load_model;

/// The `maskrcnn` binary's allocator, so the timings are the binary's.
#[global_allocator]
static ALLOCATOR: maskrcnn::allocator::Allocator = mimalloc::MiMalloc;

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

extern "C" {
    fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
}

/// CPU time of the whole process (all threads), nanosecond resolution: /proc/self/stat only counts
/// 10 ms ticks, too coarse for single layers. Same clock as Python's `time.process_time()`.
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

/// A `/proc/self/status` memory field in kB (`VmRSS`, `VmHWM`); None off Linux.
fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// Resets VmHWM to the current RSS (Linux >= 4.0), so the next peak covers prediction only and not
/// the transient copies made while loading the checkpoint. False where the kernel refuses.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Accumulates process CPU and wall time per named piece of the network.
#[derive(Default)]
struct ComponentClock {
    order: Vec<String>,
    totals: std::collections::HashMap<String, (f64, f64)>,
}

impl ComponentClock {
    fn time<T>(&mut self, name: &str, f: impl FnOnce() -> T) -> T {
        let (wall0, cpu0) = (Instant::now(), cpu_seconds());
        let out = f();
        let (cpu, wall) = (cpu_seconds() - cpu0, wall0.elapsed().as_secs_f64());
        let entry = self.totals.entry(name.to_string()).or_insert_with(|| {
            self.order.push(name.to_string());
            (0.0, 0.0)
        });
        entry.0 += cpu;
        entry.1 += wall;
        out
    }
}

/// Runs the network piece by piece on the inputs a traced prediction recorded, so that each piece
/// sees exactly the tensors it sees inside `predict`. Mirrors `Block::forward`, `MaskHead::forward`
/// and `MaskPredictor::forward` op for op.
/// Single-image traces only (the benchmark's case); `original_hw` is the image's size before resizing.
fn time_components(model: &MaskRcnn, trace: &ForwardTrace, original_hw: (usize, usize), clock: &mut ComponentClock) {
    let net = &model.net;
    let cfg = &model.config;
    let rh = &cfg.roi_heads;
    let body = &net.backbone.body;
    let batch = trace.batch.clone().expect("traced batch");
    let [_, _, padded_h, padded_w] = batch.dims();
    let x = clock.time("resnet stem conv 7x7", || body.conv1.forward(batch));
    let mut x = clock.time("resnet stem bn+relu+maxpool", || {
        let x = relu(body.bn1.forward(x));
        let pool = MaxPoolOptions {
            kernel_size: [3, 3],
            stride: [2, 2],
            padding: [(1, 1), (1, 1)],
            dilation: [1, 1],
            ceil_mode: false,
        };
        max_pool2d(x, pool)
    });
    let mut stages = Vec::new();
    for (i, stage) in body.layers.iter().enumerate() {
        let conv_name = format!("resnet layer{} convs", i + 1);
        let elementwise_name = format!("resnet layer{} bn+relu+add", i + 1);
        for block in stage {
            let input = x.clone();
            let identity = match &block.downsample {
                Some(d) => {
                    let y = clock.time(&conv_name, || d.conv.forward(input.clone()));
                    clock.time(&elementwise_name, || d.bn.forward(y))
                }
                None => input.clone(),
            };
            let y = clock.time(&conv_name, || block.conv1.forward(input));
            let y = clock.time(&elementwise_name, || relu(block.bn1.forward(y)));
            let y = clock.time(&conv_name, || block.conv2.forward(y));
            let mut y = clock.time(&elementwise_name, || block.bn2.forward(y));
            if let (Some(conv3), Some(bn3)) = (&block.conv3, &block.bn3) {
                let z = clock.time(&elementwise_name, || relu(y));
                let z = clock.time(&conv_name, || conv3.forward(z));
                y = clock.time(&elementwise_name, || bn3.forward(z));
            }
            x = clock.time(&elementwise_name, || relu(y + identity));
        }
        if cfg.backbone.returned_layers.contains(&(i + 1)) {
            stages.push(x.clone());
        }
    }
    let features = clock.time("fpn", || net.backbone.fpn.forward(stages));
    let (objectness, deltas, per_level) = clock.time("rpn head convs", || net.rpn_head.forward(&features));
    let _ = clock.time("rpn anchors+proposals (top-k, decode, NMS)", || {
        let sizes: Vec<(usize, usize)> = features.iter().map(|f| (f.dims()[2], f.dims()[3])).collect();
        let anchors = anchors_for(&cfg.rpn, &sizes, (padded_h, padded_w));
        let (objectness, deltas) = (tensor_to_vec(objectness), tensor_to_vec(deltas));
        let (pre, post) = (cfg.rpn.pre_nms_top_n_test, cfg.rpn.post_nms_top_n_test);
        filter_proposals(&objectness, &deltas, &anchors, &per_level, trace.image_sizes[0], pre, post, &cfg.rpn)
    });

    let levels = cfg.backbone.returned_layers.len();
    let rois: Vec<_> = trace.proposals.iter().enumerate().flat_map(|(i, ps)| ps.iter().map(move |b| (i, *b))).collect();
    let pooled = clock.time("box roi_align", || {
        multiscale_roi_align(&features[..levels], &rois, &trace.image_sizes, rh.box_roi_output_size, rh.sampling_ratio)
    });
    let hidden = clock.time("box MLP (fc6+fc7)", || net.roi_heads.box_head.forward(pooled));
    let (logits, regression) = clock.time("box predictor", || net.roi_heads.box_predictor.forward(hidden));
    let _ = clock.time("box postprocess (softmax, decode, NMS)", || {
        let (logits, regression) = (tensor_to_vec(logits), tensor_to_vec(regression));
        let classes = net.roi_heads.box_predictor.num_classes();
        postprocess_detections(&logits, &regression, &trace.proposals[0], classes, trace.image_sizes[0], rh)
    });

    let mask_rois: Vec<_> =
        trace.detections.iter().enumerate().flat_map(|(i, d)| d.boxes.iter().map(move |b| (i, *b))).collect();
    // PointRend models have no plain mask branch; the split covers the plain 28x28 head only.
    let maskrcnn::roi_heads::MaskBranch::Standard(heads) = &net.roi_heads.mask else { return };
    let (mask_head, mask_predictor) = (&heads.head, &heads.predictor);
    if mask_rois.is_empty() {
        return;
    }
    let mut m: Tensor<4> = clock.time("mask roi_align", || {
        multiscale_roi_align(
            &features[..levels],
            &mask_rois,
            &trace.image_sizes,
            rh.mask_roi_output_size,
            rh.sampling_ratio,
        )
    });
    for conv in &mask_head.convs {
        m = clock.time("mask head 3x3 convs", || relu(conv.forward(m)));
    }
    let m = clock.time("mask deconv 2x2", || relu(mask_predictor.conv5_mask.forward(m)));
    let logits = clock.time("mask logits 1x1", || mask_predictor.mask_fcn_logits.forward(m));
    let _ = clock.time("mask sigmoid+paste", || {
        let [_, classes, side, _] = logits.dims();
        let host = tensor_to_vec(logits);
        let d = &trace.detections[0];
        d.boxes
            .iter()
            .zip(&d.labels)
            .enumerate()
            .map(|(k, (b, &label))| {
                let start = (k * classes + label) * side * side;
                let probs: Vec<f32> = host[start..start + side * side].iter().map(|&v| sigmoid(v)).collect();
                let bbox = resize_box(b, trace.image_sizes[0], original_hw);
                paste_mask(&probs, side, &bbox, original_hw.0, original_hw.1)
            })
            .collect::<Vec<_>>()
    });
}

/// `bench_predict --conv-probe`: one 256->256 3x3 convolution (the mask head's) on the same work laid
/// out three ways, to see whether burn-flex's cost comes from the arithmetic or from running many
/// small images: 100 RoIs of 14x14, one 140x140 image, and the 100 RoIs tiled into one 160x160
/// mosaic with zero gutters (which gives the per-RoI results exactly, at 30% extra arithmetic).
fn conv_probe() -> Result<()> {
    use burn::tensor::Distribution;
    let device = burn::tensor::Device::flex();
    let conv = maskrcnn::layers::Conv::new(256, 256, 3, 1, 1, true, &device);
    let shapes: [(&str, [usize; 4]); 3] = [
        ("100 RoIs 14x14", [100, 256, 14, 14]),
        ("1 image 140x140", [1, 256, 140, 140]),
        ("mosaic 160x160", [1, 256, 160, 160]),
    ];
    let mut out = serde_json::Map::new();
    for (name, shape) in shapes {
        let x: Tensor<4> = Tensor::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let _ = tensor_to_vec(conv.forward(x.clone()));
        let reps = 3;
        let (wall0, cpu0) = (Instant::now(), cpu_seconds());
        for _ in 0..reps {
            let _ = conv.forward(x.clone());
        }
        let (cpu, wall) = ((cpu_seconds() - cpu0) / reps as f64, wall0.elapsed().as_secs_f64() / reps as f64);
        let flops = 2.0 * (shape[0] * shape[2] * shape[3]) as f64 * 256.0 * 256.0 * 9.0;
        out.insert(
            name.into(),
            serde_json::json!({"cpu_s": cpu, "wall_s": wall, "gflops_per_cpu_s": flops / cpu / 1e9}),
        );
    }
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

fn main() -> Result<()> {
    maskrcnn::allocator::configure();
    if std::env::args().nth(1).as_deref() == Some("--conv-probe") {
        return conv_probe();
    }
    let mut args: Vec<String> = std::env::args().collect();
    let mut component_passes = 0;
    if let Some(i) = args.iter().position(|a| a == "--components") {
        let n = args.get(i + 1).context("--components needs a number of passes")?;
        component_passes = n.parse().with_context(|| format!("--components {n}: not a whole number"))?;
        args.drain(i..i + 2);
    }
    let pointrend = match args.iter().position(|a| a == "--pointrend") {
        Some(i) => {
            args.remove(i);
            true
        }
        None => false,
    };
    anyhow::ensure!(!(pointrend && component_passes > 0), "--components times the plain mask head only");
    if args.len() < 3 {
        anyhow::bail!(
            "usage: bench_predict <model> <image> <runs> [min_size max_size] [--components PASSES] [--pointrend]"
        );
    }
    let model_path = &args[1];
    let image_path = &args[2];
    let runs: usize = args.get(3).map(|s| s.parse()).transpose().context("runs must be a whole number")?.unwrap_or(5);
    let device = burn::tensor::Device::flex();
    let load0 = Instant::now();
    let mut model = load_model(model_path.as_ref(), &device)?.model;
    if pointrend {
        model = model.with_new_pointrend_head();
    }
    if let (Some(min), Some(max)) = (args.get(4), args.get(5)) {
        model.config.transform.min_size = min.parse().context("min_size must be a whole number")?;
        model.config.transform.max_size = max.parse().context("max_size must be a whole number")?;
    }
    let image = load_image(image_path.as_ref(), model.config.backbone.in_channels)?;
    let load_s = load0.elapsed().as_secs_f64();
    let rss_after_load_kb = status_kb("VmRSS");
    let peak_rss_load_kb = status_kb("VmHWM");
    let peak_reset = reset_peak_rss();

    // One warm-up run: first-touch allocations and thread-pool start-up are not steady state.
    let _ = model.predict(std::slice::from_ref(&image));
    let mut records = Vec::new();
    for _ in 0..runs {
        let mut trace = Some(ForwardTrace::default());
        let (wall0, cpu0) = (Instant::now(), cpu_seconds());
        let dets = model.predict_traced(std::slice::from_ref(&image), &mut trace);
        let (wall, cpu) = (wall0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
        let stages: serde_json::Map<String, serde_json::Value> =
            trace.unwrap().timings.into_iter().map(|(k, v)| (k.to_string(), v.into())).collect();
        records.push(serde_json::json!({"wall_s": wall, "cpu_s": cpu, "detections": dets[0].len(), "stages": stages}));
    }
    // Peak memory is read before the component pass, which holds extra copies of the features.
    let peak_rss_inference_kb = status_kb("VmHWM");
    let mut components = serde_json::Map::new();
    if component_passes > 0 {
        let mut trace = Some(ForwardTrace::default());
        let _ = model.predict_traced(std::slice::from_ref(&image), &mut trace);
        let trace = trace.unwrap();
        let mut clock = ComponentClock::default();
        for _ in 0..component_passes {
            time_components(&model, &trace, (image.height, image.width), &mut clock);
        }
        let passes = component_passes as f64;
        for name in &clock.order {
            let (cpu, wall) = clock.totals[name];
            components.insert(name.clone(), serde_json::json!({"cpu_s": cpu / passes, "wall_s": wall / passes}));
        }
    }
    let report = serde_json::json!({
        "pointrend": pointrend,
        "threads": rayon::current_num_threads(),
        "load_s": load_s,
        "rss_after_load_kb": rss_after_load_kb,
        "peak_rss_load_kb": peak_rss_load_kb,
        // Peak since the reset: warm-up plus timed runs (the whole-process peak if the reset failed).
        "peak_rss_inference_kb": peak_rss_inference_kb,
        "peak_reset": peak_reset,
        "runs": records,
        // Mean per pass; empty without --components.
        "components": components,
    });
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
