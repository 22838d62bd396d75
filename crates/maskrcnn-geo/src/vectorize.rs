//! Raster masks → valid polygons, and polygons → raster masks.
//!
//! Contours follow pixel *edges* (the lattice of pixel corners), not pixel centres, so a
//! one-pixel object becomes a unit square and area is preserved exactly before simplification.
//! Connectivity is that of `gdal_polygonize`: object pixels are 4-connected (two pixels touching
//! only at a corner belong to different polygons) and background is 8-connected (holes may touch
//! the shell or each other at a corner). At such a "saddle" corner the tracer turns around the
//! same object pixel, and a ring that comes back to the corner is split there, so every ring is
//! simple, rings touch only at isolated corners, and every polygon's interior is connected: the
//! output is valid by OGC/GEOS rules ([`validity`]), which `geo::Validation` does not fully check.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use anyhow::{bail, Result};
use geo::orient::{Direction, Orient};
use geo::{Area, Coord, LineString, MultiPolygon, Polygon};

use crate::raster::GeoTransform;
use crate::units::{from_frame, MapUnits};

pub mod validity;

/// Options for mask → polygon conversion. Lengths and areas are in metres and m² when `units`
/// says how map units relate to metres (see [`MapUnits::of_crs`]); in map units otherwise.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VectorizeOptions {
    /// Douglas-Peucker tolerance; 0 keeps the exact pixel-edge outline. Half to one pixel removes
    /// the staircase on diagonal edges.
    pub simplify_tolerance: f64,
    /// Snap edges to the polygon's dominant orientation and its perpendicular (for buildings).
    /// Falls back to the unregularised outline when the result would be invalid or change the
    /// area by more than 15%.
    pub regularize_right_angles: bool,
    /// Parts smaller than this are dropped and holes smaller than this are filled.
    pub min_area: f64,
    /// The map's units, in which the tolerance and area are measured (older shard files, which
    /// lack it, measured in map units).
    #[serde(default)]
    pub units: MapUnits,
}

impl Default for VectorizeOptions {
    fn default() -> Self {
        VectorizeOptions {
            simplify_tolerance: 0.0,
            regularize_right_angles: false,
            min_area: 0.0,
            units: MapUnits::Native,
        }
    }
}

impl VectorizeOptions {
    /// Tolerance of `pixels` pixels of the given transform (in map units: use with
    /// [`MapUnits::Native`]).
    pub fn with_simplify_pixels(mut self, gt: &GeoTransform, pixels: f64) -> Self {
        self.simplify_tolerance = gt.pixel_size() * pixels;
        self
    }
}

type Pt = (i64, i64);

const LEFT: u8 = 1;
const DOWN: u8 = 2;
const RIGHT: u8 = 4;
const UP: u8 = 8;

fn step(p: Pt, dir: u8) -> Pt {
    match dir {
        LEFT => (p.0 - 1, p.1),
        DOWN => (p.0, p.1 + 1),
        RIGHT => (p.0 + 1, p.1),
        _ => (p.0, p.1 - 1),
    }
}

