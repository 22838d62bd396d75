//! `maskrcnn train`: arguments and the driver that turns them into a training run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use maskrcnn_data::coco::CocoDataset;
use maskrcnn_data::esri::EsriRcnnMasksDataset;
use maskrcnn_data::instance_masks::InstanceMaskFolder;
use maskrcnn_data::Dataset;

use crate::cli::named;
use crate::config::MaskRcnnConfig;
use crate::model::MaskRcnn;
use crate::train::optim::{OptimizerConfig, OptimizerKind, ScheduleKind};
use crate::train::params::freeze_layers;
use crate::train::trainer::{train_with_progress, Monitor, TrainOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataFormat {
    /// COCO instances JSON (`--data file.json --images DIR`).
    Coco,
    /// ArcGIS "Export Training Data For Deep Learning" folder in RCNN_Masks format.
    RcnnMasks,
    /// `images/` + `masks/` folders with instance-id PNGs (Penn-Fudan layout).
    MaskPng,
}

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Training data: a COCO JSON file, an RCNN_Masks export folder, or an images/+masks/ folder.
    #[arg(long)]
    pub data: PathBuf,
    /// Image folder for COCO data (default: `images/` beside the JSON, else the JSON's folder).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Data layout; guessed from `--data` when omitted.
    #[arg(long, value_enum)]
    pub format: Option<DataFormat>,
    /// Class name for mask-png folders without a class map.
    #[arg(long, default_value = "object")]
    pub class_name: String,
    /// Run directory: checkpoints, metrics.jsonl, best/ and model/ (the final model folder).
    #[arg(long)]
    pub output: PathBuf,
    /// ResNet depth of a new model: 18, 34, 50, 101 or 152 (also written `resnet50`, as in
    /// arcgis.learn and torchvision).
    #[arg(long, default_value = "50", value_parser = parse_backbone_depth)]
    pub backbone: usize,
    /// Passes over the training images.
    #[arg(long, default_value_t = 10, conflicts_with = "steps")]
    pub epochs: usize,
    /// Optimiser steps instead of epochs.
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long, default_value_t = 2)]
    pub batch_size: usize,
    /// Peak (onecycle) or base (multistep) learning rate; default 1e-4 for adamw, 0.02 x
    /// batch/16 for sgd (torchvision's 0.02 at 16 images per batch).
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, value_parser = named::<OptimizerKind>(&["sgd", "adamw"]), default_value = "adamw")]
    pub optimizer: OptimizerKind,
    #[arg(long, value_parser = named::<ScheduleKind>(&["onecycle", "multistep"]), default_value = "onecycle")]
    pub schedule: ScheduleKind,
    /// Short side images are resized to.
    #[arg(long)]
    pub min_size: Option<usize>,
    /// Cap on the long side after resizing.
    #[arg(long)]
    pub max_size: Option<usize>,
    /// ResNet stages that train, from the top (0-5). Default: 5 from scratch, 3 with --init.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=5))]
    pub trainable_layers: Option<u8>,
    /// Batch norm while training: `batch` (torchvision's BatchNorm2d; default from scratch) or
    /// `frozen` (FrozenBatchNorm2d; default with --init, as torchvision fine-tunes).
    #[arg(long, value_parser = named::<crate::config::NormKind>(&["batch", "frozen"]))]
    pub norm: Option<crate::config::NormKind>,
    /// Start from these weights (any checkpoint `predict` reads). Heads are re-initialised when
    /// the class count differs.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Fraction of images held out for validation.
    #[arg(long, default_value_t = 0.1)]
    pub val_split: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue the run in --output from its newest checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// metrics.jsonl line every N steps.
    #[arg(long, default_value_t = 10)]
    pub log_every: usize,
    /// Checkpoint every N steps as well as at each epoch end.
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Clip the gradient norm (0 disables).
    #[arg(long, default_value_t = 10.0)]
    pub clip_grad_norm: f32,
    /// Augment with flips/dihedral transforms and colour jitter (`overhead` for imagery with no up).
    #[arg(long, value_enum)]
    pub augment: Option<AugmentPreset>,
    /// Divide pixel values by this to get 0..1 (default: guessed 1/255/65535 from the data).
    #[arg(long)]
    pub pixel_scale: Option<f32>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Use the PointRend mask head (224x224 masks refined at uncertain points).
    #[arg(long)]
    pub pointrend: bool,
    /// With --pointrend and a plain --init checkpoint: replace its mask head by a new PointRend head.
    #[arg(long, requires = "pointrend")]
    pub new_pointrend_head: bool,
    /// Stop when the monitored value has not improved for N epochs (arcgis.learn's early
    /// stopping uses 5).
    #[arg(long)]
    pub early_stopping: Option<usize>,
    /// What selects best/ and drives --early-stopping: validation loss (training loss without a
    /// validation split) or validation mask AP.
    #[arg(long, value_parser = named::<Monitor>(&["valid-loss", "mask-ap"]), default_value = "valid-loss")]
    pub monitor: Monitor,
    /// Input normalisation: `imagenet` (torchvision's mean/std, for RGB 8-bit and ImageNet/COCO
    /// weights) or `data` (per-band mean/std of the training images, stored with the model and
    /// applied at inference). Default: `data` for multi-band or non-8-bit imagery (unless the
    /// --init checkpoint brings its own statistics), otherwise `imagenet` (or the --init
    /// checkpoint's own).
    #[arg(long, value_enum)]
    pub normalize: Option<Normalization>,
    /// Skip the validation mask/box AP at each epoch end (the validation loss is still computed).
    #[arg(long)]
    pub no_val_ap: bool,
    /// Cell size (ground sample distance) of the training chips in metres per pixel, recorded
    /// with the model so `detect` resamples rasters of other resolutions to it. Default: read
    /// from the chips' georeferencing or their export metadata.
    #[arg(long)]
    pub cell_size: Option<f64>,
    #[command(flatten)]
    pub device: crate::device_arg::DeviceArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AugmentPreset {
    Photo,
    Overhead,
}

