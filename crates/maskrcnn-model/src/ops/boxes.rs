//! Axis-aligned boxes as `[x1, y1, x2, y2]` in pixels, torchvision's convention.

pub type Box = [f32; 4];

pub fn box_area(b: &Box) -> f32 {
    (b[2] - b[0]) * (b[3] - b[1])
}

/// torchvision's `clip_boxes_to_image`: x to `[0, width]`, y to `[0, height]`.
pub fn clip_box(b: &Box, height: usize, width: usize) -> Box {
    let (w, h) = (width as f32, height as f32);
    [b[0].clamp(0.0, w), b[1].clamp(0.0, h), b[2].clamp(0.0, w), b[3].clamp(0.0, h)]
}

/// torchvision's `remove_small_boxes`: keeps boxes whose sides are both at least `min_size`.
pub fn is_large_enough(b: &Box, min_size: f32) -> bool {
    (b[2] - b[0]) >= min_size && (b[3] - b[1]) >= min_size
}

/// IoU without the legacy +1, as torchvision's `box_iou` and NMS kernel compute it.
pub fn box_iou(a: &Box, b: &Box) -> f32 {
    let inter_w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let inter_h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = inter_w * inter_h;
    inter / (box_area(a) + box_area(b) - inter)
}

/// Pairwise IoU matrix `[a.len()][b.len()]`, flattened row-major.
pub fn box_iou_matrix(a: &[Box], b: &[Box]) -> Vec<f32> {
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            out.push(box_iou(x, y));
        }
    }
    out
}

/// Scales boxes from the resized image back to the original one (torchvision's `resize_boxes`).
pub fn resize_box(b: &Box, from_hw: (usize, usize), to_hw: (usize, usize)) -> Box {
    let ratio_h = to_hw.0 as f32 / from_hw.0 as f32;
    let ratio_w = to_hw.1 as f32 / from_hw.1 as f32;
    [b[0] * ratio_w, b[1] * ratio_h, b[2] * ratio_w, b[3] * ratio_h]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_half_overlap() {
        let a = [0.0, 0.0, 2.0, 2.0];
        let b = [1.0, 0.0, 3.0, 2.0];
        assert!((box_iou(&a, &b) - 2.0 / 6.0).abs() < 1e-6);
        assert_eq!(box_iou(&a, &[5.0, 5.0, 6.0, 6.0]), 0.0);
    }

    #[test]
    fn clip_and_filter() {
        let b = clip_box(&[-3.0, 2.0, 12.0, 30.0], 20, 10);
        assert_eq!(b, [0.0, 2.0, 10.0, 20.0]);
        assert!(is_large_enough(&b, 1e-3));
        assert!(!is_large_enough(&[1.0, 1.0, 1.0, 5.0], 1e-3));
    }
}
