//! Objects out of large georeferenced rasters: tiles in, polygons in map coordinates out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use maskrcnn_geo::{
    create_writer_in, detect_raster_pipelined, DetectJournal, DetectOptions, DetectSummary, Feature, FeatureSink,
    GeoTiff, PipelineOptions, Progress, RunFingerprint, ShardHeader, ShardWriter, TileGrid, TileImage, TileInstance,
    TileMask, WriteOptions,
};

use crate::model::{Detection, MaskRcnn};
use crate::transform::ImageChw;

pub struct DetectJob {
    pub raster: PathBuf,
    /// Where the model was loaded from (its files are part of the journal's fingerprint).
    pub model_path: PathBuf,
    pub output: PathBuf,
    pub overwrite: bool,
    /// Continue the run recorded in `<output>.journal` (if there is one) instead of starting over.
    pub resume: bool,
    pub options: DetectOptions,
    /// Class names to keep (empty: all).
    pub classes: Vec<String>,
    /// Average the model's masks over horizontal and vertical flips.
    pub test_time_augmentation: bool,
    /// Reduced-resolution level of a COG to read (0: full resolution).
    pub overview: usize,
    /// Polygons limiting detection to the tiles they touch, objects cut at their edge (`--aoi`).
    pub aoi: Option<PathBuf>,
    /// CRS the output is written in (`--output-crs`); None: the raster's.
    pub output_crs: Option<maskrcnn_geo::Crs>,
    /// `--cell-size` / `--no-resample`: how tiles are matched to the model's training cell size.
    pub cell_size: crate::cell_size::CellSizeRequest,
    /// Batch size and workers; the output does not depend on them.
    pub parallelism: Parallelism,
}

/// Runs the model on one tile and turns its detections into tile-sized binary masks.
pub fn detect_tile(
    model: &MaskRcnn,
    tile: &TileImage,
    scale: maskrcnn_data::scaling::PixelScale,
    tta: bool,
    keep: &[usize],
) -> Result<Vec<TileInstance>> {
    Ok(detect_tiles(model, std::slice::from_ref(tile), scale, tta, keep)?.pop().unwrap_or_default())
}

/// [`detect_tile`] for several tiles, run through the model as one batch. Tiles of one size
/// share a batch and nothing else, so no tile is padded beyond what it gets alone and each tile's
/// answer is the one it gets on its own.
pub fn detect_tiles(
    model: &MaskRcnn,
    tiles: &[TileImage],
    scale: maskrcnn_data::scaling::PixelScale,
    tta: bool,
    keep: &[usize],
) -> Result<Vec<Vec<TileInstance>>> {
    let mut images = Vec::with_capacity(tiles.len());
    for tile in tiles {
        let channels = tile.bands.len();
        if channels != model.config.backbone.in_channels {
            bail!("tile has {channels} bands but the model expects {}", model.config.backbone.in_channels);
        }
        let mut data = tile.data.clone();
        scale.apply(&mut data);
        images.push(Some(ImageChw { channels, height: tile.height as usize, width: tile.width as usize, data }));
    }
    let mut dets: Vec<Vec<Detection>> = vec![Vec::new(); tiles.len()];
    if tta {
        for (image, out) in images.iter().flatten().zip(&mut dets) {
            *out = crate::tta::predict_with_flips(model, image);
        }
    } else {
        let size_of = |t: &TileImage| (t.height, t.width);
        let mut sizes: Vec<(u32, u32)> = tiles.iter().map(size_of).collect();
        sizes.sort_unstable();
        sizes.dedup();
        for size in sizes {
            let members: Vec<usize> = (0..tiles.len()).filter(|&i| size_of(&tiles[i]) == size).collect();
            let batch: Vec<ImageChw> = members.iter().filter_map(|&i| images[i].take()).collect();
            for (i, found) in members.into_iter().zip(model.predict(&batch)) {
                dets[i] = found;
            }
        }
    }
    let cap = model.config.roi_heads.box_detections_per_img;
    Ok(tiles
        .iter()
        .zip(dets)
        .map(|(tile, dets)| {
            if dets.len() >= cap {
                eprintln!(
                    "warning: tile {}: {cap} objects, the most kept per tile; there may be more (--max-detections)",
                    tile.tile.name()
                );
            }
            dets.into_iter()
                .filter(|d| keep.is_empty() || keep.contains(&d.label))
                .map(|d| TileInstance {
                    class_id: model.config.category_id(d.label) as u32,
                    score: d.score,
                    // The pasted box only, not the tile.
                    mask: TileMask {
                        x0: d.mask.x0 as u32,
                        y0: d.mask.y0 as u32,
                        width: d.mask.width as u32,
                        height: d.mask.height as u32,
                        data: d.mask.to_binary(),
                    },
                })
                .collect()
        })
        .collect())
}

