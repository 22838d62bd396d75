//! Merging detections across tiles and shards.
//!
//! All tiles share the raster's pixel grid, so instances are compared as pixel masks in raster
//! coordinates (map space up to the affine geotransform, which preserves area ratios, so IoU and
//! intersection-over-smaller are the same as on map-space polygons, without polygon clipping).
//!
//! * Two instances from different tiles are the **same object** when, inside the region both
//!   tiles cover, their masks have IoU ≥ `iou_threshold` or intersection-over-smaller ≥
//!   `ios_threshold` (duplicates from the overlap and the two halves of an object cut by a seam
//!   both qualify). With zero overlap, halves are joined when they touch along the seam for at
//!   least half of the shorter contact.
//! * Matches are joined transitively (union-find), so an object spanning four tiles becomes one.
//! * A group's pixels: each tile is trusted inside its *core* (the overlap is split in the
//!   middle, see [`TileGrid::owner`]); where the owner tile did not contribute to the group the
//!   other members' pixels are used. The result is vectorised once: one feature per object with
//!   the class and score of its highest-scoring member.
//!
//! Memory: instances are held (cropped to their bounding box) only until no unprocessed tile of
//! the shard can touch them; groups touching other shards' tiles are written out as
//! [`PendingInstance`]s and joined by [`merge_outputs`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::ops::Range;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use crate::grid::{Shard, Tile, TileGrid};
use crate::output::{geometry_from_geojson, geometry_to_geojson, Feature};
use crate::raster::{Crs, GeoTransform, PixelWindow};
use crate::vectorize::{vectorize_mask, VectorizeOptions};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MergeOptions {
    pub iou_threshold: f64,
    pub ios_threshold: f64,
    /// Merge instances of different classes too (the merged object takes the best member's class).
    pub class_agnostic: bool,
}

impl Default for MergeOptions {
    fn default() -> Self {
        MergeOptions { iou_threshold: 0.5, ios_threshold: 0.8, class_agnostic: false }
    }
}

/// A binary mask cropped to its bounding box, in raster pixel coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PixelMask {
    pub x0: u32,
    pub y0: u32,
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl PixelMask {
    /// Crop a mask (nonzero = object) that covers `window` to its bounding box. None when empty.
    pub fn from_tile_mask(mask: &[u8], window: PixelWindow) -> Option<PixelMask> {
        let w = window.width as usize;
        if w == 0 {
            return None;
        }
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        for (y, row) in mask.chunks_exact(w).enumerate() {
            let Some(first) = row.iter().position(|&v| v != 0) else { continue };
            let last = row.iter().rposition(|&v| v != 0).unwrap_or(first);
            x0 = x0.min(first);
            x1 = x1.max(last);
            y0 = y0.min(y);
            y1 = y;
        }
        if x0 == usize::MAX {
            return None;
        }
        let (cw, ch) = (x1 - x0 + 1, y1 - y0 + 1);
        let mut data = Vec::with_capacity(cw * ch);
        for row in mask.chunks_exact(w).skip(y0).take(ch) {
            data.extend(row[x0..=x1].iter().map(|&v| (v != 0) as u8));
        }
        Some(PixelMask {
            x0: window.x + x0 as u32,
            y0: window.y + y0 as u32,
            width: cw as u32,
            height: ch as u32,
            data,
        })
    }

    pub fn right(&self) -> u32 {
        self.x0 + self.width
    }
    pub fn bottom(&self) -> u32 {
        self.y0 + self.height
    }
    pub fn bbox(&self) -> PixelWindow {
        PixelWindow::new(self.x0, self.y0, self.width, self.height)
    }

    /// Is raster pixel (x, y) set?
    pub fn get(&self, x: u32, y: u32) -> bool {
        x >= self.x0
            && y >= self.y0
            && x < self.right()
            && y < self.bottom()
            && self.data[((y - self.y0) * self.width + (x - self.x0)) as usize] != 0
    }

    fn count_in(&self, region: &PixelWindow) -> usize {
        let Some(r) = region.intersection(&self.bbox()) else { return 0 };
        (r.y..r.bottom()).map(|y| (r.x..r.right()).filter(|&x| self.get(x, y)).count()).sum()
    }

    /// Run lengths over the bounding box, row-major, starting with a (possibly empty) run of 0s.
    pub fn to_runs(&self) -> Vec<u32> {
        let mut runs = Vec::new();
        let (mut cur, mut len) = (0u8, 0u32);
        for &v in &self.data {
            let v = (v != 0) as u8;
            if v != cur {
                runs.push(len);
                cur = v;
                len = 0;
            }
            len += 1;
        }
        runs.push(len);
        runs
    }

    pub fn from_runs(x0: u32, y0: u32, width: u32, height: u32, runs: &[u32]) -> Result<PixelMask> {
        let n = width as usize * height as usize;
        // Summed first: runs from a file must not size an allocation beyond the box.
        let total: u64 = runs.iter().map(|&r| r as u64).sum();
        if total != n as u64 {
            bail!("mask runs sum to {total} but the box is {width}x{height}");
        }
        let mut data = Vec::with_capacity(n);
        for (i, &r) in runs.iter().enumerate() {
            data.extend(std::iter::repeat_n((i % 2) as u8, r as usize));
        }
        if data.len() != n {
            bail!("mask runs sum to {} but the box is {width}x{height}", data.len());
        }
        Ok(PixelMask { x0, y0, width, height, data })
    }
}

