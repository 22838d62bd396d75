//! Area of interest for `detect --aoi`: polygons (any of the label formats, any CRS the
//! projection library knows) that limit detection to the tiles they touch and cut every object at
//! their boundary.
//!
//! The AOI is one more source of pixel validity, next to alpha bands and internal masks (see
//! [`crate::tiling`]): a tile with no pixel inside is never read, and masks are cleared outside.
//! A pixel is inside when its centre is (GDAL's rasterisation rule, holes excluded), so objects are
//! clipped at the AOI boundary to the pixel. The AOI is rasterised per tile from its edges in pixel
//! coordinates: no raster-sized bitmap, whatever the raster's size.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use geo::{BoundingRect, Coord, Intersects, MultiPolygon, Rect};

use crate::chips::read_labels_in_crs;
use crate::raster::{Crs, PixelWindow, RasterInfo};

/// Largest distance, in pixels, between a reprojected AOI edge and its true course.
const AOI_TOLERANCE_PIXELS: f64 = 0.05;

/// An area of interest in a raster's pixel coordinates.
#[derive(Debug, Clone)]
pub struct Aoi {
    pub path: PathBuf,
    /// Ring edges (x1, y1, x2, y2) in pixel coordinates, horizontal ones left out (they never cross
    /// a row of pixel centres), sorted by their lower y.
    edges: Vec<[f64; 4]>,
    /// Pixel bounding box (x0, y0, x1, y1) of the AOI.
    bbox: (f64, f64, f64, f64),
    /// Polygons read.
    pub polygons: usize,
}

/// How a window lies with respect to the AOI.
#[derive(Debug, Clone, PartialEq)]
pub enum AoiCover {
    /// No pixel centre of the window is inside: the tile need not be read.
    Outside,
    /// Every pixel is inside.
    Inside,
    /// Row-major validity of the window's pixels.
    Partial(Vec<bool>),
}

impl Aoi {
    /// Reads the AOI polygons from `path` and places them on the raster described by `info` (read
    /// from `raster_path`), reprojecting them from their CRS to the raster's. An AOI that misses
    /// the raster is an error, so nothing is written for it.
    pub fn load(path: &Path, info: &RasterInfo, raster_path: &Path) -> Result<Aoi> {
        let gt = info.geotransform.with_context(|| {
            format!("--aoi {}: raster {} has no georeferencing to place it on", path.display(), raster_path.display())
        })?;
        let layer =
            read_labels_in_crs(path, None, info.crs.as_ref(), raster_path, AOI_TOLERANCE_PIXELS, gt.pixel_size())
                .with_context(|| format!("--aoi {}", path.display()))?;
        let mut edges = Vec::new();
        let mut pixel_polygons = Vec::new();
        for (geometry, _) in &layer.features {
            let px = crate::chips::to_pixel_coordinates(geometry, &gt)?;
            for poly in &px.0 {
                for ring in std::iter::once(poly.exterior()).chain(poly.interiors()) {
                    for w in ring.0.windows(2) {
                        let (a, b) = (w[0], w[1]);
                        if a.y != b.y {
                            edges.push(if a.y < b.y { [a.x, a.y, b.x, b.y] } else { [b.x, b.y, a.x, a.y] });
                        }
                    }
                }
            }
            pixel_polygons.extend(px.0);
        }
        edges.sort_by(|a, b| a[1].total_cmp(&b[1]));
        let pixels = MultiPolygon::new(pixel_polygons);
        let raster = Rect::new(Coord { x: 0.0, y: 0.0 }, Coord { x: info.width as f64, y: info.height as f64 });
        let (x0, y0, x1, y1) = info.map_bounds();
        let crs = info.crs.as_ref().map(Crs::describe).unwrap_or_else(|| "its CRS".into());
        let Some(r) = pixels.bounding_rect().filter(|_| pixels.intersects(&raster)) else {
            bail!(
                "--aoi {}: the area of interest does not overlap raster {} (extent {x0:.3},{y0:.3} .. {x1:.3},{y1:.3} \
                 in {crs}); nothing to detect, nothing written",
                path.display(),
                raster_path.display()
            );
        };
        let aoi = Aoi {
            path: path.to_path_buf(),
            edges,
            bbox: (r.min().x, r.min().y, r.max().x, r.max().y),
            polygons: layer.features.len(),
        };
        let whole = PixelWindow { x: 0, y: 0, width: info.width, height: info.height };
        if !aoi.touches_any_pixel(whole) {
            bail!(
                "--aoi {}: the area of interest covers no pixel centre of raster {} (it only grazes it); \
                 nothing to detect, nothing written",
                path.display(),
                raster_path.display()
            );
        }
        Ok(aoi)
    }

    /// Whether any pixel centre of `win` is inside, without building the window's mask.
    fn touches_any_pixel(&self, win: PixelWindow) -> bool {
        let mut any = false;
        self.scan(win, |_, _, _| {
            any = true;
            false
        });
        any
    }