/// Trace a binary mask (row-major, nonzero = object) into polygons in pixel-corner coordinates
/// (x to the right, y down; pixel (c, r) covers [c, c+1] × [r, r+1]), with the semantics of
/// `gdal_polygonize`: object pixels are 4-connected, so each 4-connected part becomes one polygon
/// (pixels touching only at a corner are separate polygons), and background is 8-connected, so a
/// hole may touch the shell or other holes at a corner. Every ring is simple and every polygon is
/// valid by OGC rules (see [`validity`]); no simplification.
pub fn trace_mask_pixels(mask: &[u8], width: usize, height: usize) -> Result<MultiPolygon<f64>> {
    if mask.len() != width * height {
        bail!("mask has {} values but {}x{} = {} were expected", mask.len(), width, height, width * height);
    }
    let vw = width + 1;
    let mut out_edges = vec![0u8; vw * (height + 1)];
    let mut n_edges = 0usize;
    for y in 0..height {
        let row = &mask[y * width..(y + 1) * width];
        let above = if y > 0 { Some(&mask[(y - 1) * width..y * width]) } else { None };
        let below = if y + 1 < height { Some(&mask[(y + 1) * width..(y + 2) * width]) } else { None };
        for x in 0..width {
            if row[x] == 0 {
                continue;
            }
            // Boundary edges oriented so that the object is on the same side of every edge: on the
            // left when drawn with y up, i.e. at (dy, -dx) of the direction (dx, dy) here.
            let (v00, v10, v01, v11) = (y * vw + x, y * vw + x + 1, (y + 1) * vw + x, (y + 1) * vw + x + 1);
            if above.is_none_or(|r| r[x] == 0) {
                out_edges[v10] |= LEFT;
                n_edges += 1;
            }
            if x == 0 || row[x - 1] == 0 {
                out_edges[v00] |= DOWN;
                n_edges += 1;
            }
            if below.is_none_or(|r| r[x] == 0) {
                out_edges[v01] |= RIGHT;
                n_edges += 1;
            }
            if x + 1 == width || row[x + 1] == 0 {
                out_edges[v11] |= UP;
                n_edges += 1;
            }
        }
    }
    let mut rings: Vec<Vec<Pt>> = Vec::new();
    let mut used = 0usize;
    for start_idx in 0..out_edges.len() {
        while out_edges[start_idx] != 0 {
            let start = ((start_idx % vw) as i64, (start_idx / vw) as i64);
            let mut ring = vec![start];
            let mut p = start;
            let mut dir = lowest_bit(out_edges[start_idx]);
            // A ring can only revisit a saddle corner (two outgoing edges), and only then needs splitting.
            let mut saddle = out_edges[start_idx].count_ones() == 2;
            loop {
                out_edges[p.1 as usize * vw + p.0 as usize] &= !dir;
                used += 1;
                p = step(p, dir);
                if p == start {
                    break;
                }
                ring.push(p);
                let outs = out_edges[p.1 as usize * vw + p.0 as usize];
                dir = match outs.count_ones() {
                    1 => outs,
                    2 => {
                        saddle = true;
                        turn_toward_object(dir, outs)
                    }
                    _ => bail!("internal error: contour tracing lost its way at {p:?}"),
                };
            }
            if saddle {
                rings.extend(split_at_repeated_vertices(ring, mask, width, height));
            } else {
                let r = drop_collinear(ring);
                if r.len() >= 4 {
                    rings.push(r);
                }
            }
        }
    }
    debug_assert_eq!(used, n_edges);
    Ok(assemble_polygons(rings, mask, width, height))
}

fn lowest_bit(b: u8) -> u8 {
    b & b.wrapping_neg()
}

/// At a saddle corner (two object pixels touching only diagonally, two boundary paths meeting),
/// continue around the same object pixel: the pixel left of the incoming edge (drawn y up) is
/// then also left of the outgoing one, so diagonal object pixels are never joined (4-connected
/// objects, 8-connected background, as `gdal_polygonize`). With y down that is LEFT → DOWN,
/// DOWN → RIGHT, RIGHT → UP, UP → LEFT.
fn turn_toward_object(incoming: u8, outs: u8) -> u8 {
    let same_pixel = match incoming {
        LEFT => DOWN,
        DOWN => RIGHT,
        RIGHT => UP,
        _ => LEFT,
    };
    debug_assert!(outs & same_pixel != 0);
    if outs & same_pixel != 0 {
        same_pixel
    } else {
        lowest_bit(outs)
    }
}

fn is_saddle(p: Pt, mask: &[u8], width: usize, height: usize) -> bool {
    let inside = |x: i64, y: i64| {
        x >= 0 && y >= 0 && (x as usize) < width && (y as usize) < height && mask[y as usize * width + x as usize] != 0
    };
    let (nw, ne, sw, se) = (inside(p.0 - 1, p.1 - 1), inside(p.0, p.1 - 1), inside(p.0 - 1, p.1), inside(p.0, p.1));
    nw == se && ne == sw && nw != ne
}