/// An instance kept for a later cross-shard merge.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingInstance {
    pub tile_row: u32,
    pub tile_col: u32,
    pub class_id: u32,
    pub score: f32,
    pub mask: PixelMask,
}

#[derive(Debug, Clone)]
struct Inst {
    tile: (u32, u32),
    class_id: u32,
    score: f32,
    mask: PixelMask,
    /// What [`Merger::emit`] gives for this instance alone, worked out off the merging thread
    /// ([`FeatureMaker::lone_feature`]); used only if it stays alone.
    ready: Option<LoneFeature>,
}

/// The feature of an instance that is its own object (None: its polygon came out empty, e.g.
/// under `min_area`), made before it reaches the merger.
pub type LoneFeature = Option<Feature>;

/// Turns an object's pixels into its feature: the part of merging that needs no other tile, so
/// the pipeline's workers can do it for instances that stay alone and the merging thread's share
/// of the run shrinks.
#[derive(Debug, Clone)]
pub struct FeatureMaker {
    gt: GeoTransform,
    vectorize: VectorizeOptions,
    class_names: Vec<String>,
}

impl FeatureMaker {
    pub fn new(gt: GeoTransform, vectorize: VectorizeOptions, class_names: Vec<String>) -> FeatureMaker {
        FeatureMaker { gt, vectorize, class_names }
    }

    /// The feature of the object whose pixels are `buf` (`w x h` from raster pixel (x0, y0)),
    /// with the class and score of its best member, seen by `tiles`.
    fn feature(
        &self,
        buf: &[u8],
        (x0, y0, w, h): (u32, u32, usize, usize),
        class_id: u32,
        score: f32,
        tiles: impl Iterator<Item = (u32, u32)>,
    ) -> Result<Option<Feature>> {
        let geometry = vectorize_mask(buf, w, h, &self.gt.shifted(x0 as f64, y0 as f64), &self.vectorize)?;
        if geometry.0.is_empty() {
            return Ok(None);
        }
        let class = self.class_names.get(class_id as usize).cloned().unwrap_or_else(|| class_id.to_string());
        let tile_names: Vec<String> = tiles.map(|(r, c)| format!("r{r}c{c}")).collect();
        let mut feature = Feature::new(geometry, class, class_id as i64, score as f64, tile_names.join(";"));
        feature.area = self.vectorize.units.area_m2(&feature.geometry);
        Ok(Some(feature))
    }

    /// The feature [`Merger::emit`] makes for an instance that forms an object on its own: all
    /// of its pixels (its tile owns them or no other member does), its class and score.
    pub fn lone_feature(&self, tile: Tile, class_id: u32, score: f32, mask: &PixelMask) -> Result<LoneFeature> {
        let (w, h) = (mask.width as usize, mask.height as usize);
        // `emit` composes an object's pixels as 0/1, which is how masks come from a tile.
        let ones;
        let buf = if mask.data.iter().all(|&v| v <= 1) {
            &mask.data
        } else {
            ones = mask.data.iter().map(|&v| (v != 0) as u8).collect::<Vec<u8>>();
            &ones
        };
        self.feature(buf, (mask.x0, mask.y0, w, h), class_id, score, std::iter::once((tile.row, tile.col)))
    }
}

/// Incremental tile merger used by [`crate::tiling::detect_raster_streaming`] and
/// [`merge_outputs`]. Tiles must be added row by row (any order within a row).
pub struct Merger {
    grid: TileGrid,
    rows: Range<u32>,
    opts: MergeOptions,
    maker: FeatureMaker,
    next_id: u64,
    insts: BTreeMap<u64, Inst>,
    by_tile: HashMap<(u32, u32), Vec<u64>>,
    parent: HashMap<u64, u64>,
}