    /// Calls `span(row, c0, c1)` for each run of inside pixels (columns c0..c1 of window row
    /// `row`) until it returns false.
    fn scan(&self, win: PixelWindow, mut span: impl FnMut(usize, usize, usize) -> bool) {
        let (wx0, wy0) = (win.x as f64, win.y as f64);
        let (wx1, wy1) = (wx0 + win.width as f64, wy0 + win.height as f64);
        if self.bbox.0 >= wx1 || self.bbox.2 <= wx0 || self.bbox.1 >= wy1 || self.bbox.3 <= wy0 {
            return;
        }
        // Edges spanning some row centre of the window; the sort by lower y ends the search early.
        let end = self.edges.partition_point(|e| e[1] < wy1);
        let band: Vec<&[f64; 4]> = self.edges[..end].iter().filter(|e| e[3] > wy0).collect();
        let mut xs: Vec<f64> = Vec::new();
        for row in 0..win.height as usize {
            let yc = wy0 + row as f64 + 0.5;
            xs.clear();
            xs.extend(
                band.iter()
                    .filter(|e| e[1] <= yc && yc < e[3])
                    .map(|e| e[0] + (yc - e[1]) * (e[2] - e[0]) / (e[3] - e[1])),
            );
            xs.sort_by(f64::total_cmp);
            for pair in xs.chunks_exact(2) {
                // Window columns whose centre lies in [pair0, pair1).
                let c0 = ((pair[0] - wx0 - 0.5).ceil().max(0.0) as usize).min(win.width as usize);
                let c1 = ((pair[1] - wx0 - 0.5).ceil().max(0.0) as usize).min(win.width as usize);
                if c0 < c1 && !span(row, c0, c1) {
                    return;
                }
            }
        }
    }

    /// Which pixels of `win` are inside the AOI.
    pub fn cover(&self, win: PixelWindow) -> AoiCover {
        let w = win.width as usize;
        let mut valid = vec![false; w * win.height as usize];
        let mut inside = 0usize;
        self.scan(win, |row, c0, c1| {
            valid[row * w + c0..row * w + c1].fill(true);
            inside += c1 - c0;
            true
        });
        match inside {
            0 => AoiCover::Outside,
            n if n == valid.len() => AoiCover::Inside,
            _ => AoiCover::Partial(valid),
        }
    }
}

/// The raster's own validity (alpha, internal mask) and the AOI's, as one: a pixel is valid when
/// both say so. `None` is every pixel valid; `pixels` is the window's pixel count.
pub fn combine_validity(raster: Option<Vec<bool>>, aoi: Option<&AoiCover>, pixels: usize) -> Option<Vec<bool>> {
    match (raster, aoi) {
        (_, Some(AoiCover::Outside)) => Some(vec![false; pixels]),
        (Some(mut r), Some(AoiCover::Partial(a))) => {
            r.iter_mut().zip(a).for_each(|(r, &a)| *r &= a);
            Some(r)
        }
        (None, Some(AoiCover::Partial(a))) => Some(a.clone()),
        (r, _) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aoi_of(polygons: Vec<geo::Polygon<f64>>) -> Aoi {
        let mp = MultiPolygon::new(polygons);
        let mut edges = Vec::new();
        for p in &mp.0 {
            for ring in std::iter::once(p.exterior()).chain(p.interiors()) {
                for w in ring.0.windows(2) {
                    let (a, b) = (w[0], w[1]);
                    if a.y != b.y {
                        edges.push(if a.y < b.y { [a.x, a.y, b.x, b.y] } else { [b.x, b.y, a.x, a.y] });
                    }
                }
            }
        }
        edges.sort_by(|a, b| a[1].total_cmp(&b[1]));
        let r = mp.bounding_rect().unwrap();
        Aoi { path: PathBuf::new(), edges, bbox: (r.min().x, r.min().y, r.max().x, r.max().y), polygons: 1 }
    }

    #[test]
    fn cover_follows_pixel_centres_and_holes() {
        // A 10x10 square from (2,2) with a 2x2 hole at (5,5).
        let p = geo::Polygon::new(
            geo::LineString::from(vec![(2.0, 2.0), (12.0, 2.0), (12.0, 12.0), (2.0, 12.0), (2.0, 2.0)]),
            vec![geo::LineString::from(vec![(5.0, 5.0), (5.0, 7.0), (7.0, 7.0), (7.0, 5.0), (5.0, 5.0)])],
        );
        let aoi = aoi_of(vec![p]);
        let AoiCover::Partial(v) = aoi.cover(PixelWindow::new(0, 0, 8, 8)) else { panic!("partial expected") };
        let at = |x: usize, y: usize| v[y * 8 + x];
        assert!(!at(1, 1) && at(2, 2) && at(7, 7) && at(4, 5) && !at(5, 5) && !at(6, 6) && at(7, 5));
        assert_eq!(v.iter().filter(|&&b| b).count(), 36 - 4);
        assert_eq!(aoi.cover(PixelWindow::new(20, 0, 8, 8)), AoiCover::Outside);
        assert_eq!(aoi.cover(PixelWindow::new(8, 8, 4, 4)), AoiCover::Inside);
        assert_eq!(aoi.cover(PixelWindow::new(0, 12, 4, 4)), AoiCover::Outside);
    }

    #[test]
    fn combined_validity_is_both() {
        let aoi = AoiCover::Partial(vec![true, true, false, false]);
        assert_eq!(
            combine_validity(Some(vec![true, false, true, false]), Some(&aoi), 4),
            Some(vec![true, false, false, false])
        );
        assert_eq!(combine_validity(None, Some(&AoiCover::Inside), 4), None);
        assert_eq!(combine_validity(None, Some(&aoi), 4), Some(vec![true, true, false, false]));
        assert_eq!(combine_validity(None, Some(&AoiCover::Outside), 2), Some(vec![false, false]));
    }
}
