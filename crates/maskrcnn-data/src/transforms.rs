//! Seeded augmentation that keeps images, masks and boxes consistent.
//!
//! How boxes follow each transform:
//! - flips and the 8 dihedral transforms: mapped exactly;
//! - crops: recomputed as the tight box of the cropped mask (an L-shaped object cut by the crop
//!   gets the box of what is left, not of the clipped old box);
//! - rescaling: scaled analytically and clipped (masks use nearest-neighbour, so a mask's tight
//!   box stays within a pixel of it).
//!
//! Instances whose mask becomes empty (cropped away, or too small after downscaling) are
//! removed. Determinism: [`sample_rng`] derives a generator from (seed, epoch, sample index),
//! so results do not depend on worker count or loading order.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{mask_to_box, ImageTensor, Sample};

/// A generator for one sample of one epoch; independent of any other sample's draws.
pub fn sample_rng(seed: u64, epoch: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index);
    rng
}

/// Maps output pixel (row, col) of an `out_h x out_w` result to the input pixel it copies.
fn remap<T: Copy>(src: &[T], out_h: usize, out_w: usize, source_of: impl Fn(usize, usize) -> usize) -> Vec<T> {
    let mut out = Vec::with_capacity(out_h * out_w);
    for r in 0..out_h {
        for c in 0..out_w {
            out.push(src[source_of(r, c)]);
        }
    }
    out
}

/// Applies dihedral transform `k` (0..8): bit 2 transposes (swaps rows and columns) first, then
/// bit 0 flips rows (vertical flip) and bit 1 flips columns (horizontal flip). `k = 0` is the
/// identity; the bit meanings follow arcgis.learn's TTA variants.
pub fn dihedral(sample: &mut Sample, k: u8) {
    assert!(k < 8, "dihedral index {k} is not in 0..8");
    let (flip_rows, flip_cols, transpose) = (k & 1 != 0, k & 2 != 0, k & 4 != 0);
    if k == 0 {
        return;
    }
    let (h, w) = (sample.image.height, sample.image.width);
    let (out_h, out_w) = if transpose { (w, h) } else { (h, w) };
    let source_of = |r: usize, c: usize| {
        let r1 = if flip_rows { out_h - 1 - r } else { r };
        let c1 = if flip_cols { out_w - 1 - c } else { c };
        let (sr, sc) = if transpose { (c1, r1) } else { (r1, c1) };
        sr * w + sc
    };
    let img = &sample.image;
    let mut data = Vec::with_capacity(img.data.len());
    for ch in 0..img.channels {
        data.extend(remap(img.plane(ch), out_h, out_w, source_of));
    }
    sample.image = ImageTensor { channels: img.channels, height: out_h, width: out_w, data };
    for mask in &mut sample.target.masks {
        *mask = remap(mask, out_h, out_w, source_of);
    }
    let (fw, fh) = (out_w as f32, out_h as f32);
    for b in &mut sample.target.boxes {
        let [mut x1, mut y1, mut x2, mut y2] = *b;
        if transpose {
            (x1, y1, x2, y2) = (y1, x1, y2, x2);
        }
        if flip_rows {
            (y1, y2) = (fh - y2, fh - y1);
        }
        if flip_cols {
            (x1, x2) = (fw - x2, fw - x1);
        }
        *b = [x1, y1, x2, y2];
    }
}

/// The `k'` that undoes dihedral `k` (for mapping test-time-augmented predictions back).
pub fn dihedral_inverse(k: u8) -> u8 {
    // Transposing turns a later row flip into a column flip, so the flip bits swap when
    // bit 2 is set.
    if k & 4 != 0 {
        4 | ((k & 1) << 1) | ((k & 2) >> 1)
    } else {
        k
    }
}

/// Mirrors image, masks and boxes left to right ([`dihedral`] 2).
pub fn hflip(sample: &mut Sample) {
    dihedral(sample, 2);
}

/// Mirrors image, masks and boxes top to bottom ([`dihedral`] 1).
pub fn vflip(sample: &mut Sample) {
    dihedral(sample, 1);
}

