//! OGC Simple Features validity for polygons and multipolygons, with the same rules as GEOS
//! (`ST_IsValid` in PostGIS, `IsValid()` in GDAL/OGR and QGIS).
//!
//! `geo::Validation` accepts polygons whose holes touch the shell or each other in a cycle (the
//! interior is then cut into pieces), which GEOS reports as "Interior is disconnected"; this
//! module checks that as well. Rules, for each polygon:
//!
//! * coordinates are finite; rings are closed and have at least 4 points after dropping
//!   consecutive repeats;
//! * a ring neither crosses nor touches itself (GEOS "Ring Self-intersection"; self-touching
//!   "inverted" rings are invalid, as in GEOS' default mode);
//! * two rings never cross and never share a segment; they may touch at isolated points
//!   (GEOS "Self-intersection");
//! * every hole lies inside the shell, and no hole lies inside another hole;
//! * the interior is connected: the graph linking each ring to each point where it touches
//!   another ring of the polygon has no cycle (GEOS "Interior is disconnected").
//!
//! For a multipolygon, additionally: the parts' interiors are disjoint, i.e. no rings of
//! different parts cross or share a segment and no part lies inside another (GEOS "Nested
//! shells"); parts may touch at any finite number of points.
//!
//! Predicates are exact (robust orientation tests on the `f64` coordinates), so the answer does
//! not depend on a tolerance. Run time is O(n log n) for typical polygons (a sweep over segment
//! bounding boxes), not O(n²).

mod intersections;
mod predicates;

use std::collections::HashMap;
use std::fmt;

use geo::{Coord, LineString, MultiPolygon, Polygon};

use intersections::{check_touch_points, intersect_segments};
use predicates::{Location, RingIndex};

/// Why a geometry is invalid; the messages are those of GEOS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvalidReason {
    /// NaN or infinite coordinate.
    InvalidCoordinate,
    /// First and last point of a ring differ.
    RingNotClosed,
    /// Fewer than 4 points (3 distinct vertices) after dropping consecutive repeats.
    TooFewPoints,
    /// A ring crosses or touches itself (including spikes and zero-area rings).
    RingSelfIntersection,
    /// Two rings cross or share a segment.
    SelfIntersection,
    /// A hole is not inside its shell.
    HoleOutsideShell,
    /// A hole is inside another hole.
    NestedHoles,
    /// Rings touch in a cycle (or twice), cutting the interior into pieces.
    DisconnectedInterior,
    /// A multipolygon part is inside another part.
    NestedShells,
}

impl InvalidReason {
    pub fn message(self) -> &'static str {
        match self {
            InvalidReason::InvalidCoordinate => "Invalid Coordinate",
            InvalidReason::RingNotClosed => "Ring is not closed",
            InvalidReason::TooFewPoints => "Too few points in geometry component",
            InvalidReason::RingSelfIntersection => "Ring Self-intersection",
            InvalidReason::SelfIntersection => "Self-intersection",
            InvalidReason::HoleOutsideShell => "Hole lies outside shell",
            InvalidReason::NestedHoles => "Holes are nested",
            InvalidReason::DisconnectedInterior => "Interior is disconnected",
            InvalidReason::NestedShells => "Nested shells",
        }
    }
}

/// One validity problem: what, where, and which part(s) of a multipolygon (0 for a polygon).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidityError {
    pub reason: InvalidReason,
    pub location: Coord<f64>,
    /// Index of the offending polygon in the multipolygon.
    pub polygon: usize,
    /// The other polygon, for problems between two parts of a multipolygon.
    pub other_polygon: Option<usize>,
}

impl fmt::Display for ValidityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at or near point {} {} (polygon {}",
            self.reason.message(),
            self.location.x,
            self.location.y,
            self.polygon
        )?;
        if let Some(o) = self.other_polygon {
            write!(f, " and {o}")?;
        }
        write!(f, ")")
    }
}

impl std::error::Error for ValidityError {}

/// First validity problem of a polygon, if any.
pub fn validate_polygon(p: &Polygon<f64>) -> Result<(), ValidityError> {
    first(check(std::slice::from_ref(p), 1))
}

/// First validity problem of a multipolygon, if any.
pub fn validate_multipolygon(mp: &MultiPolygon<f64>) -> Result<(), ValidityError> {
    first(check(&mp.0, 1))
}