/// Split a closed walk where it revisits a (saddle) corner into simple loops. Loops that enclose
/// background (a hole pinched off at a corner) come out with the hole orientation.
fn split_at_repeated_vertices(ring: Vec<Pt>, mask: &[u8], width: usize, height: usize) -> Vec<Vec<Pt>> {
    let mut result = Vec::new();
    let mut path: Vec<Pt> = Vec::with_capacity(ring.len());
    // Positions in `path` of the saddle corners on it.
    let mut pos: HashMap<Pt, usize> = HashMap::new();
    for p in ring {
        if !is_saddle(p, mask, width, height) {
            path.push(p);
            continue;
        }
        if let Some(&i) = pos.get(&p) {
            let loop_part: Vec<Pt> = path.drain(i..).collect();
            for q in &loop_part {
                pos.remove(q);
            }
            result.push(loop_part);
        }
        pos.insert(p, path.len());
        path.push(p);
    }
    result.push(path);
    result.into_iter().map(drop_collinear).filter(|r| r.len() >= 4).collect()
}

fn drop_collinear(ring: Vec<Pt>) -> Vec<Pt> {
    let n = ring.len();
    if n < 4 {
        return ring;
    }
    (0..n)
        .filter(|&i| {
            let a = ring[(i + n - 1) % n];
            let b = ring[i];
            let c = ring[(i + 1) % n];
            (b.0 - a.0) * (c.1 - b.1) - (b.1 - a.1) * (c.0 - b.0) != 0
        })
        .map(|i| ring[i])
        .collect()
}

fn signed_area2(ring: &[Pt]) -> i64 {
    let n = ring.len();
    (0..n).map(|i| ring[i].0 * ring[(i + 1) % n].1 - ring[(i + 1) % n].0 * ring[i].1).sum()
}

/// 4-connected component of every object pixel (`u32::MAX` for background), by flood fill.
fn label_components(mask: &[u8], width: usize, height: usize) -> Vec<u32> {
    let mut labels = vec![u32::MAX; mask.len()];
    let mut next = 0u32;
    let mut stack: Vec<usize> = Vec::new();
    for start in 0..mask.len() {
        if mask[start] == 0 || labels[start] != u32::MAX {
            continue;
        }
        labels[start] = next;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % width, i / width);
            let mut visit = |j: usize| {
                if mask[j] != 0 && labels[j] == u32::MAX {
                    labels[j] = next;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < width {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - width);
            }
            if y + 1 < height {
                visit(i + width);
            }
        }
        next += 1;
    }
    labels
}

/// The object pixel on the object side of a ring's first edge.
fn ring_pixel(ring: &[Pt], width: usize) -> usize {
    let (a, b) = (ring[0], ring[1]);
    let (dx, dy) = ((b.0 - a.0).signum(), (b.1 - a.1).signum());
    // Pixel centre in doubled coordinates: 2a + (dx, dy) + (dy, -dx).
    let (px2, py2) = (2 * a.0 + dx + dy, 2 * a.1 + dy - dx);
    ((py2 - 1) / 2) as usize * width + ((px2 - 1) / 2) as usize
}

/// Even-odd point-in-ring test; the probe is a half-integer point so it never lies on an edge.
fn ring_contains(ring: &[Pt], px2: i64, py2: i64) -> bool {
    // Work in doubled coordinates to stay in integers.
    let n = ring.len();
    let mut inside = false;
    for i in 0..n {
        let (x1, y1) = (ring[i].0 * 2, ring[i].1 * 2);
        let (x2, y2) = (ring[(i + 1) % n].0 * 2, ring[(i + 1) % n].1 * 2);
        if (y1 > py2) != (y2 > py2) {
            // Rings are axis-parallel, so only vertical edges straddle the probe's row.
            let x_at = x1 + (x2 - x1) * (py2 - y1) / (y2 - y1);
            if x_at > px2 {
                inside = !inside;
            }
        }
    }
    inside
}

