//! Command-line parsing; each subcommand is a thin wrapper over the library.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::evaluate::{skipped_image, SkippedImage};
use crate::image_io::list_images;
use crate::output_policy::OutputPolicy;
use crate::predict::{display_name, image_id_for, image_ids_from_coco, overlay_path, to_coco_results};

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
    ///
    /// Over a folder, an image that cannot be read (truncated, corrupt, unreadable) is skipped with
    /// a `warning: <file>: <reason>; skipped` line; the others are still predicted and written, the
    /// number skipped is printed at the end, and the exit status is non-zero unless --skip-bad is
    /// given. A single --input file that cannot be read is an error.
    ///
    /// Outputs: an existing --output, or overlay PNGs already in --overlay-dir, are replaced only
    /// with --overwrite; an output that is one of the inputs (an input image, the --image-ids-from
    /// file, the model, or an --overlay-dir inside the input folder) is always refused.
    Predict(PredictArgs),
    /// COCO metrics (bbox, segm, boundary) of results, or of a model on a dataset.
    ///
    /// With --model and --data, an image of the dataset that cannot be read is skipped with a
    /// `warning: <file>: <reason>; skipped` line and left out of the scores (with its annotations);
    /// the metrics of the other images are still written, listing the skipped ones, and the exit
    /// status is non-zero unless --skip-bad is given.
    ///
    /// Outputs: an existing --output or --report is replaced only with --overwrite; one that is an
    /// input (--predictions, --annotations, the dataset, the model) is always refused.
    Evaluate(EvaluateArgs),
    /// Draw ground truth beside predictions for the first images of a dataset.
    ///
    /// An existing --output is replaced only with --overwrite; one that is an input is always refused.
    ShowResults(ShowResultsArgs),
    /// Detect objects over a large GeoTIFF and write polygons in map coordinates.
    Detect(DetectArgs),
    /// Join the shard outputs of `detect --shard K/N` into one vector file.
    Merge(MergeArgs),
    /// Turn an instance-id raster (0 = background) into one polygon feature per value.
    Vectorize(VectorizeArgs),
    /// Write a model as an arcgis.learn package: .pth (torchvision keys), .emd and .dlpk.
    ///
    /// Existing <name>.pth/.emd/.dlpk in --output are replaced only with --overwrite; a file of the
    /// model being packaged is never replaced.
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
    /// ResNet depth of a new model: 18, 34, 50, 101 or 152 (also `resnet50`).
    #[arg(long, default_value = "50", value_parser = crate::train_cli::parse_backbone_depth)]
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
    /// Replace an existing lr_find.png and lr_find.json in --output.
    #[arg(long)]
    overwrite: bool,
    #[command(flatten)]
    device: crate::device_arg::DeviceArgs,
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
    #[command(flatten)]
    device: crate::device_arg::DeviceArgs,
}

