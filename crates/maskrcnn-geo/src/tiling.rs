//! Tile grid over a raster, sharding, and the streaming `detect_raster` driver.
//!
//! Memory: a tile's pixels live only while its detector call runs; each returned instance mask
//! is cropped to its bounding box at once; instances are kept only until no later tile can
//! touch them (see [`crate::merge`]), i.e. about one row of tiles plus the overlap band.
//!
//! Tiles run row-major within the shard's rows, always in the same order, so a run journaled by
//! [`detect_raster_journaled`] can stop anywhere and continue to the same result.

use anyhow::{bail, Context, Result};

// Re-exported so `tiling::{Tile, TileGrid, Shard}` keep working after the grid moved out to
// break the tiling <-> merge import cycle.
pub use crate::grid::{Shard, Tile, TileGrid};
use crate::journal::{DetectJournal, TileOutcome};
use crate::merge::{FeatureMaker, LoneFeature, MergeOptions, Merger, PendingInstance, PixelMask};
use crate::output::Feature;
use crate::raster::{GeoTiff, GeoTransform, PixelWindow, RasterInfo};
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
    /// Its binary mask on the tile, e.g. a Mask R-CNN mask pasted into the image and thresholded
    /// at 0.5.
    pub mask: TileMask,
}

/// A binary mask on a tile, kept as the box `[x0, x0+width) x [y0, y0+height)` of the tile's
/// pixels (row-major, nonzero = object); the rest of the tile is background. A detector hands
/// over only the box it pasted, so a tile with a hundred objects does not allocate, zero and scan
/// a hundred tile-sized planes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileMask {
    pub x0: u32,
    pub y0: u32,
    pub width: u32,
    pub height: u32,
    /// `width*height` values, row-major.
    pub data: Vec<u8>,
}

impl TileMask {
    /// A mask given for every pixel of a `width x height` tile.
    pub fn whole(width: u32, height: u32, data: Vec<u8>) -> TileMask {
        TileMask { x0: 0, y0: 0, width, height, data }
    }

    /// The mask over the whole `tile_width x tile_height` tile (row-major).
    pub fn to_tile(&self, tile_width: u32, tile_height: u32) -> Vec<u8> {
        let (tw, th) = (tile_width as usize, tile_height as usize);
        let mut out = vec![0u8; tw * th];
        let (x0, y0, w) = (self.x0 as usize, self.y0 as usize, self.width as usize);
        for (y, row) in self.data.chunks_exact(w.max(1)).enumerate().take(self.height as usize) {
            let ty = y0 + y;
            if ty >= th || x0 >= tw {
                break;
            }
            let n = w.min(tw - x0);
            out[ty * tw + x0..ty * tw + x0 + n].copy_from_slice(&row[..n]);
        }
        out
    }

    /// Is the box inside a `tile_width x tile_height` tile, with one value per pixel of it? The
    /// error says what is wrong ("a mask of 10 values for its 4x4 box").
    pub fn check(&self, tile_width: u32, tile_height: u32) -> Result<()> {
        if self.data.len() as u64 != self.width as u64 * self.height as u64 {
            bail!("a mask of {} values for its {}x{} box", self.data.len(), self.width, self.height);
        }
        if self.x0 as u64 + self.width as u64 > tile_width as u64
            || self.y0 as u64 + self.height as u64 > tile_height as u64
        {
            bail!(
                "a {}x{} mask at ({}, {}), outside the {tile_width}x{tile_height} tile",
                self.width,
                self.height,
                self.x0,
                self.y0
            );
        }
        Ok(())
    }
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
    /// Area of interest: tiles outside it are never read, masks are cleared outside it.
    pub aoi: Option<std::sync::Arc<crate::aoi::Aoi>>,
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
            aoi: None,
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
    detector: D,
    opts: &DetectOptions,
    on_feature: F,
    progress: P,
) -> Result<DetectSummary>
where
    D: FnMut(&TileImage) -> Result<Vec<TileInstance>>,
    F: FnMut(Feature) -> Result<()>,
    P: FnMut(Progress),
{
    run_tiles(raster, detector, opts, None, on_feature, progress)
}

/// [`detect_raster_streaming`] keeping `journal` up to date after every tile, and first
/// continuing from what it holds when it was opened with [`DetectJournal::resume`]: the
/// journal's finished features go to `on_feature` first, its recorded tiles are not run again,
/// and the features that follow are those an uninterrupted run gives.
pub fn detect_raster_journaled<D, F, P>(
    raster: &mut GeoTiff,
    detector: D,
    opts: &DetectOptions,
    journal: &mut DetectJournal,
    on_feature: F,
    progress: P,
) -> Result<DetectSummary>
where
    D: FnMut(&TileImage) -> Result<Vec<TileInstance>>,
    F: FnMut(Feature) -> Result<()>,
    P: FnMut(Progress),
{
    run_tiles(raster, detector, opts, Some(journal), on_feature, progress)
}