/// Up to `limit` validity problems of a set of polygons taken as one multipolygon. Problems found
/// after the first may be consequences of it.
pub fn validity_errors(polygons: &[Polygon<f64>], limit: usize) -> Vec<ValidityError> {
    check(polygons, limit.max(1))
}

pub fn is_valid_polygon(p: &Polygon<f64>) -> bool {
    validate_polygon(p).is_ok()
}

pub fn is_valid_multipolygon(mp: &MultiPolygon<f64>) -> bool {
    validate_multipolygon(mp).is_ok()
}

fn first(errors: Vec<ValidityError>) -> Result<(), ValidityError> {
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

type C = Coord<f64>;

struct Ring {
    /// Open vertex list (no closing point), consecutive repeats removed.
    pts: Vec<C>,
    poly: usize,
    bbox: [f64; 4],
}

impl Ring {
    fn seg(&self, i: usize) -> (C, C) {
        (self.pts[i], self.pts[(i + 1) % self.pts.len()])
    }
}

struct Errors {
    list: Vec<ValidityError>,
    limit: usize,
}

impl Errors {
    fn push(&mut self, reason: InvalidReason, location: C, polygon: usize, other: Option<usize>) {
        if self.list.len() < self.limit {
            let other_polygon = other.filter(|&o| o != polygon);
            self.list.push(ValidityError { reason, location, polygon, other_polygon });
        }
    }
    fn full(&self) -> bool {
        self.list.len() >= self.limit
    }
}

fn check(polygons: &[Polygon<f64>], limit: usize) -> Vec<ValidityError> {
    let mut errs = Errors { list: Vec::new(), limit };
    // Rings, with the basic per-ring checks.
    let mut rings: Vec<Ring> = Vec::new();
    // Per polygon: index of its shell in `rings` and the range of its rings.
    let mut poly_rings: Vec<Option<std::ops::Range<usize>>> = Vec::with_capacity(polygons.len());
    for (pi, poly) in polygons.iter().enumerate() {
        if poly.exterior().0.is_empty() {
            // An empty polygon is valid (and has no holes worth checking).
            poly_rings.push(None);
            continue;
        }
        let start = rings.len();
        for ls in std::iter::once(poly.exterior()).chain(poly.interiors()) {
            match prepare_ring(ls) {
                Ok(pts) => {
                    let mut bbox = [f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY];
                    for p in &pts {
                        bbox = [bbox[0].min(p.x), bbox[1].min(p.y), bbox[2].max(p.x), bbox[3].max(p.y)];
                    }
                    rings.push(Ring { pts, poly: pi, bbox });
                }
                Err((reason, at)) => errs.push(reason, at, pi, None),
            }
        }
        poly_rings.push(Some(start..rings.len()));
    }
    if !errs.list.is_empty() {
        return errs.list;
    }

    // Segment intersections (sweep over x).
    let touches = intersect_segments(&rings, &mut errs);
    if errs.full() {
        return errs.list;
    }

    // Rings meeting at a point must not cross there; rings of one polygon must not touch in a cycle.
    check_touch_points(&rings, &touches, &mut errs);
    if errs.full() {
        return errs.list;
    }

    // Holes inside their shell and not inside each other.
    for range in poly_rings.iter().flatten() {
        let shell = &rings[range.start];
        let holes = &rings[range.start + 1..range.end];
        if holes.is_empty() {
            continue;
        }
        let shell_index = RingIndex::new(&shell.pts);
        for h in holes {
            if let Some(p) = point_off_ring(&h.pts, &shell_index) {
                if shell_index.locate(p) != Location::Inside {
                    errs.push(InvalidReason::HoleOutsideShell, p, h.poly, None);
                    if errs.full() {
                        return errs.list;
                    }
                }
            }
        }
        check_nested_holes(holes, &mut errs);
        if errs.full() {
            return errs.list;
        }
    }

    // Multipolygon parts not inside each other (their boundaries do not cross, checked above).
    if polygons.len() > 1 {
        let shells: Vec<&Ring> = poly_rings.iter().flatten().map(|r| &rings[r.start]).collect();
        let mut order: Vec<usize> = (0..shells.len()).collect();
        order.sort_by(|&a, &b| shells[a].bbox[0].total_cmp(&shells[b].bbox[0]));
        let mut indexes: HashMap<usize, Vec<RingIndex>> = HashMap::new();
        for (k, &j) in order.iter().enumerate() {
            let outer = shells[j];
            // Candidates: shells whose bbox lies inside outer's bbox; they start at or after outer's min x.
            for &i in &order[k + 1..] {
                let inner = shells[i];
                if inner.bbox[0] > outer.bbox[2] {
                    break;
                }
                if !bbox_inside(&inner.bbox, &outer.bbox) {
                    continue;
                }
                if inside_polygon_interior(inner, outer, &rings, &poly_rings, &mut indexes) {
                    errs.push(InvalidReason::NestedShells, inner.pts[0], inner.poly, Some(outer.poly));
                    if errs.full() {
                        return errs.list;
                    }
                }
            }
            // Equal min x: the outer may come after the inner in `order`.
            for &i in order[..k].iter().rev() {
                let inner = shells[i];
                if inner.bbox[0] < outer.bbox[0] {
                    break;
                }
                if bbox_inside(&inner.bbox, &outer.bbox)
                    && inside_polygon_interior(inner, outer, &rings, &poly_rings, &mut indexes)
                {
                    errs.push(InvalidReason::NestedShells, inner.pts[0], inner.poly, Some(outer.poly));
                    if errs.full() {
                        return errs.list;
                    }
                }
            }
        }
    }
    errs.list
}

fn bbox_inside(a: &[f64; 4], b: &[f64; 4]) -> bool {
    a[0] >= b[0] && a[1] >= b[1] && a[2] <= b[2] && a[3] <= b[3]
}

/// Whether `inner` (a shell whose boundary does not cross `outer`'s polygon) lies in the interior
/// of `outer`'s polygon: inside its shell and not inside one of its holes.
fn inside_polygon_interior(
    inner: &Ring,
    outer: &Ring,
    rings: &[Ring],
    poly_rings: &[Option<std::ops::Range<usize>>],
    indexes: &mut HashMap<usize, Vec<RingIndex>>,
) -> bool {
    let range = poly_rings[outer.poly].clone().unwrap();
    let idx = indexes
        .entry(outer.poly)
        .or_insert_with(|| rings[range.clone()].iter().map(|r| RingIndex::new(&r.pts)).collect());
    // A point of `inner` on none of outer's rings decides: boundaries do not cross.
    let candidates = inner.pts.iter().copied().chain((0..inner.pts.len()).map(|i| {
        let (a, b) = inner.seg(i);
        Coord { x: (a.x + b.x) / 2.0, y: (a.y + b.y) / 2.0 }
    }));
    'points: for p in candidates {
        let mut in_shell = false;
        for (k, ri) in idx.iter().enumerate() {
            match ri.locate(p) {
                Location::Boundary => continue 'points,
                Location::Inside if k == 0 => in_shell = true,
                Location::Inside => return false,
                Location::Outside if k == 0 => return false,
                Location::Outside => {}
            }
        }
        return in_shell;
    }
    false
}

