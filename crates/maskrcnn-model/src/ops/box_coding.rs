//! torchvision's `BoxCoder`: box regression targets relative to reference boxes.

use super::boxes::Box;

/// torchvision clamps dw/dh at log(1000/16) so `exp` cannot overflow on wild predictions.
pub const BBOX_XFORM_CLIP: f32 = 4.135_166_6; // (1000.0f64 / 16.0).ln() rounded to f32

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxCoder {
    pub weights: [f32; 4],
    pub bbox_xform_clip: f32,
}

impl BoxCoder {
    pub fn new(weights: [f32; 4]) -> Self {
        Self { weights, bbox_xform_clip: (1000.0f64 / 16.0).ln() as f32 }
    }

    /// `decode_single`: applies deltas `(dx, dy, dw, dh)` to a reference box, in torchvision's
    /// operation order so that f32 results match bit for bit in the common case.
    pub fn decode(&self, deltas: &[f32], reference: &Box) -> Box {
        let [wx, wy, ww, wh] = self.weights;
        let width = reference[2] - reference[0];
        let height = reference[3] - reference[1];
        let ctr_x = reference[0] + 0.5 * width;
        let ctr_y = reference[1] + 0.5 * height;
        let dx = deltas[0] / wx;
        let dy = deltas[1] / wy;
        let dw = (deltas[2] / ww).min(self.bbox_xform_clip);
        let dh = (deltas[3] / wh).min(self.bbox_xform_clip);
        let pred_ctr_x = dx * width + ctr_x;
        let pred_ctr_y = dy * height + ctr_y;
        let pred_w = dw.exp() * width;
        let pred_h = dh.exp() * height;
        let half_w = 0.5 * pred_w;
        let half_h = 0.5 * pred_h;
        [pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h]
    }

    /// `encode_single`: the regression target that turns `reference` into `target`.
    pub fn encode(&self, target: &Box, reference: &Box) -> [f32; 4] {
        let [wx, wy, ww, wh] = self.weights;
        let ex_w = reference[2] - reference[0];
        let ex_h = reference[3] - reference[1];
        let ex_cx = reference[0] + 0.5 * ex_w;
        let ex_cy = reference[1] + 0.5 * ex_h;
        let gt_w = target[2] - target[0];
        let gt_h = target[3] - target[1];
        let gt_cx = target[0] + 0.5 * gt_w;
        let gt_cy = target[1] + 0.5 * gt_h;
        [wx * (gt_cx - ex_cx) / ex_w, wy * (gt_cy - ex_cy) / ex_h, ww * (gt_w / ex_w).ln(), wh * (gt_h / ex_h).ln()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_round_trips() {
        let coder = BoxCoder::new([10.0, 10.0, 5.0, 5.0]);
        let reference = [10.0, 20.0, 50.0, 60.0];
        let target = [12.0, 18.0, 70.0, 55.0];
        let deltas = coder.encode(&target, &reference);
        let decoded = coder.decode(&deltas, &reference);
        for k in 0..4 {
            assert!((decoded[k] - target[k]).abs() < 1e-3, "{decoded:?} vs {target:?}");
        }
    }

    #[test]
    fn huge_scale_deltas_are_clamped() {
        let coder = BoxCoder::new([1.0; 4]);
        let b = coder.decode(&[0.0, 0.0, 100.0, 100.0], &[0.0, 0.0, 16.0, 16.0]);
        // exp(log(1000/16)) * 16 = 1000
        assert!(((b[2] - b[0]) - 1000.0).abs() < 0.1);
    }
}
