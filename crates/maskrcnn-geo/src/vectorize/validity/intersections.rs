//! Segment intersections between and within rings (a sweep over segment bounding boxes), and
//! the checks at points where rings touch: no crossing there, and no cycle of touches cutting
//! a polygon's interior.

use std::collections::HashMap;

use super::predicates::{in_ccw_sector, intersect, same_direction, SegX};
use super::{Errors, InvalidReason, Ring, C};

fn key(c: C) -> (u64, u64) {
    // +0.0 and -0.0 are the same point.
    ((c.x + 0.0).to_bits(), (c.y + 0.0).to_bits())
}

/// How a ring passes through a point: the points before and after it.
#[derive(Clone, Copy)]
pub(super) struct Pass {
    ring: usize,
    prev: C,
    next: C,
}

pub(super) type Touches = HashMap<(u64, u64), (C, Vec<Pass>)>;

fn pass_at(ring: &Ring, ring_id: usize, seg: usize, p: C) -> Pass {
    let n = ring.pts.len();
    let (a, b) = ring.seg(seg);
    if p == a {
        Pass { ring: ring_id, prev: ring.pts[(seg + n - 1) % n], next: b }
    } else if p == b {
        Pass { ring: ring_id, prev: a, next: ring.pts[(seg + 2) % n] }
    } else {
        Pass { ring: ring_id, prev: a, next: b }
    }
}

pub(super) fn intersect_segments(rings: &[Ring], errs: &mut Errors) -> Touches {
    struct Seg {
        ring: u32,
        idx: u32,
        bbox: [f64; 4],
    }
    let mut segs: Vec<Seg> = Vec::with_capacity(rings.iter().map(|r| r.pts.len()).sum());
    for (ri, r) in rings.iter().enumerate() {
        for i in 0..r.pts.len() {
            let (a, b) = r.seg(i);
            segs.push(Seg {
                ring: ri as u32,
                idx: i as u32,
                bbox: [a.x.min(b.x), a.y.min(b.y), a.x.max(b.x), a.y.max(b.y)],
            });
        }
    }
    segs.sort_by(|a, b| a.bbox[0].total_cmp(&b.bbox[0]));
    let mut touches: Touches = HashMap::new();
    let mut active: Vec<usize> = Vec::new();
    for si in 0..segs.len() {
        let s = &segs[si];
        active.retain(|&a| segs[a].bbox[2] >= s.bbox[0]);
        for &ai in &active {
            let t = &segs[ai];
            if t.bbox[1] > s.bbox[3] || t.bbox[3] < s.bbox[1] {
                continue;
            }
            let (r1, r2) = (&rings[s.ring as usize], &rings[t.ring as usize]);
            let (p1, p2) = r1.seg(s.idx as usize);
            let (q1, q2) = r2.seg(t.idx as usize);
            let x = intersect(p1, p2, q1, q2);
            if s.ring == t.ring {
                let n = r1.pts.len() as u32;
                let adjacent = (s.idx + 1) % n == t.idx || (t.idx + 1) % n == s.idx;
                match x {
                    SegX::None => {}
                    // Consecutive segments meet at their shared vertex; only a spike overlaps.
                    SegX::Touch(_) | SegX::Cross(_) if adjacent => {}
                    SegX::Touch(p) | SegX::Cross(p) | SegX::Overlap(p) => {
                        errs.push(InvalidReason::RingSelfIntersection, p, r1.poly, None)
                    }
                }
            } else {
                match x {
                    SegX::None => {}
                    SegX::Cross(p) | SegX::Overlap(p) => {
                        errs.push(InvalidReason::SelfIntersection, p, r1.poly, Some(r2.poly))
                    }
                    SegX::Touch(p) => {
                        let entry = touches.entry(key(p)).or_insert_with(|| (p, Vec::new()));
                        for (ring, r, idx) in [(s.ring, r1, s.idx), (t.ring, r2, t.idx)] {
                            if !entry.1.iter().any(|q| q.ring == ring as usize) {
                                entry.1.push(pass_at(r, ring as usize, idx as usize, p));
                            }
                        }
                    }
                }
            }
            if errs.full() {
                return touches;
            }
        }
        active.push(si);
    }
    touches
}

/// Whether pass `b` crosses pass `a` at `p` (enters the other side rather than touching).
fn passes_cross(p: C, a: &Pass, b: &Pass) -> bool {
    for d in [b.prev, b.next] {
        if same_direction(p, d, a.prev) || same_direction(p, d, a.next) {
            // A shared segment, reported by the segment sweep.
            return false;
        }
    }
    in_ccw_sector(p, a.prev, a.next, b.prev) != in_ccw_sector(p, a.prev, a.next, b.next)
}

pub(super) fn check_touch_points(rings: &[Ring], touches: &Touches, errs: &mut Errors) {
    // Union-find over rings (0..n) and touch points (n..), per polygon.
    let n = rings.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    // Deterministic order, so the first error reported does not depend on hashing.
    let mut points: Vec<&(C, Vec<Pass>)> = touches.values().collect();
    points.sort_by(|a, b| a.0.x.total_cmp(&b.0.x).then(a.0.y.total_cmp(&b.0.y)));
    for (p, passes) in points {
        for (i, a) in passes.iter().enumerate() {
            for b in &passes[i + 1..] {
                if passes_cross(*p, a, b) {
                    let (ra, rb) = (&rings[a.ring], &rings[b.ring]);
                    errs.push(InvalidReason::SelfIntersection, *p, ra.poly, Some(rb.poly));
                    if errs.full() {
                        return;
                    }
                }
            }
        }
        // Rings of one polygon meeting here: link each to a node for the point.
        let mut by_poly: Vec<(usize, usize)> = passes.iter().map(|q| (rings[q.ring].poly, q.ring)).collect();
        by_poly.sort_unstable();
        for group in by_poly.chunk_by(|a, b| a.0 == b.0) {
            if group.len() < 2 {
                continue;
            }
            let node = parent.len();
            parent.push(node);
            for &(poly, ring) in group {
                let r = find(&mut parent, ring);
                let q = find(&mut parent, node);
                if r == q {
                    errs.push(InvalidReason::DisconnectedInterior, *p, poly, None);
                    if errs.full() {
                        return;
                    }
                } else {
                    parent[r] = q;
                }
            }
        }
    }
}