/// Group simple rings into polygons. Every ring bounds exactly one 4-connected component (the
/// pixels on its object side), and each component has exactly one shell, so a hole belongs to the
/// shell of the component of the pixel beside it: linear time, no containment tests.
fn assemble_polygons(rings: Vec<Vec<Pt>>, mask: &[u8], width: usize, height: usize) -> MultiPolygon<f64> {
    let labels = label_components(mask, width, height);
    // Shells have negative doubled area with this tracing direction (y down), holes positive.
    let mut shells: Vec<(Vec<Pt>, Vec<Vec<Pt>>)> = Vec::new();
    let mut shell_of: HashMap<u32, Vec<usize>> = HashMap::new();
    let mut holes: Vec<(Vec<Pt>, u32)> = Vec::new();
    for r in rings {
        let a = signed_area2(&r);
        let comp = labels[ring_pixel(&r, width)];
        debug_assert_ne!(comp, u32::MAX);
        if a < 0 {
            shell_of.entry(comp).or_default().push(shells.len());
            shells.push((r, Vec::new()));
        } else if a > 0 {
            holes.push((r, comp));
        }
    }
    for (hole, comp) in holes {
        let Some(candidates) = shell_of.get(&comp) else {
            debug_assert!(false, "hole without a shell");
            continue;
        };
        debug_assert_eq!(candidates.len(), 1, "a 4-connected component has one outer boundary");
        let i = if candidates.len() == 1 {
            candidates[0]
        } else {
            // Defensive: pick the shell containing the pixel beside the hole.
            let p = ring_pixel(&hole, width);
            let (px2, py2) = (2 * (p % width) as i64 + 1, 2 * (p / width) as i64 + 1);
            *candidates.iter().find(|&&i| ring_contains(&shells[i].0, px2, py2)).unwrap_or(&candidates[0])
        };
        shells[i].1.push(hole);
    }
    let to_ls = |r: &Vec<Pt>| {
        let mut coords: Vec<Coord<f64>> = r.iter().map(|p| Coord { x: p.0 as f64, y: p.1 as f64 }).collect();
        coords.push(coords[0]);
        LineString::new(coords)
    };
    MultiPolygon::new(
        shells.iter().map(|(shell, hs)| Polygon::new(to_ls(shell), hs.iter().map(to_ls).collect())).collect(),
    )
}

/// Apply a geotransform to pixel-corner coordinates and orient rings (exterior counter-clockwise,
/// holes clockwise, as RFC 7946 and GeoPackage readers expect).
pub fn pixels_to_map(mp: &MultiPolygon<f64>, gt: &GeoTransform) -> MultiPolygon<f64> {
    use geo::MapCoords;
    mp.map_coords(|c| {
        let (x, y) = gt.pixel_to_map(c.x, c.y);
        Coord { x, y }
    })
    .orient(Direction::Default)
}

/// Binary mask → valid MultiPolygon in map coordinates. `gt` maps this mask's pixel (0, 0) corner
/// (use [`GeoTransform::shifted`] for a crop). Empty result when nothing survives `min_area`.
pub fn vectorize_mask(
    mask: &[u8],
    width: usize,
    height: usize,
    gt: &GeoTransform,
    opts: &VectorizeOptions,
) -> Result<MultiPolygon<f64>> {
    let pixel_polys = trace_mask_pixels(mask, width, height)?;
    let map_polys = pixels_to_map(&pixel_polys, gt);
    if !opts.units.needs_frame() {
        return Ok(postprocess(map_polys, opts));
    }
    // Tolerances and areas are in metres: measure in the object's local metric frame (affine, so
    // validity survives the round trip).
    let (local, frame) = opts.units.to_metres(&map_polys);
    Ok(from_frame(&postprocess(local, opts), &frame).orient(Direction::Default))
}

