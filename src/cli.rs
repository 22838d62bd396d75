//! Command-line parsing; each subcommand is a thin wrapper over the library.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::image_io::{list_images, load_model_input};
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
    /// COCO metrics (bbox, segm, boundary) of results, or of a model on a dataset.
    Evaluate(EvaluateArgs),
    /// Draw ground truth beside predictions for the first images of a dataset.
    ShowResults(ShowResultsArgs),
    /// Detect objects over a large GeoTIFF and write polygons in map coordinates.
    Detect(DetectArgs),
    /// Join the shard outputs of `detect --shard K/N` into one vector file.
    Merge(MergeArgs),
    /// Turn an instance-id raster (0 = background) into one polygon feature per value.
    Vectorize(VectorizeArgs),
    /// Write a model as an arcgis.learn package: .pth (torchvision keys), .emd and .dlpk.
    Package(PackageArgs),
    /// Cut a raster and label polygons into training chips (Esri RCNN_Masks or COCO).
    ExportChips(ExportChipsArgs),
    /// Train a model on COCO, Esri RCNN_Masks or instance-mask PNG data.
    Train(crate::train_cli::TrainArgs),
    /// Generate a labelled synthetic dataset, train a small model on it, predict on held-back
    /// images and score them: the whole workflow in a few minutes.
    Demo(DemoArgs),
    /// Sweep the learning rate exponentially, plot loss against rate and suggest one.
    LrFind(LrFindArgs),
}

#[derive(Args)]
struct LrFindArgs {
    /// Training data, as for `train`.
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    images: Option<PathBuf>,
    #[arg(long, value_enum)]
    format: Option<crate::train_cli::DataFormat>,
    #[arg(long, default_value = "object")]
    class_name: String,
    /// A checkpoint to start from (default: a new model).
    #[arg(long)]
    init: Option<PathBuf>,
    #[arg(long, default_value_t = 50)]
    backbone: usize,
    #[arg(long)]
    min_size: Option<usize>,
    #[arg(long)]
    max_size: Option<usize>,
    #[arg(long, default_value_t = 2)]
    batch_size: usize,
    #[arg(long, default_value_t = 150)]
    iterations: usize,
    #[arg(long, value_parser = named::<crate::train::optim::OptimizerKind>(&["sgd", "adamw"]), default_value = "adamw")]
    optimizer: crate::train::optim::OptimizerKind,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder for lr_find.png and lr_find.json.
    #[arg(long)]
    output: PathBuf,
}

#[derive(Args)]
struct DemoArgs {
    #[arg(long, default_value = "demo")]
    output: PathBuf,
    #[arg(long, default_value_t = 300)]
    steps: usize,
    #[arg(long, default_value_t = 96)]
    train_images: usize,
    #[arg(long, default_value_t = 16)]
    heldout_images: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train the PointRend mask head instead of the plain one.
    #[arg(long)]
    pointrend: bool,
}

#[derive(Args)]
struct ExportChipsArgs {
    #[arg(long)]
    raster: PathBuf,
    /// Label polygons (.geojson or .gpkg) in the raster's CRS.
    #[arg(long)]
    labels: PathBuf,
    /// Attribute holding each polygon's class (one class "object" without it).
    #[arg(long)]
    class_field: Option<String>,
    #[arg(long)]
    output: PathBuf,
    #[arg(long, default_value_t = 256)]
    tile_size: u32,
    #[arg(long)]
    stride: Option<u32>,
    /// rcnn-masks (Esri RCNN_Masks) or coco.
    #[arg(long, default_value = "rcnn-masks")]
    format: String,
    /// 1-based raster bands to export (default: all).
    #[arg(long, value_delimiter = ',')]
    bands: Vec<usize>,
    /// Also write chips without objects (as negatives).
    #[arg(long)]
    keep_empty: bool,
    #[arg(long)]
    overwrite: bool,
}

#[derive(Args)]
struct PackageArgs {
    #[arg(long)]
    model: PathBuf,
    /// Folder to write <name>.pth, <name>.emd and <name>.dlpk into.
    #[arg(long)]
    output: PathBuf,
    #[arg(long, default_value = "model")]
    name: String,
}