/// Brightness and contrast in raw pixel units: `x' = (x - mean) * contrast + mean + shift`,
/// per band around the band's mean, clamped to `[0, pixel_max]`. NaN (NoData) stays NaN.
pub fn adjust_brightness_contrast(image: &mut ImageTensor, shift: f32, contrast: f32, pixel_max: f32) {
    for ch in 0..image.channels {
        let plane = image.plane_mut(ch);
        let valid: Vec<f32> = plane.iter().copied().filter(|v| !v.is_nan()).collect();
        if valid.is_empty() {
            continue;
        }
        let mean = valid.iter().map(|&v| v as f64).sum::<f64>() as f32 / valid.len() as f32;
        for v in plane.iter_mut().filter(|v| !v.is_nan()) {
            *v = ((*v - mean) * contrast + mean + shift).clamp(0.0, pixel_max);
        }
    }
}

/// Bilinear resampling of every band with half-pixel centres (PyTorch's `align_corners=False`).
pub fn resize_image(image: &ImageTensor, out_h: usize, out_w: usize) -> ImageTensor {
    let (h, w) = (image.height, image.width);
    let axis = |out: usize, inp: usize| -> Vec<(usize, usize, f32)> {
        let scale = inp as f32 / out as f32;
        (0..out)
            .map(|i| {
                let s = ((i as f32 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (s.floor() as usize).min(inp - 1);
                let i1 = (i0 + 1).min(inp - 1);
                (i0, i1, s - i0 as f32)
            })
            .collect()
    };
    let rows = axis(out_h, h);
    let cols = axis(out_w, w);
    let mut out = ImageTensor::zeros(image.channels, out_h, out_w);
    for ch in 0..image.channels {
        let src = image.plane(ch);
        let dst = out.plane_mut(ch);
        for (r, &(r0, r1, fr)) in rows.iter().enumerate() {
            for (c, &(c0, c1, fc)) in cols.iter().enumerate() {
                let top = src[r0 * w + c0] * (1.0 - fc) + src[r0 * w + c1] * fc;
                let bottom = src[r1 * w + c0] * (1.0 - fc) + src[r1 * w + c1] * fc;
                dst[r * out_w + c] = top * (1.0 - fr) + bottom * fr;
            }
        }
    }
    out
}

fn resize_mask_nearest(mask: &[u8], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<u8> {
    let src_row: Vec<usize> =
        (0..out_h).map(|r| (((r as f64 + 0.5) * h as f64 / out_h as f64) as usize).min(h - 1)).collect();
    let src_col: Vec<usize> =
        (0..out_w).map(|c| (((c as f64 + 0.5) * w as f64 / out_w as f64) as usize).min(w - 1)).collect();
    remap(mask, out_h, out_w, |r, c| src_row[r] * w + src_col[c])
}

/// Removes instances whose mask is empty; returns how many were removed.
fn drop_empty_instances(sample: &mut Sample) -> usize {
    let before = sample.target.len();
    let keep: Vec<bool> = sample.target.masks.iter().map(|m| m.iter().any(|&v| v != 0)).collect();
    sample.target.retain_indices(|i| keep[i]);
    before - sample.target.len()
}

/// Resizes image (bilinear) and masks (nearest) to `out_h x out_w`; boxes are scaled. Returns
/// the number of instances that vanished.
pub fn resize(sample: &mut Sample, out_h: usize, out_w: usize) -> usize {
    assert!(out_h > 0 && out_w > 0, "cannot resize to an empty image");
    let (h, w) = (sample.image.height, sample.image.width);
    if (h, w) == (out_h, out_w) {
        return 0;
    }
    sample.image = resize_image(&sample.image, out_h, out_w);
    for m in &mut sample.target.masks {
        *m = resize_mask_nearest(m, h, w, out_h, out_w);
    }
    let (sx, sy) = (out_w as f32 / w as f32, out_h as f32 / h as f32);
    for b in &mut sample.target.boxes {
        *b = [
            (b[0] * sx).clamp(0.0, out_w as f32),
            (b[1] * sy).clamp(0.0, out_h as f32),
            (b[2] * sx).clamp(0.0, out_w as f32),
            (b[3] * sy).clamp(0.0, out_h as f32),
        ];
    }
    drop_empty_instances(sample)
}

/// Cuts the window with top-left (`top`, `left`) and size `out_h x out_w`; parts of the window
/// beyond the image are zero padding (image and masks). Boxes become the tight boxes of the
/// cropped masks. Returns the number of instances cropped away.
pub fn crop(sample: &mut Sample, top: usize, left: usize, out_h: usize, out_w: usize) -> usize {
    let (h, w) = (sample.image.height, sample.image.width);
    let cut = |src: &[f32], fill: f32| -> Vec<f32> {
        let mut out = vec![fill; out_h * out_w];
        for r in 0..out_h.min(h.saturating_sub(top)) {
            let n = out_w.min(w.saturating_sub(left));
            let s = (top + r) * w + left;
            out[r * out_w..r * out_w + n].copy_from_slice(&src[s..s + n]);
        }
        out
    };
    let img = &sample.image;
    let mut data = Vec::with_capacity(img.channels * out_h * out_w);
    for ch in 0..img.channels {
        data.extend(cut(img.plane(ch), 0.0));
    }
    sample.image = ImageTensor { channels: img.channels, height: out_h, width: out_w, data };
    for m in &mut sample.target.masks {
        let mut out = vec![0u8; out_h * out_w];
        for r in 0..out_h.min(h.saturating_sub(top)) {
            let n = out_w.min(w.saturating_sub(left));
            let s = (top + r) * w + left;
            out[r * out_w..r * out_w + n].copy_from_slice(&m[s..s + n]);
        }
        *m = out;
    }
    let removed = drop_empty_instances(sample);
    for (b, m) in sample.target.boxes.iter_mut().zip(&sample.target.masks) {
        *b = mask_to_box(m, out_h, out_w).expect("empty masks were dropped");
    }
    removed
}

/// A uniformly placed `out_h x out_w` window; images smaller than the window are padded at the
/// bottom/right. Returns the number of instances cropped away.
pub fn random_crop(sample: &mut Sample, out_h: usize, out_w: usize, rng: &mut impl Rng) -> usize {
    let top = rng.random_range(0..=sample.image.height.saturating_sub(out_h));
    let left = rng.random_range(0..=sample.image.width.saturating_sub(out_w));
    crop(sample, top, left, out_h, out_w)
}

/// The centred window (validation counterpart of [`random_crop`]).
pub fn center_crop(sample: &mut Sample, out_h: usize, out_w: usize) -> usize {
    let top = sample.image.height.saturating_sub(out_h) / 2;
    let left = sample.image.width.saturating_sub(out_w) / 2;
    crop(sample, top, left, out_h, out_w)
}

/// Training augmentation settings. Serialisable so a run records what it used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Random horizontal flip with probability 0.5.
    pub hflip: bool,
    /// Random vertical flip with probability 0.5.
    pub vflip: bool,
    /// One of the 8 dihedral transforms uniformly (overhead imagery has no "up"); replaces the
    /// flips when set.
    pub dihedral: bool,
    /// Brightness shift drawn from `[-b, b] * pixel_max`; 0 disables.
    pub brightness: f32,
    /// Contrast factor drawn from `[1 - c, 1 + c]`; 0 disables.
    pub contrast: f32,
    /// Largest valid pixel value (255 for 8-bit; the band maximum for 16-bit data).
    pub pixel_max: f32,
    /// Scale factor drawn uniformly from this range (1, 1 disables). Values above 1 zoom in.
    pub scale_range: (f32, f32),
    /// Random crop (after scaling) to `(height, width)`, padding smaller images.
    pub crop: Option<(usize, usize)>,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            hflip: false,
            vflip: false,
            dihedral: false,
            brightness: 0.0,
            contrast: 0.0,
            pixel_max: 255.0,
            scale_range: (1.0, 1.0),
            crop: None,
        }
    }
}