/// Simplify, regularise and filter map-space polygons, keeping them valid (by the rules of
/// [`validity`], i.e. GEOS): every simplified or regularised part is checked and falls back to a
/// smaller tolerance, then to its exact outline; parts that come to overlap their neighbours
/// fall back to their exact outlines too. Vertices shared by two rings (where a hole touches its
/// shell, or two parts touch) are kept by the simplification, so touching rings stay touching
/// instead of crossing.
pub fn postprocess(mp: MultiPolygon<f64>, opts: &VectorizeOptions) -> MultiPolygon<f64> {
    let mut exact: Vec<Polygon<f64>> = Vec::with_capacity(mp.0.len());
    for poly in mp.0 {
        if poly.exterior().0.len() < 4 || poly.unsigned_area() < opts.min_area {
            continue;
        }
        let (exterior, interiors) = poly.into_inner();
        let interiors: Vec<LineString<f64>> =
            interiors.into_iter().filter(|h| ring_area(h) >= opts.min_area.max(f64::MIN_POSITIVE)).collect();
        exact.push(Polygon::new(exterior, interiors));
    }
    if opts.simplify_tolerance <= 0.0 && !opts.regularize_right_angles {
        return MultiPolygon::new(exact).orient(Direction::Default);
    }
    let pinned = shared_vertices(&exact);
    let mut parts: Vec<Polygon<f64>> = exact.iter().map(|p| simplify_and_regularize(p, opts, &pinned)).collect();
    // Parts are valid individually; simplification can make neighbouring parts overlap. Revert the
    // parts involved to their exact outlines (valid together by construction) until none overlap.
    if parts.len() > 1 {
        let mut reverted = vec![false; parts.len()];
        for _ in 0..8 {
            let errors = validity::validity_errors(&parts, 4 * parts.len() + 16);
            if errors.is_empty() {
                break;
            }
            let mut changed = false;
            for e in errors {
                for i in std::iter::once(e.polygon).chain(e.other_polygon) {
                    if !reverted[i] {
                        reverted[i] = true;
                        parts[i] = exact[i].clone();
                        changed = true;
                    }
                }
            }
            if !changed {
                // Input that was not valid to begin with: return it as it was.
                parts = exact;
                break;
            }
        }
    }
    MultiPolygon::new(parts).orient(Direction::Default)
}

fn ring_area(r: &LineString<f64>) -> f64 {
    let c = &r.0;
    (0..c.len().saturating_sub(1)).map(|i| c[i].x * c[i + 1].y - c[i + 1].x * c[i].y).sum::<f64>().abs() / 2.0
}

fn coord_key(c: Coord<f64>) -> (u64, u64) {
    ((c.x + 0.0).to_bits(), (c.y + 0.0).to_bits())
}

/// Vertices that occur in more than one ring (rings are simple, so not twice in one).
fn shared_vertices(polys: &[Polygon<f64>]) -> HashSet<(u64, u64)> {
    let mut seen: HashMap<(u64, u64), u32> = HashMap::new();
    for p in polys {
        for r in std::iter::once(p.exterior()).chain(p.interiors()) {
            for c in &r.0[..r.0.len().saturating_sub(1)] {
                *seen.entry(coord_key(*c)).or_insert(0) += 1;
            }
        }
    }
    seen.into_iter().filter(|&(_, n)| n > 1).map(|(k, _)| k).collect()
}

fn simplify_and_regularize(p: &Polygon<f64>, opts: &VectorizeOptions, pinned: &HashSet<(u64, u64)>) -> Polygon<f64> {
    let mut best = p.clone();
    if opts.simplify_tolerance > 0.0 {
        // Halve the tolerance until the result is valid; the exact outline is always valid.
        let mut tol = opts.simplify_tolerance;
        for _ in 0..4 {
            if let Some(s) = simplify_polygon(p, tol, pinned) {
                if validity::is_valid_polygon(&s) {
                    best = s;
                    break;
                }
            }
            tol /= 2.0;
        }
    }
    if opts.regularize_right_angles {
        if let Some(r) = regularize_polygon(&best, 3.0 * opts.simplify_tolerance) {
            let (a0, a1) = (best.unsigned_area(), r.unsigned_area());
            if (a1 - a0).abs() <= 0.15 * a0 && validity::is_valid_polygon(&r) {
                best = r;
            }
        }
    }
    best
}