impl Merger {
    /// `rows`: the tile rows this merger will see (a shard's band, or all rows).
    pub fn new(
        grid: TileGrid,
        gt: GeoTransform,
        rows: Range<u32>,
        opts: MergeOptions,
        vectorize: VectorizeOptions,
        class_names: Vec<String>,
    ) -> Merger {
        Merger {
            grid,
            rows,
            opts,
            maker: FeatureMaker::new(gt, vectorize, class_names),
            next_id: 0,
            insts: BTreeMap::new(),
            by_tile: HashMap::new(),
            parent: HashMap::new(),
        }
    }

    fn find(&mut self, mut x: u64) -> u64 {
        while let Some(&p) = self.parent.get(&x) {
            if p == x {
                break;
            }
            let gp = self.parent.get(&p).copied().unwrap_or(p);
            self.parent.insert(x, gp);
            x = p;
        }
        x
    }

    fn union(&mut self, a: u64, b: u64) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            // Smaller id as root keeps the structure independent of insertion order.
            let (lo, hi) = (ra.min(rb), ra.max(rb));
            self.parent.insert(hi, lo);
        }
    }

    fn same_object(&self, a: &Inst, b: &Inst) -> bool {
        if !self.opts.class_agnostic && a.class_id != b.class_id {
            return false;
        }
        let wa = self.grid.tile(a.tile.0, a.tile.1).window;
        let wb = self.grid.tile(b.tile.0, b.tile.1).window;
        if let Some(shared) = wa.intersection(&wb) {
            let Some(region) = shared.intersection(&a.mask.bbox()).and_then(|r| r.intersection(&b.mask.bbox())) else {
                return false;
            };
            let inter: usize = (region.y..region.bottom())
                .map(|y| (region.x..region.right()).filter(|&x| a.mask.get(x, y) && b.mask.get(x, y)).count())
                .sum();
            if inter == 0 {
                return false;
            }
            let (ua, ub) = (a.mask.count_in(&shared), b.mask.count_in(&shared));
            let iou = inter as f64 / (ua + ub - inter) as f64;
            let ios = inter as f64 / ua.min(ub) as f64;
            return iou >= self.opts.iou_threshold || ios >= self.opts.ios_threshold;
        }
        // No shared pixels: edge contact across a seam between adjacent tiles.
        let (contact, la, lb) = if wa.right() == wb.x || wb.right() == wa.x {
            let (left, right) = if wa.right() == wb.x { (a, b) } else { (b, a) };
            let s = if wa.right() == wb.x { wb.x } else { wa.x };
            let (y0, y1) = (wa.y.max(wb.y), wa.bottom().min(wb.bottom()));
            let col_l: Vec<bool> = (y0..y1).map(|y| left.mask.get(s - 1, y)).collect();
            let col_r: Vec<bool> = (y0..y1).map(|y| right.mask.get(s, y)).collect();
            let contact = col_l.iter().zip(&col_r).filter(|(l, r)| **l && **r).count();
            (contact, col_l.iter().filter(|v| **v).count(), col_r.iter().filter(|v| **v).count())
        } else if wa.bottom() == wb.y || wb.bottom() == wa.y {
            let (top, bottom) = if wa.bottom() == wb.y { (a, b) } else { (b, a) };
            let s = if wa.bottom() == wb.y { wb.y } else { wa.y };
            let (x0, x1) = (wa.x.max(wb.x), wa.right().min(wb.right()));
            let row_t: Vec<bool> = (x0..x1).map(|x| top.mask.get(x, s - 1)).collect();
            let row_b: Vec<bool> = (x0..x1).map(|x| bottom.mask.get(x, s)).collect();
            let contact = row_t.iter().zip(&row_b).filter(|(t, b)| **t && **b).count();
            (contact, row_t.iter().filter(|v| **v).count(), row_b.iter().filter(|v| **v).count())
        } else {
            return false;
        };
        contact > 0 && contact as f64 >= 0.5 * la.min(lb) as f64
    }

    /// What makes this merger's features, for making lone objects' features elsewhere.
    pub fn feature_maker(&self) -> &FeatureMaker {
        &self.maker
    }

    /// Add one instance detected in `tile` (mask in raster pixel coordinates).
    pub fn add(&mut self, tile: Tile, class_id: u32, score: f32, mask: PixelMask) {
        self.add_ready(tile, class_id, score, mask, None);
    }

    /// [`Self::add`] with the instance's [`FeatureMaker::lone_feature`] made already (by the
    /// same options), used if no other instance joins it.
    pub fn add_ready(&mut self, tile: Tile, class_id: u32, score: f32, mask: PixelMask, ready: Option<LoneFeature>) {
        let inst = Inst { tile: (tile.row, tile.col), class_id, score, mask, ready };
        let id = self.next_id;
        self.next_id += 1;
        let mut matches = Vec::new();
        for t in self.grid.tiles_touching(&inst.mask.bbox()) {
            if t == inst.tile {
                continue;
            }
            for &other in self.by_tile.get(&t).map(|v| v.as_slice()).unwrap_or(&[]) {
                if self.same_object(&inst, &self.insts[&other]) {
                    matches.push(other);
                }
            }
        }
        self.insts.insert(id, inst);
        self.by_tile.entry((tile.row, tile.col)).or_default().push(id);
        self.parent.insert(id, id);
        for m in matches {
            self.union(id, m);
        }
    }

    fn groups(&mut self) -> BTreeMap<u64, Vec<u64>> {
        let ids: Vec<u64> = self.insts.keys().copied().collect();
        let mut groups: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for id in ids {
            let root = self.find(id);
            groups.entry(root).or_default().push(id);
        }
        groups
    }

    /// Could an instance still be matched by a tile row outside this merger's rows? Row starts
    /// and ends grow with the row index, so only the rows right above and below can be closest.
    fn touches_other_shards(&self, m: &PixelMask) -> bool {
        let above = self.rows.start > 0 && m.y0 <= self.grid.row_end(self.rows.start - 1);
        let below = self.rows.end < self.grid.rows() && m.bottom() >= self.grid.row_start(self.rows.end);
        above || below
    }

    /// Call after every tile of `row` was added: returns the objects no later tile can change.
    pub fn finish_row(&mut self, row: u32) -> Result<Vec<Feature>> {
        if row + 1 >= self.rows.end {
            return Ok(Vec::new()); // the last row is handled by finish()
        }
        let next_start = self.grid.row_start(row + 1);
        let mut out = Vec::new();
        for (_, members) in self.groups() {
            let done = members.iter().all(|id| {
                let m = &self.insts[id].mask;
                m.bottom() < next_start && !self.touches_other_shards(m)
            });
            if done {
                if let Some(f) = self.emit(&members)? {
                    out.push(f);
                }
            }
        }
        Ok(out)
    }

    /// Emit everything left: features for groups inside this merger's rows, raw instances for
    /// groups that other shards may extend.
    pub fn finish(mut self) -> Result<(Vec<Feature>, Vec<PendingInstance>)> {
        let mut features = Vec::new();
        let mut pending = Vec::new();
        for (_, members) in self.groups() {
            if members.iter().any(|id| self.touches_other_shards(&self.insts[id].mask)) {
                for id in members {
                    let i = self.insts.remove(&id).expect("member exists");
                    pending.push(PendingInstance {
                        tile_row: i.tile.0,
                        tile_col: i.tile.1,
                        class_id: i.class_id,
                        score: i.score,
                        mask: i.mask,
                    });
                }
            } else if let Some(f) = self.emit(&members)? {
                features.push(f);
            }
        }
        Ok((features, pending))
    }

    fn emit(&mut self, members: &[u64]) -> Result<Option<Feature>> {
        let mut insts: Vec<Inst> = members.iter().map(|id| self.insts.remove(id).expect("member exists")).collect();
        for id in members {
            self.parent.remove(id);
        }
        for i in &insts {
            if let Some(v) = self.by_tile.get_mut(&i.tile) {
                v.retain(|x| !members.contains(x));
            }
        }
        if let [Inst { ready: Some(ready), .. }] = insts.as_mut_slice() {
            return Ok(ready.take());
        }
        let tiles: BTreeSet<(u32, u32)> = insts.iter().map(|i| i.tile).collect();
        let x0 = insts.iter().map(|i| i.mask.x0).min().unwrap();
        let y0 = insts.iter().map(|i| i.mask.y0).min().unwrap();
        let x1 = insts.iter().map(|i| i.mask.right()).max().unwrap();
        let y1 = insts.iter().map(|i| i.mask.bottom()).max().unwrap();
        let (w, h) = ((x1 - x0) as usize, (y1 - y0) as usize);
        let mut buf = vec![0u8; w * h];
        let (owner_rows, owner_cols) = self.grid.owners(y0..y1, x0..x1);
        for i in &insts {
            let m = &i.mask;
            for (dy, row) in m.data.chunks_exact(m.width.max(1) as usize).enumerate() {
                let y = m.y0 + dy as u32;
                let out = &mut buf[(y - y0) as usize * w..][..w];
                let owner_row = owner_rows[(y - y0) as usize];
                for (dx, _) in row.iter().enumerate().filter(|(_, &v)| v != 0) {
                    let x = (m.x0 - x0) as usize + dx;
                    let owner = (owner_row, owner_cols[x]);
                    if owner == i.tile || !tiles.contains(&owner) {
                        out[x] = 1;
                    }
                }
            }
        }
        let best = insts
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.score.total_cmp(&b.1.score).then(b.0.cmp(&a.0)))
            .map(|(_, i)| i)
            .unwrap();
        self.maker.feature(&buf, (x0, y0, w, h), best.class_id, best.score, tiles.iter().copied())
    }
}