#[derive(Args)]
struct ExportChipsArgs {
    #[arg(long)]
    raster: PathBuf,
    /// Label polygons (.geojson, .gpkg, .shp or .fgb) in the raster's CRS.
    #[arg(long)]
    labels: PathBuf,
    /// Attribute holding each polygon's class (one class "object" without it).
    #[arg(long)]
    class_field: Option<String>,
    /// The layer of a GeoPackage with several feature layers.
    #[arg(long)]
    label_layer: Option<String>,
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
    /// Replace existing <name>.pth, <name>.emd and <name>.dlpk (never the model's own files).
    #[arg(long)]
    overwrite: bool,
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
    /// Tiles run through the model in one call (the output is the same for any batch size).
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    /// Tiles run at the same time, each by its own worker (default: one per --threads thread);
    /// the --threads threads are split between them. Fewer workers use less memory.
    #[arg(long)]
    workers: Option<usize>,
    /// Minimum detection score.
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    /// Read reduced-resolution level N of a cloud-optimised GeoTIFF (0: full resolution).
    #[arg(long, default_value_t = 0)]
    overview: usize,
    /// Keep up to this many objects per tile (the model's default is torchvision's 100; dense
    /// scenes of cars or houses need more).
    #[arg(long)]
    max_detections: Option<usize>,
    /// Keep only these class names (comma-separated).
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    /// 1-based raster bands to feed the model, e.g. 3,2,1.
    #[arg(long, value_delimiter = ',')]
    bands: Vec<usize>,
    /// Average predictions over flipped tiles.
    #[arg(long)]
    tta: bool,
    /// The raster's cell size in metres per pixel, in place of its georeferencing's (tiles are
    /// resampled to the model's training cell size when they differ by more than 5%).
    #[arg(long)]
    cell_size: Option<f64>,
    /// Run at the raster's own resolution even when the model was trained at another cell size.
    #[arg(long, conflicts_with = "cell_size")]
    no_resample: bool,
    #[command(flatten)]
    polygons: PolygonArgs,
    /// Write the output in this CRS: EPSG:XXXX (EPSG:4326 GeoJSON is RFC 7946 lon/lat) or a WKT
    /// file. --simplify, --min-area and the area field are computed in the raster's CRS first.
    #[arg(long)]
    output_crs: Option<String>,
    /// Only detect inside these polygons (.geojson, .gpkg, .fgb or .shp, any CRS): tiles outside
    /// are never read and objects are cut at the boundary.
    #[arg(long)]
    aoi: Option<PathBuf>,
    /// K/N: process shard K of N (0-based), or `auto`: the index from JOB_COMPLETION_INDEX or
    /// SLURM_ARRAY_TASK_ID (the environment is read only then, or with --shards).
    #[arg(long)]
    shard: Option<String>,
    /// Number of shards, the index coming from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID.
    #[arg(long)]
    shards: Option<usize>,
    #[arg(long)]
    overwrite: bool,
    /// Continue an interrupted run from <output>.journal (same raster, model and options); without
    /// a journal, start from the first tile.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    device: crate::device_arg::DeviceArgs,
}

#[derive(Args)]
struct MergeArgs {
    /// Shard files written by `detect --shard`.
    #[arg(long, num_args = 1.., required = true)]
    inputs: Vec<PathBuf>,
    #[arg(long)]
    output: PathBuf,
    /// Write the output in this CRS (EPSG:XXXX or a WKT file) instead of the raster's.
    #[arg(long)]
    output_crs: Option<String>,
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
    /// Write the output in this CRS (EPSG:XXXX or a WKT file) instead of the raster's; metric
    /// options and areas are computed in the raster's CRS first.
    #[arg(long)]
    output_crs: Option<String>,
    #[arg(long)]
    overwrite: bool,
}

/// How masks become polygons (shared by `detect` and `vectorize`).
#[derive(Args)]
struct PolygonArgs {
    /// Douglas-Peucker tolerance in metres, whatever the raster's CRS (pixels when the raster has
    /// no georeferencing).
    #[arg(long, default_value_t = 0.0)]
    simplify: f64,
    /// Square building corners.
    #[arg(long)]
    regularize: bool,
    /// Drop polygons (and fill holes) smaller than this, in m² whatever the raster's CRS (pixels
    /// when the raster has no georeferencing).
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
            // Set from the raster's CRS once it is open.
            units: maskrcnn_geo::MapUnits::Native,
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
    /// Replace an existing --output or --report (never an input).
    #[arg(long)]
    overwrite: bool,
    /// With --model: exit 0 even when unreadable images of the dataset were skipped.
    #[arg(long, requires = "model")]
    skip_bad: bool,
    #[command(flatten)]
    device: crate::device_arg::DeviceArgs,
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
    /// Replace an existing --output (never an input).
    #[arg(long)]
    overwrite: bool,
}