fn run_tiles<D, F, P>(
    raster: &mut GeoTiff,
    mut detector: D,
    opts: &DetectOptions,
    journal: Option<&mut DetectJournal>,
    on_feature: F,
    progress: P,
) -> Result<DetectSummary>
where
    D: FnMut(&TileImage) -> Result<Vec<TileInstance>>,
    F: FnMut(Feature) -> Result<()>,
    P: FnMut(Progress),
{
    let info = raster.info().clone();
    let gt = info.geotransform_or_identity();
    let mut run = TileLoop::begin(&info, opts, journal, on_feature, progress)?;
    run.run(|tile| run_tile(raster, &info, gt, tile, &mut detector, opts).map(TileResult::from))?;
    run.finish()
}

/// The in-order half of a detect run: resuming from the journal, feeding each tile's outcome to
/// the seam merger in row-major order, journaling, and emitting finished features. Where the
/// outcomes come from (this thread, or a pipeline of reader and model threads) is the caller's;
/// because they are consumed in the same order either way, the output is the same.
pub(crate) struct TileLoop<'j, F, P> {
    grid: TileGrid,
    rows: std::ops::Range<u32>,
    merger: Merger,
    journal: Option<&'j mut DetectJournal>,
    on_feature: F,
    progress: P,
    summary: DetectSummary,
    first_row: u32,
    replay: std::collections::VecDeque<crate::journal::TileRecord>,
    tiles_total: usize,
}

