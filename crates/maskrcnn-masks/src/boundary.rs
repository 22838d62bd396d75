/// Boundary band width in pixels for Boundary IoU: `max(1, round(ratio * diagonal))`,
/// with Python 3's round-half-to-even because the reference code uses `int(round(...))`.
pub fn boundary_dilation_pixels(height: usize, width: usize, dilation_ratio: f64) -> usize {
    // In f64: exact for any real image, and no overflow for a size read from a hostile file.
    let (h, w) = (height as f64, width as f64);
    let diagonal = (h * h + w * w).sqrt();
    let dilation = (dilation_ratio * diagonal).round_ties_even();
    if dilation < 1.0 {
        1
    } else {
        dilation as usize
    }
}

/// The inner boundary band of a row-major mask, as `mask_to_boundary` in the official
/// boundary_iou_api: the mask minus its erosion, where the erosion is `cv2.erode` with a
/// 3x3 kernel repeated `dilation` times on the mask padded by one zero pixel. Repeated 3x3
/// erosion equals one erosion by a `(2d+1)` square, and the zero padding makes everything
/// outside the image count as background, so a mask cut by the image edge has a boundary
/// there. Returns 0/1 bytes.
pub fn mask_boundary(mask: &[u8], height: usize, width: usize, dilation_ratio: f64) -> Vec<u8> {
    mask_boundary_band(mask, height, width, boundary_dilation_pixels(height, width, dilation_ratio))
}

/// [`mask_boundary`] with the band width `d` given in pixels. Because everything outside the
/// mask's image counts as background, the band of a crop holding all of a mask's foreground is
/// the crop of the full band, provided `d` is the full image's: evaluators use that to work on
/// a mask's box instead of its whole image.
pub fn mask_boundary_band(mask: &[u8], height: usize, width: usize, d: usize) -> Vec<u8> {
    if height == 0 || width == 0 {
        // No pixels; the prefix sums below would otherwise size themselves by the other side.
        return Vec::new();
    }
    let foreground = |y: usize, x: usize| mask.get(y * width + x).is_some_and(|&v| v != 0);
    // Separable min filter: a pixel survives when its whole (2d+1) row window, and then the
    // whole column window of row-survivors, is foreground and inside the image.
    let mut row_survivor = vec![false; height * width];
    for y in 0..height {
        let mut zeros_prefix = vec![0usize; width + 1];
        for x in 0..width {
            zeros_prefix[x + 1] = zeros_prefix[x] + usize::from(!foreground(y, x));
        }
        for x in 0..width {
            if x >= d && x + d < width {
                row_survivor[y * width + x] = zeros_prefix[x + d + 1] == zeros_prefix[x - d];
            }
        }
    }
    let mut boundary = vec![0u8; height * width];
    let mut zeros_prefix = vec![0usize; height + 1];
    for x in 0..width {
        for y in 0..height {
            zeros_prefix[y + 1] = zeros_prefix[y] + usize::from(!row_survivor[y * width + x]);
        }
        for y in 0..height {
            let eroded = y >= d && y + d < height && zeros_prefix[y + d + 1] == zeros_prefix[y - d];
            boundary[y * width + x] = u8::from(foreground(y, x) && !eroded);
        }
    }
    boundary
}
