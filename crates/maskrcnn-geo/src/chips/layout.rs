//! Where the chips go and what falls in each: chip windows over the raster, label polygons in
//! pixel coordinates with a spatial index, and each chip's rasterised objects.

use anyhow::Result;
use geo::{Coord, LineString, MultiPolygon, Polygon};

use crate::raster::{GeoTransform, PixelWindow};
use crate::vectorize::rasterize_polygons;

/// Chip origins along one axis: every `stride` from 0, the last one moved in to end at `len`.
fn chip_starts(len: u32, tile: u32, stride: u32) -> Vec<u32> {
    if len <= tile {
        return vec![0];
    }
    let mut starts = Vec::new();
    let mut s = 0u32;
    loop {
        if s + tile >= len {
            starts.push(len - tile);
            break;
        }
        starts.push(s);
        s += stride;
    }
    starts.dedup();
    starts
}

/// The chip windows `export_chips` uses for a `width`×`height` raster, row-major.
pub fn chip_windows(width: u32, height: u32, tile_size: u32, stride: u32) -> Vec<PixelWindow> {
    let xs = chip_starts(width, tile_size, stride);
    let ys = chip_starts(height, tile_size, stride);
    let (w, h) = (tile_size.min(width), tile_size.min(height));
    ys.iter().flat_map(|&y| xs.iter().map(move |&x| PixelWindow::new(x, y, w, h))).collect()
}

/// A label polygon in full-raster pixel coordinates.
pub(super) struct PixelPolygon {
    pub(super) geometry: MultiPolygon<f64>,
    pub(super) class: usize,
    /// (min_x, min_y, max_x, max_y) in pixels.
    pub(super) bbox: (f64, f64, f64, f64),
    pub(super) area: f64,
}

/// One object in one chip.
pub(super) struct ChipObject {
    pub(super) polygon: usize,
    pub(super) class: usize,
    /// Pixels of the object alone (before overlaps are resolved), row-major over the chip.
    pub(super) own_pixels: Vec<(u32, u32)>,
}

pub fn to_pixels(mp: &MultiPolygon<f64>, gt: &GeoTransform) -> Result<MultiPolygon<f64>> {
    let ring = |ls: &LineString<f64>| -> Result<LineString<f64>> {
        ls.0.iter()
            .map(|c| gt.map_to_pixel(c.x, c.y).map(|(x, y)| Coord { x, y }))
            .collect::<Result<Vec<_>>>()
            .map(LineString::new)
    };
    mp.0.iter()
        .map(|p| Ok(Polygon::new(ring(p.exterior())?, p.interiors().iter().map(ring).collect::<Result<_>>()?)))
        .collect::<Result<Vec<_>>>()
        .map(MultiPolygon::new)
}

/// Polygons bucketed by raster cells of one chip size, so each chip only looks at the polygons
/// near it (large label sets over large rasters would otherwise cost chips × polygons).
pub(super) struct PolygonIndex {
    cell: f64,
    cols: usize,
    rows: usize,
    cells: Vec<Vec<u32>>,
}

impl PolygonIndex {
    pub(super) fn new(polygons: &[PixelPolygon], width: u32, height: u32, cell: u32) -> PolygonIndex {
        let cell = cell.max(1) as f64;
        let cols = (width as f64 / cell).ceil().max(1.0) as usize;
        let rows = (height as f64 / cell).ceil().max(1.0) as usize;
        let mut cells = vec![Vec::new(); cols * rows];
        for (i, p) in polygons.iter().enumerate() {
            let (x0, y0, x1, y1) = p.bbox;
            if x1 <= 0.0 || y1 <= 0.0 || x0 >= width as f64 || y0 >= height as f64 {
                continue;
            }
            let c0 = (x0.max(0.0) / cell) as usize;
            let r0 = (y0.max(0.0) / cell) as usize;
            let c1 = ((x1 / cell) as usize).min(cols - 1);
            let r1 = ((y1 / cell) as usize).min(rows - 1);
            for r in r0..=r1 {
                for c in c0..=c1 {
                    cells[r * cols + c].push(i as u32);
                }
            }
        }
        PolygonIndex { cell, cols, rows, cells }
    }

