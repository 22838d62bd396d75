//! The tile grid over a raster and its split into shards: pure pixel geometry, shared by the
//! detection driver ([`crate::tiling`]) and the seam merger ([`crate::merge`]).

use anyhow::{anyhow, bail, Context, Result};

use crate::raster::PixelWindow;

/// One tile of the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Tile {
    /// Row-major index in the full grid.
    pub index: usize,
    pub row: u32,
    pub col: u32,
    /// Pixels of the raster covered by this tile.
    pub window: PixelWindow,
}

impl Tile {
    /// "r3c5": used in the `tile` field of outputs.
    pub fn name(&self) -> String {
        format!("r{}c{}", self.row, self.col)
    }
}

/// Regular grid of `tile_size` tiles overlapping by `overlap` pixels. The last row/column is
/// shifted inwards so every tile is full size (rasters smaller than a tile give one smaller
/// tile). Every pixel also has one *owner* tile: the overlap between neighbours is split in the
/// middle, so the owners' "cores" partition the raster.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TileGrid {
    pub width: u32,
    pub height: u32,
    pub tile_size: u32,
    pub overlap: u32,
    pub(crate) col_starts: Vec<u32>,
    pub(crate) row_starts: Vec<u32>,
}

/// Most tiles a grid may have (a 10-gigapixel-per-side scene in 1 kpx tiles is 1e8).
pub const MAX_TILES: u64 = 100_000_000;

fn axis_starts(len: u32, tile: u32, overlap: u32) -> Vec<u32> {
    if len <= tile {
        return vec![0];
    }
    let step = tile - overlap;
    let mut starts = Vec::new();
    let mut s = 0;
    while s + tile < len {
        starts.push(s);
        s += step;
    }
    starts.push(len - tile);
    starts.dedup();
    starts
}

impl TileGrid {
    pub fn new(width: u32, height: u32, tile_size: u32, overlap: u32) -> Result<TileGrid> {
        if width == 0 || height == 0 {
            bail!("cannot tile an empty raster ({width}x{height})");
        }
        if tile_size == 0 || overlap.saturating_mul(2) > tile_size {
            bail!("tile size {tile_size} must be positive and at least twice the overlap {overlap}");
        }
        // The grid's start lists are allocated up front: bound them (a shard header says the sizes).
        let step = u64::from(tile_size - overlap);
        let tiles = (u64::from(width) / step + 2) * (u64::from(height) / step + 2);
        if tiles > MAX_TILES {
            bail!(
                "{width}x{height} pixels in tiles of {tile_size} (overlap {overlap}) would be about {tiles} tiles, more \
                 than {MAX_TILES}; use larger tiles"
            );
        }
        Ok(TileGrid {
            width,
            height,
            tile_size,
            overlap,
            col_starts: axis_starts(width, tile_size, overlap),
            row_starts: axis_starts(height, tile_size, overlap),
        })
    }

    pub fn rows(&self) -> u32 {
        self.row_starts.len() as u32
    }
    pub fn cols(&self) -> u32 {
        self.col_starts.len() as u32
    }
    pub fn len(&self) -> usize {
        self.row_starts.len() * self.col_starts.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn tile(&self, row: u32, col: u32) -> Tile {
        let (x, y) = (self.col_starts[col as usize], self.row_starts[row as usize]);
        let window = PixelWindow::new(x, y, self.tile_size.min(self.width), self.tile_size.min(self.height));
        Tile { index: (row * self.cols() + col) as usize, row, col, window }
    }

    /// All tiles, row-major.
    pub fn tiles(&self) -> impl Iterator<Item = Tile> + '_ {
        (0..self.rows()).flat_map(move |r| (0..self.cols()).map(move |c| self.tile(r, c)))
    }

    /// Tiles of one shard: a contiguous band of tile rows, so only objects on the band edges
    /// need a cross-shard merge.
    pub fn shard_rows(&self, shard: Shard) -> std::ops::Range<u32> {
        let n = self.rows() as usize;
        let start = n * shard.index / shard.count;
        let end = n * (shard.index + 1) / shard.count;
        start as u32..end as u32
    }

    /// First pixel row of tile row `row` (`height` past the last row).
    pub fn row_start(&self, row: u32) -> u32 {
        self.row_starts.get(row as usize).copied().unwrap_or(self.height)
    }

    /// Last pixel row (exclusive) covered by tile row `row`.
    pub fn row_end(&self, row: u32) -> u32 {
        self.row_start(row) + self.tile_size.min(self.height)
    }

