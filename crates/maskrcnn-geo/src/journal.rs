//! A crash-safe journal of one detect run, so a killed run continues where it stopped and ends
//! with exactly the output an uninterrupted run writes.
//!
//! `<output>.journal/` holds:
//! * `header.json`: the run's [`RunFingerprint`] (raster identity, model, every option that
//!   changes the output). Resuming with another fingerprint is refused, naming what differs.
//! * `features.jsonl`: finished features in the order the output received them, appended at the
//!   end of each tile row.
//! * `checkpoint.json`: replaced atomically (temp file, fsync, rename) at the end of each tile
//!   row: the next row, how much of `features.jsonl` is valid, the summary so far and the
//!   merger's unfinished instances (about one row of tiles).
//! * `tiles.jsonl`: one record per tile of the current row (its instances after the score filter,
//!   or nodata, or unreadable with the reason), appended after each tile.
//!
//! A resume truncates `features.jsonl` to the checkpoint's length and replays it into the new
//! output, restores the merger, and feeds the row's tile records through the same code as live
//! tiles; a torn last record (a kill in mid-write) is dropped and its tile runs again. Replaying
//! the merger's inputs rather than its outputs is what makes the result identical.
//!
//! Size: the finished features (about the output's size) plus one row of instances. Durability:
//! a killed process loses nothing it wrote (the page cache outlives it); against a power cut,
//! tile records are synced at most every [`SYNC_INTERVAL`] and a checkpoint only after the
//! features it counts, so what survives is always a consistent prefix of the run.
//!
//! Floats go through JSON exactly: the workspace enables serde_json's `float_roundtrip`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use maskrcnn_data::process_lock::ProcessLock;

use crate::grid::{Shard, Tile};
use crate::merge::{
    feature_from_json, feature_to_json, mask_box_within, MergeOptions, Merger, MergerSnapshot, PixelMask,
};
use crate::output::Feature;
use crate::tiling::{DetectOptions, DetectSummary};
use crate::vectorize::VectorizeOptions;

pub const JOURNAL_FORMAT: &str = "maskrcnn-detect-journal/1";
const HEADER: &str = "header.json";
const CHECKPOINT: &str = "checkpoint.json";
const FEATURES: &str = "features.jsonl";
const TILES: &str = "tiles.jsonl";
const LOCK: &str = ".lock";
/// The files a journal folder may hold; anything else means the folder is not ours to delete.
const KNOWN: [&str; 7] = [HEADER, CHECKPOINT, FEATURES, TILES, LOCK, "header.json.tmp", "checkpoint.json.tmp"];

/// Longest time tile records stay unsynced: syncing each tile would cost a disk flush per tile,
/// which on a GPU is a noticeable share of a tile's time; a kill loses nothing either way.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(2);

/// Which raster file: a changed size or modification time means other pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RasterIdentity {
    pub path: String,
    pub bytes: u64,
    pub modified_ns: u64,
}

impl RasterIdentity {
    pub fn of(path: &Path) -> Result<RasterIdentity> {
        let meta = std::fs::metadata(path).with_context(|| format!("{}: cannot read its metadata", path.display()))?;
        let modified = meta.modified().with_context(|| format!("{}: no modification time", path.display()))?;
        let modified_ns = modified.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(RasterIdentity { path: path.to_string_lossy().into_owned(), bytes: meta.len(), modified_ns })
    }
}

/// Everything that decides a detect run's output. Two runs with equal fingerprints write the
/// same features, so one may continue the other's journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFingerprint {
    pub format: String,
    pub raster: RasterIdentity,
    /// The caller's digest of the model (weights and configuration).
    pub model: String,
    pub tile_size: u32,
    pub overlap: u32,
    pub bands: Vec<usize>,
    pub class_names: Vec<String>,
    pub min_score: f32,
    pub merge: MergeOptions,
    pub vectorize: VectorizeOptions,
    pub shard: Shard,
    pub skip_nodata_tiles: bool,
    /// Options of the caller's detector that change what it returns (e.g. kept classes, flips).
    pub extra: BTreeMap<String, String>,
}

impl RunFingerprint {
    pub fn new(
        raster: &Path,
        model: impl Into<String>,
        opts: &DetectOptions,
        extra: BTreeMap<String, String>,
    ) -> Result<RunFingerprint> {
        Ok(RunFingerprint {
            format: JOURNAL_FORMAT.to_string(),
            raster: RasterIdentity::of(raster)?,
            model: model.into(),
            tile_size: opts.tile_size,
            overlap: opts.overlap,
            bands: opts.bands.clone(),
            class_names: opts.class_names.clone(),
            min_score: opts.min_score,
            merge: opts.merge.clone(),
            vectorize: opts.vectorize.clone(),
            shard: opts.shard,
            skip_nodata_tiles: opts.skip_nodata_tiles,
            extra,
        })
    }