/// Douglas-Peucker on a closed ring, keeping `pinned` vertices (or, without any, vertex 0 and the
/// vertex farthest from it) as anchors. None when fewer than 3 vertices would remain.
fn simplify_ring(ring: &LineString<f64>, tol: f64, pinned: &HashSet<(u64, u64)>) -> Option<LineString<f64>> {
    let pts: &[Coord<f64>] = &ring.0[..ring.0.len().saturating_sub(1)];
    let n = pts.len();
    if n < 4 {
        return Some(ring.clone());
    }
    let mut anchors: Vec<usize> =
        if pinned.is_empty() { Vec::new() } else { (0..n).filter(|&i| pinned.contains(&coord_key(pts[i]))).collect() };
    if anchors.len() < 2 {
        let a = anchors.first().copied().unwrap_or(0);
        let far = (0..n).max_by(|&i, &j| dist2(pts[a], pts[i]).total_cmp(&dist2(pts[a], pts[j]))).unwrap();
        anchors = vec![a.min(far), a.max(far)];
        if anchors[0] == anchors[1] {
            return None;
        }
    }
    let mut keep = vec![false; n];
    for &a in &anchors {
        keep[a] = true;
    }
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for k in 0..anchors.len() {
        let (i, j) = (anchors[k], anchors[(k + 1) % anchors.len()]);
        // Walk the chain i → j (indices modulo n).
        let j = if j > i { j } else { j + n };
        stack.push((i, j));
        while let Some((i, j)) = stack.pop() {
            if j <= i + 1 {
                continue;
            }
            let (a, b) = (pts[i % n], pts[j % n]);
            let (mut best, mut best_d) = (i, -1.0);
            for m in i + 1..j {
                let d = seg_dist(pts[m % n], a, b);
                if d > best_d {
                    best = m;
                    best_d = d;
                }
            }
            if best_d > tol {
                keep[best % n] = true;
                stack.push((i, best));
                stack.push((best, j));
            }
        }
    }
    let mut out: Vec<Coord<f64>> = (0..n).filter(|&i| keep[i]).map(|i| pts[i]).collect();
    if out.len() < 3 {
        return None;
    }
    out.push(out[0]);
    Some(LineString::new(out))
}

fn dist2(a: Coord<f64>, b: Coord<f64>) -> f64 {
    (a.x - b.x).powi(2) + (a.y - b.y).powi(2)
}

fn seg_dist(p: Coord<f64>, a: Coord<f64>, b: Coord<f64>) -> f64 {
    let l2 = dist2(a, b);
    if l2 == 0.0 {
        return dist2(p, a).sqrt();
    }
    let t = (((p.x - a.x) * (b.x - a.x) + (p.y - a.y) * (b.y - a.y)) / l2).clamp(0.0, 1.0);
    dist2(p, Coord { x: a.x + t * (b.x - a.x), y: a.y + t * (b.y - a.y) }).sqrt()
}

/// Simplify every ring; a hole that would collapse keeps its exact outline (the validity check
/// decides whether that combination is acceptable).
fn simplify_polygon(p: &Polygon<f64>, tol: f64, pinned: &HashSet<(u64, u64)>) -> Option<Polygon<f64>> {
    let ext = simplify_ring(p.exterior(), tol, pinned)?;
    let holes = p.interiors().iter().map(|h| simplify_ring(h, tol, pinned).unwrap_or_else(|| h.clone())).collect();
    Some(Polygon::new(ext, holes))
}

/// Snap every edge to the dominant direction or its perpendicular, then intersect consecutive
/// lines. Edges shorter than `min_edge` (corner cuts left by simplifying a pixel staircase) are
/// absorbed by their neighbours. None when more than 15% of the outline is more than 25° away
/// from both directions (the outline is not rectilinear, e.g. a round tank).
fn regularize_polygon(p: &Polygon<f64>, min_edge: f64) -> Option<Polygon<f64>> {
    let (mut sx, mut sy) = (0.0, 0.0);
    for w in p.exterior().0.windows(2) {
        let (dx, dy) = (w[1].x - w[0].x, w[1].y - w[0].y);
        let len = (dx * dx + dy * dy).sqrt();
        // Only long edges vote: short ones are mostly staircase artefacts.
        let weight = if len >= min_edge { len * len } else { 0.0 };
        let a = dy.atan2(dx) * 4.0;
        sx += weight * a.cos();
        sy += weight * a.sin();
    }
    let theta = sy.atan2(sx) / 4.0;
    let ext = regularize_ring(p.exterior(), theta, min_edge)?;
    let mut holes = Vec::new();
    for h in p.interiors() {
        holes.push(regularize_ring(h, theta, min_edge)?);
    }
    Some(Polygon::new(ext, holes))
}

