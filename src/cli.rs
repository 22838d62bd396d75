//! Command-line parsing; each subcommand is a thin wrapper over the library.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::image_io::{list_images, load_image};
use crate::predict::{display_name, image_id_for, image_ids_from_coco, to_coco_results};
use crate::weights::load_model;

#[derive(Parser)]
#[command(name = "maskrcnn", version, about = "Mask R-CNN instance segmentation for imagery and GIS")]
struct Cli {
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Detect objects in images and write COCO results JSON.
    Predict(PredictArgs),
}

#[derive(Args)]
struct PredictArgs {
    /// A .pth/.safetensors checkpoint, .emd, .dlpk or model folder.
    #[arg(long)]
    model: PathBuf,
    /// An image file or a folder of images.
    #[arg(long)]
    input: PathBuf,
    /// COCO results JSON to write.
    #[arg(long)]
    output: PathBuf,
    /// Drop detections scoring below this (the model keeps >= 0.05 by default).
    #[arg(long)]
    score_threshold: Option<f32>,
    #[arg(long)]
    min_size: Option<usize>,
    #[arg(long)]
    max_size: Option<usize>,
    /// Write a PNG per image with masks, boxes, classes and scores drawn.
    #[arg(long)]
    overlay_dir: Option<PathBuf>,
    /// Take image ids from this COCO annotation file (matched by file name).
    #[arg(long)]
    image_ids_from: Option<PathBuf>,
}

pub fn run() -> Result<()> {
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("setting the thread count")?;
    }
    match cli.command {
        Command::Predict(args) => predict(args),
    }
}

fn progress(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!("{{spinner}} {what} {{bar:30}} {{pos}}/{{len}} [{{elapsed_precise}}<{{eta_precise}}] {{msg}}"))
            .expect("valid template"),
    );
    bar
}

fn predict(args: PredictArgs) -> Result<()> {
    let images = list_images(&args.input)?;
    let device = burn::tensor::Device::default();
    let mut loaded = load_model(&args.model, &device)?;
    let model = &mut loaded.model;
    if let Some(s) = args.min_size {
        model.config.transform.min_size = s;
    }
    if let Some(s) = args.max_size {
        model.config.transform.max_size = s;
    }
    if let Some(t) = args.score_threshold {
        if !(0.0..=1.0).contains(&t) {
            bail!("--score-threshold must be within 0..1, got {t}");
        }
    }
    let ids = args.image_ids_from.as_deref().map(image_ids_from_coco).transpose()?;
    if let Some(dir) = &args.overlay_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let bar = progress(images.len(), "predict");
    let mut results = Vec::new();
    let mut total = 0usize;
    for (index, path) in images.iter().enumerate() {
        let image = load_image(path, model.config.backbone.in_channels)?;
        let image_id = image_id_for(path, index, ids.as_ref())?;
        let mut dets = model.predict(std::slice::from_ref(&image)).pop().unwrap_or_default();
        if let Some(t) = args.score_threshold {
            dets.retain(|d| d.score >= t);
        }
        total += dets.len();
        results.extend(to_coco_results(model, image_id, &display_name(path), (image.height, image.width), &dets));
        if let Some(dir) = &args.overlay_dir {
            crate::overlay::write_overlay(path, &image, &dets, &model.config, &crate::predict::overlay_path(dir, path))?;
        }
        bar.inc(1);
        bar.set_message(format!("{total} objects"));
    }
    bar.finish_and_clear();
    let json = serde_json::to_vec(&results)?;
    crate::io_util::write_atomic(&args.output, &json)?;
    eprintln!("{} detections in {} images -> {}", total, images.len(), args.output.display());
    Ok(())
}
