use crate::rle::Rle;

// Polygon and box rasterisation live here rather than in `rle.rs`, so that the RLE core does
// not depend on the polygon walk that is built on it.
impl Rle {
    /// Rasterises polygons (flat `[x0,y0,x1,y1,...]` in pixel coordinates, pixel centres at
    /// +0.5) with `rleFrPoly` each and unions them with `rleMerge`, which is what
    /// pycocotools' `frPyObjects` + `merge` (and `COCO.annToRLE`) do.
    pub fn from_polygons(polygons: &[Vec<f64>], height: usize, width: usize) -> Rle {
        let parts: Vec<Rle> = polygons.iter().map(|p| rle_from_polygon(p, height, width)).collect();
        if parts.is_empty() {
            // pycocotools returns a 0x0 RLE here; an empty mask of the right size is what
            // callers can actually use and has the same (zero) area and IoU.
            return Rle::empty(height, width);
        }
        Rle::merge(&parts, false)
    }

    /// A box `[x, y, w, h]` rasterised as its polygon (`rleFrBbox`).
    pub fn from_bbox(bbox: [f64; 4], height: usize, width: usize) -> Rle {
        let [x0, y0, bw, bh] = bbox;
        let (x1, y1) = (x0 + bw, y0 + bh);
        rle_from_polygon(&[x0, y0, x0, y1, x1, y1, x1, y0], height, width)
    }
}

/// `rleFrPoly` from pycocotools' maskApi.c, ported operation by operation (C `int` casts
/// truncate toward zero, as Rust `as` does), because COCO's published numbers depend on
/// exactly which boundary pixels this walk includes.
///
/// The C code stores every point of the 5x-upsampled walk, so its memory and time follow the
/// coordinates, not the image: one vertex at x = 1e8 means 5e8 points. Here the walk is visited
/// lazily: only the stretches whose points fall in (or next to) the image's columns are walked,
/// and of steep stretches only the points where the column changes, since no other point can
/// add a crossing. The crossings found are exactly the C code's.
fn rle_from_polygon(xy: &[f64], height: usize, width: usize) -> Rle {
    const SCALE: f64 = 5.0;
    let k = xy.len() / 2;
    if k == 0 {
        return Rle::empty(height, width);
    }
    // C casts to `int`, undefined past its range; saturating there keeps the arithmetic below
    // (differences, lengths) inside i64.
    let upsample = |c: f64| ((SCALE * c + 0.5) as i64).clamp(i32::MIN as i64, i32::MAX as i64);
    let mut x: Vec<i64> = (0..k).map(|j| upsample(xy[j * 2])).collect();
    let mut y: Vec<i64> = (0..k).map(|j| upsample(xy[j * 2 + 1])).collect();
    x.push(x[0]);
    y.push(y[0]);
    let mut walk = Crossings { previous: None, height, width, positions: Vec::new() };
    // Upsampled columns that can produce a crossing inside the image, with a margin: within a
    // segment the column moves by at most one per step, so points beyond it add nothing.
    let (lo, hi) = (-8i64, SCALE as i64 * width as i64 + 8);
    for j in 0..k {
        let (mut xs, mut xe, mut ys, mut ye) = (x[j], x[j + 1], y[j], y[j + 1]);
        let dx = (xe - xs).abs();
        let dy = (ys - ye).abs();
        let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
        if flip {
            std::mem::swap(&mut xs, &mut xe);
            std::mem::swap(&mut ys, &mut ye);
        }
        // A repeated vertex gives 0/0 = NaN here, exactly as in C; that lone point always
        // sits between points of the same column and so never reaches the output.
        let s = if dx >= dy { (ye - ys) as f64 / dx as f64 } else { (xe - xs) as f64 / dy as f64 };
        let steps = dx.max(dy);
        // Point `d` of this segment's walk, in walk order.
        let point = |d: i64| -> (i64, i64) {
            let t = if flip { steps - d } else { d };
            if dx >= dy {
                (t + xs, (ys as f64 + s * t as f64 + 0.5) as i64)
            } else {
                ((xs as f64 + s * t as f64 + 0.5) as i64, t + ys)
            }
        };
        let column = |d: i64| point(d).0;
        // The column is monotone along a segment, so the points inside [lo, hi] are one range.
        let rising = column(steps) >= column(0);
        let (first, past) = if rising {
            (first_where(steps, |d| column(d) >= lo), first_where(steps, |d| column(d) > hi))
        } else {
            (first_where(steps, |d| column(d) <= hi), first_where(steps, |d| column(d) < lo))
        };
        // The segment's ends always join the walk (they pair with the neighbouring segments).
        walk.visit_step(0, &point, None);
        let mut last = 0;
        let mut d = first.max(1);
        while d < past.min(steps) {
            walk.visit_step(d, &point, Some(last));
            last = d;
            d = if dx >= dy {
                d + 1
            } else {
                // Steep: jump to the next change of column (nothing in between can cross).
                let here = column(d);
                first_where(steps - d, |e| column(d + e) != here) + d
            };
        }
        if steps > 0 {
            walk.visit_step(steps, &point, Some(last));
        }
    }
    let mut boundary_positions = walk.positions;
    // Sorted crossing positions become run lengths; zero-length runs fold into the
    // previous run (two crossings at one pixel cancel out).
    boundary_positions.push((height * width) as u32);
    boundary_positions.sort_unstable();
    let mut previous = 0u32;
    for a in boundary_positions.iter_mut() {
        let t = *a;
        *a = a.wrapping_sub(previous);
        previous = t;
    }
    let a = boundary_positions;
    let mut counts: Vec<u32> = Vec::with_capacity(a.len());
    counts.push(a[0]);
    let mut j = 1;
    while j < a.len() {
        if a[j] > 0 {
            counts.push(a[j]);
            j += 1;
        } else {
            j += 1;
            if j < a.len() {
                *counts.last_mut().expect("counts starts non-empty") += a[j];
                j += 1;
            }
        }
    }
    Rle { height, width, counts }
}