#[derive(Args)]
struct DetectArgs {
    #[arg(long)]
    model: PathBuf,
    /// GeoTIFF (striped or tiled, BigTIFF, 8/16-bit or float, any band count).
    #[arg(long)]
    raster: PathBuf,
    /// .geojson, .fgb or .gpkg (or, with --shard, a shard file for `maskrcnn merge`).
    #[arg(long)]
    output: PathBuf,
    #[arg(long, default_value_t = 512)]
    tile_size: u32,
    /// Pixels shared by neighbouring tiles.
    #[arg(long, default_value_t = 64)]
    overlap: u32,
    /// Kept for arcgis.learn users; tiles are processed one at a time.
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    /// Minimum detection score.
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    /// Keep only these class names (comma-separated).
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    /// 1-based raster bands to feed the model, e.g. 3,2,1.
    #[arg(long, value_delimiter = ',')]
    bands: Vec<usize>,
    /// Average predictions over flipped tiles.
    #[arg(long)]
    tta: bool,
    #[command(flatten)]
    polygons: PolygonArgs,
    /// K/N: process shard K of N (0-based), or `auto`: the index from JOB_COMPLETION_INDEX or
    /// SLURM_ARRAY_TASK_ID (the environment is read only then, or with --shards).
    #[arg(long)]
    shard: Option<String>,
    /// Number of shards, the index coming from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID.
    #[arg(long)]
    shards: Option<usize>,
    #[arg(long)]
    overwrite: bool,
}

#[derive(Args)]
struct MergeArgs {
    /// Shard files written by `detect --shard`.
    #[arg(long, num_args = 1.., required = true)]
    inputs: Vec<PathBuf>,
    #[arg(long)]
    output: PathBuf,
    #[arg(long)]
    overwrite: bool,
}

#[derive(Args)]
struct VectorizeArgs {
    /// Instance-id GeoTIFF: 0 is background, each other value one object.
    #[arg(long)]
    labels: PathBuf,
    #[arg(long)]
    output: PathBuf,
    /// Band holding the ids.
    #[arg(long, default_value_t = 1)]
    band: usize,
    #[command(flatten)]
    polygons: PolygonArgs,
    #[arg(long)]
    overwrite: bool,
}

/// How masks become polygons (shared by `detect` and `vectorize`).
#[derive(Args)]
struct PolygonArgs {
    /// Douglas-Peucker tolerance in map units.
    #[arg(long, default_value_t = 0.0)]
    simplify: f64,
    /// Square building corners.
    #[arg(long)]
    regularize: bool,
    /// Drop polygons smaller than this (map units²).
    #[arg(long, default_value_t = 0.0)]
    min_area: f64,
}

impl PolygonArgs {
    fn options(&self) -> Result<maskrcnn_geo::VectorizeOptions> {
        if self.simplify < 0.0 || self.min_area < 0.0 {
            bail!("--simplify and --min-area must not be negative");
        }
        Ok(maskrcnn_geo::VectorizeOptions {
            simplify_tolerance: self.simplify,
            regularize_right_angles: self.regularize,
            min_area: self.min_area,
        })
    }
}

#[derive(Args)]
struct EvaluateArgs {
    /// COCO results JSON (as `maskrcnn predict` writes).
    #[arg(long, conflicts_with = "model", required_unless_present = "model")]
    predictions: Option<PathBuf>,
    /// Ground-truth COCO instances JSON (with --predictions).
    #[arg(long, requires = "predictions")]
    annotations: Option<PathBuf>,
    /// A model to run on --data first.
    #[arg(long, requires = "data")]
    model: Option<PathBuf>,
    /// A COCO dataset: instances JSON, or a folder with instances.json and images/.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Folder the dataset's file names are relative to.
    #[arg(long)]
    images: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "all")]
    iou_type: IouTypeArg,
    /// Detections per image counted for AP/AR100 (COCO's 100; dense building tiles need more).
    #[arg(long, default_value_t = 100)]
    max_dets: usize,
    /// Metrics JSON to write.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Also write a one-page HTML report with the numbers (and a sample grid when --model is given).
    #[arg(long)]
    report: Option<PathBuf>,
    /// IoU threshold of the arcgis.learn-style per-class average precision.
    #[arg(long, default_value_t = 0.5)]
    arcgis_iou: f64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum IouTypeArg {
    Segm,
    Bbox,
    Boundary,
    All,
}