impl<'j, F, P> TileLoop<'j, F, P>
where
    F: FnMut(Feature) -> Result<()>,
    P: FnMut(Progress),
{
    pub(crate) fn begin(
        info: &RasterInfo,
        opts: &DetectOptions,
        mut journal: Option<&'j mut DetectJournal>,
        mut on_feature: F,
        mut progress: P,
    ) -> Result<Self> {
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
        let cols = grid.cols() as usize;
        let tiles_total = (rows.end - rows.start) as usize * cols;
        let mut summary = DetectSummary::default();
        let mut first_row = rows.start;
        let mut replay = std::collections::VecDeque::new();
        if let Some(j) = journal.as_deref_mut() {
            if let Some(point) = j.take_resume() {
                let dir = j.dir().display().to_string();
                let damaged = |what: &str| format!("{dir}: damaged journal ({what})");
                if let Some(next_row) = point.next_row {
                    if next_row < rows.start || next_row > rows.end {
                        bail!(damaged(&format!("checkpoint at tile row {next_row}, outside rows {rows:?}")));
                    }
                    first_row = next_row;
                }
                if let Some(snapshot) = point.merger {
                    merger.restore(snapshot).with_context(|| damaged("merger state"))?;
                }
                summary = point.summary;
                let replayed = j.replay_features(&mut on_feature)?;
                if replayed != summary.features_emitted {
                    bail!(damaged(&format!("{replayed} features, its checkpoint counts {}", summary.features_emitted)));
                }
                // Records of the row before the checkpoint are stale; the rest run on from `first_row`.
                let mut expect = first_row as usize * cols;
                for r in point.tiles {
                    if r.tile < expect {
                        continue;
                    }
                    if r.tile != expect || expect >= rows.end as usize * cols {
                        break;
                    }
                    replay.push_back(r);
                    expect += 1;
                }
            }
        }
        let done = (first_row - rows.start) as usize * cols;
        if let Some(j) = journal.as_deref_mut() {
            j.count_resumed_tiles(done);
        }
        if done > 0 {
            progress(Progress { tiles_done: done, tiles_total, features_emitted: summary.features_emitted });
        }
        Ok(TileLoop { grid, rows, merger, journal, on_feature, progress, summary, first_row, replay, tiles_total })
    }

    /// The tiles [`Self::run`] will ask its source for, in that order: those the journal does not
    /// already hold.
    pub(crate) fn tiles_to_run(&self) -> Vec<Tile> {
        let replayed = self.replay.iter().map(|r| r.tile).collect::<std::collections::HashSet<_>>();
        (self.first_row..self.rows.end)
            .flat_map(|row| (0..self.grid.cols()).map(move |col| (row, col)))
            .map(|(row, col)| self.grid.tile(row, col))
            .filter(|t| !replayed.contains(&t.index))
            .collect()
    }

    /// What a thread other than this one needs to make the features of a tile's lone objects.
    pub(crate) fn lone_features(&self) -> LoneFeatures {
        LoneFeatures { maker: self.merger.feature_maker().clone() }
    }

    /// Every remaining tile in row-major order; `source` gives the outcome of each tile the journal
    /// does not hold, called in the order of [`Self::tiles_to_run`].
    pub(crate) fn run(&mut self, mut source: impl FnMut(Tile) -> Result<TileResult>) -> Result<()> {
        let cols = self.grid.cols() as usize;
        let mut done = (self.first_row - self.rows.start) as usize * cols;
        for row in self.first_row..self.rows.end {
            for col in 0..self.grid.cols() {
                let tile = self.grid.tile(row, col);
                let (outcome, mut ready) = match self.replay.front() {
                    Some(r) if r.tile == tile.index => {
                        let r = self.replay.pop_front().expect("front exists");
                        let j = self.journal.as_deref_mut().expect("replay comes from a journal");
                        j.count_resumed_tiles(1);
                        let outcome =
                            r.into_outcome(&tile).with_context(|| format!("{}: damaged journal", j.dir().display()))?;
                        (outcome, Vec::new())
                    }
                    _ => {
                        let TileResult { outcome, ready } = source(tile)?;
                        if let Some(j) = self.journal.as_deref_mut() {
                            j.record_tile(tile.index, &outcome)?;
                        }
                        (outcome, ready)
                    }
                };
                let summary = &mut self.summary;
                match outcome {
                    TileOutcome::Unreadable(why) => summary.unreadable_tiles.push((tile.name(), why)),
                    TileOutcome::Nodata => summary.tiles_skipped_nodata += 1,
                    TileOutcome::Detected(instances) => {
                        for (k, (class_id, score, mask)) in instances.into_iter().enumerate() {
                            summary.instances_seen += 1;
                            let ready = ready.get_mut(k).and_then(Option::take);
                            self.merger.add_ready(tile, class_id, score, mask, ready);
                        }
                        summary.tiles_processed += 1;
                    }
                }
                done += 1;
                (self.progress)(Progress {
                    tiles_done: done,
                    tiles_total: self.tiles_total,
                    features_emitted: self.summary.features_emitted,
                });
            }
            for f in self.merger.finish_row(row)? {
                self.summary.features_emitted += 1;
                if let Some(j) = self.journal.as_deref_mut() {
                    j.append_feature(&f)?;
                }
                (self.on_feature)(f)?;
            }
            if let Some(j) = self.journal.as_deref_mut() {
                j.checkpoint(row + 1, &self.summary, &mut self.merger)?;
            }
        }
        // A second call has nothing left to do.
        self.first_row = self.rows.end;
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<DetectSummary> {
        let (features, pending) = self.merger.finish()?;
        for f in features {
            self.summary.features_emitted += 1;
            (self.on_feature)(f)?;
        }
        self.summary.pending = pending;
        Ok(self.summary)
    }
}

/// A tile's outcome for [`TileLoop::run`], with the features of its lone objects where they were
/// made already (see [`LoneFeatures`]).
pub(crate) struct TileResult {
    pub(crate) outcome: TileOutcome,
    /// Per instance of a `Detected` outcome (or empty): its feature, if it was made.
    pub(crate) ready: Vec<Option<LoneFeature>>,
}

impl From<TileOutcome> for TileResult {
    fn from(outcome: TileOutcome) -> TileResult {
        TileResult { outcome, ready: Vec::new() }
    }
}

/// Makes, on any thread, the feature each instance of a tile gives if it turns out to be an
/// object of its own, as most are: vectorising them on the pipeline's workers leaves the merging
/// thread the seams, i.e. the objects several tiles saw. The merger uses such a feature only for
/// an instance left alone, and it is what the merger itself would have made of it, so the output
/// does not change; the features of instances that do get joined are made for nothing, a small
/// price (most instances seen by two tiles are one tile's only, the other tile missing it).
#[derive(Debug, Clone)]
pub(crate) struct LoneFeatures {
    maker: FeatureMaker,
}

impl LoneFeatures {
    pub(crate) fn make(&self, tile: Tile, outcome: TileOutcome) -> TileResult {
        let ready = match &outcome {
            TileOutcome::Detected(instances) => instances
                .iter()
                // An error is the merger's to report, in its turn: it makes the feature again.
                .map(|(class_id, score, mask)| self.maker.lone_feature(tile, *class_id, *score, mask).ok())
                .collect(),
            _ => Vec::new(),
        };
        TileResult { outcome, ready }
    }
}

/// A tile read from the raster: either already decided (unreadable, all nodata) or pixels for
/// the detector with the validity its masks are cut to.
pub(crate) enum ReadTile {
    Done(TileOutcome),
    Image(TileImage, Option<Vec<bool>>),
}

/// Reads one tile and decides whether the detector needs to see it.
pub(crate) fn read_tile(
    raster: &mut GeoTiff,
    info: &RasterInfo,
    gt: GeoTransform,
    tile: Tile,
    opts: &DetectOptions,
) -> ReadTile {
    let win = tile.window;
    let aoi = opts.aoi.as_ref().map(|a| a.cover(win));
    if aoi == Some(crate::aoi::AoiCover::Outside) {
        return ReadTile::Done(TileOutcome::Nodata);
    }
    let read = match raster.read_window(win, &opts.bands) {
        Ok(read) => read,
        Err(e) => return ReadTile::Done(TileOutcome::Unreadable(format!("{e:#}"))),
    };
    let all_nodata = match info.nodata {
        Some(nd) if opts.skip_nodata_tiles => read.data.iter().all(|&v| v as f64 == nd || (nd.is_nan() && v.is_nan())),
        _ => false,
    };
    if all_nodata {
        return ReadTile::Done(TileOutcome::Nodata);
    }
    // Alpha 0 and GDAL's internal mask 0 are nodata, never image: such tiles are skipped and no
    // object keeps a pixel there.
    let validity = if info.has_validity() {
        match raster.read_validity(win) {
            Ok(v) => v,
            Err(e) => return ReadTile::Done(TileOutcome::Unreadable(format!("{e:#}"))),
        }
    } else {
        None
    };
    let validity = crate::aoi::combine_validity(validity, aoi.as_ref(), (win.width * win.height) as usize);
    if let Some(valid) = &validity {
        if opts.skip_nodata_tiles && !valid.iter().any(|&v| v) {
            return ReadTile::Done(TileOutcome::Nodata);
        }
    }
    let image = TileImage {
        tile,
        width: win.width,
        height: win.height,
        bands: read.bands,
        data: read.data,
        geotransform: gt.shifted(win.x as f64, win.y as f64),
        nodata: info.nodata,
    };
    ReadTile::Image(image, validity)
}

/// What the merger gets from a tile's detections: masks checked, scores filtered, pixels outside
/// the tile's validity cleared, each mask cropped to its bounding box.
pub(crate) fn tile_outcome(
    tile: Tile,
    instances: Vec<TileInstance>,
    validity: Option<&[bool]>,
    opts: &DetectOptions,
) -> Result<TileOutcome> {
    let win = tile.window;
    let mut kept = Vec::new();
    for (i, mut inst) in instances.into_iter().enumerate() {
        if let Err(problem) = inst.mask.check(win.width, win.height) {
            bail!("detector returned {problem} for tile {} (instance {i})", tile.name());
        }
        if inst.score < opts.min_score {
            continue;
        }
        let m = &mut inst.mask;
        if let Some(valid) = validity {
            let (mw, tw) = (m.width as usize, win.width as usize);
            for (y, row) in m.data.chunks_exact_mut(mw.max(1)).enumerate() {
                let start = (m.y0 as usize + y) * tw + m.x0 as usize;
                for (v, &ok) in row.iter_mut().zip(&valid[start..start + mw]) {
                    *v &= ok as u8;
                }
            }
        }
        let window = PixelWindow { x: win.x + m.x0, y: win.y + m.y0, width: m.width, height: m.height };
        if let Some(mask) = PixelMask::from_tile_mask(&m.data, window) {
            kept.push((inst.class_id, inst.score, mask));
        }
    }
    Ok(TileOutcome::Detected(kept))
}

/// Reads one tile and runs the detector on it: what the merger gets from it.
fn run_tile<D>(
    raster: &mut GeoTiff,
    info: &RasterInfo,
    gt: GeoTransform,
    tile: Tile,
    detector: &mut D,
    opts: &DetectOptions,
) -> Result<TileOutcome>
where
    D: FnMut(&TileImage) -> Result<Vec<TileInstance>>,
{
    match read_tile(raster, info, gt, tile, opts) {
        ReadTile::Done(outcome) => Ok(outcome),
        ReadTile::Image(image, validity) => {
            let instances = detector(&image).with_context(|| format!("detector failed on tile {}", tile.name()))?;
            drop(image);
            tile_outcome(tile, instances, validity.as_deref(), opts)
        }
    }
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