/// The smallest `d` in `0..=n` where the monotone `holds` is true, or `n + 1` when it never is.
fn first_where(n: i64, holds: impl Fn(i64) -> bool) -> i64 {
    let (mut lo, mut hi) = (0i64, n + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if holds(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// The crossing points of the walk, fed its points in order (with gaps where nothing can cross).
struct Crossings {
    previous: Option<(i64, i64)>,
    height: usize,
    width: usize,
    positions: Vec<u32>,
}

impl Crossings {
    /// Visits point `d` of a segment; when the last visited point of that segment (`last`) is
    /// not `d - 1`, the true predecessor `d - 1` is restored first so every pair is the C one.
    fn visit_step(&mut self, d: i64, point: &impl Fn(i64) -> (i64, i64), last: Option<i64>) {
        if last.is_some_and(|l| l + 1 != d) {
            self.previous = Some(point(d - 1));
        }
        let (u, v) = point(d);
        if let Some((pu, pv)) = self.previous {
            self.pair(pu, pv, u, v);
        }
        self.previous = Some((u, v));
    }

    /// Keeps the point where the step from (pu, pv) to (u, v) crosses a pixel-column centre,
    /// downsampled back.
    fn pair(&mut self, pu: i64, pv: i64, u: i64, v: i64) {
        const SCALE: f64 = 5.0;
        if u == pu {
            return;
        }
        let xd = (if u < pu { u } else { u - 1 }) as f64;
        let xd = (xd + 0.5) / SCALE - 0.5;
        if xd.floor() != xd || xd < 0.0 || xd > self.width as f64 - 1.0 {
            return;
        }
        let yd = v.min(pv) as f64;
        let mut yd = (yd + 0.5) / SCALE - 0.5;
        if yd < 0.0 {
            yd = 0.0;
        } else if yd > self.height as f64 {
            yd = self.height as f64;
        }
        let yd = yd.ceil();
        self.positions.push(((xd as i64) * self.height as i64 + yd as i64) as u32);
    }
}