/// Is the nonempty box (x0, y0, width, height) inside `window`? (u64: journal values are untrusted.)
pub(crate) fn mask_box_within(x0: u32, y0: u32, width: u32, height: u32, window: &PixelWindow) -> bool {
    width > 0
        && height > 0
        && x0 >= window.x
        && y0 >= window.y
        && x0 as u64 + width as u64 <= window.right() as u64
        && y0 as u64 + height as u64 <= window.bottom() as u64
}

/// A [`Merger`]'s instances and their grouping, for the detect journal ([`crate::journal`]): a
/// merger restored from it decides and emits exactly what the original would have.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct MergerSnapshot {
    next_id: u64,
    insts: Vec<SnapshotInstance>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct SnapshotInstance {
    id: u64,
    /// The group's root. Union keeps the smallest id as root, so storing roots instead of the
    /// (path-compressed) parent links loses nothing that later decisions depend on.
    root: u64,
    row: u32,
    col: u32,
    class_id: u32,
    /// f32 widened to f64: exact, and JSON round-trips f64 exactly (serde_json's float_roundtrip).
    score: f64,
    x0: u32,
    y0: u32,
    width: u32,
    height: u32,
    runs: Vec<u32>,
}

impl Merger {
    pub(crate) fn snapshot(&mut self) -> MergerSnapshot {
        let ids: Vec<u64> = self.insts.keys().copied().collect();
        let insts = ids
            .into_iter()
            .map(|id| {
                let root = self.find(id);
                let i = &self.insts[&id];
                SnapshotInstance {
                    id,
                    root,
                    row: i.tile.0,
                    col: i.tile.1,
                    class_id: i.class_id,
                    score: i.score as f64,
                    x0: i.mask.x0,
                    y0: i.mask.y0,
                    width: i.mask.width,
                    height: i.mask.height,
                    runs: i.mask.to_runs(),
                }
            })
            .collect();
        MergerSnapshot { next_id: self.next_id, insts }
    }

