//! torchvision's `Matcher` and `BalancedPositiveNegativeSampler`, on host memory.

use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

use crate::ops::boxes::{box_iou, Box};

/// `Matcher.BELOW_LOW_THRESHOLD`: a background anchor or proposal.
pub const BELOW_LOW_THRESHOLD: i64 = -1;
/// `Matcher.BETWEEN_THRESHOLDS`: neither foreground nor background; ignored by the losses.
pub const BETWEEN_THRESHOLDS: i64 = -2;

/// Index of the best-matching ground-truth box for each element of `candidates`, or
/// [`BELOW_LOW_THRESHOLD`] / [`BETWEEN_THRESHOLDS`], exactly as torchvision's `Matcher` decides.
///
/// With `allow_low_quality_matches`, every GT box also claims the candidates that overlap it most
/// (ties included), even below `high`, so that no GT box is left without a positive anchor.
pub fn match_boxes(gt: &[Box], candidates: &[Box], high: f32, low: f32, allow_low_quality_matches: bool) -> Vec<i64> {
    if gt.is_empty() {
        return vec![BELOW_LOW_THRESHOLD; candidates.len()];
    }
    let mut best_gt = vec![0i64; candidates.len()];
    let mut best_iou = vec![f32::NEG_INFINITY; candidates.len()];
    let mut best_per_gt = vec![f32::NEG_INFINITY; gt.len()];
    // IoU is recomputed in the low-quality pass instead of storing a GT x candidates matrix,
    // which for R50 at 800 px would be ~200k floats per GT box.
    for (j, c) in candidates.iter().enumerate() {
        for (g, b) in gt.iter().enumerate() {
            let iou = box_iou(b, c);
            // `max(dim=0)` keeps the first maximum.
            if iou > best_iou[j] {
                best_iou[j] = iou;
                best_gt[j] = g as i64;
            }
            if iou > best_per_gt[g] {
                best_per_gt[g] = iou;
            }
        }
    }
    let mut matches: Vec<i64> = best_gt
        .iter()
        .zip(&best_iou)
        .map(|(&g, &iou)| {
            if iou < low {
                BELOW_LOW_THRESHOLD
            } else if iou < high {
                BETWEEN_THRESHOLDS
            } else {
                g
            }
        })
        .collect();
    if allow_low_quality_matches {
        for (j, c) in candidates.iter().enumerate() {
            if gt.iter().zip(&best_per_gt).any(|(b, &best)| box_iou(b, c) == best) {
                matches[j] = best_gt[j];
            }
        }
    }
    matches
}

/// Which sampling call is being made: the RPN's over anchors or the RoI heads' over proposals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplingStage {
    Rpn,
    RoiHeads,
}

/// Chooses the anchors/proposals that enter the losses. `labels` follows torchvision: `>= 1`
/// positive, `0` negative, `< 0` ignored. Returns positive and negative indices, each ascending.
pub trait Sampler {
    fn sample(
        &mut self,
        stage: SamplingStage,
        image: usize,
        labels: &[i64],
        batch_size: usize,
        positive_fraction: f32,
    ) -> (Vec<usize>, Vec<usize>);

    /// `n` points uniform in `[0, 1]^2` (PointRend's training points). The default is a fixed
    /// low-discrepancy sequence, so replaying samplers stay deterministic.
    fn uniform_points(&mut self, n: usize) -> Vec<[f32; 2]> {
        (0..n).map(|i| [halton(i + 1, 2), halton(i + 1, 3)]).collect()
    }
}

fn halton(mut index: usize, base: usize) -> f32 {
    let (mut f, mut r) = (1.0f32, 0.0f32);
    while index > 0 {
        f /= base as f32;
        r += f * (index % base) as f32;
        index /= base;
    }
    r
}

/// torchvision's `BalancedPositiveNegativeSampler`: up to `batch_size * positive_fraction`
/// random positives, the rest random negatives; only the random stream differs from torch's.
pub struct RandomSampler<'a> {
    pub rng: &'a mut ChaCha8Rng,
}