/// Opens `--data` in the given or guessed format.
pub fn open_dataset(
    data: &Path,
    images: Option<&Path>,
    format: Option<DataFormat>,
    class_name: &str,
) -> Result<Box<dyn Dataset>> {
    if !data.exists() {
        bail!("{}: no such file or folder", data.display());
    }
    let format = match format {
        Some(f) => f,
        // Detection (and the class name "object" for mask folders) is maskrcnn-data's.
        None if class_name == "object" => return Ok(maskrcnn_data::open_dataset(data, images)?.1),
        None if data.is_dir() && data.join("images").is_dir() && data.join("masks").is_dir() => DataFormat::MaskPng,
        None => return Ok(maskrcnn_data::open_dataset(data, images)?.1),
    };
    Ok(match format {
        DataFormat::Coco => {
            let dir = images.map_or_else(|| maskrcnn_data::coco::default_image_dir(data), Path::to_path_buf);
            Box::new(CocoDataset::open(data, &dir).with_context(|| format!("reading COCO data {}", data.display()))?)
        }
        DataFormat::RcnnMasks => Box::new(
            EsriRcnnMasksDataset::open(data)
                .with_context(|| format!("reading RCNN_Masks export {}", data.display()))?,
        ),
        DataFormat::MaskPng => Box::new(
            InstanceMaskFolder::open(data, class_name)
                .with_context(|| format!("reading mask folder {}", data.display()))?,
        ),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Normalization {
    Imagenet,
    Data,
}

pub fn run_train(args: TrainArgs) -> Result<()> {
    // The run folder may not be (or lie inside) the data it trains on; an existing run folder is
    // continued only with --resume (the trainer checks that).
    let mut policy = crate::output_policy::OutputPolicy::new(true);
    if args.data.is_dir() {
        policy.input_folder(&args.data, "--data");
    } else {
        policy.input(&args.data, "--data");
        let images = args.images.clone().unwrap_or_else(|| maskrcnn_data::coco::default_image_dir(&args.data));
        policy.input_folder(&images, "the images of --data");
    }
    if let Some(init) = &args.init {
        policy.model_input(init, "--init");
    }
    policy.check_folder(&args.output, std::iter::empty())?;
    let dataset = open_dataset(&args.data, args.images.as_deref(), args.format, &args.class_name)?;
    let class_names = dataset.class_names().to_vec();
    if class_names.is_empty() {
        bail!("{}: the data names no classes", args.data.display());
    }
    // The first readable image says how many bands the data has; unreadable ones are skipped
    // (and named) by the training loop.
    let first_image = (0..dataset.len())
        .map(|i| dataset.image(i))
        .find(Result::is_ok)
        .unwrap_or_else(|| dataset.image(0))
        .context("reading the first image")?;
    let bands = first_image.channels;
    let first_side = first_image.height.min(first_image.width);
    // Readers repeat a grey band to RGB; the model must know its images were single-band so that
    // `detect` repeats a single-band raster the same way.
    let source_bands =
        if bands > 1 && (1..bands).all(|b| first_image.plane(b) == first_image.plane(0)) { 1 } else { bands };
    drop(first_image);
    let device = args.device.resolve()?.autodiff();
    // Weights made here (from scratch, new heads) come from --seed, so one seed gives one run.
    device.seed(args.seed);
    // A bare classification ResNet (torchvision, timm, torchgeo) starts the backbone only.
    let classification = match &args.init {
        Some(path) if is_state_dict_file(path) => {
            let sd = crate::weights::StateDict::read(path)?;
            crate::weights::backbone_init::classification_resnet(&sd)
                .with_context(|| format!("--init {}", path.display()))?
                .map(|resnet| (sd, resnet))
        }
        _ => None,
    };
    let mut model = match (&args.init, classification) {
        (Some(path), Some((sd, resnet))) => {
            let mut config = MaskRcnnConfig::for_classes(
                resnet.depth,
                &class_names,
                resnet.in_channels,
                args.trainable_layers.map_or(3, usize::from),
            );
            if args.pointrend {
                config.mask_head = crate::config::MaskHeadKind::PointRend;
            }
            // torchvision's resnet_fpn_backbone freezes a pretrained backbone's batch norm.
            config.backbone.norm = args.norm.unwrap_or(crate::config::NormKind::Frozen);
            let mut m = MaskRcnn::new(config, &device)?;
            let loaded = crate::weights::backbone_init::load_backbone_body(&mut m, &sd, &device)
                .with_context(|| format!("--init {}", path.display()))?;
            let model_bands = if bands == 1 { 3 } else { bands };
            if resnet.in_channels != model_bands {
                m.adapt_input_bands(model_bands);
            }
            eprintln!(
                "{}: a ResNet-{} classification checkpoint ({} bands): {loaded} tensors start the backbone; the FPN, \
                 RPN and heads start fresh",
                path.display(),
                resnet.depth,
                resnet.in_channels
            );
            m
        }
        (Some(path), None) => {
            let mut m = crate::weights::load_model(path, &device)?.model;
            if args.pointrend && !m.config.is_pointrend() {
                if !args.new_pointrend_head {
                    bail!(
                        "--pointrend: {} is a plain Mask R-CNN (it has no roi_heads.mask_head.coarse_mask_fc1 / \
                         roi_heads.mask_predictor.mask_point_head keys); add --new-pointrend-head to keep its backbone, RPN and \
                         box head and start a new PointRend mask head",
                        path.display()
                    );
                }
                m = m.with_new_pointrend_head();
            }
            m.adapt_classes(&class_names);
            let model_bands = if bands == 1 { 3 } else { bands };
            if m.config.backbone.in_channels != model_bands {
                m.adapt_input_bands(model_bands);
            }
            m.config.backbone.trainable_layers = args.trainable_layers.map_or(3, usize::from);
            m.config.backbone.norm = args.norm.unwrap_or(crate::config::NormKind::Frozen);
            m
        }
        (None, _) => {
            let mut config = MaskRcnnConfig::for_classes(
                args.backbone,
                &class_names,
                if bands == 1 { 3 } else { bands },
                args.trainable_layers.map_or(5, usize::from),
            );
            if args.pointrend {
                config.mask_head = crate::config::MaskHeadKind::PointRend;
            }
            config.backbone.norm = args.norm.unwrap_or(crate::config::NormKind::Batch);
            MaskRcnn::new(config, &device)?
        }
    };
    if let Some(s) = args.min_size {
        model.config.transform.min_size = s;
    }
    if let Some(s) = args.max_size {
        model.config.transform.max_size = s;
    }
    let pixel_scale = match args.pixel_scale {
        Some(s) => s,
        None => {
            let all: Vec<usize> = (0..dataset.len()).collect();
            crate::train::trainer::guess_pixel_scale(dataset.as_ref(), &all)?
        }
    };
    // Data that is not 8-bit RGB (a float DEM, 16-bit or multispectral imagery) is normalised by
    // its own statistics, also when fine-tuning: ImageNet's mean and std on a DEM divided by 65535
    // give a constant input. Only a checkpoint that brings statistics of its own keeps them.
    let init_has_stats = args.init.is_some() && model.config.transform.band_stats.is_some();
    let normalize = args.normalize.unwrap_or(if !init_has_stats && (bands != 3 || pixel_scale != 255.0) {
        Normalization::Data
    } else {
        Normalization::Imagenet
    });
    match normalize {
        Normalization::Data => {
            let stats =
                maskrcnn_data::stats::compute_band_stats(dataset.as_ref()).context("computing per-band statistics")?;
            eprintln!(
                "normalising with the data's per-band statistics (mean {:?}, std {:?}, raw units)",
                stats.mean.iter().map(|v| (v * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
                stats.std.iter().map(|v| (v * 1000.0).round() / 1000.0).collect::<Vec<_>>()
            );
            model.config.apply_band_stats(stats, pixel_scale);
        }
        Normalization::Imagenet if args.normalize.is_some() => {
            let bands = model.config.backbone.in_channels;
            model.config.transform.use_imagenet_normalisation(bands);
            model.config.transform.pixel_scale = Some(pixel_scale);
        }
        Normalization::Imagenet => model.config.transform.pixel_scale = Some(pixel_scale),
    }
    // Detect feeds a raster the way training saw its chips: a single band repeated, or the raster
    // bands the chips were cut from.
    model.config.input_bands = crate::config::InputBands {
        image_bands: Some(source_bands),
        raster_bands: crate::bands::chip_raster_bands(&args.data),
    };
    model.config.cell_size = training_cell_size(&args)?;
    model.config.transform.chip_size = typical_chip_size(dataset.as_ref(), first_side);
    // Results and packages must carry the data's own ids (COCO category ids have gaps).
    model.config.category_ids = std::iter::once(0).chain(dataset.category_ids()).collect();
    freeze_layers(&mut model.net, model.config.backbone.trainable_layers);
    let lr = args.lr.unwrap_or(match args.optimizer {
        OptimizerKind::Adamw => 1e-4,
        OptimizerKind::Sgd => 0.02 * args.batch_size as f64 / 16.0,
    });
    let options = TrainOptions {
        epochs: args.epochs,
        steps: args.steps,
        batch_size: args.batch_size,
        lr,
        optimizer: OptimizerConfig::defaults(args.optimizer),
        schedule: args.schedule,
        clip_grad_norm: (args.clip_grad_norm > 0.0).then_some(args.clip_grad_norm),
        val_split: args.val_split,
        seed: args.seed,
        log_every: args.log_every,
        checkpoint_every: args.checkpoint_every,
        augment: args.augment.map(|p| match p {
            AugmentPreset::Photo => maskrcnn_data::transforms::AugmentConfig::photo(),
            AugmentPreset::Overhead => maskrcnn_data::transforms::AugmentConfig {
                crop: None,
                ..maskrcnn_data::transforms::AugmentConfig::overhead(0)
            },
        }),
        pixel_scale: Some(pixel_scale),
        progress: !args.quiet,
        early_stopping_patience: args.early_stopping,
        val_ap: !args.no_val_ap,
        monitor: args.monitor,
        ..TrainOptions::default()
    };
    let bar = crate::cli::StepBar::new(args.quiet);
    let hooks = crate::hooks::current();
    let progress = hooks.as_ref().and_then(|h| h.train_progress()).unwrap_or(&bar);
    let report = train_with_progress(&mut model, dataset.as_ref(), &args.output, &options, args.resume, progress)?;
    if !report.unreadable.is_empty() {
        eprintln!(
            "warning: {} training item(s) could not be read and were skipped (each is named above and in {})",
            report.unreadable.len(),
            args.output.join(crate::train::trainer::METRICS_FILE).display()
        );
    }
    eprintln!(
        "trained {} steps ({} skipped); best monitored value {}; model folder: {}",
        report.steps,
        report.skipped_steps,
        report.best_val_loss.map_or("n/a".into(), |v| match args.monitor {
            Monitor::MaskAp => format!("(val mask AP) {:.4}", 1.0 - v),
            Monitor::ValidLoss => format!("(loss) {v:.4}"),
        }),
        report.final_model.as_ref().map_or("(none)".into(), |p| p.display().to_string())
    );
    Ok(())
}

/// The chips' cell size: `--cell-size`, else what the chips' georeferencing or export metadata
/// say; said on stderr either way, since `detect` depends on it.
/// The short side of the training images, the median over up to 16 spread through the data (the
/// first readable one when no other reads), so that `detect` can show tiles to the model at the
/// scale its chips had, whatever tile size a run uses.
fn typical_chip_size(dataset: &dyn maskrcnn_data::Dataset, first_side: usize) -> Option<usize> {
    let n = dataset.len();
    let step = n.div_ceil(16).max(1);
    let mut sides: Vec<usize> =
        (0..n).step_by(step).filter_map(|i| dataset.image(i).ok()).map(|im| im.height.min(im.width)).collect();
    if sides.is_empty() {
        sides.push(first_side);
    }
    sides.sort_unstable();
    Some(sides[sides.len() / 2]).filter(|&side| side > 0)
}

fn training_cell_size(args: &TrainArgs) -> Result<Option<f64>> {
    if let Some(c) = args.cell_size {
        if !(c.is_finite() && c > 0.0) {
            bail!("--cell-size must be a number of metres above 0, got {c}");
        }
        eprintln!("cell size {c} m per pixel (--cell-size), recorded with the model");
        return Ok(Some(c));
    }
    match crate::cell_size::training_cell_size(&args.data, args.images.as_deref()) {
        Some((c, source)) => {
            eprintln!("cell size {} m per pixel (from {source}), recorded with the model", (c * 1e6).round() / 1e6);
            Ok(Some(c))
        }
        None => {
            eprintln!(
                "the training chips carry no cell size (no georeferencing or export metadata); pass --cell-size \
                 METRES so that detect can match rasters of other resolutions to it"
            );
            Ok(None)
        }
    }
}

/// `--backbone`: a ResNet depth as `50`, `resnet50`, `ResNet-50` or `r50`.
pub fn parse_backbone_depth(text: &str) -> std::result::Result<usize, String> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower.strip_prefix("resnet").or_else(|| lower.strip_prefix('r')).unwrap_or(&lower);
    let digits = digits.trim_start_matches(['-', '_']);
    match digits.parse::<usize>() {
        Ok(depth @ (18 | 34 | 50 | 101 | 152)) => Ok(depth),
        _ => Err(format!("{text:?} is not a ResNet depth: use 18, 34, 50, 101 or 152 (or resnet50 and the like)")),
    }
}

/// A state dict file (rather than a model folder or package), which may hold a bare ResNet.
fn is_state_dict_file(path: &std::path::Path) -> bool {
    path.is_file()
        && path
            .extension()
            .is_some_and(|e| ["pth", "pt", "bin", "safetensors"].iter().any(|x| e.eq_ignore_ascii_case(x)))
}

#[cfg(test)]
mod backbone_name_tests {
    #[test]
    fn depths_by_number_or_name() {
        for (text, depth) in [("50", 50), ("resnet50", 50), ("ResNet-101", 101), ("r18", 18), ("resnet_34", 34)] {
            assert_eq!(super::parse_backbone_depth(text), Ok(depth), "{text}");
        }
        for text in ["resnet51", "vit_b_16", "", "resnet"] {
            assert!(super::parse_backbone_depth(text).is_err(), "{text}");
        }
    }
}
