//! The whole story on generated data: make a labelled synthetic dataset, train a small model from
//! scratch, predict on held-back images, write results and overlays, and score them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use maskrcnn_data::synthetic::{generate, write_coco, SyntheticConfig};
use maskrcnn_data::Dataset;

use crate::config::MaskRcnnConfig;
use crate::model::MaskRcnn;
use crate::train::optim::{OptimizerConfig, OptimizerKind, ScheduleKind};
use crate::train::trainer::{train, TrainOptions};

pub struct DemoOptions {
    pub output: PathBuf,
    pub train_images: usize,
    pub heldout_images: usize,
    pub steps: usize,
    pub seed: u64,
    pub pointrend: bool,
    /// Where training and prediction run (`--device`).
    pub device: crate::device_arg::DeviceArgs,
}

pub struct DemoReport {
    pub model: PathBuf,
    pub results: PathBuf,
    pub overlays: PathBuf,
    pub metrics: PathBuf,
    pub segm_ap50: f64,
    pub segm_ap: f64,
}

/// [`MaskRcnnConfig::small`] at 64 channels for the demo's classes.
pub fn small_config(class_names: &[String], image_size: usize, pointrend: bool) -> MaskRcnnConfig {
    let mut c = MaskRcnnConfig::small(class_names.len() + 1, image_size, 64);
    c.class_names = std::iter::once("background".to_string()).chain(class_names.iter().cloned()).collect();
    if pointrend {
        c.mask_head = crate::config::MaskHeadKind::PointRend;
    }
    c
}

pub fn run_demo(options: &DemoOptions) -> Result<DemoReport> {
    let out = &options.output;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let image_size = 128;
    let synthetic = |num_images, seed| SyntheticConfig {
        num_images,
        image_size,
        min_objects: 1,
        max_objects: 4,
        min_object_size: 16.0,
        max_object_size: 48.0,
        seed,
    };
    let train_set = generate(&synthetic(options.train_images, options.seed))?;
    let heldout = generate(&synthetic(options.heldout_images, options.seed + 1_000_003))?;
    write_coco(&train_set, &out.join("data/train"))?;
    let heldout_json = write_coco(&heldout, &out.join("data/heldout"))?;
    eprintln!(
        "data: {} training and {} held-back images -> {}",
        train_set.len(),
        heldout.len(),
        out.join("data").display()
    );

    let inference_device = options.device.resolve()?;
    let device = inference_device.clone().autodiff();
    let mut model = MaskRcnn::new(small_config(train_set.class_names(), image_size, options.pointrend), &device)?;
    crate::train::params::freeze_layers(&mut model.net, model.config.backbone.trainable_layers);
    let train_options = TrainOptions {
        steps: Some(options.steps),
        batch_size: 4,
        lr: 2e-3,
        optimizer: OptimizerConfig::defaults(OptimizerKind::Adamw),
        schedule: ScheduleKind::Onecycle,
        val_split: 0.0,
        seed: options.seed,
        log_every: 10,
        pixel_scale: Some(255.0),
        ..TrainOptions::default()
    };
    let run = out.join("run");
    let report = train(&mut model, &train_set, &run, &train_options, false)?;
    let model_dir = report.final_model.context("training stopped before writing the final model")?;

    let trained = crate::weights::load_model(&model_dir, &inference_device)?.model;
    let dataset = crate::evaluate::GroundTruthSet::open(&heldout_json, None)?;
    let overlays = out.join("overlays");
    std::fs::create_dir_all(&overlays)?;
    let results = crate::evaluate::predict_dataset(&trained, &dataset, |p| {
        let confident: Vec<_> = p.detections.iter().filter(|d| d.score >= 0.5).cloned().collect();
        crate::overlay::write_overlay(
            p.path,
            p.image,
            &confident,
            &trained.config,
            &crate::predict::overlay_path(&overlays, p.path),
        )
    })?;
    let results_path = out.join("results.json");
    crate::io_util::write_atomic(&results_path, &serde_json::to_vec(&results)?)?;
    let gt = &dataset.ground_truth;
    let report = maskrcnn_eval::evaluate_all(
        gt,
        &crate::evaluate::as_detection_results(&results)?,
        &[maskrcnn_eval::IouType::Bbox, maskrcnn_eval::IouType::Segm],
        [1, 10, 100],
    )?;
    let metrics = out.join("metrics.json");
    crate::io_util::write_atomic(&metrics, report.to_json().as_bytes())?;
    let segm = report.segm.as_ref().context("segm metrics")?;
    Ok(DemoReport {
        model: model_dir,
        results: results_path,
        overlays,
        metrics,
        segm_ap50: segm.stat("AP50"),
        segm_ap: segm.stat("AP"),
    })
}

pub fn describe(report: &DemoReport, out: &Path) -> String {
    format!(
        "held-back mask AP {:.3}, AP50 {:.3}\n  model:       {}\n  results:     {}\n  overlays:    {}\n  metrics:     {}\n  loss curves: {}",
        report.segm_ap,
        report.segm_ap50,
        report.model.display(),
        report.results.display(),
        report.overlays.display(),
        report.metrics.display(),
        out.join("run/loss_curves.png").display()
    )
}
