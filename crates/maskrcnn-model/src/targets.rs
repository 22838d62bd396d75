//! Ground truth for training, and its resizing with the images.

use anyhow::{bail, ensure, Result};

use crate::ops::boxes::{resize_box, Box};
use crate::ops::interpolate::nearest_indices;
use crate::transform::ImageChw;

/// Ground truth of one image, in the pixel coordinates of the image given to `forward_train`.
/// Crowd regions must already be removed (torchvision's reference drops `iscrowd` annotations).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainTarget {
    pub boxes: Vec<Box>,
    /// Model labels, `1..num_classes`.
    pub labels: Vec<usize>,
    /// One `height * width` binary mask per instance.
    pub masks: Vec<Vec<u8>>,
}

impl TrainTarget {
    /// The target scaled to the resized image, as `GeneralizedRCNNTransform.resize` does in
    /// training: boxes by the size ratios, masks by nearest-neighbour interpolation.
    pub fn resized(&self, from: (usize, usize), to: (usize, usize)) -> TrainTarget {
        let rows = nearest_indices(from.0, to.0);
        let cols = nearest_indices(from.1, to.1);
        let masks = self
            .masks
            .iter()
            .map(|m| {
                let mut out = Vec::with_capacity(to.0 * to.1);
                for &r in &rows {
                    let line = &m[r * from.1..(r + 1) * from.1];
                    out.extend(cols.iter().map(|&c| line[c]));
                }
                out
            })
            .collect();
        TrainTarget {
            boxes: self.boxes.iter().map(|b| resize_box(b, from, to)).collect(),
            labels: self.labels.clone(),
            masks,
        }
    }

    /// Checks the target of image `index` against its image and the model's class count.
    pub fn check(&self, index: usize, image: &ImageChw, num_classes: usize) -> Result<()> {
        let n = self.boxes.len();
        ensure!(
            self.labels.len() == n && self.masks.len() == n,
            "target {index}: {n} boxes, {} labels, {} masks",
            self.labels.len(),
            self.masks.len()
        );
        for (k, b) in self.boxes.iter().enumerate() {
            if !(b[2] > b[0] && b[3] > b[1]) || b.iter().any(|v| !v.is_finite()) {
                bail!("target {index}: box {k} {b:?} is degenerate (torchvision requires x2 > x1 and y2 > y1)");
            }
            let label = self.labels[k];
            ensure!(
                (1..num_classes).contains(&label),
                "target {index}: label {label} of instance {k} is outside 1..{num_classes}"
            );
            ensure!(
                self.masks[k].len() == image.height * image.width,
                "target {index}: mask {k} has {} pixels for a {}x{} image",
                self.masks[k].len(),
                image.height,
                image.width
            );
        }
        Ok(())
    }

    /// Instance `index`'s mask as floats, for RoIAlign and point sampling of targets.
    pub fn mask_f32(&self, index: usize) -> Vec<f32> {
        self.masks[index].iter().map(|&v| v as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_masks_follow_nearest_resize() {
        let t = TrainTarget { boxes: vec![[0.0, 0.0, 2.0, 1.0]], labels: vec![1], masks: vec![vec![1, 1, 0, 0, 0, 0]] };
        let r = t.resized((2, 3), (4, 6));
        assert_eq!(r.boxes[0], [0.0, 0.0, 4.0, 2.0]);
        assert_eq!(&r.masks[0][..12], &[1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0]);
        assert!(r.masks[0][12..].iter().all(|&v| v == 0));
    }
}
