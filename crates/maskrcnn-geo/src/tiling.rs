//! Tile grid over a raster, sharding, and the streaming `detect_raster` driver.
//!
//! Memory: a tile's pixels live only while its detector call runs; each returned instance mask
//! is cropped to its bounding box at once; instances are kept only until no later tile can
//! touch them (see [`crate::merge`]), i.e. about one row of tiles plus the overlap band.

use anyhow::{bail, Context, Result};

// Re-exported so `tiling::{Tile, TileGrid, Shard}` keep working after the grid moved out to
// break the tiling <-> merge import cycle.
pub use crate::grid::{Shard, Tile, TileGrid};
use crate::merge::{MergeOptions, Merger, PendingInstance, PixelMask};
use crate::output::Feature;
use crate::raster::{GeoTiff, GeoTransform};
use crate::vectorize::VectorizeOptions;

/// What the detector sees.
#[derive(Debug, Clone)]
pub struct TileImage {
    pub tile: Tile,
    pub width: u32,
    pub height: u32,
    /// 1-based raster bands, in the order of the planes in `data`.
    pub bands: Vec<usize>,
    /// Raw sample values as f32, band-major (CHW): `data[b*w*h + y*w + x]`. Not normalised.
    pub data: Vec<f32>,
    /// Map transform of this tile's pixel (0,0) corner.
    pub geotransform: GeoTransform,
    pub nodata: Option<f64>,
}

/// One detection in tile pixel coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct TileInstance {
    pub class_id: u32,
    pub score: f32,
    /// Tile-sized binary mask (`width*height`, row-major, nonzero = object), e.g. a Mask R-CNN
    /// mask pasted into the image and thresholded at 0.5.
    pub mask: Vec<u8>,
}

/// Options for [`detect_raster`].
#[derive(Debug, Clone)]
pub struct DetectOptions {
    pub tile_size: u32,
    /// Overlap between neighbouring tiles in pixels; objects smaller than this are seen whole by
    /// at least one tile. 0 is allowed (seams are then joined by edge contact).
    pub overlap: u32,
    /// 1-based bands fed to the detector (e.g. `[3, 2, 1]`); empty = all, in file order.
    pub bands: Vec<usize>,
    /// Names for class ids (index = class id); ids beyond the list are written as numbers.
    pub class_names: Vec<String>,
    /// Instances below this score are ignored before merging.
    pub min_score: f32,
    pub merge: MergeOptions,
    pub vectorize: VectorizeOptions,
    pub shard: Shard,
    /// Do not call the detector on tiles whose pixels are all nodata.
    pub skip_nodata_tiles: bool,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions {
            tile_size: 512,
            overlap: 64,
            bands: Vec::new(),
            class_names: Vec::new(),
            min_score: 0.0,
            merge: MergeOptions::default(),
            vectorize: VectorizeOptions::default(),
            shard: Shard::WHOLE,
            skip_nodata_tiles: true,
        }
    }
}

/// Progress report, after each tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub tiles_done: usize,
    pub tiles_total: usize,
    pub features_emitted: usize,
}

/// Result of [`detect_raster`] / [`detect_raster_streaming`].
#[derive(Debug, Clone, Default)]
pub struct DetectSummary {
    pub tiles_processed: usize,
    pub tiles_skipped_nodata: usize,
    pub instances_seen: usize,
    pub features_emitted: usize,
    /// Objects touching tiles of other shards, left for [`crate::merge::merge_outputs`]
    /// (always empty when running unsharded).
    pub pending: Vec<PendingInstance>,
    /// Tiles whose pixels could not be read (a corrupt strip or tile), with why: they are left
    /// out and the run goes on, so one bad block does not throw a whole scene away.
    pub unreadable_tiles: Vec<(String, String)>,
}