fn merge_same_axis(lines: &mut Vec<(u8, f64, f64)>) {
    let mut merged: Vec<(u8, f64, f64)> = Vec::with_capacity(lines.len());
    for &l in lines.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == l.0 => {
                let w = last.2 + l.2;
                last.1 = (last.1 * last.2 + l.1 * l.2) / w;
                last.2 = w;
            }
            _ => merged.push(l),
        }
    }
    while merged.len() > 1 && merged[0].0 == merged[merged.len() - 1].0 {
        let last = merged.pop().unwrap();
        let w = merged[0].2 + last.2;
        merged[0].1 = (merged[0].1 * merged[0].2 + last.1 * last.2) / w;
        merged[0].2 = w;
    }
    *lines = merged;
}

fn regularize_ring(ring: &LineString<f64>, theta: f64, min_edge: f64) -> Option<LineString<f64>> {
    let pts = &ring.0[..ring.0.len() - 1];
    let n = pts.len();
    if n < 4 {
        return None;
    }
    let (u, v) = ((theta.cos(), theta.sin()), (-theta.sin(), theta.cos()));
    let cos25 = 25f64.to_radians().cos();
    // Each edge becomes (axis, offset along the normal, length): axis 0 runs along u, 1 along v.
    let mut lines: Vec<(u8, f64, f64)> = Vec::new();
    let (mut total_len, mut oblique_len) = (0.0, 0.0);
    for i in 0..n {
        let (a, b) = (pts[i], pts[(i + 1) % n]);
        let (dx, dy) = (b.x - a.x, b.y - a.y);
        let len = (dx * dx + dy * dy).sqrt();
        if len == 0.0 {
            continue;
        }
        let along_u = (dx * u.0 + dy * u.1).abs() / len;
        let along_v = (dx * v.0 + dy * v.1).abs() / len;
        total_len += len;
        if along_u.max(along_v) < cos25 {
            oblique_len += len;
        }
        let axis = if along_u >= along_v { 0 } else { 1 };
        let (mx, my) = ((a.x + b.x) / 2.0, (a.y + b.y) / 2.0);
        // The normal of an axis-0 line is v; of an axis-1 line it is u.
        let offset = if axis == 0 { mx * v.0 + my * v.1 } else { mx * u.0 + my * u.1 };
        lines.push((axis, offset, len));
    }
    if oblique_len > 0.15 * total_len {
        return None;
    }
    merge_same_axis(&mut lines);
    // Drop the shortest line while it is short: its neighbours (same axis) then merge.
    loop {
        if lines.len() <= 4 {
            break;
        }
        let (i, l) = lines.iter().enumerate().min_by(|a, b| a.1 .2.total_cmp(&b.1 .2)).map(|(i, l)| (i, *l))?;
        if l.2 >= min_edge {
            break;
        }
        lines.remove(i);
        merge_same_axis(&mut lines);
    }
    if lines.len() < 4 || lines.len() % 2 == 1 {
        return None;
    }
    let m = lines.len();
    let mut out = Vec::with_capacity(m + 1);
    for i in 0..m {
        let (l1, l2) = (lines[i], lines[(i + 1) % m]);
        // Corner between an axis-0 line (normal offset along v) and an axis-1 line (along u).
        let (off_v, off_u) = if l1.0 == 0 { (l1.1, l2.1) } else { (l2.1, l1.1) };
        out.push(Coord { x: off_u * u.0 + off_v * v.0, y: off_u * u.1 + off_v * v.1 });
    }
    out.push(out[0]);
    Some(LineString::new(out))
}

/// One object of a label raster.
#[derive(Debug, Clone)]
pub struct LabelPolygon<T> {
    /// The pixel value shared by the object's pixels.
    pub value: T,
    pub geometry: MultiPolygon<f64>,
    /// Number of pixels with this value.
    pub pixel_count: usize,
}

