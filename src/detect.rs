//! Objects out of large georeferenced rasters: tiles in, polygons in map coordinates out.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use maskrcnn_geo::{
    create_writer, detect_raster_streaming, DetectOptions, DetectSummary, GeoTiff, Progress, ShardHeader, ShardWriter,
    TileGrid, TileImage, TileInstance, WriteOptions,
};

use crate::model::MaskRcnn;
use crate::transform::ImageChw;

pub struct DetectJob {
    pub raster: PathBuf,
    pub output: PathBuf,
    pub overwrite: bool,
    pub options: DetectOptions,
    /// Class names to keep (empty: all).
    pub classes: Vec<String>,
    /// Average the model's masks over horizontal and vertical flips.
    pub test_time_augmentation: bool,
}

/// Runs the model on one tile and turns its detections into tile-sized binary masks.
pub fn detect_tile(
    model: &MaskRcnn,
    tile: &TileImage,
    scale: maskrcnn_data::scaling::PixelScale,
    tta: bool,
    keep: &[usize],
) -> Result<Vec<TileInstance>> {
    let (w, h) = (tile.width as usize, tile.height as usize);
    let channels = tile.bands.len();
    if channels != model.config.backbone.in_channels {
        bail!("tile has {channels} bands but the model expects {}", model.config.backbone.in_channels);
    }
    let mut data = tile.data.clone();
    scale.apply(&mut data);
    let image = ImageChw { channels, height: h, width: w, data };
    let dets = if tta {
        crate::tta::predict_with_flips(model, &image)
    } else {
        model.predict(std::slice::from_ref(&image)).pop().unwrap_or_default()
    };
    Ok(dets
        .into_iter()
        .filter(|d| keep.is_empty() || keep.contains(&d.label))
        .map(|d| TileInstance {
            class_id: model.config.category_id(d.label) as u32,
            score: d.score,
            mask: d.mask.to_binary_full(h, w),
        })
        .collect())
}

/// Detects over the whole raster (or its shard) and writes the vector file, or a shard file for
/// `maskrcnn merge` when the job is one shard of several.
pub fn run_detect(model: &MaskRcnn, job: &DetectJob, mut progress: impl FnMut(Progress)) -> Result<DetectSummary> {
    let mut raster = GeoTiff::open(&job.raster)?;
    let info = raster.info().clone();
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
        eprintln!("warning: {} has no georeferencing; polygons are in pixel coordinates", job.raster.display());
    }
    let scale = model.config.transform.pixel_scale_for(info.sample_type);
    let detector = |tile: &TileImage| detect_tile(model, tile, scale, job.test_time_augmentation, &keep);
    if options.shard.count > 1 {
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
        let mut writer = ShardWriter::create(&job.output, &header, job.overwrite)?;
        let summary = detect_raster_streaming(&mut raster, detector, &options, |f| writer.write(&f), &mut progress)?;
        writer.finish(&summary.pending)?;
        report_unreadable_tiles(&job.raster, &job.output, &summary)?;
        return Ok(summary);
    }
    let write_options = WriteOptions { overwrite: job.overwrite, ..WriteOptions::default() };
    let mut sink = create_writer(&job.output, info.crs.as_ref(), &write_options)?;
    if let Some(warning) = sink.crs_warning() {
        eprintln!("warning: {warning}");
    }
    let summary = detect_raster_streaming(&mut raster, detector, &options, |f| sink.write(&f), &mut progress)?;
    sink.finish()?;
    report_unreadable_tiles(&job.raster, &job.output, &summary)?;
    Ok(summary)
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

/// Joins shard files into one vector file, stitching objects across shard seams.
pub fn merge_shards(inputs: &[PathBuf], output: &Path, overwrite: bool) -> Result<usize> {
    let header = maskrcnn_geo::read_shard_headers(inputs)?;
    let options = WriteOptions { overwrite, ..WriteOptions::default() };
    let mut sink = create_writer(output, header.crs.as_ref(), &options)?;
    if let Some(warning) = sink.crs_warning() {
        eprintln!("warning: {warning}");
    }
    let mut count = 0;
    maskrcnn_geo::merge_outputs_streaming(inputs, |f| {
        count += 1;
        sink.write(&f)
    })?;
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