    fn owner_on_axis(starts: &[u32], tile: u32, v: u32) -> u32 {
        // The boundary between tile i and i+1 is the middle of their overlap; boundaries grow
        // with i, so the owner is the number of boundaries at or before v (doubled midpoints).
        let (mut lo, mut hi) = (0usize, starts.len().saturating_sub(1));
        while lo < hi {
            let mid = (lo + hi) / 2;
            if 2 * v as u64 + 1 >= starts[mid + 1] as u64 + starts[mid] as u64 + tile as u64 {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo as u32
    }

    /// Tiles (row, col) whose windows intersect or touch `b` (share an edge with it), row-major.
    pub fn tiles_touching(&self, b: &PixelWindow) -> Vec<(u32, u32)> {
        let size_x = self.tile_size.min(self.width);
        let size_y = self.tile_size.min(self.height);
        // Starts are sorted: tiles with start <= far edge and start + size >= near edge.
        let rows = self.row_starts.partition_point(|&s| s + size_y < b.y)
            ..self.row_starts.partition_point(|&s| s <= b.bottom());
        let cols = self.col_starts.partition_point(|&s| s + size_x < b.x)
            ..self.col_starts.partition_point(|&s| s <= b.right());
        let mut out = Vec::with_capacity(rows.len() * cols.len());
        for r in rows {
            for c in cols.clone() {
                out.push((r as u32, c as u32));
            }
        }
        out
    }

    /// The owner tiles' rows of pixel rows `ys` and columns of pixel columns `xs`: what
    /// [`Self::owner`] gives, for a whole box at the cost of its sides.
    pub fn owners(&self, ys: std::ops::Range<u32>, xs: std::ops::Range<u32>) -> (Vec<u32>, Vec<u32>) {
        (
            ys.map(|y| Self::owner_on_axis(&self.row_starts, self.tile_size, y)).collect(),
            xs.map(|x| Self::owner_on_axis(&self.col_starts, self.tile_size, x)).collect(),
        )
    }

    /// (row, col) of the tile whose core contains pixel (x, y).
    pub fn owner(&self, x: u32, y: u32) -> (u32, u32) {
        (
            Self::owner_on_axis(&self.row_starts, self.tile_size, y),
            Self::owner_on_axis(&self.col_starts, self.tile_size, x),
        )
    }
}

/// "Shard K of N" (0-based K).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    pub fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 || index >= count {
            bail!("shard {index}/{count}: need 0 <= K < N");
        }
        Ok(Shard { index, count })
    }

    /// Parse "K/N" (as in `--shard 3/10`), K 0-based.
    pub fn parse(s: &str) -> Result<Shard> {
        let (k, n) = s.split_once('/').ok_or_else(|| anyhow!("shard {s:?} must look like K/N, e.g. 0/4"))?;
        let k: usize = k.trim().parse().with_context(|| format!("shard {s:?}: K is not a number"))?;
        let n: usize = n.trim().parse().with_context(|| format!("shard {s:?}: N is not a number"))?;
        Shard::new(k, n)
    }

    /// From a batch scheduler: `JOB_COMPLETION_INDEX` (Kubernetes indexed Jobs) or
    /// `SLURM_ARRAY_TASK_ID` (minus `SLURM_ARRAY_TASK_MIN`, so 1-based arrays work too). `total`
    /// is the shard count; when None, `SLURM_ARRAY_TASK_COUNT` is used. Ok(None) when neither
    /// index variable is set.
    pub fn from_env(total: Option<usize>) -> Result<Option<Shard>> {
        Self::from_vars(total, |k| std::env::var(k).ok())
    }

    /// [`Shard::from_env`] with an explicit variable lookup (testable).
    pub fn from_vars(total: Option<usize>, var: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>> {
        let parse = |name: &str, v: String| -> Result<usize> {
            v.trim().parse().with_context(|| format!("{name}={v:?} is not a non-negative integer"))
        };
        let index = if let Some(v) = var("JOB_COMPLETION_INDEX") {
            parse("JOB_COMPLETION_INDEX", v)?
        } else if let Some(v) = var("SLURM_ARRAY_TASK_ID") {
            let id = parse("SLURM_ARRAY_TASK_ID", v)?;
            let min = var("SLURM_ARRAY_TASK_MIN").map(|m| parse("SLURM_ARRAY_TASK_MIN", m)).transpose()?.unwrap_or(0);
            id.checked_sub(min).ok_or_else(|| anyhow!("SLURM_ARRAY_TASK_ID {id} < SLURM_ARRAY_TASK_MIN {min}"))?
        } else {
            return Ok(None);
        };
        let count = match total {
            Some(t) => t,
            None => var("SLURM_ARRAY_TASK_COUNT")
                .map(|v| parse("SLURM_ARRAY_TASK_COUNT", v))
                .transpose()?
                .ok_or_else(|| anyhow!("shard index found in the environment but no shard count given"))?,
        };
        Shard::new(index, count).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_covers_raster_with_full_tiles_and_owner_partition() {
        let g = TileGrid::new(1000, 700, 256, 32).unwrap();
        assert_eq!(g.col_starts, vec![0, 224, 448, 672, 744]);
        assert_eq!(g.row_starts, vec![0, 224, 444]);
        for t in g.tiles() {
            assert_eq!((t.window.width, t.window.height), (256, 256));
            assert!(t.window.right() <= 1000 && t.window.bottom() <= 700);
        }
        // Owner boundary between col 0 [0,256) and col 1 [224,480) is 240.
        assert_eq!(g.owner(239, 0), (0, 0));
        assert_eq!(g.owner(240, 0), (0, 1));
        assert_eq!(g.owner(999, 699), (2, 4));
        // Each pixel's owner tile contains it.
        for y in (0..700).step_by(7) {
            for x in (0..1000).step_by(3) {
                let (r, c) = g.owner(x, y);
                let w = g.tile(r, c).window;
                assert!(x >= w.x && x < w.right() && y >= w.y && y < w.bottom());
            }
        }
        // The owner is the tile whose core (overlap split in the middle) holds the pixel: the
        // first tile whose next boundary lies past it, for every pixel of grids with short
        // last steps, one tile, and no overlap.
        for (w, tile, overlap) in [(1000, 256, 32), (5000, 512, 64), (513, 512, 64), (300, 300, 0), (1001, 100, 0)] {
            let g = TileGrid::new(w, 10, tile, overlap).unwrap();
            for x in 0..w {
                let linear = (0..g.col_starts.len() - 1)
                    .find(|&i| 2 * x + 1 < g.col_starts[i + 1] + g.col_starts[i] + tile)
                    .unwrap_or(g.col_starts.len() - 1);
                assert_eq!(g.owner(x, 0).1, linear as u32, "grid {w}/{tile}/{overlap}, x {x}");
            }
        }
        // A box's owners are those of its pixels.
        let (rows, cols) = g.owners(5..700, 3..1000);
        for (dy, &r) in rows.iter().enumerate() {
            for (dx, &c) in cols.iter().enumerate() {
                assert_eq!((r, c), g.owner(3 + dx as u32, 5 + dy as u32));
            }
        }
        let small = TileGrid::new(100, 50, 256, 32).unwrap();
        assert_eq!(small.len(), 1);
        assert_eq!(small.tile(0, 0).window, PixelWindow::new(0, 0, 100, 50));
        assert!(TileGrid::new(100, 100, 32, 17).is_err());
    }

    #[test]
    fn shards_partition_rows() {
        let g = TileGrid::new(1000, 5000, 256, 32).unwrap();
        let mut covered = Vec::new();
        for k in 0..3 {
            covered.extend(g.shard_rows(Shard::new(k, 3).unwrap()));
        }
        assert_eq!(covered, (0..g.rows()).collect::<Vec<_>>());
        assert_eq!(Shard::parse("2/5").unwrap(), Shard { index: 2, count: 5 });
        assert!(Shard::parse("5/5").is_err());
        assert!(Shard::parse("a/5").is_err());
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|p| p.0 == k).map(|p| p.1.to_string())
        };
        assert_eq!(
            Shard::from_vars(Some(4), vars(&[("JOB_COMPLETION_INDEX", "3")])).unwrap(),
            Some(Shard { index: 3, count: 4 })
        );
        assert_eq!(
            Shard::from_vars(
                None,
                vars(&[("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_COUNT", "8")])
            )
            .unwrap(),
            Some(Shard { index: 3, count: 8 })
        );
        assert_eq!(Shard::from_vars(Some(4), vars(&[])).unwrap(), None);
        assert!(Shard::from_vars(None, vars(&[("JOB_COMPLETION_INDEX", "1")])).is_err());
    }
}