/// Run `detector` over the raster (or its shard) and stream merged features to `on_feature`.
pub fn detect_raster_streaming<D, F, P>(
    raster: &mut GeoTiff,
    mut detector: D,
    opts: &DetectOptions,
    mut on_feature: F,
    mut progress: P,
) -> Result<DetectSummary>
where
    D: FnMut(&TileImage) -> Result<Vec<TileInstance>>,
    F: FnMut(Feature) -> Result<()>,
    P: FnMut(Progress),
{
    let info = raster.info().clone();
    let gt = info.geotransform_or_identity();
    let grid = TileGrid::new(info.width, info.height, opts.tile_size, opts.overlap)?;
    let rows = grid.shard_rows(opts.shard);
    let mut merger = Merger::new(
        grid.clone(),
        gt,
        rows.clone(),
        opts.merge.clone(),
        opts.vectorize.clone(),
        opts.class_names.clone(),
    );
    let tiles_total = (rows.end - rows.start) as usize * grid.cols() as usize;
    let mut summary = DetectSummary::default();
    let mut done = 0;
    for row in rows.clone() {
        for col in 0..grid.cols() {
            let tile = grid.tile(row, col);
            let win = tile.window;
            let read = match raster.read_window(win, &opts.bands) {
                Ok(read) => read,
                Err(e) => {
                    summary.unreadable_tiles.push((tile.name(), format!("{e:#}")));
                    done += 1;
                    progress(Progress { tiles_done: done, tiles_total, features_emitted: summary.features_emitted });
                    continue;
                }
            };
            let all_nodata = match info.nodata {
                Some(nd) if opts.skip_nodata_tiles => {
                    read.data.iter().all(|&v| v as f64 == nd || (nd.is_nan() && v.is_nan()))
                }
                _ => false,
            };
            if all_nodata {
                summary.tiles_skipped_nodata += 1;
            } else {
                let image = TileImage {
                    tile,
                    width: win.width,
                    height: win.height,
                    bands: read.bands,
                    data: read.data,
                    geotransform: gt.shifted(win.x as f64, win.y as f64),
                    nodata: info.nodata,
                };
                let instances = detector(&image).with_context(|| format!("detector failed on tile {}", tile.name()))?;
                drop(image);
                let n_px = (win.width * win.height) as usize;
                for (i, inst) in instances.into_iter().enumerate() {
                    if inst.mask.len() != n_px {
                        bail!(
                            "detector returned a mask of {} values for tile {} ({}x{} = {n_px}) (instance {i})",
                            inst.mask.len(),
                            tile.name(),
                            win.width,
                            win.height
                        );
                    }
                    if inst.score < opts.min_score {
                        continue;
                    }
                    let Some(mask) = PixelMask::from_tile_mask(&inst.mask, win) else { continue };
                    summary.instances_seen += 1;
                    merger.add(tile, inst.class_id, inst.score, mask);
                }
                summary.tiles_processed += 1;
            }
            done += 1;
            progress(Progress { tiles_done: done, tiles_total, features_emitted: summary.features_emitted });
        }
        for f in merger.finish_row(row)? {
            summary.features_emitted += 1;
            on_feature(f)?;
        }
    }
    let (features, pending) = merger.finish()?;
    for f in features {
        summary.features_emitted += 1;
        on_feature(f)?;
    }
    summary.pending = pending;
    Ok(summary)
}

/// [`detect_raster_streaming`] collecting the features in memory.
pub fn detect_raster<D, P>(
    raster: &mut GeoTiff,
    detector: D,
    opts: &DetectOptions,
    progress: P,
) -> Result<(Vec<Feature>, DetectSummary)>
where
    D: FnMut(&TileImage) -> Result<Vec<TileInstance>>,
    P: FnMut(Progress),
{
    let mut features = Vec::new();
    let summary = detect_raster_streaming(
        raster,
        detector,
        opts,
        |f| {
            features.push(f);
            Ok(())
        },
        progress,
    )?;
    Ok((features, summary))
}