    /// Replaces this (fresh) merger's state by `snap`, checking it against the grid so a damaged
    /// journal is an error, never an out-of-range panic later.
    pub(crate) fn restore(&mut self, snap: MergerSnapshot) -> Result<()> {
        if !self.insts.is_empty() || self.next_id != 0 {
            bail!("merger state can only be restored into a fresh merger");
        }
        let ids: BTreeSet<u64> = snap.insts.iter().map(|i| i.id).collect();
        if ids.len() != snap.insts.len() {
            bail!("merger state lists an instance twice");
        }
        for s in snap.insts {
            if s.id >= snap.next_id || !ids.contains(&s.root) || s.root > s.id {
                bail!("merger state: instance {} has an inconsistent id or group", s.id);
            }
            if s.row >= self.grid.rows() || s.col >= self.grid.cols() {
                bail!("merger state: instance {} is on tile r{}c{}, outside the grid", s.id, s.row, s.col);
            }
            let window = self.grid.tile(s.row, s.col).window;
            // Before decoding: a damaged box must not size an allocation.
            if !mask_box_within(s.x0, s.y0, s.width, s.height, &window) {
                bail!("merger state: instance {} lies outside its tile r{}c{}", s.id, s.row, s.col);
            }
            let mask = PixelMask::from_runs(s.x0, s.y0, s.width, s.height, &s.runs)
                .with_context(|| format!("merger state: instance {}", s.id))?;
            self.by_tile.entry((s.row, s.col)).or_default().push(s.id);
            self.parent.insert(s.id, s.root);
            let inst = Inst { tile: (s.row, s.col), class_id: s.class_id, score: s.score as f32, mask, ready: None };
            self.insts.insert(s.id, inst);
        }
        for (&id, &root) in &self.parent {
            if self.parent.get(&root) != Some(&root) {
                bail!("merger state: instance {id} names {root} as its group, which is not a group root");
            }
        }
        self.next_id = snap.next_id;
        Ok(())
    }
}

// ---------------------------------------------------------------- shard files

/// First line of a shard file: everything needed to merge shards consistently.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShardHeader {
    pub format: String,
    pub shard: Shard,
    pub grid: TileGrid,
    pub geotransform: GeoTransform,
    pub crs: Option<Crs>,
    pub class_names: Vec<String>,
    pub merge: MergeOptions,
    pub vectorize: VectorizeOptions,
}