#[derive(Args)]
struct PredictArgs {
    /// A .pth/.safetensors checkpoint, .emd, .dlpk or model folder.
    #[arg(long)]
    model: PathBuf,
    /// An image file or a folder of images (unreadable images of a folder are skipped; see --skip-bad).
    #[arg(long)]
    input: PathBuf,
    /// COCO results JSON to write.
    #[arg(long)]
    output: PathBuf,
    /// Drop detections scoring below this (the model keeps >= 0.05 by default).
    #[arg(long)]
    score_threshold: Option<f32>,
    /// Keep up to this many objects per image (the model's default is torchvision's 100).
    #[arg(long)]
    max_detections: Option<usize>,
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
    /// Replace an existing --output and same-named overlays in --overlay-dir (never an input).
    #[arg(long)]
    overwrite: bool,
    /// Exit 0 even when unreadable images of the --input folder were skipped.
    #[arg(long)]
    skip_bad: bool,
    #[command(flatten)]
    device: crate::device_arg::DeviceArgs,
}

pub fn run() -> Result<()> {
    let cli = Cli::parse();
    match crate::hooks::LineProgress::from_env() {
        Some(lines) => crate::hooks::with_hooks(std::rc::Rc::new(lines), || dispatch(cli)),
        None => dispatch(cli),
    }
}

/// [`run`] over the given arguments (the first is the program name) instead of the process's, for
/// running a command in-process: a usage error is returned, as the one line clap prints first.
pub fn run_from<I, T>(args: I) -> Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).map_err(|e| {
        let text = e.to_string();
        crate::hooks::UsageError(text.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string())
    })?;
    dispatch(cli)
}

fn dispatch(cli: Cli) -> Result<()> {
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("setting the thread count")?;
    }
    crate::device_arg::guard(|| match cli.command {
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
    })
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

/// [`crate::weights::load_model`], saying which model of a training run folder it read.
fn load_model(path: &std::path::Path, device: &burn::tensor::Device) -> Result<crate::weights::LoadedModel> {
    let loaded = crate::weights::load_model(path, device)?;
    if let Some(folder) = loaded.weights_path.parent().filter(|f| path.is_dir() && f.parent() == Some(path)) {
        eprintln!("{}: a training run folder; using its {}", path.display(), folder.display());
    }
    Ok(loaded)
}