#[derive(Args)]
struct ShowResultsArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    images: Option<PathBuf>,
    #[arg(long)]
    output: PathBuf,
    #[arg(long, default_value_t = 4)]
    rows: usize,
    /// mask, bbox or bbox_mask.
    #[arg(long, default_value = "mask")]
    mode: String,
    /// Hide predictions scoring below this (arcgis.learn's box_threshold).
    #[arg(long, default_value_t = 0.5)]
    score_threshold: f32,
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
        Command::Evaluate(args) => evaluate(args),
        Command::ShowResults(args) => show_results(args),
        Command::Detect(args) => detect(args),
        Command::Merge(args) => merge(args),
        Command::Vectorize(args) => vectorize(args),
        Command::Package(args) => package(args),
        Command::ExportChips(args) => export_chips(args),
        Command::Train(args) => crate::train_cli::run_train(args),
        Command::Demo(args) => demo(args),
        Command::LrFind(args) => lr_find(args),
    }
}

/// A clap parser for a model enum, by its serde names (the model crate does not depend on clap).
#[allow(clippy::type_complexity)]
pub(crate) fn named<T>(names: &'static [&'static str]) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(names)
        .map(|s| serde_json::from_value(serde_json::Value::String(s)).expect("the names are the enum's serde names"))
}

/// The training loop's progress as an indicatif bar.
pub struct StepBar(ProgressBar);

impl StepBar {
    pub fn new(hidden: bool) -> Self {
        let bar = if hidden { ProgressBar::hidden() } else { ProgressBar::new(0) };
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {elapsed_precise}<{eta_precise}  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Self(bar)
    }
}

impl crate::train::progress::TrainProgress for StepBar {
    fn start(&self, total: u64, position: u64) {
        self.0.set_length(total);
        self.0.set_position(position);
    }
    fn set_position(&self, position: u64) {
        self.0.set_position(position);
    }
    fn set_message(&self, message: String) {
        self.0.set_message(message);
    }
    fn println(&self, line: String) {
        self.0.println(line);
    }
    fn finish(&self, note: Option<&str>) {
        match note {
            Some(note) => self.0.abandon_with_message(note.to_string()),
            None => self.0.finish(),
        }
    }
}