const SHARD_FORMAT: &str = "maskrcnn-geo-shard/1";

impl ShardHeader {
    pub fn new(
        shard: Shard,
        grid: TileGrid,
        geotransform: GeoTransform,
        crs: Option<Crs>,
        class_names: Vec<String>,
        merge: MergeOptions,
        vectorize: VectorizeOptions,
    ) -> ShardHeader {
        ShardHeader { format: SHARD_FORMAT.to_string(), shard, grid, geotransform, crs, class_names, merge, vectorize }
    }
}

pub(crate) fn feature_to_json(f: &Feature) -> serde_json::Value {
    serde_json::json!({"type": "Feature",
        "properties": {"class": f.class, "class_id": f.class_id, "score": f.score, "area": f.area, "tile": f.tile},
        "geometry": geometry_to_geojson(&f.geometry)})
}

pub(crate) fn feature_from_json(v: &serde_json::Value) -> Result<Feature> {
    let p = &v["properties"];
    Ok(Feature {
        geometry: geometry_from_geojson(&v["geometry"])?,
        class: p["class"].as_str().ok_or_else(|| anyhow!("feature without class"))?.to_string(),
        class_id: p["class_id"].as_i64().ok_or_else(|| anyhow!("feature without class_id"))?,
        score: p["score"].as_f64().ok_or_else(|| anyhow!("feature without score"))?,
        area: p["area"].as_f64().ok_or_else(|| anyhow!("feature without area"))?,
        tile: p["tile"].as_str().unwrap_or("").to_string(),
    })
}

/// Streams one shard's result as JSON Lines: the header, finished features, then the pending
/// instances (masks as run lengths) for [`merge_outputs`]. Written to a temp file and renamed.
pub struct ShardWriter {
    out: BufWriter<File>,
    tmp: std::path::PathBuf,
    target: std::path::PathBuf,
}

impl ShardWriter {
    pub fn create(path: &Path, header: &ShardHeader, overwrite: bool) -> Result<ShardWriter> {
        if path.exists() && !overwrite {
            bail!("{} already exists; refusing to overwrite (set overwrite to replace it)", path.display());
        }
        let tmp = crate::output::temp_path_for(path)?;
        let mut out = BufWriter::new(File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?);
        serde_json::to_writer(&mut out, header)?;
        out.write_all(b"\n")?;
        Ok(ShardWriter { out, tmp, target: path.to_path_buf() })
    }

