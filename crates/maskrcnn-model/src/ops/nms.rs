//! Non-maximum suppression as torchvision's CPU kernel computes it.

use super::boxes::{box_area, Box};

/// Indices of kept boxes, by decreasing score. A box is suppressed by a kept one when their IoU
/// is strictly greater than `iou_threshold`.
/// The threshold is a double, as torchvision's kernel takes it, and the f32 IoU is widened to
/// compare: IoUs equal to an f32-rounded threshold then behave as in PyTorch.
pub fn nms(boxes: &[Box], scores: &[f32], iou_threshold: f64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    // Stable, so equal scores keep input order; NaN scores sort last instead of panicking.
    order.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap_or(std::cmp::Ordering::Equal));
    let areas: Vec<f32> = boxes.iter().map(box_area).collect();
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let bi = &boxes[i];
        for &j in &order[pos + 1..] {
            if suppressed[j] {
                continue;
            }
            let bj = &boxes[j];
            let w = (bi[2].min(bj[2]) - bi[0].max(bj[0])).max(0.0);
            let h = (bi[3].min(bj[3]) - bi[1].max(bj[1])).max(0.0);
            let inter = w * h;
            let iou = inter / (areas[i] + areas[j] - inter);
            if iou as f64 > iou_threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// NMS within each group (class or pyramid level) independently. Mirrors torchvision's
/// `batched_nms`, including its switch between the coordinate-offset trick (small inputs) and
/// per-group NMS (large inputs), since the offset trick rounds coordinates differently.
pub fn batched_nms(boxes: &[Box], scores: &[f32], groups: &[usize], iou_threshold: f64) -> Vec<usize> {
    if boxes.is_empty() {
        return Vec::new();
    }
    let mut keep = if boxes.len() * 4 > 4000 {
        let n_groups = groups.iter().copied().max().unwrap_or(0) + 1;
        let mut keep = Vec::new();
        for g in 0..n_groups {
            let members: Vec<usize> = (0..boxes.len()).filter(|&i| groups[i] == g).collect();
            if members.is_empty() {
                continue;
            }
            let gb: Vec<Box> = members.iter().map(|&i| boxes[i]).collect();
            let gs: Vec<f32> = members.iter().map(|&i| scores[i]).collect();
            keep.extend(nms(&gb, &gs, iou_threshold).into_iter().map(|k| members[k]));
        }
        keep
    } else {
        let max_coordinate = boxes.iter().flat_map(|b| b.iter().copied()).fold(f32::NEG_INFINITY, f32::max);
        let shifted: Vec<Box> = boxes
            .iter()
            .zip(groups)
            .map(|(b, &g)| {
                let offset = g as f32 * (max_coordinate + 1.0);
                [b[0] + offset, b[1] + offset, b[2] + offset, b[3] + offset]
            })
            .collect();
        nms(&shifted, scores, iou_threshold)
    };
    keep.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap_or(std::cmp::Ordering::Equal));
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppresses_only_above_threshold() {
        let boxes = [[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [20.0, 20.0, 30.0, 30.0], [5.0, 0.0, 15.0, 10.0]];
        let scores = [0.9, 0.8, 0.7, 0.95];
        // IoU(0,1) = 90/110 = 0.818; IoU(3,0) = 50/150 = 0.333; IoU(3,1) = 60/140 = 0.43
        assert_eq!(nms(&boxes, &scores, 0.5), vec![3, 0, 2]);
        assert_eq!(nms(&boxes, &scores, 0.9), vec![3, 0, 1, 2]);
        // Exactly at the threshold is kept (strict comparison) ...
        let b2 = [[0.0, 0.0, 2.0, 1.0], [1.0, 0.0, 3.0, 1.0]];
        assert_eq!(nms(&b2, &[0.5, 0.4], (1.0f32 / 3.0) as f64), vec![0, 1]);
        // ... but the f32 IoU 1/3 rounds up, so it exceeds the double 1/3, as in torchvision.
        assert_eq!(nms(&b2, &[0.5, 0.4], 1.0 / 3.0), vec![0]);
    }

    #[test]
    fn groups_do_not_suppress_each_other() {
        let boxes = [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]];
        let scores = [0.5, 0.9, 0.7];
        assert_eq!(batched_nms(&boxes, &scores, &[0, 1, 0], 0.5), vec![1, 2]);
        // Large inputs take the per-group path and must agree.
        let many: Vec<Box> = (0..1200)
            .map(|i| {
                let x = (i % 40) as f32 * 3.0;
                [x, 0.0, x + 10.0, 10.0]
            })
            .collect();
        let s: Vec<f32> = (0..1200).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
        let g: Vec<usize> = (0..1200).map(|i| i % 3).collect();
        let big = batched_nms(&many, &s, &g, 0.5);
        let mut expected = Vec::new();
        for grp in 0..3 {
            let idx: Vec<usize> = (0..1200).filter(|i| i % 3 == grp).collect();
            let b: Vec<Box> = idx.iter().map(|&i| many[i]).collect();
            let sc: Vec<f32> = idx.iter().map(|&i| s[i]).collect();
            expected.extend(nms(&b, &sc, 0.5).into_iter().map(|k| idx[k]));
        }
        expected.sort_by(|&a, &b| s[b].partial_cmp(&s[a]).unwrap());
        assert_eq!(big, expected);
    }
}
