//! Exact geometric predicates: orientation, segment intersection, angular sectors, and
//! point-in-ring location with a banded ring index.

use geo::algorithm::kernels::{Kernel, Orientation, RobustKernel};
use geo::Coord;

use super::C;

/// Sign of the turn p → q → r: 1 counter-clockwise (in a y-up frame), -1 clockwise, 0 collinear.
pub(super) fn orient(p: C, q: C, r: C) -> i8 {
    match RobustKernel::orient2d(p, q, r) {
        Orientation::CounterClockwise => 1,
        Orientation::Clockwise => -1,
        Orientation::Collinear => 0,
    }
}

pub(super) enum SegX {
    None,
    /// The segments meet in exactly one point, an endpoint of one of them.
    Touch(C),
    /// Proper crossing (interiors intersect in one point).
    Cross(C),
    /// Collinear overlap of positive length, starting at the given point.
    Overlap(C),
}

pub(super) fn intersect(p1: C, p2: C, q1: C, q2: C) -> SegX {
    let o1 = orient(p1, p2, q1);
    let o2 = orient(p1, p2, q2);
    if o1 == o2 && o1 != 0 {
        return SegX::None;
    }
    let o3 = orient(q1, q2, p1);
    let o4 = orient(q1, q2, p2);
    if o3 == o4 && o3 != 0 {
        return SegX::None;
    }
    if o1 == 0 && o2 == 0 {
        // Collinear: compare along the dominant axis.
        let along_x = p1.x != p2.x;
        let k = |c: C| if along_x { c.x } else { c.y };
        let (pmin, pmax) = if k(p1) <= k(p2) { (p1, p2) } else { (p2, p1) };
        let (qmin, qmax) = if k(q1) <= k(q2) { (q1, q2) } else { (q2, q1) };
        let lo = if k(pmin) >= k(qmin) { pmin } else { qmin };
        let hi = if k(pmax) <= k(qmax) { pmax } else { qmax };
        return if k(lo) > k(hi) {
            SegX::None
        } else if k(lo) == k(hi) {
            SegX::Touch(lo)
        } else {
            SegX::Overlap(lo)
        };
    }
    if o1 != 0 && o2 != 0 && o3 != 0 && o4 != 0 {
        // Approximate crossing point, for the message only.
        let (d1, d2) = (p2 - p1, q2 - q1);
        let den = d1.x * d2.y - d1.y * d2.x;
        let t = ((q1.x - p1.x) * d2.y - (q1.y - p1.y) * d2.x) / den;
        return SegX::Cross(Coord { x: p1.x + t * d1.x, y: p1.y + t * d1.y });
    }
    SegX::Touch(if o1 == 0 {
        q1
    } else if o2 == 0 {
        q2
    } else if o3 == 0 {
        p1
    } else {
        p2
    })
}

pub(super) fn same_direction(p: C, a: C, b: C) -> bool {
    orient(p, a, b) == 0 && (a.x - p.x) * (b.x - p.x) + (a.y - p.y) * (b.y - p.y) > 0.0
}

/// Whether the ray p→d lies strictly inside the counter-clockwise sector from ray p→u to ray p→v.
pub(super) fn in_ccw_sector(p: C, u: C, v: C, d: C) -> bool {
    match orient(p, u, v) {
        1 => orient(p, u, d) == 1 && orient(p, d, v) == 1,
        -1 => !(orient(p, v, d) >= 0 && orient(p, d, u) >= 0),
        _ if same_direction(p, u, v) => false,
        _ => orient(p, u, d) == 1,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Location {
    Inside,
    Outside,
    Boundary,
}

/// Point-in-ring queries in O(segments crossing the point's row band).
pub(super) struct RingIndex {
    pts: Vec<C>,
    y0: f64,
    y1: f64,
    inv_band: f64,
    bands: Vec<Vec<u32>>,
}

impl RingIndex {
    pub(super) fn new(pts: &[C]) -> RingIndex {
        let n = pts.len();
        let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
        for p in pts {
            y0 = y0.min(p.y);
            y1 = y1.max(p.y);
        }
        let nb = if n < 64 { 1 } else { ((n as f64).sqrt() as usize).clamp(1, 4096) };
        let span = y1 - y0;
        let inv_band = if span > 0.0 { nb as f64 / span } else { 0.0 };
        let mut bands: Vec<Vec<u32>> = vec![Vec::new(); nb];
        let band_of = |y: f64| (((y - y0) * inv_band) as usize).min(nb - 1);
        for i in 0..n {
            let (a, b) = (pts[i], pts[(i + 1) % n]);
            let (lo, hi) = (band_of(a.y.min(b.y)), band_of(a.y.max(b.y)));
            for band in &mut bands[lo..=hi] {
                band.push(i as u32);
            }
        }
        RingIndex { pts: pts.to_vec(), y0, y1, inv_band, bands }
    }

    pub(super) fn locate(&self, p: C) -> Location {
        let n = self.pts.len();
        let nb = self.bands.len();
        if !(p.y >= self.y0 && p.y <= self.y1) {
            return Location::Outside;
        }
        let band = (((p.y - self.y0) * self.inv_band) as usize).min(nb - 1);
        let mut winding = 0i64;
        for &i in &self.bands[band] {
            let (a, b) = (self.pts[i as usize], self.pts[(i as usize + 1) % n]);
            let o = orient(a, b, p);
            if o == 0 && p.x >= a.x.min(b.x) && p.x <= a.x.max(b.x) && p.y >= a.y.min(b.y) && p.y <= a.y.max(b.y) {
                return Location::Boundary;
            }
            if a.y <= p.y {
                if b.y > p.y && o == 1 {
                    winding += 1;
                }
            } else if b.y <= p.y && o == -1 {
                winding -= 1;
            }
        }
        if winding != 0 {
            Location::Inside
        } else {
            Location::Outside
        }
    }
}
