//! torchvision's `paste_masks_in_image`: per-detection square masks into image coordinates.

use super::boxes::Box;
use super::interpolate::resize_bilinear;

/// A detection's mask resampled to its (expanded, integer) box in image pixels.
///
/// torchvision pads the `m x m` mask by one pixel and grows the box by `(m + 2) / m` so that the
/// mask border falls outside the object, truncates the box to integers, then resizes bilinearly.
struct BoxedMask {
    /// Expanded box `[x0, y0, x1, y1]`, inclusive of `x1`/`y1` as torchvision pastes it.
    bbox: [i64; 4],
    width: usize,
    height: usize,
    probs: Vec<f32>,
}

fn resample_to_box(mask: &[f32], m: usize, bbox: &Box) -> BoxedMask {
    let padded_m = m + 2;
    let mut padded = vec![0.0f32; padded_m * padded_m];
    for y in 0..m {
        padded[(y + 1) * padded_m + 1..(y + 1) * padded_m + 1 + m].copy_from_slice(&mask[y * m..(y + 1) * m]);
    }
    let scale = padded_m as f32 / m as f32;
    let w_half = (bbox[2] - bbox[0]) * 0.5 * scale;
    let h_half = (bbox[3] - bbox[1]) * 0.5 * scale;
    let x_c = (bbox[2] + bbox[0]) * 0.5;
    let y_c = (bbox[3] + bbox[1]) * 0.5;
    // `.to(torch.int64)` truncates toward zero.
    let b = [(x_c - w_half) as i64, (y_c - h_half) as i64, (x_c + w_half) as i64, (y_c + h_half) as i64];
    let width = (b[2] - b[0] + 1).max(1) as usize;
    let height = (b[3] - b[1] + 1).max(1) as usize;
    let probs = resize_bilinear(&padded, 1, (padded_m, padded_m), (height, width));
    BoxedMask { bbox: b, width, height, probs }
}

/// A detection's probabilities inside the window `[y0, y0+height) x [x0, x0+width)` of the image:
/// memory grows with the object, not with the image.
#[derive(Debug, Clone, PartialEq)]
pub struct PastedMask {
    pub x0: usize,
    pub y0: usize,
    pub width: usize,
    pub height: usize,
    pub probs: Vec<f32>,
}

impl PastedMask {
    /// The binary mask inside the window (probability > 0.5, as torchvision users threshold it),
    /// row-major `height x width`.
    pub fn to_binary(&self) -> Vec<u8> {
        self.probs.iter().map(|&p| (p > 0.5) as u8).collect()
    }

    /// Full-image binary mask ([`Self::to_binary`] placed in the image), row-major.
    pub fn to_binary_full(&self, image_height: usize, image_width: usize) -> Vec<u8> {
        let mut out = vec![0u8; image_height * image_width];
        for (y, row) in self.to_binary().chunks_exact(self.width.max(1)).enumerate() {
            let dst = (self.y0 + y) * image_width + self.x0;
            out[dst..dst + self.width].copy_from_slice(row);
        }
        out
    }

    /// Full-image probabilities, row-major `height x width` of the image.
    pub fn to_full(&self, image_height: usize, image_width: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; image_height * image_width];
        for y in 0..self.height {
            let dst = (self.y0 + y) * image_width + self.x0;
            out[dst..dst + self.width].copy_from_slice(&self.probs[y * self.width..(y + 1) * self.width]);
        }
        out
    }
}

/// Pastes an `m x m` probability mask for `bbox` into an image of `image_height x image_width`,
/// keeping only the part inside the image.
pub fn paste_mask(mask: &[f32], m: usize, bbox: &Box, image_height: usize, image_width: usize) -> PastedMask {
    let boxed = resample_to_box(mask, m, bbox);
    let b = boxed.bbox;
    let x0 = b[0].max(0);
    let x1 = (b[2] + 1).min(image_width as i64);
    let y0 = b[1].max(0);
    let y1 = (b[3] + 1).min(image_height as i64);
    if x0 >= x1 || y0 >= y1 {
        return PastedMask { x0: 0, y0: 0, width: 0, height: 0, probs: Vec::new() };
    }
    let (w, h) = ((x1 - x0) as usize, (y1 - y0) as usize);
    let mut probs = Vec::with_capacity(w * h);
    for y in y0..y1 {
        let row = (y - b[1]) as usize * boxed.width;
        let start = row + (x0 - b[0]) as usize;
        probs.extend_from_slice(&boxed.probs[start..start + w]);
    }
    debug_assert_eq!(boxed.height as i64, b[3] - b[1] + 1);
    PastedMask { x0: x0 as usize, y0: y0 as usize, width: w, height: h, probs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_mask_covers_its_box() {
        let m = 28;
        let mask = vec![1.0f32; m * m];
        let pasted = paste_mask(&mask, m, &[10.0, 20.0, 40.0, 50.0], 100, 80);
        let full = pasted.to_full(100, 80);
        // Inside the box the probability is high, well outside it is zero.
        assert!(full[35 * 80 + 25] > 0.99);
        assert_eq!(full[5 * 80 + 5], 0.0);
        assert_eq!(full[80 * 80 + 70], 0.0);
        let above: usize = full.iter().filter(|&&p| p > 0.5).count();
        assert!((above as f32 - 31.0 * 31.0).abs() < 80.0, "{above}");
    }

    #[test]
    fn boxes_outside_the_image_are_clipped() {
        let m = 4;
        let pasted = paste_mask(&[1.0; 16], m, &[-10.0, -10.0, 5.0, 5.0], 20, 20);
        assert_eq!((pasted.x0, pasted.y0), (0, 0));
        // Expanded box: centre -2.5, half-width 7.5 * 1.5 = 11.25 -> [-13, 8] inclusive -> columns 0..=8.
        assert_eq!((pasted.width, pasted.height), (9, 9));
        let gone = paste_mask(&[1.0; 16], m, &[30.0, 30.0, 40.0, 40.0], 20, 20);
        assert_eq!(gone.width * gone.height, 0);
    }
}
