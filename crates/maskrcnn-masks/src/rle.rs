use crate::error::MaskError;

/// Run-length encoding in COCO's column-major (Fortran) order; counts alternate starting
/// with zeros (so a mask whose first pixel is foreground starts with a count of 0).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Rle {
    pub height: usize,
    pub width: usize,
    /// Run lengths, alternating background and foreground; they sum to `height * width` for
    /// RLEs built by the checked constructors.
    pub counts: Vec<u32>,
}

impl Rle {
    /// An all-background mask.
    pub fn empty(height: usize, width: usize) -> Rle {
        Rle { height, width, counts: vec![(height * width) as u32] }
    }

    /// Encodes a row-major `height*width` mask; any nonzero byte is foreground.
    ///
    /// pycocotools compares raw byte values, so a mask holding e.g. 255 and 1 would get
    /// spurious runs there; treating "nonzero" as foreground is what every caller means.
    /// Bytes missing from a short buffer count as background (see [`Rle::try_from_mask`]
    /// for a checked variant).
    pub fn from_mask(mask: &[u8], height: usize, width: usize) -> Rle {
        let mut counts = Vec::new();
        let mut previous = false;
        let mut run: u32 = 0;
        for x in 0..width {
            for y in 0..height {
                let value = mask.get(y * width + x).is_some_and(|&v| v != 0);
                if value != previous {
                    counts.push(run);
                    run = 0;
                    previous = value;
                }
                run += 1;
            }
        }
        counts.push(run);
        Rle { height, width, counts }
    }

    /// Like [`Rle::from_mask`] but rejects a buffer whose length is not `height*width`.
    pub fn try_from_mask(mask: &[u8], height: usize, width: usize) -> Result<Rle, MaskError> {
        if mask.len() != height * width {
            return Err(MaskError::BufferSize { len: mask.len(), height, width, expected: height * width });
        }
        Ok(Rle::from_mask(mask, height, width))
    }

    /// Decodes to a row-major `height*width` mask of 0/1. Counts running past the end of
    /// the mask are cut off rather than overflowing (old pycocotools wrote out of bounds).
    pub fn to_mask(&self) -> Vec<u8> {
        let total = self.height * self.width;
        let mut mask = vec![0u8; total];
        let mut position = 0usize;
        let mut foreground = false;
        for &count in &self.counts {
            let end = (position + count as usize).min(total);
            if foreground {
                for column_major in position..end {
                    let x = column_major / self.height;
                    let y = column_major % self.height;
                    mask[y * self.width + x] = 1;
                }
            }
            position = end;
            foreground = !foreground;
        }
        mask
    }

    /// Number of foreground pixels (`rleArea`).
    pub fn area(&self) -> u64 {
        self.counts.iter().skip(1).step_by(2).map(|&c| c as u64).sum()
    }

    /// Tight bounding box `[x, y, w, h]` exactly as `rleToBbox`, including its rule that a
    /// run spanning more than one column makes the box cover the full image height.
    pub fn to_bbox(&self) -> [f64; 4] {
        let h = self.height as u64;
        let w = self.width as u64;
        // An odd trailing count is a background run and cannot extend the box.
        let m = (self.counts.len() / 2) * 2;
        if m == 0 || h == 0 {
            return [0.0; 4];
        }
        let (mut xs, mut ys, mut xe, mut ye) = (w, h, 0u64, 0u64);
        let mut cumulative: u64 = 0;
        let mut run_start_column = 0u64;
        for j in 0..m {
            cumulative += self.counts[j] as u64;
            // Last pixel of a foreground run is one before the cumulative count; C computes
            // this in unsigned arithmetic, so a zero-length leading run wraps the same way.
            let t = cumulative.wrapping_sub((j % 2) as u64) as u32 as u64;
            let y = t % h;
            let x = (t - y) / h;
            if j % 2 == 0 {
                run_start_column = x;
            } else if run_start_column < x {
                ys = 0;
                ye = h - 1;
            }
            xs = xs.min(x);
            xe = xe.max(x);
            ys = ys.min(y);
            ye = ye.max(y);
        }
        [xs as f64, ys as f64, (xe as f64) - (xs as f64) + 1.0, (ye as f64) - (ys as f64) + 1.0]
    }

