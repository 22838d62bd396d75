//! Times `MaskRcnn::predict` on one image: per-run wall and process CPU time, where the time goes
//! by stage, and resident memory (after loading, and the peak while predicting). Driven by
//! `tools/bench/bench_predict.py`, which also times torchvision the same way.
//!
//! usage: bench_predict <model> <image> <runs> [min_size max_size]
//!
//! Prints one JSON object on stdout: `{"threads", "load_s", "rss_after_load_kb", "peak_rss_load_kb",
//! "peak_rss_inference_kb", "runs": [{"wall_s", "cpu_s", "detections", "stages": {..}}]}`.
//! Thread count follows `RAYON_NUM_THREADS` (burn-flex and gemm both run on rayon's global pool).

use std::time::Instant;

use anyhow::{Context, Result};
use maskrcnn::image_io::load_image;
use maskrcnn::model::ForwardTrace;
use maskrcnn::weights::load_model;

fn cpu_seconds() -> f64 {
    // utime + stime of this process from /proc/self/stat (fields 14 and 15, in clock ticks).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
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

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        anyhow::bail!("usage: bench_predict <model> <image> <runs> [min_size max_size]");
    }
    let model_path = &args[1];
    let image_path = &args[2];
    let runs: usize = args.get(3).map(|s| s.parse()).transpose().context("runs must be a whole number")?.unwrap_or(5);
    let device = burn::tensor::Device::default();
    let load0 = Instant::now();
    let mut model = load_model(model_path.as_ref(), &device)?.model;
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
    let report = serde_json::json!({
        "threads": rayon::current_num_threads(),
        "load_s": load_s,
        "rss_after_load_kb": rss_after_load_kb,
        "peak_rss_load_kb": peak_rss_load_kb,
        // Peak since the reset: warm-up plus timed runs (the whole-process peak if the reset failed).
        "peak_rss_inference_kb": status_kb("VmHWM"),
        "peak_reset": peak_reset,
        "runs": records,
    });
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
