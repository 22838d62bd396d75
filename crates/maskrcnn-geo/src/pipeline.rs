//! Whole-scene detection on every core: a reader thread decoding tiles ahead, worker threads
//! running the detector on batches of tiles and vectorising what they find, and the
//! caller's thread stitching seams, journaling and writing, all at once.
//!
//! ```text
//! reader ──batches──► worker 1..W ──outcomes──► reorder ──► TileLoop (merger, journal, output)
//!   ▲                                                            │
//!   └───────────────────── one token per tile consumed ◄─────────┘
//! ```
//!
//! The reader takes a token before it reads a tile and the consumer hands it back once that
//! tile is merged, so at most [`PipelineOptions::tiles_in_flight`] tiles exist at any time, and
//! of those at most [`PipelineOptions::tiles_with_pixels`] with their pixels (the job queue is
//! bounded too), whatever the raster's size: memory stays flat. The workers also vectorise each
//! instance as the object it is if no other tile's joins it ([`LoneFeatures`]), so the caller's
//! thread is left with the seams. Outcomes are merged in the same row-major order as the
//! one-thread driver, so the output and the journal are the same for any batch size and worker
//! count, as long as the detector gives a tile the same answer alone and in a batch.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};

use crate::journal::DetectJournal;
use crate::output::Feature;
use crate::raster::GeoTiff;
use crate::tiling::{
    read_tile, tile_outcome, DetectOptions, DetectSummary, LoneFeatures, Progress, ReadTile, Tile, TileImage,
    TileInstance, TileLoop, TileResult,
};

/// A detector over a batch of tiles: one list of instances per tile, in the batch's order.
/// Called from several threads at once, hence `Fn + Sync`.
pub trait BatchDetector: Sync {
    fn detect_batch(&self, tiles: &[TileImage]) -> Result<Vec<Vec<TileInstance>>>;
}

impl<D> BatchDetector for D
where
    D: Fn(&[TileImage]) -> Result<Vec<Vec<TileInstance>>> + Sync,
{
    fn detect_batch(&self, tiles: &[TileImage]) -> Result<Vec<Vec<TileInstance>>> {
        self(tiles)
    }
}

/// A per-tile detector (the shape [`crate::detect_raster_streaming`] takes, but `Fn + Sync`) as a
/// [`BatchDetector`] that runs a batch's tiles one after the other.
pub fn per_tile<D>(detector: D) -> impl BatchDetector
where
    D: Fn(&TileImage) -> Result<Vec<TileInstance>> + Sync,
{
    move |tiles: &[TileImage]| tiles.iter().map(&detector).collect::<Result<Vec<_>>>()
}

/// How many tiles run at once, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineOptions {
    /// Tiles given to the detector in one call.
    pub batch_size: usize,
    /// Threads calling the detector at the same time, each with its own batch.
    pub workers: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions { batch_size: 1, workers: 1 }
    }
}

impl PipelineOptions {
    /// Most tiles read but not yet merged: [`Self::tiles_with_pixels`] and
    /// [`Self::answers_ahead`]. Bounds the pipeline's memory.
    pub fn tiles_in_flight(&self) -> usize {
        self.tiles_with_pixels() + self.answers_ahead()
    }

    /// Most tiles whose pixels exist at once: a batch being filled, one batch running and one
    /// queued per worker (the job queue holds no more, whatever the tokens allow).
    pub fn tiles_with_pixels(&self) -> usize {
        self.batch_size.max(1) * (2 * self.workers.max(1) + 1)
    }

    /// Tiles detected (their pixels gone, their masks kept) that may wait for the merging thread
    /// while the workers go on. That thread works in bursts: a tile row's objects are finished
    /// and written together, and the journal syncs its checkpoint then. Without this slack the
    /// workers would soon run out of tokens and wait for it, a core idle.
    pub fn answers_ahead(&self) -> usize {
        8 * self.batch_size.max(1) * self.workers.max(1)
    }
}