/// `--max-detections`: more objects per image than torchvision's 100, with enough RPN proposals
/// after NMS to give them.
pub fn apply_max_detections(config: &mut crate::MaskRcnnConfig, max_detections: Option<usize>) -> Result<()> {
    let Some(n) = max_detections else { return Ok(()) };
    if n == 0 {
        bail!("--max-detections must be at least 1");
    }
    config.roi_heads.box_detections_per_img = n;
    config.rpn.post_nms_top_n_test = config.rpn.post_nms_top_n_test.max(n);
    config.rpn.pre_nms_top_n_test = config.rpn.pre_nms_top_n_test.max(config.rpn.post_nms_top_n_test);
    Ok(())
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
    let folder = args.input.is_dir();
    let mut policy = OutputPolicy::new(args.overwrite);
    policy.model_input(&args.model, "--model");
    for image in &images {
        policy.input(image, "--input");
    }
    if folder {
        policy.input_folder(&args.input, "--input folder");
    }
    if let Some(ids) = &args.image_ids_from {
        policy.input(ids, "--image-ids-from");
    }
    let overlays: Vec<PathBuf> = args
        .overlay_dir
        .as_deref()
        .map(|dir| images.iter().map(|p| overlay_path(dir, p)).collect())
        .unwrap_or_default();
    let check_outputs = |policy: &OutputPolicy| -> Result<()> {
        policy.check_file(&args.output)?;
        if let Some(dir) = &args.overlay_dir {
            policy.check_folder(dir, overlays.iter().map(PathBuf::as_path))?;
            // Two images of one stem (a.jpg, a.png) would share an overlay name.
            let labels: Vec<String> = images.iter().map(|p| format!("the overlay of {}", display_name(p))).collect();
            let mut named: Vec<(&std::path::Path, &str)> = vec![(&args.output, "--output")];
            named.extend(overlays.iter().zip(&labels).map(|(p, l)| (p.as_path(), l.as_str())));
            policy.check_distinct(&named)?;
        }
        Ok(())
    };
    check_outputs(&policy)?;
    let device = args.device.resolve()?;
    let mut loaded = load_model(&args.model, &device)?;
    // The weights file actually read (an .emd names its own) is an input too.
    policy.input(&loaded.weights_path, "--model");
    check_outputs(&policy)?;
    let model = &mut loaded.model;
    if let Some(s) = args.min_size {
        model.config.transform.min_size = s;
    }
    if let Some(s) = args.max_size {
        model.config.transform.max_size = s;
    }
    model.config.validate().context("--min-size/--max-size")?;
    if let Some(t) = args.score_threshold {
        if !(0.0..=1.0).contains(&t) {
            bail!("--score-threshold must be within 0..1, got {t}");
        }
    }
    apply_max_detections(&mut model.config, args.max_detections)?;
    let cap = model.config.roi_heads.box_detections_per_img;
    let ids = args.image_ids_from.as_deref().map(image_ids_from_coco).transpose()?;
    if let Some(dir) = &args.overlay_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let bar = progress(images.len(), "predict");
    let mut results = Vec::new();
    let mut total = 0usize;
    let mut skipped: Vec<SkippedImage> = Vec::new();
    for (index, path) in images.iter().enumerate() {
        // Over a folder one bad image is reported and skipped; a single --input file must be read.
        let image = match crate::predict::load_checked_input(path, &model.config) {
            Ok(image) => image,
            Err(e) if folder => {
                let skip = skipped_image(path, 0, &e);
                bar.suspend(|| eprintln!("{}", skip.warning()));
                skipped.push(skip);
                bar.inc(1);
                continue;
            }
            Err(e) => return Err(e),
        };
        // Ids come from the image's place in the whole folder, so a skipped image shifts none.
        let image_id = image_id_for(path, index, ids.as_ref())?;
        let mut dets = model.predict(std::slice::from_ref(&image)).pop().unwrap_or_default();
        if dets.len() >= cap {
            bar.suspend(|| {
                eprintln!(
                    "warning: {}: {cap} objects, the most kept per image; there may be more (--max-detections)",
                    path.display()
                )
            });
        }
        if let Some(t) = args.score_threshold {
            dets.retain(|d| d.score >= t);
        }
        total += dets.len();
        results.extend(to_coco_results(model, image_id, &display_name(path), (image.height, image.width), &dets));
        if let Some(dir) = &args.overlay_dir {
            crate::overlay::write_overlay(path, &image, &dets, &model.config, &overlay_path(dir, path))?;
        }
        bar.inc(1);
        bar.set_message(format!("{total} objects"));
    }
    bar.finish_and_clear();
    let done = images.len() - skipped.len();
    if done == 0 {
        bail!("{}: none of its {} images could be read; nothing written", args.input.display(), images.len());
    }
    let json = serde_json::to_vec(&results)?;
    crate::io_util::write_atomic(&args.output, &json)?;
    eprintln!("{} detections in {} images -> {}", total, done, args.output.display());
    finish_batch(&skipped, images.len(), args.skip_bad)
}