fn progress(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} {{bar:30}} {{pos}}/{{len}} [{{elapsed_precise}}<{{eta_precise}}] {{msg}}"
        ))
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
        let image = load_model_input(path, &model.config)?;
        let image_id = image_id_for(path, index, ids.as_ref())?;
        let mut dets = model.predict(std::slice::from_ref(&image)).pop().unwrap_or_default();
        if let Some(t) = args.score_threshold {
            dets.retain(|d| d.score >= t);
        }
        total += dets.len();
        results.extend(to_coco_results(model, image_id, &display_name(path), (image.height, image.width), &dets));
        if let Some(dir) = &args.overlay_dir {
            crate::overlay::write_overlay(
                path,
                &image,
                &dets,
                &model.config,
                &crate::predict::overlay_path(dir, path),
            )?;
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

fn evaluate(args: EvaluateArgs) -> Result<()> {
    use maskrcnn_eval::IouType;
    if args.max_dets == 0 {
        bail!("--max-dets must be at least 1");
    }
    let iou_types: Vec<IouType> = match args.iou_type {
        IouTypeArg::Segm => vec![IouType::Segm],
        IouTypeArg::Bbox => vec![IouType::Bbox],
        IouTypeArg::Boundary => vec![IouType::Boundary],
        IouTypeArg::All => vec![IouType::Bbox, IouType::Segm, IouType::Boundary],
    };
    let mut grid = None;
    let (ground_truth, results) = if let Some(model_path) = &args.model {
        let data = args.data.as_deref().expect("clap requires --data with --model");
        let dataset = crate::evaluate::GroundTruthSet::open(data, args.images.as_deref())?;
        let device = burn::tensor::Device::default();
        let mut model = load_model(model_path, &device)?.model;
        // The model must keep at least as many detections as are scored.
        let keep = &mut model.config.roi_heads.box_detections_per_img;
        *keep = (*keep).max(args.max_dets);
        let bar = progress(dataset.ground_truth.images.len(), "predict");
        let ours = crate::evaluate::predict_dataset(&model, &dataset, |p| {
            bar.set_position(p.done as u64);
            Ok(())
        })?;
        bar.finish_and_clear();
        if args.report.is_some() {
            grid = Some(crate::evaluate::show_results(&model, &dataset, 4, maskrcnn_viz::DrawMode::Mask, 0.5)?);
        }
        (dataset.ground_truth, crate::evaluate::as_detection_results(&ours)?)
    } else {
        let predictions = args.predictions.as_deref().expect("clap requires --predictions");
        let annotations = args.annotations.as_deref().context("--annotations is required with --predictions")?;
        let gt = maskrcnn_eval::load_ground_truth(annotations).with_context(|| format!("{}", annotations.display()))?;
        let results = maskrcnn_eval::load_results(predictions).with_context(|| format!("{}", predictions.display()))?;
        (gt, results)
    };
    let max_dets = [1, 10.min(args.max_dets), args.max_dets];
    let report = maskrcnn_eval::evaluate_all(&ground_truth, &results, &iou_types, max_dets)?;
    let arcgis = maskrcnn_eval::average_precision_score(&ground_truth, &results, args.arcgis_iou, 0.0)?;
    println!("{}", maskrcnn_eval::format_report(&report));
    if args.max_dets > 100 {
        println!("note: AP and AR{} count up to {} detections per image (COCO uses 100)", args.max_dets, args.max_dets);
    }
    println!("arcgis.learn-style average precision at IoU {} (mask): {}", args.arcgis_iou, format_arcgis(&arcgis));
    let mut json: serde_json::Value = serde_json::from_str(&report.to_json())?;
    json["arcgis_average_precision"] =
        serde_json::json!({"iou": args.arcgis_iou, "per_class": arcgis.per_class, "mean": arcgis.mean});
    json["max_dets"] = serde_json::json!(max_dets);
    if let Some(out) = &args.output {
        crate::io_util::write_atomic(out, serde_json::to_string_pretty(&json)?.as_bytes())?;
        eprintln!("metrics -> {}", out.display());
    }
    if let Some(path) = &args.report {
        let figures: Vec<(&str, &image::RgbImage)> = grid.iter().map(|g| ("Ground truth and predictions", g)).collect();
        let html = maskrcnn_viz::html_report("Mask R-CNN evaluation", &report_view(&json), &figures);
        crate::io_util::write_atomic(path, html.as_bytes())?;
        eprintln!("report -> {}", path.display());
    }
    Ok(())
}

fn format_arcgis(scores: &maskrcnn_eval::ArcgisApScores) -> String {
    let mut parts: Vec<String> = scores
        .per_class
        .iter()
        .map(|(name, ap)| format!("{name} {}", ap.map_or("n/a".to_string(), |v| format!("{v:.3}"))))
        .collect();
    parts.push(format!("mean {}", scores.mean.map_or("n/a".to_string(), |v| format!("{v:.3}"))));
    parts.join(", ")
}

fn show_results(args: ShowResultsArgs) -> Result<()> {
    let mode: maskrcnn_viz::DrawMode = args.mode.parse()?;
    if args.rows == 0 {
        bail!("--rows must be at least 1");
    }
    let dataset = crate::evaluate::GroundTruthSet::open(&args.data, args.images.as_deref())?;
    let device = burn::tensor::Device::default();
    let model = load_model(&args.model, &device)?.model;
    let grid = crate::evaluate::show_results(&model, &dataset, args.rows, mode, args.score_threshold)?;
    let tmp = crate::io_util::temp_path_for(&args.output);
    grid.save_with_format(&tmp, image::ImageFormat::Png)
        .with_context(|| format!("writing {}", args.output.display()))?;
    std::fs::rename(&tmp, &args.output).with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!("{} rows -> {}", args.rows.min(dataset.ground_truth.images.len()), args.output.display());
    Ok(())
}

fn refuse_existing(path: &std::path::Path, overwrite: bool) -> Result<()> {
    if path.exists() && !overwrite {
        bail!("{} already exists; pass --overwrite to replace it", path.display());
    }
    Ok(())
}

fn detect(args: DetectArgs) -> Result<()> {
    use maskrcnn_geo::{DetectOptions, Shard};
    refuse_existing(&args.output, args.overwrite)?;
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    // The environment is read only when asked: a job on a cluster must not shard by accident.
    let from_env = |flag: &str| {
        Shard::from_env(args.shards)?.with_context(|| {
            format!("{flag}: the shard index comes from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID, and neither is set")
        })
    };
    let shard = match (args.shard.as_deref(), args.shards) {
        (Some("auto"), _) => from_env("--shard auto")?,
        (Some(spec), _) => Shard::parse(spec)?,
        (None, Some(n)) => from_env(&format!("--shards {n}"))?,
        (None, None) => Shard::WHOLE,
    };
    let vector_extension = args.output.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if shard.count > 1 && matches!(vector_extension.as_deref(), Some("geojson" | "json" | "fgb" | "gpkg" | "shp")) {
        bail!(
            "{}: a shard writes a shard file for `maskrcnn merge`, not a vector file; name it e.g. shard-{}.jsonl",
            args.output.display(),
            shard.index
        );
    }
    let device = burn::tensor::Device::default();
    let model = load_model(&args.model, &device)?.model;
    let options = DetectOptions {
        tile_size: args.tile_size,
        overlap: args.overlap,
        bands: args.bands.clone(),
        min_score: args.threshold,
        vectorize: args.polygons.options()?,
        shard,
        ..DetectOptions::default()
    };
    let job = crate::detect::DetectJob {
        raster: args.raster.clone(),
        output: args.output.clone(),
        overwrite: args.overwrite,
        options,
        classes: args.classes.clone(),
        test_time_augmentation: args.tta,
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} detect {bar:30} {pos}/{len} tiles {per_sec} [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .expect("valid template"),
    );
    let summary = crate::detect::run_detect(&model, &job, |p| {
        bar.set_length(p.tiles_total as u64);
        bar.set_position(p.tiles_done as u64);
        bar.set_message(format!("{} objects", p.features_emitted));
    })?;
    bar.finish_and_clear();
    eprintln!(
        "{} tiles ({} skipped as nodata), {} objects -> {}{}",
        summary.tiles_processed,
        summary.tiles_skipped_nodata,
        summary.features_emitted,
        args.output.display(),
        if shard.count > 1 {
            format!(" (shard {}/{}; join with `maskrcnn merge`)", shard.index, shard.count)
        } else {
            String::new()
        }
    );
    Ok(())
}

fn merge(args: MergeArgs) -> Result<()> {
    refuse_existing(&args.output, args.overwrite)?;
    let n = crate::detect::merge_shards(&args.inputs, &args.output, args.overwrite)?;
    eprintln!("{n} objects from {} shards -> {}", args.inputs.len(), args.output.display());
    Ok(())
}

fn vectorize(args: VectorizeArgs) -> Result<()> {
    use maskrcnn_geo::{Feature, GeoTiff, PixelWindow, Samples, WriteOptions};
    refuse_existing(&args.output, args.overwrite)?;
    let mut raster = GeoTiff::open(&args.labels)?;
    let info = raster.info().clone();
    if args.band == 0 || args.band > info.bands {
        bail!("{}: --band {} but the raster has {} band(s)", args.labels.display(), args.band, info.bands);
    }
    if info.geotransform.is_none() {
        eprintln!("warning: {} has no georeferencing; polygons are in pixel coordinates", args.labels.display());
    }
    let window = PixelWindow { x: 0, y: 0, width: info.width, height: info.height };
    let read = raster.read_window_typed(window, &[args.band])?;
    let labels: Vec<i64> = match read.data {
        Samples::U8(v) => v.into_iter().map(i64::from).collect(),
        Samples::U16(v) => v.into_iter().map(i64::from).collect(),
        Samples::U32(v) => v.into_iter().map(i64::from).collect(),
        Samples::I8(v) => v.into_iter().map(i64::from).collect(),
        Samples::I16(v) => v.into_iter().map(i64::from).collect(),
        Samples::I32(v) => v.into_iter().map(i64::from).collect(),
        _ => bail!("{}: instance ids must be integers", args.labels.display()),
    };
    let gt = info.geotransform_or_identity();
    let options = args.polygons.options()?;
    let polygons =
        maskrcnn_geo::vectorize_label_raster(&labels, info.width as usize, info.height as usize, 0i64, &gt, &options)?;
    let features: Vec<Feature> = polygons
        .into_iter()
        .filter(|p| !p.geometry.0.is_empty())
        .map(|p| {
            use geo::Area;
            let area = p.geometry.unsigned_area();
            Feature {
                geometry: p.geometry,
                class: p.value.to_string(),
                class_id: p.value,
                score: 1.0,
                area,
                tile: String::new(),
            }
        })
        .collect();
    let write = WriteOptions { overwrite: args.overwrite, ..WriteOptions::default() };
    maskrcnn_geo::write_features(&args.output, &features, info.crs.as_ref(), &write)?;
    eprintln!("{} objects -> {}", features.len(), args.output.display());
    Ok(())
}

fn package(args: PackageArgs) -> Result<()> {
    let device = burn::tensor::Device::default();
    let mut model = load_model(&args.model, &device)?.model;
    if !matches!(model.config.backbone.depth, 50 | 101 | 152) {
        eprintln!(
            "note: arcgis.learn builds resnet{} models without an FPN, so ArcGIS cannot load this package; maskrcnn reads it",
            model.config.backbone.depth
        );
    }
    let dlpk = crate::weights::arcgis::save_package(&mut model, &args.output, &args.name)?;
    eprintln!("package -> {}", dlpk.display());
    Ok(())
}

fn export_chips(args: ExportChipsArgs) -> Result<()> {
    use maskrcnn_geo::{ChipFormat, ExportChipsOptions};
    let format: ChipFormat = args.format.replace('-', "_").parse()?;
    let mut options = ExportChipsOptions::new(args.raster.clone(), args.labels.clone(), args.output.clone(), format);
    options.class_field = args.class_field.clone();
    options.tile_size = args.tile_size;
    options.stride = args.stride.unwrap_or(args.tile_size);
    options.bands = args.bands.clone();
    options.keep_empty = args.keep_empty;
    options.overwrite = args.overwrite;
    let summary = maskrcnn_geo::export_chips(&options)?;
    let classes: Vec<String> = summary.classes.iter().map(|c| format!("{} ({} objects)", c.name, c.objects)).collect();
    eprintln!(
        "{} chips ({} empty and {} nodata skipped), {} objects of {} -> {}",
        summary.chips_written,
        summary.chips_empty_skipped,
        summary.chips_nodata_skipped,
        summary.objects,
        classes.join(", "),
        args.output.display()
    );
    Ok(())
}

fn demo(args: DemoArgs) -> Result<()> {
    if args.output.join("run").exists() {
        bail!("{} already holds a demo run; choose another --output", args.output.display());
    }
    let options = crate::demo::DemoOptions {
        output: args.output.clone(),
        train_images: args.train_images,
        heldout_images: args.heldout_images,
        steps: args.steps,
        seed: args.seed,
        pointrend: args.pointrend,
    };
    let report = crate::demo::run_demo(&options)?;
    println!("{}", crate::demo::describe(&report, &args.output));
    Ok(())
}

/// The metrics JSON reshaped for the HTML report: one table of the COCO numbers per IoU type,
/// per-class tables, and the arcgis-style scores.
fn report_view(json: &serde_json::Value) -> serde_json::Value {
    let mut view = serde_json::Map::new();
    for iou_type in ["bbox", "segm", "boundary"] {
        if let Some(m) = json.get(iou_type).and_then(|v| v.as_object()) {
            let stats: serde_json::Map<String, serde_json::Value> = maskrcnn_eval::STAT_NAMES
                .iter()
                .filter_map(|k| m.get(*k).map(|v| (k.to_string(), v.clone())))
                .collect();
            view.insert(iou_type.to_string(), serde_json::Value::Object(stats));
        }
    }
    for iou_type in ["segm", "bbox"] {
        if let Some(rows) = json.get(iou_type).and_then(|m| m.get("per_class")) {
            view.insert(format!("per-class {iou_type} AP"), rows.clone());
        }
    }
    if let Some(arcgis) = json.get("arcgis_average_precision") {
        view.insert(format!("arcgis.learn-style AP at IoU {}", arcgis["iou"]), arcgis["per_class"].clone());
        view.insert("arcgis.learn-style mean AP".into(), arcgis["mean"].clone());
    }
    view.insert("max detections per image".into(), json["max_dets"][2].clone());
    serde_json::Value::Object(view)
}

fn lr_find(args: LrFindArgs) -> Result<()> {
    use crate::train::lr_find::{lr_find, LrFindOptions};
    if args.batch_size == 0 || args.iterations < 12 {
        bail!("--batch-size must be at least 1 and --iterations at least 12");
    }
    let dataset = crate::train_cli::open_dataset(&args.data, args.images.as_deref(), args.format, &args.class_name)?;
    let class_names = dataset.class_names().to_vec();
    let bands = dataset.image(0).context("reading the first image")?.channels;
    let device = burn::tensor::Device::default().autodiff();
    let mut model = match &args.init {
        Some(path) => {
            let mut m = load_model(path, &device)?.model;
            m.adapt_classes(&class_names);
            m
        }
        None => crate::model::MaskRcnn::new(
            crate::config::MaskRcnnConfig::for_classes(
                args.backbone,
                &class_names,
                if bands == 1 { 3 } else { bands },
                5,
            ),
            &device,
        )?,
    };
    if let Some(s) = args.min_size {
        model.config.transform.min_size = s;
    }
    if let Some(s) = args.max_size {
        model.config.transform.max_size = s;
    }
    crate::train::params::freeze_layers(&mut model.net, model.config.backbone.trainable_layers);
    let mut options = LrFindOptions::new(crate::train::optim::OptimizerConfig::defaults(args.optimizer));
    options.iterations = args.iterations;
    options.batch_size = args.batch_size;
    options.seed = args.seed;
    let bar = progress(args.iterations, "lr-find");
    let result = lr_find(&mut model, dataset.as_ref(), &options, |step, lr, loss| {
        bar.set_position(step as u64 + 1);
        bar.set_message(format!("lr {lr:.1e} loss {loss:.3}"));
    })?;
    bar.finish_and_clear();
    std::fs::create_dir_all(&args.output).with_context(|| format!("creating {}", args.output.display()))?;
    let points: Vec<(f64, f64)> = result.lrs.iter().copied().zip(result.losses.iter().copied()).collect();
    let plot = maskrcnn_viz::lr_finder_plot(&points, result.suggested_lr, 960, 540);
    maskrcnn_viz::save_png(&plot, args.output.join("lr_find.png"))?;
    crate::io_util::write_atomic(&args.output.join("lr_find.json"), serde_json::to_string_pretty(&result)?.as_bytes())?;
    match result.suggested_lr {
        Some(lr) => println!("suggested learning rate: {lr:.2e} (plot: {})", args.output.join("lr_find.png").display()),
        None => println!("no sustained loss decrease found; see {}", args.output.join("lr_find.png").display()),
    }
    Ok(())
}
