//! Test-time augmentation: predictions on flipped copies, mapped back and fused.

use crate::model::{Detection, MaskRcnn};
use crate::ops::boxes::Box;
use crate::ops::nms::batched_nms;
use crate::ops::paste_masks::PastedMask;
use crate::transform::ImageChw;

fn flip(image: &ImageChw, horizontal: bool) -> ImageChw {
    let (h, w) = (image.height, image.width);
    let mut data = vec![0.0f32; image.data.len()];
    for c in 0..image.channels {
        for y in 0..h {
            for x in 0..w {
                let (sy, sx) = if horizontal { (y, w - 1 - x) } else { (h - 1 - y, x) };
                data[(c * h + y) * w + x] = image.data[(c * h + sy) * w + sx];
            }
        }
    }
    ImageChw { data, ..image.clone() }
}

fn unflip(d: Detection, h: usize, w: usize, horizontal: bool) -> Detection {
    let b = d.bbox;
    let bbox: Box = if horizontal {
        [w as f32 - b[2], b[1], w as f32 - b[0], b[3]]
    } else {
        [b[0], h as f32 - b[3], b[2], h as f32 - b[1]]
    };
    let m = &d.mask;
    let mut probs = vec![0.0f32; m.probs.len()];
    for y in 0..m.height {
        for x in 0..m.width {
            let (sy, sx) = if horizontal { (y, m.width - 1 - x) } else { (m.height - 1 - y, x) };
            probs[y * m.width + x] = m.probs[sy * m.width + sx];
        }
    }
    let (x0, y0) = if horizontal { (w - m.x0 - m.width, m.y0) } else { (m.x0, h - m.y0 - m.height) };
    Detection { bbox, mask: PastedMask { x0, y0, width: m.width, height: m.height, probs }, ..d }
}

/// Predicts on the image and its horizontal and vertical flips, then keeps one detection per
/// object (class-wise NMS at the model's threshold). Each kept mask is the mean of the masks that
/// agree with it (box IoU above the NMS threshold), which smooths tile-edge noise.
pub fn predict_with_flips(model: &MaskRcnn, image: &ImageChw) -> Vec<Detection> {
    let (h, w) = (image.height, image.width);
    let mut all: Vec<Detection> = model.predict(std::slice::from_ref(image)).pop().unwrap_or_default();
    for horizontal in [true, false] {
        let flipped = flip(image, horizontal);
        let dets = model.predict(std::slice::from_ref(&flipped)).pop().unwrap_or_default();
        all.extend(dets.into_iter().map(|d| unflip(d, h, w, horizontal)));
    }
    let boxes: Vec<Box> = all.iter().map(|d| d.bbox).collect();
    let scores: Vec<f32> = all.iter().map(|d| d.score).collect();
    let labels: Vec<usize> = all.iter().map(|d| d.label).collect();
    let threshold = model.config.roi_heads.box_nms_thresh;
    let keep = batched_nms(&boxes, &scores, &labels, threshold);
    keep.into_iter()
        .take(model.config.roi_heads.box_detections_per_img)
        .map(|k| {
            let members: Vec<&Detection> = all
                .iter()
                .filter(|d| {
                    d.label == all[k].label && crate::ops::boxes::box_iou(&d.bbox, &all[k].bbox) as f64 > threshold
                })
                .collect();
            fuse(&all[k], &members, h, w)
        })
        .collect()
}

fn fuse(best: &Detection, members: &[&Detection], h: usize, w: usize) -> Detection {
    let x0 = members.iter().map(|d| d.mask.x0).min().unwrap_or(0);
    let y0 = members.iter().map(|d| d.mask.y0).min().unwrap_or(0);
    let x1 = members.iter().map(|d| d.mask.x0 + d.mask.width).max().unwrap_or(0).min(w);
    let y1 = members.iter().map(|d| d.mask.y0 + d.mask.height).max().unwrap_or(0).min(h);
    let (mw, mh) = (x1.saturating_sub(x0), y1.saturating_sub(y0));
    let mut probs = vec![0.0f32; mw * mh];
    for d in members {
        let m = &d.mask;
        for y in 0..m.height {
            for x in 0..m.width {
                probs[(m.y0 + y - y0) * mw + (m.x0 + x - x0)] += m.probs[y * m.width + x] / members.len() as f32;
            }
        }
    }
    Detection { mask: PastedMask { x0, y0, width: mw, height: mh, probs }, ..best.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unflipping_restores_position() {
        let d = Detection {
            bbox: [1.0, 2.0, 4.0, 6.0],
            score: 0.9,
            label: 1,
            mask: PastedMask { x0: 1, y0: 2, width: 3, height: 4, probs: (0..12).map(|v| v as f32).collect() },
        };
        for horizontal in [true, false] {
            // Flipping twice is the identity.
            let twice = unflip(unflip(d.clone(), 10, 8, horizontal), 10, 8, horizontal);
            assert_eq!(twice, d);
        }
        let h = unflip(d.clone(), 10, 8, true);
        assert_eq!(h.bbox, [4.0, 2.0, 7.0, 6.0]);
        assert_eq!((h.mask.x0, h.mask.y0), (4, 2));
        assert_eq!(h.mask.probs[0], 2.0);
    }
}