/// Report holes (of one polygon) lying inside another hole.
fn check_nested_holes(set: &[Ring], errs: &mut Errors) {
    if set.len() < 2 {
        return;
    }
    let mut order: Vec<usize> = (0..set.len()).collect();
    order.sort_by(|&a, &b| set[a].bbox[0].total_cmp(&set[b].bbox[0]));
    let mut index_cache: HashMap<usize, RingIndex> = HashMap::new();
    for (k, &j) in order.iter().enumerate() {
        let outer = &set[j];
        let cands = order[k + 1..]
            .iter()
            .take_while(|&&i| set[i].bbox[0] <= outer.bbox[2])
            .chain(order[..k].iter().rev().take_while(|&&i| set[i].bbox[0] >= outer.bbox[0]));
        for &i in cands {
            let inner = &set[i];
            if !bbox_inside(&inner.bbox, &outer.bbox) {
                continue;
            }
            let oi = index_cache.entry(j).or_insert_with(|| RingIndex::new(&outer.pts));
            if let Some(p) = point_off_ring(&inner.pts, oi) {
                if oi.locate(p) == Location::Inside {
                    errs.push(InvalidReason::NestedHoles, p, inner.poly, None);
                    if errs.full() {
                        return;
                    }
                }
            }
        }
    }
}

