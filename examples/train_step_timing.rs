//! Seconds per training step (forward + backward + optimiser) on synthetic data.
//!
//!     RAYON_NUM_THREADS=1 cargo run --release --example train_step_timing -- tiny
//!     RAYON_NUM_THREADS=2 cargo run --release --example train_step_timing -- r50 512 [steps]

use std::time::Instant;

use burn::tensor::Device;
use maskrcnn::config::MaskRcnnConfig;
use maskrcnn::train::optim::{OptimizerConfig, OptimizerKind, ScheduleKind};
use maskrcnn::train::params::freeze_layers;
use maskrcnn::train::trainer::{train, TrainOptions};
use maskrcnn::MaskRcnn;
use maskrcnn_data::synthetic::{generate, SyntheticConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map(String::as_str).unwrap_or("tiny");
    let size: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(128);
    let steps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(4);
    let mut config = MaskRcnnConfig { num_classes: 4, ..Default::default() };
    config.transform.min_size = size;
    config.transform.max_size = size;
    if which == "tiny" {
        config = MaskRcnnConfig::small(4, size, 32);
    } else {
        config.backbone.depth = 50;
        config.backbone.trainable_layers = 3;
    }
    let data = generate(&SyntheticConfig {
        num_images: 16,
        image_size: size,
        min_objects: 2,
        max_objects: 4,
        min_object_size: 16.0,
        max_object_size: (size as f64 * 0.3).max(20.0),
        seed: 0,
    })?;
    let device = Device::flex().autodiff();
    let mut model = MaskRcnn::new(config.clone(), &device)?;
    freeze_layers(&mut model.net, config.backbone.trainable_layers);
    let dir = tempfile::tempdir()?;
    let options = TrainOptions {
        steps: Some(steps),
        batch_size: 1,
        lr: 1e-4,
        optimizer: OptimizerConfig::defaults(OptimizerKind::Adamw),
        schedule: ScheduleKind::Onecycle,
        val_split: 0.0,
        log_every: 1,
        progress: false,
        ..TrainOptions::default()
    };
    let t = Instant::now();
    train(&mut model, &data, dir.path(), &options, false)?;
    let total = t.elapsed().as_secs_f64();
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl"))?;
    let per_step: Vec<f64> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("seconds_per_step").and_then(|s| s.as_f64()))
        .collect();
    let warm: Vec<f64> = per_step.iter().skip(1).copied().collect();
    let mean = if warm.is_empty() { per_step[0] } else { warm.iter().sum::<f64>() / warm.len() as f64 };
    println!(
        "{which} {size}px batch 1, threads {}: {:.3} s/step after the first (first {:.3} s; all {:?}); total {total:.1} s",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into()),
        mean,
        per_step[0],
        per_step.iter().map(|v| (v * 1000.0).round() / 1000.0).collect::<Vec<_>>()
    );
    Ok(())
}