/// The end of a batch run that skipped unreadable images: their count, and an error (so a
/// non-zero exit) unless `--skip-bad` accepts a partial run.
fn finish_batch(skipped: &[SkippedImage], total: usize, skip_bad: bool) -> Result<()> {
    if skipped.is_empty() {
        return Ok(());
    }
    eprintln!("{} of {} images skipped as unreadable (see the warnings above)", skipped.len(), total);
    if !skip_bad {
        bail!(
            "{} unreadable image(s) skipped; the results of the other {} were written (pass --skip-bad to accept this)",
            skipped.len(),
            total - skipped.len()
        );
    }
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
    let mut policy = OutputPolicy::new(args.overwrite);
    let check_outputs = |policy: &OutputPolicy| -> Result<()> {
        let mut named: Vec<(&std::path::Path, &str)> = Vec::new();
        for (path, which) in [(&args.output, "--output"), (&args.report, "--report")] {
            if let Some(path) = path {
                policy.check_file(path)?;
                named.push((path, which));
            }
        }
        policy.check_distinct(&named)
    };
    let mut grid = None;
    let mut skipped: Vec<SkippedImage> = Vec::new();
    let mut total_images = 0;
    let (ground_truth, results) = if let Some(model_path) = &args.model {
        let data = args.data.as_deref().expect("clap requires --data with --model");
        let mut dataset = crate::evaluate::GroundTruthSet::open(data, args.images.as_deref())?;
        policy.model_input(model_path, "--model").input(&dataset.annotations, "--data");
        for info in &dataset.ground_truth.images {
            policy.input(&dataset.image_path(&info.file_name), "--data image");
        }
        check_outputs(&policy)?;
        let device = args.device.resolve()?;
        let loaded = load_model(model_path, &device)?;
        policy.input(&loaded.weights_path, "--model");
        check_outputs(&policy)?;
        let mut model = loaded.model;
        // The model must keep at least as many detections as are scored.
        let keep = &mut model.config.roi_heads.box_detections_per_img;
        *keep = (*keep).max(args.max_dets);
        total_images = dataset.ground_truth.images.len();
        let bar = progress(total_images, "predict");
        let ours = crate::evaluate::predict_dataset_skipping(
            &model,
            &dataset,
            |skip| bar.suspend(|| eprintln!("{}", skip.warning())),
            |p| {
                bar.set_position(p.done as u64);
                Ok(())
            },
        )?;
        bar.finish_and_clear();
        skipped = ours.skipped;
        if skipped.len() == total_images {
            bail!("{}: none of its {} images could be read; nothing written", data.display(), total_images);
        }
        // Scores are those of the images the model saw; unreadable ones are not counted as misses.
        crate::evaluate::drop_images(&mut dataset.ground_truth, &skipped);
        if args.report.is_some() {
            grid = Some(crate::evaluate::show_results(&model, &dataset, 4, maskrcnn_viz::DrawMode::Mask, 0.5)?);
        }
        (dataset.ground_truth, crate::evaluate::as_detection_results(&ours.results)?)
    } else {
        let predictions = args.predictions.as_deref().expect("clap requires --predictions");
        let annotations = args.annotations.as_deref().context("--annotations is required with --predictions")?;
        policy.input(predictions, "--predictions").input(annotations, "--annotations");
        check_outputs(&policy)?;
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
    if !skipped.is_empty() {
        println!(
            "note: scored on {} of {} images; {} unreadable image(s) and their annotations left out",
            total_images - skipped.len(),
            total_images,
            skipped.len()
        );
    }
    let mut json: serde_json::Value = serde_json::from_str(&report.to_json())?;
    json["arcgis_average_precision"] =
        serde_json::json!({"iou": args.arcgis_iou, "per_class": arcgis.per_class, "mean": arcgis.mean});
    json["max_dets"] = serde_json::json!(max_dets);
    if !skipped.is_empty() {
        json["skipped_images"] = serde_json::json!(skipped
            .iter()
            .map(|s| serde_json::json!({"file": s.path.display().to_string(), "image_id": s.image_id, "reason": s.reason}))
            .collect::<Vec<_>>());
    }
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
    finish_batch(&skipped, total_images, args.skip_bad)
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
    let mut policy = OutputPolicy::new(args.overwrite);
    policy.model_input(&args.model, "--model").input(&dataset.annotations, "--data");
    for info in &dataset.ground_truth.images {
        policy.input(&dataset.image_path(&info.file_name), "--data image");
    }
    policy.check_file(&args.output)?;
    let device = maskrcnn_model::device::cpu();
    let loaded = load_model(&args.model, &device)?;
    policy.input(&loaded.weights_path, "--model").check_file(&args.output)?;
    let model = loaded.model;
    let grid = crate::evaluate::show_results(&model, &dataset, args.rows, mode, args.score_threshold)?;
    let tmp = crate::io_util::temp_path_for(&args.output);
    grid.save_with_format(&tmp, image::ImageFormat::Png)
        .with_context(|| format!("writing {}", args.output.display()))?;
    std::fs::rename(&tmp, &args.output).with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!("{} rows -> {}", args.rows.min(dataset.ground_truth.images.len()), args.output.display());
    Ok(())
}

/// The output policy of a command writing one file: its inputs are never replaced, an existing
/// output only with --overwrite.
fn refuse_output(output: &std::path::Path, overwrite: bool, inputs: &[(&std::path::Path, &str)]) -> Result<()> {
    let mut policy = OutputPolicy::new(overwrite);
    for (path, which) in inputs {
        policy.input(path, *which);
    }
    policy.check_file(output)
}

fn detect(args: DetectArgs) -> Result<()> {
    use maskrcnn_geo::{DetectOptions, Shard};
    refuse_output(&args.output, args.overwrite, &[(&args.model, "--model"), (&args.raster, "--raster")])?;
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if args.workers == Some(0) {
        bail!("--workers must be at least 1");
    }
    // The environment is read only when asked: a job on a cluster must not shard by accident.
    let from_env = |flag: &str| {
        Shard::from_env(args.shards)?.with_context(|| {
            format!(
                "{flag}: the shard index comes from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID, and neither is set"
            )
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
    let output_crs = args.output_crs.as_deref().map(maskrcnn_geo::reproject::parse_crs).transpose()?;
    if let Some(aoi) = &args.aoi {
        refuse_output(&args.output, args.overwrite, &[(aoi, "--aoi")])?;
    }
    let device = args.device.resolve()?;
    let mut model = load_model(&args.model, &device)?.model;
    apply_max_detections(&mut model.config, args.max_detections)?;
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
        model_path: args.model.clone(),
        output: args.output.clone(),
        overwrite: args.overwrite,
        resume: args.resume,
        options,
        classes: args.classes.clone(),
        test_time_augmentation: args.tta,
        overview: args.overview,
        aoi: args.aoi.clone(),
        output_crs,
        cell_size: crate::cell_size::CellSizeRequest {
            raster_cell_size: args.cell_size,
            no_resample: args.no_resample,
        },
        parallelism: crate::detect::Parallelism { batch_size: args.batch_size, workers: args.workers },
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
        crate::hooks::detect_progress(&p);
    })?;
    bar.finish_and_clear();
    crate::hooks::detect_finished(&summary);
    eprintln!(
        "{} tiles ({} skipped as nodata{}), {} objects -> {}{}",
        summary.tiles_processed,
        summary.tiles_skipped_nodata,
        if args.aoi.is_some() { " or outside --aoi" } else { "" },
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
    let inputs: Vec<(&std::path::Path, &str)> = args.inputs.iter().map(|p| (p.as_path(), "--inputs")).collect();
    refuse_output(&args.output, args.overwrite, &inputs)?;
    let output_crs = args.output_crs.as_deref().map(maskrcnn_geo::reproject::parse_crs).transpose()?;
    let n = crate::detect::merge_shards(&args.inputs, &args.output, args.overwrite, output_crs.as_ref())?;
    eprintln!("{n} objects from {} shards -> {}", args.inputs.len(), args.output.display());
    Ok(())
}

fn vectorize(args: VectorizeArgs) -> Result<()> {
    use maskrcnn_geo::{Feature, GeoTiff, PixelWindow, Samples, WriteOptions};
    refuse_output(&args.output, args.overwrite, &[(&args.labels, "--labels")])?;
    let output_crs = args.output_crs.as_deref().map(maskrcnn_geo::reproject::parse_crs).transpose()?;
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
    let mut options = args.polygons.options()?;
    if info.geotransform.is_some() {
        options.units = maskrcnn_geo::MapUnits::of_crs(info.crs.as_ref());
    }
    let polygons =
        maskrcnn_geo::vectorize_label_raster(&labels, info.width as usize, info.height as usize, 0i64, &gt, &options)?;
    let features: Vec<Feature> = polygons
        .into_iter()
        .filter(|p| !p.geometry.0.is_empty())
        .map(|p| {
            let area = options.units.area_m2(&p.geometry);
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
    if output_crs.is_some() && info.geotransform.is_none() {
        bail!("--output-crs: {} has no georeferencing, so its polygons cannot be reprojected", args.labels.display());
    }
    let mut sink = maskrcnn_geo::create_writer_in(&args.output, info.crs.as_ref(), output_crs.as_ref(), &write)?;
    if let Some(warning) = sink.crs_warning() {
        eprintln!("warning: {warning}");
    }
    for f in &features {
        sink.write(f)?;
    }
    sink.warnings().iter().for_each(|w| eprintln!("warning: {}: {w}", args.output.display()));
    sink.finish()?;
    eprintln!("{} objects -> {}", features.len(), args.output.display());
    Ok(())
}

fn package(args: PackageArgs) -> Result<()> {
    let outputs: Vec<PathBuf> =
        ["pth", "emd", "dlpk"].iter().map(|e| args.output.join(format!("{}.{e}", args.name))).collect();
    let mut policy = OutputPolicy::new(args.overwrite);
    policy.model_input(&args.model, "--model");
    policy.check_folder(&args.output, outputs.iter().map(PathBuf::as_path))?;
    let device = maskrcnn_model::device::cpu();
    let loaded = load_model(&args.model, &device)?;
    // An .emd names its weights file, which may sit where the package goes.
    policy.input(&loaded.weights_path, "--model");
    policy.check_folder(&args.output, outputs.iter().map(PathBuf::as_path))?;
    let mut model = loaded.model;
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
    // With --overwrite the export removes these from --output before writing: no input may be among them.
    for name in
        ["images", "labels", "map.txt", "esri_model_definition.emd", "esri_accumulated_stats.json", "annotations.json"]
    {
        let ours = args.output.join(name);
        for (input, which) in [(&args.raster, "--raster"), (&args.labels, "--labels")] {
            let mut policy = OutputPolicy::new(true);
            policy.input_folder(&ours, which);
            if policy.check_folder(input, []).is_err() {
                bail!("{} is also an input ({which}); choose another output", ours.display());
            }
        }
    }
    refuse_output(&args.output, true, &[(&args.raster, "--raster"), (&args.labels, "--labels")])?;
    let holds_files = std::fs::read_dir(&args.output).map(|mut d| d.next().is_some()).unwrap_or(false);
    crate::output_policy::refuse_existing(&args.output, args.overwrite || !holds_files)?;
    let mut options = ExportChipsOptions::new(args.raster.clone(), args.labels.clone(), args.output.clone(), format);
    options.class_field = args.class_field.clone();
    options.label_layer = args.label_layer.clone();
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
        device: args.device.clone(),
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
    let mut policy = OutputPolicy::new(args.overwrite);
    policy.input(&args.data, "--data");
    if let Some(init) = &args.init {
        policy.model_input(init, "--init");
    }
    let (png, json) = (args.output.join("lr_find.png"), args.output.join("lr_find.json"));
    policy.check_folder(&args.output, [png.as_path(), json.as_path()])?;
    let dataset = crate::train_cli::open_dataset(&args.data, args.images.as_deref(), args.format, &args.class_name)?;
    let class_names = dataset.class_names().to_vec();
    let bands = dataset.image(0).context("reading the first image")?.channels;
    let device = args.device.resolve()?.autodiff();
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
    maskrcnn_viz::save_png(&plot, &png)?;
    crate::io_util::write_atomic(&json, serde_json::to_string_pretty(&result)?.as_bytes())?;
    match result.suggested_lr {
        Some(lr) => println!("suggested learning rate: {lr:.2e} (plot: {})", args.output.join("lr_find.png").display()),
        None => println!("no sustained loss decrease found; see {}", args.output.join("lr_find.png").display()),
    }
    Ok(())
}