impl Sampler for RandomSampler<'_> {
    fn sample(
        &mut self,
        _stage: SamplingStage,
        _image: usize,
        labels: &[i64],
        batch_size: usize,
        positive_fraction: f32,
    ) -> (Vec<usize>, Vec<usize>) {
        let positive: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] >= 1).collect();
        let negative: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == 0).collect();
        let num_pos = ((batch_size as f32 * positive_fraction) as usize).min(positive.len());
        let num_neg = (batch_size - num_pos).min(negative.len());
        (choose_sorted(&positive, num_pos, self.rng), choose_sorted(&negative, num_neg, self.rng))
    }

    fn uniform_points(&mut self, n: usize) -> Vec<[f32; 2]> {
        use rand::Rng;
        (0..n).map(|_| [self.rng.random::<f32>(), self.rng.random::<f32>()]).collect()
    }
}

fn choose_sorted(pool: &[usize], count: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut chosen: Vec<usize> = pool.choose_multiple(rng, count).copied().collect();
    // torchvision turns the sample into a mask and back with `torch.where`, so order is ascending.
    chosen.sort_unstable();
    chosen
}

/// Replays index lists recorded from torchvision, so loss tests do not depend on either side's
/// random stream. Indexed `[image]` for each stage.
#[derive(Debug, Clone, Default)]
pub struct RecordedSampler {
    pub rpn: Vec<(Vec<usize>, Vec<usize>)>,
    pub roi_heads: Vec<(Vec<usize>, Vec<usize>)>,
}

impl Sampler for RecordedSampler {
    fn sample(
        &mut self,
        stage: SamplingStage,
        image: usize,
        labels: &[i64],
        _batch_size: usize,
        _positive_fraction: f32,
    ) -> (Vec<usize>, Vec<usize>) {
        let recorded = match stage {
            SamplingStage::Rpn => &self.rpn[image],
            SamplingStage::RoiHeads => &self.roi_heads[image],
        };
        for &i in &recorded.0 {
            assert!(labels[i] >= 1, "recorded positive {i} ({stage:?}, image {image}) is labelled {} here", labels[i]);
        }
        for &i in &recorded.1 {
            assert!(labels[i] == 0, "recorded negative {i} ({stage:?}, image {image}) is labelled {} here", labels[i]);
        }
        recorded.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn matcher_thresholds_and_low_quality_matches() {
        let gt = [[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]];
        let candidates = [
            [0.0, 0.0, 10.0, 10.0],   // IoU 1 with gt 0
            [0.0, 0.0, 10.0, 5.0],    // 0.5 with gt 0: between
            [50.0, 50.0, 60.0, 60.0], // 0 : background
            [20.0, 20.0, 30.0, 24.0], // 0.4 with gt 1: between, but gt 1's best -> low-quality match
        ];
        assert_eq!(
            match_boxes(&gt, &candidates, 0.7, 0.3, false),
            vec![0, BETWEEN_THRESHOLDS, BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS]
        );
        assert_eq!(match_boxes(&gt, &candidates, 0.7, 0.3, true), vec![0, BETWEEN_THRESHOLDS, BELOW_LOW_THRESHOLD, 1]);
        assert_eq!(match_boxes(&[], &candidates, 0.7, 0.3, true), vec![BELOW_LOW_THRESHOLD; 4]);
    }

    #[test]
    fn sampler_respects_quota_and_ignores() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let labels: Vec<i64> = (0..100)
            .map(|i| {
                if i < 10 {
                    1
                } else if i < 20 {
                    -1
                } else {
                    0
                }
            })
            .collect();
        let (pos, neg) = RandomSampler { rng: &mut rng }.sample(SamplingStage::Rpn, 0, &labels, 16, 0.5);
        assert_eq!((pos.len(), neg.len()), (8, 8));
        assert!(pos.windows(2).all(|w| w[0] < w[1]) && pos.iter().all(|&i| i < 10));
        assert!(neg.iter().all(|&i| i >= 20));
        // Few positives: negatives fill the batch.
        let (pos, neg) = RandomSampler { rng: &mut rng }.sample(SamplingStage::Rpn, 0, &labels, 64, 0.5);
        assert_eq!((pos.len(), neg.len()), (10, 54));
    }
}