    pub fn write(&mut self, f: &Feature) -> Result<()> {
        serde_json::to_writer(&mut self.out, &serde_json::json!({"feature": feature_to_json(f)}))?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    pub fn finish(mut self, pending: &[PendingInstance]) -> Result<()> {
        for p in pending {
            let m = &p.mask;
            let v = serde_json::json!({"pending": {"tile_row": p.tile_row, "tile_col": p.tile_col, "class_id": p.class_id,
                "score": p.score, "x0": m.x0, "y0": m.y0, "width": m.width, "height": m.height, "runs": m.to_runs()}});
            serde_json::to_writer(&mut self.out, &v)?;
            self.out.write_all(b"\n")?;
        }
        self.out.flush()?;
        std::fs::rename(&self.tmp, &self.target)
            .with_context(|| format!("cannot move {} to {}", self.tmp.display(), self.target.display()))?;
        Ok(())
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Result of merging shard files.
#[derive(Debug, Clone)]
pub struct MergedOutput {
    pub header: ShardHeader,
    pub features: Vec<Feature>,
}

/// Join the shard files of one run (all N shards, each exactly once) into the final features:
/// finished features are passed through, pending instances are merged as in a single run, so
/// the result equals an unsharded run.
pub fn merge_outputs(paths: &[impl AsRef<Path>]) -> Result<MergedOutput> {
    let mut features = Vec::new();
    let header = merge_outputs_streaming(paths, |f| {
        features.push(f);
        Ok(())
    })?;
    Ok(MergedOutput { header, features })
}

/// Reads and cross-checks the header of every shard file: same run, each shard once, none missing.
pub fn read_shard_headers(paths: &[impl AsRef<Path>]) -> Result<ShardHeader> {
    let mut header: Option<ShardHeader> = None;
    let mut seen = BTreeSet::new();
    for path in paths {
        let path = path.as_ref();
        let file = File::open(path).with_context(|| format!("cannot open shard output {}", path.display()))?;
        let first = BufReader::new(file).lines().next().ok_or_else(|| anyhow!("{} is empty", path.display()))??;
        let h: ShardHeader = serde_json::from_str(&first)
            .with_context(|| format!("{}: not a maskrcnn-geo shard file", path.display()))?;
        if h.format != SHARD_FORMAT {
            bail!("{}: shard format {:?}, expected {SHARD_FORMAT:?}", path.display(), h.format);
        }
        let g = &h.grid;
        let rebuilt = TileGrid::new(g.width, g.height, g.tile_size, g.overlap)
            .with_context(|| format!("{}: the shard's tile grid", path.display()))?;
        if &rebuilt != g {
            bail!("{}: the shard's tile grid is not the grid its sizes give (a damaged shard file)", path.display());
        }
        if let Some(prev) = &header {
            let mut a = prev.clone();
            a.shard = h.shard;
            if a != h {
                bail!("{}: shard comes from a different run (grid, georeferencing or options differ)", path.display());
            }
        }
        if !seen.insert(h.shard.index) {
            bail!("{}: shard {} given twice", path.display(), h.shard.index);
        }
        header = Some(h);
    }
    let header = header.ok_or_else(|| anyhow!("no shard files given"))?;
    let n = header.shard.count;
    if n > paths.len() {
        bail!(
            "shards are missing: the run has {n} but {} shard file(s) were given; the merge needs all of them",
            paths.len()
        );
    }
    if seen.len() != n {
        let missing: Vec<usize> = (0..n).filter(|k| !seen.contains(k)).collect();
        bail!("shards {missing:?} of {n} are missing; the merge needs all of them");
    }
    Ok(header)
}

/// Like [`merge_outputs`] but hands each feature to `on_feature` as it is read, holding only the
/// objects that touch other shards: memory grows with the seams, not with the scene.
pub fn merge_outputs_streaming(
    paths: &[impl AsRef<Path>],
    mut on_feature: impl FnMut(Feature) -> Result<()>,
) -> Result<ShardHeader> {
    let header = read_shard_headers(paths)?;
    let mut pending: Vec<PendingInstance> = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let file = File::open(path).with_context(|| format!("cannot open shard output {}", path.display()))?;
        for (n, line) in BufReader::new(file).lines().enumerate().skip(1) {
            let line = line?;
            let ctx = || format!("{} line {}", path.display(), n + 1);
            let v: serde_json::Value = serde_json::from_str(&line).with_context(ctx)?;
            if let Some(f) = v.get("feature") {
                on_feature(feature_from_json(f).with_context(ctx)?)?;
            } else if let Some(p) = v.get("pending") {
                let num = |k: &str| p[k].as_u64().ok_or_else(|| anyhow!("pending instance without {k}"));
                let (tile_row, tile_col) = (num("tile_row")?, num("tile_col")?);
                if tile_row >= u64::from(header.grid.rows()) || tile_col >= u64::from(header.grid.cols()) {
                    bail!(
                        "{}: pending instance of tile r{tile_row}c{tile_col}, outside the {}x{} tile grid",
                        ctx(),
                        header.grid.rows(),
                        header.grid.cols()
                    );
                }
                let pixel = |k: &str| -> Result<u32> {
                    u32::try_from(num(k)?).map_err(|_| anyhow!("pending instance with {k} beyond 2^32"))
                };
                let (x0, y0, width, height) = (
                    pixel("x0").with_context(ctx)?,
                    pixel("y0").with_context(ctx)?,
                    pixel("width").with_context(ctx)?,
                    pixel("height").with_context(ctx)?,
                );
                // Before decoding: a damaged box must not size an allocation, nor wrap the merger's
                // pixel arithmetic.
                let window = header.grid.tile(tile_row as u32, tile_col as u32).window;
                if !mask_box_within(x0, y0, width, height, &window) {
                    bail!("{}: pending instance lies outside its tile r{tile_row}c{tile_col}", ctx());
                }
                let runs: Vec<u32> = serde_json::from_value(p["runs"].clone()).with_context(ctx)?;
                let mask = PixelMask::from_runs(x0, y0, width, height, &runs).with_context(ctx)?;
                pending.push(PendingInstance {
                    tile_row: tile_row as u32,
                    tile_col: tile_col as u32,
                    class_id: num("class_id")? as u32,
                    score: p["score"]
                        .as_f64()
                        .ok_or_else(|| anyhow!("pending instance without score"))
                        .with_context(ctx)? as f32,
                    mask,
                });
            } else {
                bail!("{}: unknown record", ctx());
            }
        }
    }
    // Re-run the merge on the pending instances, tile row by tile row as a single run would.
    pending.sort_by_key(|p| (p.tile_row, p.tile_col));
    let rows = 0..header.grid.rows();
    let mut merger = Merger::new(
        header.grid.clone(),
        header.geotransform,
        rows,
        header.merge.clone(),
        header.vectorize.clone(),
        header.class_names.clone(),
    );
    for p in pending {
        let tile = header.grid.tile(p.tile_row, p.tile_col);
        merger.add(tile, p.class_id, p.score, p.mask);
    }
    let (more, left) = merger.finish()?;
    debug_assert!(left.is_empty());
    for f in more {
        on_feature(f)?;
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w x h` box of ones at raster (x0, y0).
    fn block(x0: u32, y0: u32, w: u32, h: u32) -> PixelMask {
        PixelMask { x0, y0, width: w, height: h, data: vec![1; (w * h) as usize] }
    }

    /// Two tiles side by side sharing columns 40..60: `a` and `b` are one object seen by both,
    /// `c` an object of the left tile alone.
    fn run(ready: impl Fn(&FeatureMaker, Tile, u32, &PixelMask) -> Option<LoneFeature>) -> Vec<Feature> {
        let grid = TileGrid::new(100, 60, 60, 20).unwrap();
        let (left, right) = (grid.tile(0, 0), grid.tile(0, 1));
        let names = vec!["bg".to_string(), "house".to_string()];
        let mut merger = Merger::new(
            grid,
            GeoTransform::IDENTITY,
            0..1,
            MergeOptions::default(),
            VectorizeOptions::default(),
            names,
        );
        let maker = merger.feature_maker().clone();
        for (tile, score, mask) in [(left, 0.9, block(45, 10, 12, 8)), (left, 0.8, block(5, 30, 6, 6))] {
            let r = ready(&maker, tile, 1, &mask);
            merger.add_ready(tile, 1, score, mask, r);
        }
        let b = block(44, 10, 14, 8);
        let r = ready(&maker, right, 1, &b);
        merger.add_ready(right, 1, 0.7, b, r);
        let (features, pending) = merger.finish().unwrap();
        assert!(pending.is_empty());
        features
    }

    /// Found by `fuzz_shard_reader` once the merger computed each box's owner tiles up front: a
    /// pending instance at y0 = 2^32-1 (its bottom wrapping to 0) made the owner table empty and
    /// the merge panic; a box outside its tile is a damaged shard.
    #[test]
    fn a_pending_instance_outside_its_tile_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let grid = TileGrid::new(40, 30, 16, 4).unwrap();
        let header = ShardHeader::new(
            Shard::WHOLE,
            grid,
            GeoTransform::IDENTITY,
            None,
            vec!["a".into()],
            MergeOptions::default(),
            VectorizeOptions::default(),
        );
        for (x0, y0, width) in [(10u64, 4294967295u64, 4u64), (14, 2, 4), (10, 2, 1 << 32)] {
            let pending = serde_json::json!({"pending": {"tile_row": 0, "tile_col": 0, "class_id": 1, "score": 0.8,
                "x0": x0, "y0": y0, "width": width, "height": 1, "runs": [0, 4]}});
            let path = dir.path().join("s0of1.jsonl");
            let text = format!("{}\n{pending}\n", serde_json::to_string(&header).unwrap());
            std::fs::write(&path, text).unwrap();
            let err = format!("{:#}", merge_outputs(&[&path]).expect_err("a damaged box"));
            assert!(err.contains("s0of1.jsonl line 2"), "{err}");
        }
    }

    #[test]
    fn a_ready_lone_feature_is_the_one_the_merger_makes_and_is_used_only_for_an_instance_left_alone() {
        let plain = run(|_, _, _, _| None);
        assert_eq!(plain.len(), 2);
        let made = run(|maker, tile, class_id, mask| Some(maker.lone_feature(tile, class_id, 0.5, mask).unwrap()));
        // The scores differ (0.5 above): compare everything else.
        let strip =
            |fs: &[Feature]| fs.iter().map(|f| (f.geometry.clone(), f.tile.clone(), f.area)).collect::<Vec<_>>();
        assert_eq!(strip(&plain), strip(&made));
        // The joined object is the merger's own (its best score, both tiles); the lone one is the ready feature.
        let joined = made.iter().find(|f| f.tile == "r0c0;r0c1").expect("the joined object");
        assert_eq!(joined.score, 0.9f32 as f64);
        let lone = made.iter().find(|f| f.tile == "r0c0").expect("the lone object");
        assert_eq!(lone.score, 0.5f32 as f64);
        // A lone instance whose ready answer is "no polygon" gives none.
        let none = run(|_, tile, _, mask| (tile.col == 0 && mask.width == 6).then_some(None));
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].tile, "r0c0;r0c1");
    }
}