    /// COCO's compressed counts string (`rleToString`): LEB128-like, 6 bits per char in
    /// ASCII 48..=111, counts from index 3 on stored as differences to the count two back.
    pub fn to_coco_string(&self) -> String {
        let mut out = Vec::with_capacity(self.counts.len() * 2);
        for (i, &count) in self.counts.iter().enumerate() {
            let mut x = count as i64;
            if i > 2 {
                x -= self.counts[i - 2] as i64;
            }
            loop {
                let mut c = (x & 0x1f) as u8;
                x >>= 5;
                let more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
                if more {
                    c |= 0x20;
                }
                out.push(c + 48);
                if !more {
                    break;
                }
            }
        }
        String::from_utf8(out).expect("compressed RLE uses ASCII 48..=111 only")
    }

    /// Parses a compressed counts string (`rleFrString`) and checks that the runs cover
    /// exactly `height*width` pixels, so a truncated or corrupted string is an error here
    /// instead of a silently wrong mask later.
    pub fn from_coco_string(s: &str, height: usize, width: usize) -> Result<Rle, MaskError> {
        let bytes = s.as_bytes();
        let mut counts: Vec<u32> = Vec::with_capacity(bytes.len());
        let mut p = 0usize;
        while p < bytes.len() {
            let value_start = p;
            let mut x: i64 = 0;
            let mut k = 0u32;
            loop {
                let Some(&byte) = bytes.get(p) else {
                    return Err(MaskError::MalformedRleString {
                        position: value_start,
                        reason: "string ends inside a multi-character value".into(),
                    });
                };
                if !(48..=111).contains(&byte) {
                    return Err(MaskError::MalformedRleString {
                        position: p,
                        reason: format!("character {:?} is outside the RLE alphabet '0'..='o'", byte as char),
                    });
                }
                if k >= 7 {
                    return Err(MaskError::MalformedRleString {
                        position: value_start,
                        reason: "value longer than 7 characters (exceeds 32-bit counts)".into(),
                    });
                }
                let c = (byte - 48) as i64;
                x |= (c & 0x1f) << (5 * k);
                let more = c & 0x20 != 0;
                p += 1;
                k += 1;
                if !more {
                    if c & 0x10 != 0 {
                        x |= -1i64 << (5 * k);
                    }
                    break;
                }
            }
            let m = counts.len();
            if m > 2 {
                x += counts[m - 2] as i64;
            }
            if !(0..=u32::MAX as i64).contains(&x) {
                return Err(MaskError::MalformedRleString {
                    position: value_start,
                    reason: format!("run {} decodes to {x}, not a valid pixel count", m),
                });
            }
            counts.push(x as u32);
        }
        let rle = Rle { height, width, counts };
        rle.check_coverage()?;
        Ok(rle)
    }

    /// Builds from uncompressed counts (COCO's `{"size":[h,w],"counts":[...]}`), checking
    /// that the runs cover the mask exactly.
    pub fn from_counts(counts: Vec<u32>, height: usize, width: usize) -> Result<Rle, MaskError> {
        let rle = Rle { height, width, counts };
        rle.check_coverage()?;
        Ok(rle)
    }

    fn check_coverage(&self) -> Result<(), MaskError> {
        let sum: u64 = self.counts.iter().map(|&c| c as u64).sum();
        let expected = (self.height as u64).checked_mul(self.width as u64);
        if expected != Some(sum) {
            let expected = expected.unwrap_or(u64::MAX);
            return Err(MaskError::CountsDoNotCoverMask { sum, height: self.height, width: self.width, expected });
        }
        Ok(())
    }

    /// Union (or intersection) of masks (`rleMerge`). As in pycocotools, masks of
    /// different sizes give a 0x0 result and no masks give a 0x0 result; use
    /// [`Rle::try_merge`] to get an error instead.
    pub fn merge(rles: &[Rle], intersect: bool) -> Rle {
        Rle::try_merge(rles, intersect).unwrap_or_default()
    }