impl AugmentConfig {
    /// For map-space chips (what arcgis.learn does for `MAP_SPACE`): dihedral, mild colour
    /// jitter, zoom in by up to 1.2, crop back to `chip` pixels.
    pub fn overhead(chip: usize) -> Self {
        AugmentConfig {
            dihedral: true,
            brightness: 0.1,
            contrast: 0.2,
            scale_range: (1.0, 1.2),
            crop: Some((chip, chip)),
            ..Default::default()
        }
    }

    /// For ground-level photos: horizontal flips only, mild colour jitter.
    pub fn photo() -> Self {
        AugmentConfig { hflip: true, brightness: 0.1, contrast: 0.2, ..Default::default() }
    }
}

/// What [`augment`] did, for logging and tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AugmentRecord {
    /// Resize factor applied (1 when not resized).
    pub scale: f32,
    /// The [`dihedral`] variant applied (0 = unchanged).
    pub dihedral: u8,
    /// Brightness shift, in raw pixel units.
    pub shift: f32,
    /// Contrast factor (1 = unchanged).
    pub contrast: f32,
    /// Instances dropped because resizing or cropping left them empty.
    pub instances_removed: usize,
}

/// Applies scale -> crop -> dihedral/flips -> brightness/contrast.
pub fn augment(sample: &mut Sample, config: &AugmentConfig, rng: &mut impl Rng) -> AugmentRecord {
    let mut record = AugmentRecord { scale: 1.0, contrast: 1.0, ..Default::default() };
    let (lo, hi) = config.scale_range;
    if hi > lo || (lo - 1.0).abs() > f32::EPSILON {
        let s = if hi > lo { rng.random_range(lo..=hi) } else { lo };
        let (h, w) = (sample.image.height, sample.image.width);
        let out_h = ((h as f32 * s).round() as usize).max(1);
        let out_w = ((w as f32 * s).round() as usize).max(1);
        record.scale = s;
        record.instances_removed += resize(sample, out_h, out_w);
    }
    if let Some((ch, cw)) = config.crop {
        record.instances_removed += random_crop(sample, ch, cw, rng);
    }
    let k = if config.dihedral {
        rng.random_range(0..8u8)
    } else {
        let v = config.vflip && rng.random_bool(0.5);
        let h = config.hflip && rng.random_bool(0.5);
        (v as u8) | ((h as u8) << 1)
    };
    dihedral(sample, k);
    record.dihedral = k;
    if config.brightness > 0.0 || config.contrast > 0.0 {
        let shift = if config.brightness > 0.0 {
            rng.random_range(-config.brightness..=config.brightness) * config.pixel_max
        } else {
            0.0
        };
        let contrast =
            if config.contrast > 0.0 { rng.random_range(1.0 - config.contrast..=1.0 + config.contrast) } else { 1.0 };
        adjust_brightness_contrast(&mut sample.image, shift, contrast, config.pixel_max);
        record.shift = shift;
        record.contrast = contrast;
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Target;

    /// A 2-band image whose pixels encode their coordinates, with an L-shaped and a square
    /// instance.
    fn sample(h: usize, w: usize) -> Sample {
        let mut image = ImageTensor::zeros(2, h, w);
        for r in 0..h {
            for c in 0..w {
                image.data[r * w + c] = (r * 1000 + c) as f32;
                image.data[h * w + r * w + c] = (r + c) as f32;
            }
        }
        let mut target = Target::default();
        let mut l_shape = vec![0u8; h * w];
        for r in 2..9 {
            l_shape[r * w + 3] = 1;
        }
        for c in 3..12 {
            l_shape[8 * w + c] = 1;
        }
        let mut square = vec![0u8; h * w];
        for r in 10..14 {
            for c in 15..20 {
                square[r * w + c] = 1;
            }
        }
        for (m, label) in [(l_shape, 1), (square, 2)] {
            target.push(mask_to_box(&m, h, w).unwrap(), label, m, label == 2);
        }
        Sample { image, target, image_id: 7, file_name: "s".into() }
    }

    fn assert_boxes_fit_masks(s: &Sample, tolerance: f32) {
        assert_eq!(s.target.boxes.len(), s.target.masks.len());
        for (b, m) in s.target.boxes.iter().zip(&s.target.masks) {
            assert_eq!(m.len(), s.image.height * s.image.width);
            let tight = mask_to_box(m, s.image.height, s.image.width).expect("no empty masks survive");
            for k in 0..4 {
                assert!((b[k] - tight[k]).abs() <= tolerance, "box {b:?} vs mask box {tight:?}");
            }
        }
    }

    #[test]
    fn all_dihedral_transforms_are_distinct_exact_and_invertible() {
        let original = sample(16, 24);
        let mut seen = Vec::new();
        for k in 0..8 {
            let mut s = original.clone();
            dihedral(&mut s, k);
            assert_boxes_fit_masks(&s, 0.0);
            assert_eq!(s.target.iscrowd, original.target.iscrowd);
            if k & 4 != 0 {
                assert_eq!((s.image.height, s.image.width), (24, 16));
            }
            assert!(!seen.contains(&s.image.data), "dihedral {k} repeats another");
            seen.push(s.image.data.clone());
            dihedral(&mut s, dihedral_inverse(k));
            assert_eq!(s, original, "inverse of {k}");
        }
        // Horizontal flip moves column c to w-1-c.
        let mut s = original.clone();
        hflip(&mut s);
        assert_eq!(s.image.get(0, 3, 0), original.image.get(0, 3, 23));
        assert_eq!(s.target.boxes[1], [24.0 - 20.0, 10.0, 24.0 - 15.0, 14.0]);
    }

    #[test]
    fn crop_recomputes_boxes_and_drops_cut_instances() {
        let mut s = sample(16, 24);
        // Keep the vertical bar of the L without its foot, and lose the square.
        let removed = crop(&mut s, 0, 0, 8, 10);
        assert_eq!(removed, 1);
        assert_eq!(s.target.labels, vec![1]);
        assert_eq!(s.target.boxes, vec![[3.0, 2.0, 4.0, 8.0]]);
        assert_eq!(s.image.get(0, 5, 7), 5007.0);
        // A window larger than the image pads with zeros.
        let mut s = sample(16, 24);
        crop(&mut s, 10, 20, 8, 8);
        assert_eq!((s.image.height, s.image.width), (8, 8));
        assert_eq!(s.image.get(0, 0, 0), 10020.0);
        assert_eq!(s.image.get(0, 7, 7), 0.0);
        assert_boxes_fit_masks(&s, 0.0);
    }

    #[test]
    fn resize_keeps_boxes_within_a_pixel_of_masks() {
        for (oh, ow) in [(32, 48), (24, 36), (19, 29), (12, 18)] {
            let mut s = sample(16, 24);
            resize(&mut s, oh, ow);
            assert_eq!((s.image.height, s.image.width), (oh, ow));
            assert_boxes_fit_masks(&s, 1.0);
        }
        // Bilinear with half-pixel centres: doubling a ramp keeps its mean position.
        let img = ImageTensor { channels: 1, height: 1, width: 2, data: vec![0.0, 4.0] };
        assert_eq!(resize_image(&img, 1, 4).data, vec![0.0, 1.0, 3.0, 4.0]);
    }

    #[test]
    fn brightness_contrast_clamps_and_keeps_nan() {
        let mut img = ImageTensor { channels: 1, height: 1, width: 4, data: vec![0.0, 100.0, 200.0, f32::NAN] };
        adjust_brightness_contrast(&mut img, 10.0, 2.0, 255.0);
        // mean 100: (0-100)*2+110 = -90 -> 0; 110; 310 -> 255.
        assert_eq!(&img.data[..3], &[0.0, 110.0, 255.0]);
        assert!(img.data[3].is_nan());
    }

    #[test]
    fn augment_is_deterministic_per_seed_epoch_index_and_consistent() {
        let config = AugmentConfig { scale_range: (0.8, 1.3), crop: Some((14, 14)), ..AugmentConfig::overhead(14) };
        let run = |seed, epoch, index| {
            let mut s = sample(16, 24);
            let rec = augment(&mut s, &config, &mut sample_rng(seed, epoch, index));
            (s, rec)
        };
        assert_eq!(run(1, 0, 3), run(1, 0, 3));
        let differing = (0..20).filter(|&i| run(1, 0, i).1 != run(1, 1, i).1).count();
        assert!(differing >= 18, "epochs should draw different augmentations ({differing}/20)");
        let mut ks = [0usize; 8];
        for i in 0..200 {
            let (s, rec) = run(5, 0, i);
            assert_eq!((s.image.height, s.image.width), (14, 14));
            assert_boxes_fit_masks(&s, 1.0);
            ks[rec.dihedral as usize] += 1;
            assert!(rec.scale >= 0.8 && rec.scale <= 1.3);
            assert!(s.image.data.iter().all(|&v| (0.0..=255.0).contains(&v)));
        }
        assert!(ks.iter().all(|&n| n > 10), "dihedral draws {ks:?}");
    }
}