/// [`crate::detect_raster_journaled`] (or, without a journal, [`crate::detect_raster_streaming`])
/// with the reading, the detector and the merging overlapped, the detector called on
/// `pipeline.batch_size` tiles at a time from `pipeline.workers` threads. The features, their
/// order and the journal are those of the one-thread driver given the detector's answers.
pub fn detect_raster_pipelined<D, F, P>(
    raster: &mut GeoTiff,
    detector: &D,
    opts: &DetectOptions,
    pipeline: PipelineOptions,
    journal: Option<&mut DetectJournal>,
    on_feature: F,
    progress: P,
) -> Result<DetectSummary>
where
    D: BatchDetector + ?Sized,
    F: FnMut(Feature) -> Result<()>,
    P: FnMut(Progress),
{
    if pipeline.batch_size == 0 || pipeline.workers == 0 {
        bail!("the batch size and the number of workers must be at least 1 (got {pipeline:?})");
    }
    let info = raster.info().clone();
    let mut run = TileLoop::begin(&info, opts, journal, on_feature, progress)?;
    let todo = run.tiles_to_run();
    if todo.is_empty() {
        run.run(|tile| Err(anyhow!("tile {} was not expected to run", tile.name())))?;
        return run.finish();
    }
    let gt = info.geotransform_or_identity();
    let capacity = pipeline.tiles_in_flight();
    let (token_tx, token_rx) = sync_channel::<()>(capacity);
    for _ in 0..capacity {
        token_tx.send(()).expect("the receiver is alive");
    }
    let (job_tx, job_rx) = sync_channel::<Vec<Job>>(pipeline.workers);
    // Shared by the workers alone: once they have all stopped, the reader's next send fails.
    let job_rx = Arc::new(Mutex::new(job_rx));
    let lone = run.lone_features();
    let (done_tx, done_rx) = channel::<(usize, Result<TileResult>)>();
    std::thread::scope(|scope| {
        let reader_done = done_tx.clone();
        let info = &info;
        // Named, so a profile or `top -H` tells the stages apart.
        let thread = |name: String| std::thread::Builder::new().name(name);
        thread("detect-reader".into())
            .spawn_scoped(scope, move || {
                read_ahead(raster, info, gt, opts, todo, pipeline.batch_size, token_rx, job_tx, reader_done)
            })
            .context("starting the detect reader thread")?;
        for k in 0..pipeline.workers {
            let done = done_tx.clone();
            let jobs = Arc::clone(&job_rx);
            let lone = &lone;
            thread(format!("detect-worker-{k}"))
                .spawn_scoped(scope, move || work(&jobs, detector, opts, lone, done))
                .context("starting a detect worker thread")?;
        }
        drop(done_tx);
        drop(job_rx);

        // Consumed in tile order whatever order the workers finish in.
        let mut arrived: BTreeMap<usize, Result<TileResult>> = BTreeMap::new();
        let result = run.run(|tile| loop {
            if let Some(outcome) = arrived.remove(&tile.index) {
                // Fails only once the reader has finished; then no token is needed.
                let _ = token_tx.send(());
                return outcome;
            }
            match done_rx.recv() {
                Ok((index, outcome)) => {
                    arrived.insert(index, outcome);
                }
                Err(_) => bail!("the detection pipeline stopped before tile {}", tile.name()),
            }
        });
        // Dropping these stops the reader and the workers when the run failed part way.
        drop(token_tx);
        drop(done_rx);
        result
    })?;
    run.finish()
}

/// A tile for the detector, with the validity its masks are cut to.
struct Job {
    image: TileImage,
    validity: Option<Vec<bool>>,
}

#[allow(clippy::too_many_arguments)]
fn read_ahead(
    raster: &mut GeoTiff,
    info: &crate::raster::RasterInfo,
    gt: crate::raster::GeoTransform,
    opts: &DetectOptions,
    todo: Vec<Tile>,
    batch_size: usize,
    tokens: Receiver<()>,
    jobs: SyncSender<Vec<Job>>,
    done: std::sync::mpsc::Sender<(usize, Result<TileResult>)>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(batch_size);
    for tile in todo {
        // Out of tokens, the tile the consumer waits for may be in the unfinished batch: send it.
        match tokens.try_recv() {
            Ok(()) => {}
            Err(TryRecvError::Empty) => {
                if !batch.is_empty() && jobs.send(std::mem::take(&mut batch)).is_err() {
                    return;
                }
                if tokens.recv().is_err() {
                    return;
                }
            }
            // The consumer stopped (the run failed): nothing more is wanted.
            Err(TryRecvError::Disconnected) => return,
        }
        match read_tile(raster, info, gt, tile, opts) {
            ReadTile::Done(outcome) => {
                if done.send((tile.index, Ok(outcome.into()))).is_err() {
                    return;
                }
            }
            ReadTile::Image(image, validity) => {
                batch.push(Job { image, validity });
                if batch.len() == batch_size && jobs.send(std::mem::take(&mut batch)).is_err() {
                    return;
                }
            }
        }
    }
    if !batch.is_empty() {
        let _ = jobs.send(batch);
    }
}

fn work<D>(
    jobs: &Mutex<Receiver<Vec<Job>>>,
    detector: &D,
    opts: &DetectOptions,
    lone: &LoneFeatures,
    done: std::sync::mpsc::Sender<(usize, Result<TileResult>)>,
) where
    D: BatchDetector + ?Sized,
{
    loop {
        let batch = match jobs.lock().map_err(|_| ()).and_then(|rx| rx.recv().map_err(|_| ())) {
            Ok(batch) => batch,
            Err(()) => return,
        };
        let (images, validity): (Vec<TileImage>, Vec<Option<Vec<bool>>>) =
            batch.into_iter().map(|j| (j.image, j.validity)).unzip();
        let tiles: Vec<Tile> = images.iter().map(|i| i.tile).collect();
        let names = || tiles.iter().map(Tile::name).collect::<Vec<_>>().join(", ");
        // A panic would leave the consumer waiting for this batch forever: it is an error instead.
        let answers = catch_unwind(AssertUnwindSafe(|| detector.detect_batch(&images)))
            .unwrap_or_else(|panic| Err(anyhow!("panicked: {}", panic_message(&*panic))))
            .and_then(|answers| {
                if answers.len() != images.len() {
                    bail!("the detector returned {} results for {} tiles", answers.len(), images.len());
                }
                Ok(answers)
            });
        drop(images);
        let outcomes: Vec<Result<TileResult>> = match answers {
            Ok(answers) => answers
                .into_iter()
                .zip(&tiles)
                .zip(&validity)
                .map(|((instances, &tile), valid)| {
                    tile_outcome(tile, instances, valid.as_deref(), opts).map(|o| lone.make(tile, o))
                })
                .collect(),
            Err(e) => {
                let message = format!("{e:#}");
                let batch = if tiles.len() > 1 { format!(" (in a batch of tiles {})", names()) } else { String::new() };
                tiles.iter().map(|t| Err(anyhow!("detector failed on tile {}{batch}: {message}", t.name()))).collect()
            }
        };
        for (tile, outcome) in tiles.iter().zip(outcomes) {
            if done.send((tile.index, outcome)).is_err() {
                return;
            }
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "no message".to_string()
    }
}