/// A vertex or segment midpoint of `pts` that is not on the indexed ring.
fn point_off_ring(pts: &[C], ring: &RingIndex) -> Option<C> {
    let n = pts.len();
    pts.iter()
        .copied()
        .chain((0..n).map(|i| {
            let (a, b) = (pts[i], pts[(i + 1) % n]);
            Coord { x: (a.x + b.x) / 2.0, y: (a.y + b.y) / 2.0 }
        }))
        .find(|&p| ring.locate(p) != Location::Boundary)
}

fn prepare_ring(ls: &LineString<f64>) -> Result<Vec<C>, (InvalidReason, C)> {
    let c = &ls.0;
    if let Some(bad) = c.iter().find(|p| !p.x.is_finite() || !p.y.is_finite()) {
        return Err((InvalidReason::InvalidCoordinate, *bad));
    }
    if c.is_empty() {
        return Err((InvalidReason::TooFewPoints, Coord { x: f64::NAN, y: f64::NAN }));
    }
    if c[0] != c[c.len() - 1] {
        return Err((InvalidReason::RingNotClosed, c[0]));
    }
    let mut pts: Vec<C> = Vec::with_capacity(c.len());
    for &p in &c[..c.len() - 1] {
        if pts.last() != Some(&p) {
            pts.push(p);
        }
    }
    while pts.len() > 1 && pts[0] == pts[pts.len() - 1] {
        pts.pop();
    }
    if pts.len() < 3 {
        return Err((InvalidReason::TooFewPoints, c[0]));
    }
    Ok(pts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(pts: &[(f64, f64)]) -> LineString<f64> {
        let mut c: Vec<C> = pts.iter().map(|&(x, y)| Coord { x, y }).collect();
        c.push(c[0]);
        LineString::new(c)
    }

    fn poly(shell: &[(f64, f64)], holes: &[&[(f64, f64)]]) -> Polygon<f64> {
        Polygon::new(ring(shell), holes.iter().map(|h| ring(h)).collect())
    }

    fn sq(x: f64, y: f64, s: f64) -> Vec<(f64, f64)> {
        vec![(x, y), (x + s, y), (x + s, y + s), (x, y + s)]
    }

    fn reason(p: &Polygon<f64>) -> Option<InvalidReason> {
        validate_polygon(p).err().map(|e| e.reason)
    }

    fn mreason(parts: Vec<Polygon<f64>>) -> Option<InvalidReason> {
        validate_multipolygon(&MultiPolygon::new(parts)).err().map(|e| e.reason)
    }

    use InvalidReason::*;

    #[test]
    fn simple_polygons() {
        assert_eq!(reason(&poly(&sq(0.0, 0.0, 1.0), &[])), None);
        assert_eq!(reason(&poly(&[(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)], &[])), None);
        // Collinear vertices and repeated points are fine.
        assert_eq!(reason(&poly(&[(0.0, 0.0), (1.0, 0.0), (1.0, 0.0), (2.0, 0.0), (2.0, 2.0), (0.0, 2.0)], &[])), None);
        // Orientation does not matter.
        assert_eq!(reason(&poly(&[(0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (1.0, 0.0)], &[])), None);
        assert_eq!(reason(&Polygon::new(LineString::new(vec![]), vec![])), None);
    }

    #[test]
    fn broken_rings() {
        assert_eq!(reason(&poly(&[(0.0, 0.0), (1.0, 0.0)], &[])), Some(TooFewPoints));
        assert_eq!(reason(&poly(&[(0.0, 0.0), (f64::NAN, 0.0), (0.0, 1.0)], &[])), Some(InvalidCoordinate));
        // Bow-tie.
        assert_eq!(reason(&poly(&[(0.0, 0.0), (2.0, 2.0), (2.0, 0.0), (0.0, 2.0)], &[])), Some(RingSelfIntersection));
        // Spike.
        assert_eq!(
            reason(&poly(&[(0.0, 0.0), (2.0, 0.0), (3.0, 0.0), (2.0, 0.0), (2.0, 2.0), (0.0, 2.0)], &[])),
            Some(RingSelfIntersection)
        );
        // Zero area.
        assert_eq!(reason(&poly(&[(0.0, 0.0), (1.0, 0.0), (2.0, 0.0)], &[])), Some(RingSelfIntersection));
        // A shell touching itself at a vertex (an "inverted hole"): GEOS rejects it.
        let inverted = [(0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (2.0, 4.0), (3.0, 2.0), (1.0, 2.0), (2.0, 4.0), (0.0, 4.0)];
        assert_eq!(reason(&poly(&inverted, &[])), Some(RingSelfIntersection));
        // A vertex touching a non-adjacent segment of the same ring.
        let touch = [(0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (2.0, 0.0), (0.0, 4.0)];
        assert_eq!(reason(&poly(&touch, &[])), Some(RingSelfIntersection));
    }

    #[test]
    fn holes() {
        let shell = sq(0.0, 0.0, 10.0);
        assert_eq!(reason(&poly(&shell, &[&sq(2.0, 2.0, 2.0)])), None);
        // Touching the shell at one point (mid-segment or at a vertex): valid.
        assert_eq!(reason(&poly(&shell, &[&[(0.0, 5.0), (2.0, 4.0), (2.0, 6.0)]])), None);
        assert_eq!(reason(&poly(&shell, &[&[(0.0, 0.0), (2.0, 1.0), (1.0, 2.0)]])), None);
        // Touching at two points: the interior is cut in two.
        assert_eq!(
            reason(&poly(&shell, &[&[(0.0, 5.0), (5.0, 4.0), (10.0, 5.0), (5.0, 6.0)]])),
            Some(DisconnectedInterior)
        );
        // Outside, crossing, nested, sharing an edge with the shell.
        assert_eq!(reason(&poly(&shell, &[&sq(20.0, 2.0, 2.0)])), Some(HoleOutsideShell));
        assert_eq!(reason(&poly(&shell, &[&sq(8.0, 2.0, 4.0)])), Some(SelfIntersection));
        assert_eq!(reason(&poly(&shell, &[&sq(1.0, 1.0, 8.0), &sq(3.0, 3.0, 2.0)])), Some(NestedHoles));
        assert_eq!(reason(&poly(&shell, &[&sq(0.0, 2.0, 2.0)])), Some(SelfIntersection));
        // Hole equal to the shell.
        assert_eq!(reason(&poly(&shell, &[&shell])), Some(SelfIntersection));
        // A hole leaving the shell through two shell vertices (no proper crossing anywhere).
        assert_eq!(
            reason(&poly(&shell, &[&[(10.0, 10.0), (15.0, 5.0), (10.0, 0.0), (5.0, 5.0)]])),
            Some(SelfIntersection)
        );
    }

    #[test]
    fn hole_touch_graph() {
        let shell = sq(0.0, 0.0, 10.0);
        // Two holes touching at one point: valid; at two points: disconnected.
        assert_eq!(reason(&poly(&shell, &[&sq(2.0, 2.0, 2.0), &sq(4.0, 4.0, 2.0)])), None);
        let a = [(2.0, 2.0), (6.0, 2.0), (6.0, 6.0), (4.0, 3.0)];
        let b = [(2.0, 2.0), (3.0, 4.0), (6.0, 6.0), (2.0, 6.0)];
        assert_eq!(reason(&poly(&shell, &[&a, &b[..]])), Some(DisconnectedInterior));
        // ... sharing the diagonal instead: a shared segment.
        let b = [(2.0, 2.0), (6.0, 6.0), (2.0, 6.0)];
        let a = [(2.0, 2.0), (6.0, 2.0), (6.0, 6.0)];
        assert_eq!(reason(&poly(&shell, &[&a, &b])), Some(SelfIntersection));
        // Shell - hole - hole - shell chain.
        let h1 = [(0.0, 5.0), (5.0, 4.0), (5.0, 6.0)];
        let h2 = [(5.0, 4.0), (10.0, 5.0), (5.0, 6.0)];
        assert_eq!(reason(&poly(&shell, &[&h1, &h2])), Some(SelfIntersection));
        let h2 = [(5.0, 5.0), (10.0, 5.0), (8.0, 6.0)];
        let h1 = [(0.0, 5.0), (5.0, 5.0), (3.0, 6.0)];
        assert_eq!(reason(&poly(&shell, &[&h1, &h2])), Some(DisconnectedInterior));
        // Four pixel holes around a centre pixel (the old vectoriser's output for the 7x7 case).
        let hs = [sq(3.0, 2.0, 1.0), sq(2.0, 3.0, 1.0), sq(4.0, 3.0, 1.0), sq(3.0, 4.0, 1.0)];
        let hr: Vec<&[(f64, f64)]> = hs.iter().map(|h| &h[..]).collect();
        assert_eq!(reason(&poly(&sq(1.0, 1.0, 5.0), &hr)), Some(DisconnectedInterior));
        // Three holes meeting at one point: a star, no cycle.
        let t1 = [(5.0, 5.0), (7.0, 4.0), (7.0, 6.0)];
        let t2 = [(5.0, 5.0), (4.0, 7.0), (3.0, 6.0)];
        let t3 = [(5.0, 5.0), (3.0, 4.0), (4.0, 3.0)];
        assert_eq!(reason(&poly(&shell, &[&t1, &t2, &t3])), None);
        // ... also when the star touches the shell once.
        let t4 = [(5.0, 5.0), (6.0, 0.0), (4.0, 0.0)];
        let t4 = [t4[0], (6.0, 1.0), (5.0, 0.0)];
        assert_eq!(reason(&poly(&shell, &[&t1, &t2, &t3, &t4])), None);
        // ... but a second touch closes a cycle.
        let t5 = [(7.0, 4.0), (10.0, 3.0), (8.0, 3.0)];
        let t5 = [t5[0], t5[1], (9.0, 2.0)];
        assert_eq!(reason(&poly(&shell, &[&t1, &t2, &t3, &t4, &t5])), Some(DisconnectedInterior));
    }

    #[test]
    fn multipolygons() {
        let a = poly(&sq(0.0, 0.0, 2.0), &[]);
        // Corner touch: valid; shared edge: invalid; overlap; nested.
        assert_eq!(mreason(vec![a.clone(), poly(&sq(2.0, 2.0, 2.0), &[])]), None);
        assert_eq!(mreason(vec![a.clone(), poly(&sq(2.0, 0.0, 2.0), &[])]), Some(SelfIntersection));
        assert_eq!(mreason(vec![a.clone(), poly(&sq(1.0, 1.0, 2.0), &[])]), Some(SelfIntersection));
        assert_eq!(mreason(vec![poly(&sq(0.0, 0.0, 10.0), &[]), a.clone()]), Some(SelfIntersection));
        assert_eq!(mreason(vec![poly(&sq(-1.0, -1.0, 10.0), &[]), a.clone()]), Some(NestedShells));
        assert_eq!(mreason(vec![a.clone(), poly(&sq(-1.0, -1.0, 10.0), &[])]), Some(NestedShells));
        assert_eq!(mreason(vec![a.clone(), a.clone()]), Some(SelfIntersection));
        // Island in a hole: valid, also touching the hole.
        let donut = poly(&sq(-5.0, -5.0, 20.0), &[&sq(-1.0, -1.0, 10.0)]);
        assert_eq!(mreason(vec![donut.clone(), a.clone()]), None);
        assert_eq!(mreason(vec![donut.clone(), poly(&[(-1.0, -1.0), (1.0, 0.0), (0.0, 1.0)], &[])]), None);
        // ... but not sharing an edge with it.
        assert_eq!(mreason(vec![donut.clone(), poly(&sq(-1.0, -1.0, 2.0), &[])]), Some(SelfIntersection));
        // Two L shapes touching at two points: valid for a multipolygon (GEOS agrees).
        let l1 = poly(&[(0.0, 0.0), (3.0, 0.0), (3.0, 1.0), (1.0, 1.0), (1.0, 3.0), (0.0, 3.0)], &[]);
        let l2 = poly(&[(3.0, 1.0), (4.0, 1.0), (4.0, 4.0), (1.0, 4.0), (1.0, 3.0), (3.0, 3.0)], &[]);
        assert_eq!(mreason(vec![l1, l2]), None);
        // Shells crossing at a shared vertex.
        let t1 = poly(&[(0.0, 0.0), (2.0, 0.0), (1.0, 1.0), (2.0, 2.0), (0.0, 2.0)], &[]);
        let t2 = poly(&[(1.0, 1.0), (3.0, 0.5), (3.0, 1.5)], &[]);
        assert_eq!(mreason(vec![t1.clone(), t2]), None);
        let t3 = poly(&[(1.0, 1.0), (0.5, 0.5), (3.0, 0.5), (3.0, 1.5)], &[]);
        assert_eq!(mreason(vec![t1, t3]), Some(SelfIntersection));
        let errs = validity_errors(&[a.clone(), poly(&sq(2.0, 0.0, 2.0), &[])], 10);
        assert_eq!(
            (errs[0].polygon.min(errs[0].other_polygon.unwrap()), errs[0].polygon.max(errs[0].other_polygon.unwrap())),
            (0, 1)
        );
    }
}