/// How the tiles of a run share the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallelism {
    /// Tiles per model call.
    pub batch_size: usize,
    /// Threads running the model at once, each on its own batch (None: one per thread of the
    /// global rayon pool, i.e. `--threads`).
    pub workers: Option<usize>,
}

impl Default for Parallelism {
    fn default() -> Self {
        Parallelism { batch_size: 1, workers: None }
    }
}

impl Parallelism {
    /// Workers and the threads each one's model ops may use: `threads` (the rayon pool's size)
    /// split between them, never more in all.
    fn plan(&self, threads: usize) -> Result<(usize, usize)> {
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        let threads = threads.max(1);
        let workers = match self.workers {
            Some(0) => bail!("--workers must be at least 1"),
            Some(w) => w,
            None => threads,
        };
        Ok((workers, (threads / workers).max(1)))
    }
}

thread_local! {
    /// Each pipeline worker's own pool for the model's parallel ops, so workers do not steal each
    /// other's work and a tile is computed the same way whatever the number of workers.
    static WORKER_POOL: std::cell::RefCell<Option<(usize, rayon::ThreadPool)>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` on this thread's pool of `threads` threads (built on first use).
fn in_worker_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> Result<R> {
    WORKER_POOL.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(n, _)| *n != threads) {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("detect-op-{i}"))
                .build()
                .context("starting a detect worker's threads")?;
            *slot = Some((threads, pool));
        }
        let (_, pool) = slot.as_ref().expect("just set");
        Ok(pool.install(f))
    })
}

/// Detects over the whole raster (or its shard) and writes the vector file, or a shard file for
/// `maskrcnn merge` when the job is one shard of several.
pub fn run_detect(model: &MaskRcnn, job: &DetectJob, mut progress: impl FnMut(Progress)) -> Result<DetectSummary> {
    let mut raster = GeoTiff::open_overview(&job.raster, job.overview)?;
    if job.overview > 0 {
        let i = raster.info();
        eprintln!("{}: overview level {} ({}x{} pixels)", job.raster.display(), job.overview, i.width, i.height);
    }
    let info = raster.info().clone();
    let plan = crate::cell_size::CellSizePlan::new(&job.raster, &info, model.config.cell_size, job.cell_size)?;
    // Every tile has the grid's size (the last ones are shifted inwards), unless the raster is smaller.
    let (tile_width, tile_height) = (job.options.tile_size.min(info.width), job.options.tile_size.min(info.height));
    let resampling_model = plan.model_for(model, tile_width, tile_height, job.cell_size.no_resample)?;
    let model = resampling_model.as_ref().unwrap_or(model);
    let choice = crate::bands::choose_bands(
        &job.raster,
        info.bands,
        &info.alpha_band.into_iter().collect::<Vec<_>>(),
        model.config.backbone.in_channels,
        &model.config.input_bands,
        &job.options.bands,
    )?;
    if let Some(note) = &choice.note {
        eprintln!("{}: {note}", job.raster.display());
    }
    let bands = choice.bands;
    let keep: Vec<usize> = job
        .classes
        .iter()
        .map(|name| {
            (1..model.config.num_classes).find(|&l| model.config.class_name(l).eq_ignore_ascii_case(name)).with_context(
                || format!("--classes: the model has no class {name:?} (it knows {})", known_classes(model)),
            )
        })
        .collect::<Result<_>>()?;
    let mut options = job.options.clone();
    options.bands = bands;
    options.class_names = class_names_by_category_id(model);
    if info.geotransform.is_some() {
        options.vectorize.units = maskrcnn_geo::MapUnits::of_crs(info.crs.as_ref());
    }
    if info.geotransform.is_none() {
        if job.output_crs.is_some() {
            bail!(
                "--output-crs: {} has no georeferencing, so its polygons cannot be reprojected",
                job.raster.display()
            );
        }
        eprintln!("warning: {} has no georeferencing; polygons are in pixel coordinates", job.raster.display());
    }
    if let Some(path) = &job.aoi {
        let aoi = maskrcnn_geo::aoi::Aoi::load(path, &info, &job.raster)?;
        options.aoi = Some(std::sync::Arc::new(aoi));
    }
    let scale = model.config.transform.pixel_scale_for(info.sample_type);
    let (workers, threads_per_worker) = job.parallelism.plan(rayon::current_num_threads())?;
    let pipeline = PipelineOptions { batch_size: job.parallelism.batch_size, workers };
    let tta = job.test_time_augmentation;
    // The hooks (a Python caller's Ctrl-C) belong to this thread and the detector runs on the
    // pipeline's workers: a stop request polled here after each tile reaches them through a flag.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut progress = |p: Progress| {
        progress(p);
        if crate::hooks::check_stop().is_err() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    };
    let detector = plan.wrap_batch(|tiles: &[TileImage]| {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            bail!("interrupted");
        }
        crate::hooks::check_stop()?;
        in_worker_pool(threads_per_worker, || detect_tiles(model, tiles, scale, tta, &keep))?
    });
    let extra = BTreeMap::from([
        ("classes kept".to_string(), format!("{keep:?}")),
        ("flips (--tta)".to_string(), job.test_time_augmentation.to_string()),
        ("overview level".to_string(), job.overview.to_string()),
        ("output CRS".to_string(), job.output_crs.as_ref().map(|c| c.describe()).unwrap_or_default()),
        ("area of interest".to_string(), aoi_fingerprint(job.aoi.as_deref())?),
        ("cell size resampling".to_string(), format!("{plan:?}")),
    ]);
    let fingerprint = RunFingerprint::new(&job.raster, model_fingerprint(&job.model_path, model)?, &options, extra)?;
    enum Sink {
        Shard(ShardWriter),
        Vector(Box<dyn FeatureSink>),
    }
    // Before the journal: an output that cannot be created must not leave a journal behind.
    if options.shard.count > 1 && job.output_crs.is_some() {
        bail!("--output-crs applies to the merged file: pass it to `maskrcnn merge`, not to each shard");
    }
    let mut sink = if options.shard.count > 1 {
        let grid = TileGrid::new(info.width, info.height, options.tile_size, options.overlap)?;
        let header = ShardHeader::new(
            options.shard,
            grid,
            info.geotransform_or_identity(),
            info.crs.clone(),
            options.class_names.clone(),
            options.merge.clone(),
            options.vectorize.clone(),
        );
        Sink::Shard(ShardWriter::create(&job.output, &header, job.overwrite)?)
    } else {
        let write_options = WriteOptions { overwrite: job.overwrite, ..WriteOptions::default() };
        let sink = create_writer_in(&job.output, info.crs.as_ref(), job.output_crs.as_ref(), &write_options)?;
        if let Some(warning) = sink.crs_warning() {
            eprintln!("warning: {warning}");
        }
        Sink::Vector(sink)
    };
    let mut journal = open_journal(job, &fingerprint)?;
    let write = |f: Feature| match &mut sink {
        Sink::Shard(w) => w.write(&f),
        Sink::Vector(s) => s.write(&f),
    };
    let summary = match detect_raster_pipelined(
        &mut raster,
        &detector,
        &options,
        pipeline,
        Some(&mut journal),
        write,
        &mut progress,
    ) {
        Ok(summary) => summary,
        Err(e) => {
            // A run that failed before its first tile (bands the model cannot take, say) leaves
            // nothing to resume, and its journal would only stand in the way of the corrected run.
            if !journal.has_progress() {
                let _ = journal.finish();
            }
            return Err(e);
        }
    };
    match sink {
        Sink::Shard(w) => w.finish(&summary.pending)?,
        Sink::Vector(s) => {
            s.warnings().iter().for_each(|w| eprintln!("warning: {}: {w}", job.output.display()));
            s.finish()?
        }
    }
    // Only once the output is in place: a kill before this still leaves a run to resume.
    journal.finish()?;
    report_unreadable_tiles(&job.raster, &job.output, &summary)?;
    Ok(summary)
}

/// Every run keeps `<output>.journal` so a killed run can be resumed. An existing journal is
/// continued with `--resume`, discarded with `--overwrite`, and otherwise an error: a second run
/// silently starting over would throw hours of tiles away. `--resume` without a journal starts
/// a new run, so one command line serves the first attempt and every retry.
fn open_journal(job: &DetectJob, fingerprint: &RunFingerprint) -> Result<DetectJournal> {
    let dir = DetectJournal::dir_for(&job.output)?;
    if DetectJournal::exists(&dir) {
        if job.resume {
            let journal = DetectJournal::resume(&dir, fingerprint)
                .map_err(|e| anyhow!("{e:#}; to start over instead, run without --resume and with --overwrite"))?;
            eprintln!("resuming the interrupted run recorded in {}", dir.display());
            return Ok(journal);
        }
        if !job.overwrite {
            bail!(
                "{}: an interrupted detect left this journal; pass --resume to continue it, or --overwrite to \
                 discard it and start over",
                dir.display()
            );
        }
        eprintln!("discarding the journal of an interrupted run, {} (--overwrite without --resume)", dir.display());
        DetectJournal::discard(&dir)?;
    } else if job.resume {
        eprintln!("no journal at {}; starting from the first tile", dir.display());
    }
    DetectJournal::create(&dir, fingerprint)
}

/// The model's files (a model folder's, an .emd's folder's, or the one file given) and its
/// configuration as loaded, digested: retrained weights under the same name are another model.
fn model_fingerprint(path: &Path, model: &MaskRcnn) -> Result<String> {
    let is_emd = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("emd"));
    let folder = if path.is_dir() {
        Some(path)
    } else if is_emd {
        Some(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
    } else {
        None
    };
    let files = match folder {
        Some(dir) => {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
                let entry = entry?;
                let hidden = entry.file_name().to_string_lossy().starts_with('.');
                if entry.file_type()?.is_file() && !hidden {
                    files.push(entry.path());
                }
            }
            files.sort();
            files
        }
        None => vec![path.to_path_buf()],
    };
    let config = serde_json::to_vec(&model.config)?;
    maskrcnn_geo::digest_files(&files, &config).with_context(|| format!("fingerprinting the model {}", path.display()))
}

/// Names each tile that could not be read, then fails: the output holds every other tile's
/// objects, but a scene with holes must not look complete to a script checking the exit status.
fn report_unreadable_tiles(raster: &Path, output: &Path, summary: &DetectSummary) -> Result<()> {
    if summary.unreadable_tiles.is_empty() {
        return Ok(());
    }
    for (tile, reason) in &summary.unreadable_tiles {
        eprintln!("warning: {}: tile {tile} could not be read ({reason}); left out", raster.display());
    }
    bail!(
        "{}: {} tile(s) could not be read and were left out (named above); {} holds the objects of the other {} tiles",
        raster.display(),
        summary.unreadable_tiles.len(),
        output.display(),
        summary.tiles_processed
    )
}

/// What identifies an AOI for the journal: its path and content digest.
fn aoi_fingerprint(aoi: Option<&Path>) -> Result<String> {
    let Some(path) = aoi else { return Ok(String::new()) };
    let digest = maskrcnn_geo::digest_files(&[path.to_path_buf()], b"")
        .with_context(|| format!("--aoi {}: cannot read it", path.display()))?;
    Ok(format!("{} {digest}", path.display()))
}

/// Joins shard files into one vector file, stitching objects across shard seams; written in
/// `output_crs` when given, else the raster's CRS.
pub fn merge_shards(
    inputs: &[PathBuf],
    output: &Path,
    overwrite: bool,
    output_crs: Option<&maskrcnn_geo::Crs>,
) -> Result<usize> {
    let header = maskrcnn_geo::read_shard_headers(inputs)?;
    let options = WriteOptions { overwrite, ..WriteOptions::default() };
    let mut sink = create_writer_in(output, header.crs.as_ref(), output_crs, &options)?;
    if let Some(warning) = sink.crs_warning() {
        eprintln!("warning: {warning}");
    }
    let mut count = 0;
    maskrcnn_geo::merge_outputs_streaming(inputs, |f| {
        count += 1;
        sink.write(&f)
    })?;
    sink.warnings().iter().for_each(|w| eprintln!("warning: {}: {w}", output.display()));
    sink.finish()?;
    Ok(count)
}

fn class_names_by_category_id(model: &MaskRcnn) -> Vec<String> {
    let max_id = (0..model.config.num_classes).map(|l| model.config.category_id(l)).max().unwrap_or(0) as usize;
    let mut names: Vec<String> = (0..=max_id).map(|i| i.to_string()).collect();
    for label in 0..model.config.num_classes {
        names[model.config.category_id(label) as usize] = model.config.class_name(label);
    }
    names
}

fn known_classes(model: &MaskRcnn) -> String {
    (1..model.config.num_classes).map(|l| model.config.class_name(l)).collect::<Vec<_>>().join(", ")
}