    /// Indices of polygons whose box may meet `window`, ascending (file order).
    pub(super) fn candidates(&self, window: PixelWindow) -> Vec<usize> {
        let c0 = (window.x as f64 / self.cell) as usize;
        let r0 = (window.y as f64 / self.cell) as usize;
        let c1 = ((window.right() as f64 / self.cell) as usize).min(self.cols - 1);
        let r1 = ((window.bottom() as f64 / self.cell) as usize).min(self.rows - 1);
        let mut out: Vec<usize> = Vec::new();
        for r in r0..=r1 {
            for c in c0..=c1 {
                out.extend(self.cells[r * self.cols + c].iter().map(|&i| i as usize));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Objects with at least one pixel centre inside `window`, each rasterised on its own.
pub(super) fn chip_objects(
    polygons: &[PixelPolygon],
    candidates: &[usize],
    window: PixelWindow,
    tile: u32,
) -> Result<Vec<ChipObject>> {
    let (wx0, wy0) = (window.x as f64, window.y as f64);
    let (wx1, wy1) = (wx0 + window.width as f64, wy0 + window.height as f64);
    let mut out = Vec::new();
    for &i in candidates {
        let p = &polygons[i];
        let (x0, y0, x1, y1) = p.bbox;
        if x1 <= wx0 || x0 >= wx1 || y1 <= wy0 || y0 >= wy1 {
            continue;
        }
        // Rasterise only over the polygon's box clipped to the window.
        let cx0 = (x0.floor().max(wx0)) as u32;
        let cy0 = (y0.floor().max(wy0)) as u32;
        let cx1 = (x1.ceil().min(wx1)) as u32;
        let cy1 = (y1.ceil().min(wy1)) as u32;
        if cx1 <= cx0 || cy1 <= cy0 {
            continue;
        }
        let (bw, bh) = ((cx1 - cx0) as usize, (cy1 - cy0) as usize);
        let local = GeoTransform::IDENTITY.shifted(cx0 as f64, cy0 as f64);
        let burnt = rasterize_polygons(&[(p.geometry.clone(), 1u8)], bw, bh, &local, 0u8)?;
        let own_pixels: Vec<(u32, u32)> = burnt
            .iter()
            .enumerate()
            .filter(|(_, &v)| v != 0)
            .map(|(k, _)| (cx0 - window.x + (k % bw) as u32, cy0 - window.y + (k / bw) as u32))
            .filter(|&(x, y)| x < tile && y < tile)
            .collect();
        if !own_pixels.is_empty() {
            out.push(ChipObject { polygon: i, class: p.class, own_pixels });
        }
    }
    Ok(out)
}

/// Instance-id raster of one class: ids 1..n in object order; larger objects are burnt first so
/// smaller ones on top of them survive. Objects left with no pixel are dropped and ids stay
/// consecutive.
pub(super) fn burn_instances(objects: &[&ChipObject], polygons: &[PixelPolygon], tile: u32) -> Vec<u32> {
    let mut order: Vec<usize> = (0..objects.len()).collect();
    order.sort_by(|&a, &b| {
        polygons[objects[b].polygon].area.total_cmp(&polygons[objects[a].polygon].area).then(a.cmp(&b))
    });
    let mut slot = vec![0u32; (tile * tile) as usize];
    for &k in &order {
        for &(x, y) in &objects[k].own_pixels {
            slot[(y * tile + x) as usize] = k as u32 + 1;
        }
    }
    let mut present = vec![false; objects.len() + 1];
    for &v in &slot {
        present[v as usize] = true;
    }
    let mut renumber = vec![0u32; objects.len() + 1];
    let mut next = 0;
    for (k, &p) in present.iter().enumerate().skip(1) {
        if p {
            next += 1;
            renumber[k] = next;
        }
    }
    slot.iter().map(|&v| renumber[v as usize]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_cover_the_axis_and_end_inside() {
        assert_eq!(chip_starts(900, 256, 256), vec![0, 256, 512, 644]);
        assert_eq!(chip_starts(512, 256, 256), vec![0, 256]);
        assert_eq!(chip_starts(100, 256, 256), vec![0]);
        assert_eq!(chip_starts(600, 256, 128), vec![0, 128, 256, 344]);
        assert_eq!(chip_starts(1000, 100, 300), vec![0, 300, 600, 900]);
    }
}