/// Instance-id raster (row-major, `background` = nothing, every other value one object) →
/// one feature per value, sorted by value. Work per object is proportional to its bounding box.
pub fn vectorize_label_raster<T>(
    labels: &[T],
    width: usize,
    height: usize,
    background: T,
    gt: &GeoTransform,
    opts: &VectorizeOptions,
) -> Result<Vec<LabelPolygon<T>>>
where
    T: Copy + Eq + Hash + Ord,
{
    if labels.len() != width * height {
        bail!("label raster has {} values but {}x{} = {} were expected", labels.len(), width, height, width * height);
    }
    // Bounding box and pixel count per value, one hash lookup per run of equal values.
    let mut boxes: HashMap<T, (usize, usize, usize, usize, usize)> = HashMap::new();
    for y in 0..height {
        let row = &labels[y * width..(y + 1) * width];
        let mut x = 0;
        while x < width {
            let v = row[x];
            let mut end = x + 1;
            while end < width && row[end] == v {
                end += 1;
            }
            if v != background {
                let b = boxes.entry(v).or_insert((x, y, x, y, 0));
                *b = (b.0.min(x), b.1.min(y), b.2.max(end - 1), b.3.max(y), b.4 + end - x);
            }
            x = end;
        }
    }
    let mut values: Vec<T> = boxes.keys().copied().collect();
    values.sort();
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        let (x0, y0, x1, y1, count) = boxes[&v];
        let (w, h) = (x1 - x0 + 1, y1 - y0 + 1);
        let mut crop = vec![0u8; w * h];
        for y in 0..h {
            let src = &labels[(y0 + y) * width + x0..(y0 + y) * width + x0 + w];
            for (c, &l) in crop[y * w..(y + 1) * w].iter_mut().zip(src) {
                *c = (l == v) as u8;
            }
        }
        let geometry = vectorize_mask(&crop, w, h, &gt.shifted(x0 as f64, y0 as f64), opts)?;
        if !geometry.0.is_empty() {
            out.push(LabelPolygon { value: v, geometry, pixel_count: count });
        }
    }
    Ok(out)
}

/// Burn polygons (map coordinates) into a `width`×`height` grid: a pixel gets `value` when its
/// centre is inside the polygon (even-odd rule, so holes stay empty). Later polygons overwrite
/// earlier ones.
pub fn rasterize_polygons<T: Copy>(
    polygons: &[(MultiPolygon<f64>, T)],
    width: usize,
    height: usize,
    gt: &GeoTransform,
    background: T,
) -> Result<Vec<T>> {
    let mut out = vec![background; width * height];
    for (mp, value) in polygons {
        // Edges in pixel coordinates.
        let mut edges: Vec<(f64, f64, f64, f64)> = Vec::new();
        for poly in &mp.0 {
            for ring in std::iter::once(poly.exterior()).chain(poly.interiors()) {
                let px: Vec<(f64, f64)> = ring.0.iter().map(|c| gt.map_to_pixel(c.x, c.y)).collect::<Result<_>>()?;
                for w in px.windows(2) {
                    edges.push((w[0].0, w[0].1, w[1].0, w[1].1));
                }
            }
        }
        if edges.is_empty() {
            continue;
        }
        let ymin = edges.iter().map(|e| e.1.min(e.3)).fold(f64::MAX, f64::min);
        let ymax = edges.iter().map(|e| e.1.max(e.3)).fold(f64::MIN, f64::max);
        let r0 = (ymin - 0.5).ceil().max(0.0) as usize;
        let r1 = ((ymax - 0.5).floor().min(height as f64 - 1.0)).max(-1.0);
        if r1 < 0.0 {
            continue;
        }
        let mut xs: Vec<f64> = Vec::new();
        for row in r0..=r1 as usize {
            let yc = row as f64 + 0.5;
            xs.clear();
            for &(x1, y1, x2, y2) in &edges {
                if (y1 > yc) != (y2 > yc) {
                    xs.push(x1 + (yc - y1) * (x2 - x1) / (y2 - y1));
                }
            }
            xs.sort_by(f64::total_cmp);
            for pair in xs.chunks(2) {
                if pair.len() < 2 {
                    break;
                }
                // Columns whose centre c+0.5 lies in [pair0, pair1).
                let c0 = (pair[0] - 0.5).ceil().max(0.0) as i64;
                let c1 = ((pair[1] - 0.5).ceil() as i64).min(width as i64);
                for c in c0..c1 {
                    out[row * width + c as usize] = *value;
                }
            }
        }
    }
    Ok(out)
}