    /// [`Rle::merge`] that reports mismatched sizes.
    pub fn try_merge(rles: &[Rle], intersect: bool) -> Result<Rle, MaskError> {
        let Some(first) = rles.first() else {
            return Ok(Rle::default());
        };
        let (h, w) = (first.height, first.width);
        if let Some(other) = rles.iter().find(|r| r.height != h || r.width != w) {
            return Err(MaskError::SizeMismatch {
                first_height: h,
                first_width: w,
                other_height: other.height,
                other_width: other.width,
            });
        }
        let mut counts = first.counts.clone();
        for b in &rles[1..] {
            counts = merge_two(&counts, &b.counts, intersect);
        }
        Ok(Rle { height: h, width: w, counts })
    }
}

/// One step of `rleMerge`: emits a run whenever the combined value changes between two
/// stretches of the lockstep walk.
fn merge_two(a: &[u32], b: &[u32], intersect: bool) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut value, mut run) = (false, 0u64);
    for_each_stretch(a, b, |length, in_a, in_b| {
        let combined = if intersect { in_a && in_b } else { in_a || in_b };
        if combined != value {
            out.push(run as u32);
            run = 0;
            value = combined;
        }
        run += length;
    });
    out.push(run as u32);
    out
}

/// Walks two run lists of one mask size in lockstep, as `rleMerge` and `rleIou` both do,
/// calling `stretch(length, in_a, in_b)` for each stretch over which neither mask changes.
///
/// Zero-length stretches (from zero counts) are passed on rather than skipped, because
/// `rleMerge` emits a zero run for a mask that starts with foreground. As in C, which reads
/// `cnts[0]` unconditionally, an empty run list behaves as a single empty run.
pub(crate) fn for_each_stretch(a: &[u32], b: &[u32], mut stretch: impl FnMut(u64, bool, bool)) {
    let mut ca = a.first().copied().unwrap_or(0) as u64;
    let mut cb = b.first().copied().unwrap_or(0) as u64;
    let (mut va, mut vb) = (false, false);
    let (mut ia, mut ib) = (1usize, 1usize);
    let mut remaining: u64 = 1;
    while remaining > 0 {
        let c = ca.min(cb);
        stretch(c, va, vb);
        ca -= c;
        if ca == 0 && ia < a.len() {
            ca = a[ia] as u64;
            ia += 1;
            va = !va;
        }
        cb -= c;
        if cb == 0 && ib < b.len() {
            cb = b[ib] as u64;
            ib += 1;
            vb = !vb;
        }
        remaining = ca + cb;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small masks with foreground in the first pixel (a leading zero count), full and empty
    /// masks, and scattered pixels, so every branch of the lockstep walk is taken.
    fn masks() -> Vec<Vec<u8>> {
        let mut state = 12345u32;
        let mut random = || {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            u8::from((state >> 16).is_multiple_of(3))
        };
        let mut out = vec![vec![0; 12], vec![1; 12], [1, 1, 0].repeat(4), [0, 1].repeat(6)];
        out.extend((0..6).map(|_| (0..12).map(|_| random()).collect()));
        out
    }

    #[test]
    fn merge_and_overlap_agree_with_pixelwise_logic() {
        let (h, w) = (3, 4);
        for a in masks() {
            for b in masks() {
                let (ra, rb) = (Rle::from_mask(&a, h, w), Rle::from_mask(&b, h, w));
                let union: Vec<u8> = a.iter().zip(&b).map(|(x, y)| x | y).collect();
                let both: Vec<u8> = a.iter().zip(&b).map(|(x, y)| x & y).collect();
                assert_eq!(Rle::merge(&[ra.clone(), rb.clone()], false), Rle::from_mask(&union, h, w));
                assert_eq!(Rle::merge(&[ra.clone(), rb.clone()], true), Rle::from_mask(&both, h, w));
                let (mut intersection, mut total) = (0u64, 0u64);
                for_each_stretch(&ra.counts, &rb.counts, |length, in_a, in_b| {
                    intersection += u64::from(in_a && in_b) * length;
                    total += length;
                });
                assert_eq!(intersection, both.iter().map(|&v| u64::from(v)).sum::<u64>());
                assert_eq!(total, (h * w) as u64);
            }
        }
    }
}
