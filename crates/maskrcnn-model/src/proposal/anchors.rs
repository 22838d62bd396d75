//! torchvision's `AnchorGenerator`.

use crate::ops::boxes::Box;

/// Zero-centred anchors for one level: ratio-major over `sizes`, rounded half-to-even like
/// `torch.round`.
pub fn cell_anchors(sizes: &[f32], aspect_ratios: &[f32]) -> Vec<Box> {
    let mut out = Vec::with_capacity(sizes.len() * aspect_ratios.len());
    for &ratio in aspect_ratios {
        let h_ratio = ratio.sqrt();
        let w_ratio = 1.0 / h_ratio;
        for &size in sizes {
            let ws = w_ratio * size;
            let hs = h_ratio * size;
            out.push([
                (-ws / 2.0).round_ties_even(),
                (-hs / 2.0).round_ties_even(),
                (ws / 2.0).round_ties_even(),
                (hs / 2.0).round_ties_even(),
            ]);
        }
    }
    out
}

/// Anchors for one feature map of `grid` cells over a padded image of `image` pixels, ordered by
/// row, column, then cell anchor — the order of the flattened head outputs.
pub fn grid_anchors(base: &[Box], grid: (usize, usize), image: (usize, usize)) -> Vec<Box> {
    let stride_h = (image.0 / grid.0) as f32;
    let stride_w = (image.1 / grid.1) as f32;
    let mut out = Vec::with_capacity(grid.0 * grid.1 * base.len());
    for y in 0..grid.0 {
        let sy = y as f32 * stride_h;
        for x in 0..grid.1 {
            let sx = x as f32 * stride_w;
            for a in base {
                out.push([sx + a[0], sy + a[1], sx + a[2], sy + a[3]]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_cell_anchors_for_size_32() {
        // torchvision: AnchorGenerator(((32,),), ((0.5, 1.0, 2.0),)).cell_anchors[0]
        let a = cell_anchors(&[32.0], &[0.5, 1.0, 2.0]);
        assert_eq!(a, vec![[-23.0, -11.0, 23.0, 11.0], [-16.0, -16.0, 16.0, 16.0], [-11.0, -23.0, 11.0, 23.0]]);
    }

    #[test]
    fn grid_shifts_by_stride() {
        let a = grid_anchors(&[[-1.0, -1.0, 1.0, 1.0]], (2, 3), (64, 96));
        assert_eq!(a.len(), 6);
        assert_eq!(a[4], [31.0, 31.0, 33.0, 33.0]);
    }
}