    /// "tile_size: 512 in the journal, 256 now; raster.modified_ns: …", empty when equal.
    fn differences(journal: &serde_json::Value, now: &serde_json::Value) -> Vec<String> {
        fn walk(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
            match (a, b) {
                (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                    let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                    for k in keys {
                        let null = serde_json::Value::Null;
                        let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                        walk(&name, x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), out);
                    }
                }
                _ if a != b => {
                    let short = |v: &serde_json::Value| {
                        let s = v.to_string();
                        if s.chars().count() > 60 {
                            format!("{}…", s.chars().take(60).collect::<String>())
                        } else {
                            s
                        }
                    };
                    out.push(format!("{prefix}: {} in the journal, {} now", short(a), short(b)));
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk("", journal, now, &mut out);
        out
    }
}

/// One instance of a tile record: the merger's input, exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RecordedInstance {
    class_id: u32,
    /// f32 widened to f64, which JSON round-trips exactly.
    score: f64,
    x0: u32,
    y0: u32,
    width: u32,
    height: u32,
    runs: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RecordedOutcome {
    Unreadable(String),
    Nodata,
    Detected(Vec<RecordedInstance>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TileRecord {
    /// Row-major tile index in the full grid.
    pub(crate) tile: usize,
    outcome: RecordedOutcome,
}

/// What one tile contributed to the run, live or replayed from the journal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TileOutcome {
    Unreadable(String),
    Nodata,
    /// (class id, score, mask) per instance that passed the score filter.
    Detected(Vec<(u32, f32, PixelMask)>),
}

impl TileRecord {
    fn new(tile: usize, outcome: &TileOutcome) -> TileRecord {
        let outcome = match outcome {
            TileOutcome::Unreadable(why) => RecordedOutcome::Unreadable(why.clone()),
            TileOutcome::Nodata => RecordedOutcome::Nodata,
            TileOutcome::Detected(insts) => RecordedOutcome::Detected(
                insts
                    .iter()
                    .map(|(class_id, score, m)| RecordedInstance {
                        class_id: *class_id,
                        score: *score as f64,
                        x0: m.x0,
                        y0: m.y0,
                        width: m.width,
                        height: m.height,
                        runs: m.to_runs(),
                    })
                    .collect(),
            ),
        };
        TileRecord { tile, outcome }
    }

    /// The outcome, checked against the tile it claims to be from.
    pub(crate) fn into_outcome(self, tile: &Tile) -> Result<TileOutcome> {
        Ok(match self.outcome {
            RecordedOutcome::Unreadable(why) => TileOutcome::Unreadable(why),
            RecordedOutcome::Nodata => TileOutcome::Nodata,
            RecordedOutcome::Detected(insts) => TileOutcome::Detected(
                insts
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| {
                        if !mask_box_within(r.x0, r.y0, r.width, r.height, &tile.window) {
                            bail!("tile {} record: instance {i} lies outside the tile", tile.name());
                        }
                        let mask = PixelMask::from_runs(r.x0, r.y0, r.width, r.height, &r.runs)
                            .with_context(|| format!("tile {} record: instance {i}", tile.name()))?;
                        Ok((r.class_id, r.score as f32, mask))
                    })
                    .collect::<Result<_>>()?,
            ),
        })
    }
}

/// The counters of [`DetectSummary`] (its pending instances live in the merger snapshot).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct SummaryState {
    tiles_processed: usize,
    tiles_skipped_nodata: usize,
    instances_seen: usize,
    features_emitted: usize,
    unreadable_tiles: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Checkpoint {
    /// First tile row not yet finished.
    next_row: u32,
    /// Valid prefix of `features.jsonl` (bytes beyond it were appended after this checkpoint).
    features_bytes: u64,
    summary: SummaryState,
    merger: MergerSnapshot,
}

/// Where a resumed run starts, for [`crate::tiling`].
pub(crate) struct ResumePoint {
    /// None: no row was finished, start at the run's first row with an empty merger.
    pub(crate) next_row: Option<u32>,
    pub(crate) summary: DetectSummary,
    pub(crate) merger: Option<MergerSnapshot>,
    /// Records of the tiles after the checkpoint, in order (possibly stale ones of the row before).
    pub(crate) tiles: Vec<TileRecord>,
}

/// The journal of one detect run; see the module documentation.
pub struct DetectJournal {
    dir: PathBuf,
    _lock: JournalLock,
    features: BufWriter<File>,
    features_bytes: u64,
    /// Bytes of `features.jsonl` to replay into the output before the run goes on.
    replay_bytes: u64,
    tiles: File,
    last_sync: Instant,
    resume: Option<ResumePoint>,
    resumed_tiles: usize,
    recorded_tiles: usize,
    /// Opened by [`DetectJournal::resume`] with a checkpoint or tile records in it.
    opened_with_progress: bool,
}

impl DetectJournal {
    /// `<output>.journal`, beside the output.
    pub fn dir_for(output: &Path) -> Result<PathBuf> {
        let name = output.file_name().ok_or_else(|| anyhow!("{} is not a file path", output.display()))?;
        Ok(output.with_file_name(format!("{}.journal", name.to_string_lossy())))
    }

    /// Is there a journal in `dir`? (A folder without a header is a run killed while creating it.)
    pub fn exists(dir: &Path) -> bool {
        dir.join(HEADER).is_file()
    }

    /// Starts a new journal in `dir`, where none may exist yet.
    pub fn create(dir: &Path, fingerprint: &RunFingerprint) -> Result<DetectJournal> {
        if Self::exists(dir) {
            bail!("{}: a journal already exists", dir.display());
        }
        if dir.exists() {
            Self::discard(dir)?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the journal folder {}", dir.display()))?;
        let lock = JournalLock::acquire(dir)?;
        write_atomic(dir, HEADER, &serde_json::to_vec_pretty(fingerprint)?)?;
        let features = open_append(&dir.join(FEATURES), true)?;
        let tiles = open_append(&dir.join(TILES), true)?;
        sync_dir(dir)?;
        Ok(DetectJournal {
            dir: dir.to_path_buf(),
            _lock: lock,
            features: BufWriter::new(features),
            features_bytes: 0,
            replay_bytes: 0,
            tiles,
            last_sync: Instant::now(),
            resume: None,
            resumed_tiles: 0,
            recorded_tiles: 0,
            opened_with_progress: false,
        })
    }

    /// Opens the journal in `dir` to continue its run; refused (naming what differs) when it was
    /// written by a run with another fingerprint.
    pub fn resume(dir: &Path, fingerprint: &RunFingerprint) -> Result<DetectJournal> {
        let lock = JournalLock::acquire(dir)?;
        let header_path = dir.join(HEADER);
        let text = std::fs::read_to_string(&header_path)
            .with_context(|| format!("{}: cannot read the journal header", header_path.display()))?;
        let journal: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a detect journal header", header_path.display()))?;
        let format = journal.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if format != JOURNAL_FORMAT {
            bail!("{}: journal format {format:?}, this maskrcnn writes {JOURNAL_FORMAT:?}", dir.display());
        }
        // Through text, as the journal's copy went: an f32 compares equal to itself.
        let now: serde_json::Value = serde_json::from_str(&serde_json::to_string(fingerprint)?)?;
        let diffs = RunFingerprint::differences(&journal, &now);
        if !diffs.is_empty() {
            bail!("{}: the journal is of another run ({})", dir.display(), diffs.join("; "));
        }
        let _ = std::fs::remove_file(dir.join("checkpoint.json.tmp"));

        let cp_path = dir.join(CHECKPOINT);
        let checkpoint: Option<Checkpoint> = match std::fs::read(&cp_path) {
            Ok(bytes) => Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("{}: damaged journal checkpoint", cp_path.display()))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", cp_path.display())),
        };
        let features_bytes = checkpoint.as_ref().map_or(0, |c| c.features_bytes);
        let features_path = dir.join(FEATURES);
        let features = open_append(&features_path, false)?;
        let have = features.metadata()?.len();
        if have < features_bytes {
            bail!("{}: damaged journal: {have} bytes, its checkpoint counts {features_bytes}", features_path.display());
        }
        // Features appended after the checkpoint belong to a row that will run again.
        features.set_len(features_bytes).with_context(|| format!("cannot truncate {}", features_path.display()))?;

        let tiles_path = dir.join(TILES);
        let (records, valid) = read_tile_records(&tiles_path)?;
        let tiles = open_append(&tiles_path, false)?;
        tiles.set_len(valid).with_context(|| format!("cannot truncate {}", tiles_path.display()))?;

        let opened_with_progress = checkpoint.is_some() || !records.is_empty();
        let (next_row, summary, merger) = match checkpoint {
            Some(c) => {
                let s = c.summary;
                let summary = DetectSummary {
                    tiles_processed: s.tiles_processed,
                    tiles_skipped_nodata: s.tiles_skipped_nodata,
                    instances_seen: s.instances_seen,
                    features_emitted: s.features_emitted,
                    pending: Vec::new(),
                    unreadable_tiles: s.unreadable_tiles,
                };
                (Some(c.next_row), summary, Some(c.merger))
            }
            None => (None, DetectSummary::default(), None),
        };
        Ok(DetectJournal {
            dir: dir.to_path_buf(),
            _lock: lock,
            features: BufWriter::new(features),
            features_bytes,
            replay_bytes: features_bytes,
            tiles,
            last_sync: Instant::now(),
            resume: Some(ResumePoint { next_row, summary, merger, tiles: records }),
            resumed_tiles: 0,
            recorded_tiles: 0,
            opened_with_progress,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Does the journal hold any tile, recorded by this run or an earlier one?
    pub fn has_progress(&self) -> bool {
        self.opened_with_progress || self.recorded_tiles > 0
    }

    /// Tiles a resumed run took from the journal instead of running them (after the run).
    pub fn resumed_tiles(&self) -> usize {
        self.resumed_tiles
    }

    /// Deletes the journal of a finished run.
    pub fn finish(self) -> Result<()> {
        let dir = self.dir.clone();
        drop(self);
        Self::discard(&dir)
    }

    /// Deletes the journal folder `dir` (to start over); refused when it holds files a journal
    /// does not, so a folder that merely has the name is never emptied.
    pub fn discard(dir: &Path) -> Result<()> {
        // A live run's journal is never pulled from under it.
        let lock = JournalLock::acquire(dir)?;
        let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !KNOWN.contains(&name.as_ref()) || !entry.file_type()?.is_file() {
                bail!("{}: holds {name:?}, which is not part of a detect journal; not deleting it", dir.display());
            }
            files.push(entry.path());
        }
        for f in files {
            std::fs::remove_file(&f).with_context(|| format!("cannot remove {}", f.display()))?;
        }
        // Its file is gone with the rest.
        std::mem::forget(lock);
        std::fs::remove_dir(dir).with_context(|| format!("cannot remove {}", dir.display()))
    }

    pub(crate) fn take_resume(&mut self) -> Option<ResumePoint> {
        self.resume.take()
    }

    pub(crate) fn count_resumed_tiles(&mut self, n: usize) {
        self.resumed_tiles += n;
    }

    /// Hands the journal's finished features to `on_feature`, in their original order.
    pub(crate) fn replay_features(&mut self, mut on_feature: impl FnMut(Feature) -> Result<()>) -> Result<usize> {
        let path = self.dir.join(FEATURES);
        let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut count = 0;
        for (n, line) in BufReader::new(file.take(self.replay_bytes)).lines().enumerate() {
            let line = line.with_context(|| format!("cannot read {}", path.display()))?;
            let ctx = || format!("{} line {}: damaged journal", path.display(), n + 1);
            let v: serde_json::Value = serde_json::from_str(&line).with_context(ctx)?;
            on_feature(feature_from_json(&v).with_context(ctx)?)?;
            count += 1;
        }
        Ok(count)
    }

    pub(crate) fn record_tile(&mut self, tile: usize, outcome: &TileOutcome) -> Result<()> {
        let mut line = serde_json::to_vec(&TileRecord::new(tile, outcome))?;
        line.push(b'\n');
        // One write per record: a kill leaves whole records and at most one torn tail.
        self.tiles.write_all(&line).with_context(|| format!("cannot write {}", self.dir.join(TILES).display()))?;
        self.recorded_tiles += 1;
        if self.last_sync.elapsed() >= SYNC_INTERVAL {
            self.tiles.sync_data()?;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    pub(crate) fn append_feature(&mut self, f: &Feature) -> Result<()> {
        let mut line = serde_json::to_vec(&feature_to_json(f))?;
        line.push(b'\n');
        self.features
            .write_all(&line)
            .with_context(|| format!("cannot write {}", self.dir.join(FEATURES).display()))?;
        self.features_bytes += line.len() as u64;
        Ok(())
    }

    /// Row `next_row - 1` is finished: makes it durable. Features first, then the checkpoint
    /// that counts them, then the row's tile records go.
    pub(crate) fn checkpoint(&mut self, next_row: u32, summary: &DetectSummary, merger: &mut Merger) -> Result<()> {
        let features_path = || self.dir.join(FEATURES);
        self.features.flush().with_context(|| format!("cannot write {}", features_path().display()))?;
        self.features.get_ref().sync_data().with_context(|| format!("cannot sync {}", features_path().display()))?;
        let cp = Checkpoint {
            next_row,
            features_bytes: self.features_bytes,
            summary: SummaryState {
                tiles_processed: summary.tiles_processed,
                tiles_skipped_nodata: summary.tiles_skipped_nodata,
                instances_seen: summary.instances_seen,
                features_emitted: summary.features_emitted,
                unreadable_tiles: summary.unreadable_tiles.clone(),
            },
            merger: merger.snapshot(),
        };
        write_atomic(&self.dir, CHECKPOINT, &serde_json::to_vec(&cp)?)?;
        self.tiles.set_len(0).with_context(|| format!("cannot truncate {}", self.dir.join(TILES).display()))?;
        self.last_sync = Instant::now();
        Ok(())
    }
}

/// "crc32 0123abcd, 1234 bytes" over the names and contents of `files` and then `extra`: a cheap
/// digest (a model of a few hundred MB reads from the page cache in a fraction of a second) that
/// changes when any of them does.
pub fn digest_files(files: &[PathBuf], extra: &[u8]) -> Result<String> {
    let mut crc = flate2::Crc::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = extra.len() as u64;
    for path in files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        crc.update(name.as_bytes());
        let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        loop {
            let n = f.read(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
            if n == 0 {
                break;
            }
            crc.update(&buf[..n]);
            total += n as u64;
        }
    }
    crc.update(extra);
    Ok(format!("crc32 {:08x}, {total} bytes", crc.sum()))
}

/// The complete, parseable records at the start of `path` and their length in bytes; a torn or
/// damaged tail is where a kill or a power cut stopped a write.
fn read_tile_records(path: &Path) -> Result<(Vec<TileRecord>, u64)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut records = Vec::new();
    let mut valid = 0;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if line.last() != Some(&b'\n') {
            break;
        }
        match serde_json::from_slice::<TileRecord>(line) {
            Ok(r) => records.push(r),
            Err(_) => break,
        }
        valid += line.len() as u64;
    }
    Ok((records, valid))
}

fn open_append(path: &Path, create_new: bool) -> Result<File> {
    let mut o = OpenOptions::new();
    o.append(true).read(true);
    if create_new {
        o.create(true).truncate(false);
    }
    o.open(path).with_context(|| format!("cannot open the journal file {}", path.display()))
}

/// Writes `dir/name` so that it holds either its old or its new bytes at any instant.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    let mut f = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.sync_all().with_context(|| format!("cannot sync {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, &target).with_context(|| format!("cannot move {} to {}", tmp.display(), target.display()))?;
    sync_dir(dir)
}

/// Makes a rename in `dir` durable (a no-op where folders cannot be opened, i.e. Windows).
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot sync {}", dir.display()))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// One run per journal: two writers would interleave its records. The lock file holds the
/// owner's process id; a killed run leaves it behind and the next run, seeing the process gone,
/// takes it over.
struct JournalLock {
    _lock: ProcessLock,
}

impl JournalLock {
    fn acquire(dir: &Path) -> Result<JournalLock> {
        if !dir.is_dir() {
            bail!("{}: no journal there", dir.display());
        }
        let path = dir.join(LOCK);
        let lock = ProcessLock::acquire(&path, |pid| {
            format!(
                "{}: another detect (process {pid}) is writing this journal; wait for it to end (delete {} if that \
                 process is not a detect)",
                dir.display(),
                path.display()
            )
        })?;
        Ok(JournalLock { _lock: lock })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_field_and_both_values() {
        let a = serde_json::json!({"tile_size": 512, "raster": {"bytes": 10, "path": "/a.tif"}, "bands": [1, 2, 3]});
        let b = serde_json::json!({"tile_size": 256, "raster": {"bytes": 11, "path": "/a.tif"}, "bands": [1, 2, 3]});
        let d = RunFingerprint::differences(&a, &b);
        assert_eq!(d, vec!["raster.bytes: 10 in the journal, 11 now", "tile_size: 512 in the journal, 256 now"]);
        assert!(RunFingerprint::differences(&a, &a).is_empty());
    }

    #[test]
    fn a_torn_or_damaged_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TILES);
        let rec = |i| {
            let mut l = serde_json::to_vec(&TileRecord::new(i, &TileOutcome::Nodata)).unwrap();
            l.push(b'\n');
            l
        };
        let mut bytes = [rec(3), rec(4)].concat();
        let whole = bytes.len() as u64;
        bytes.extend_from_slice(&rec(5)[..7]);
        std::fs::write(&path, &bytes).unwrap();
        let (records, valid) = read_tile_records(&path).unwrap();
        assert_eq!(records.iter().map(|r| r.tile).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(valid, whole);
        bytes.truncate(whole as usize);
        bytes.extend_from_slice(b"{\"tile\":\n");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_tile_records(&path).unwrap().1, whole);
    }
}
