//! Optimisers and learning-rate schedules on host parameter copies keyed by torchvision name.
//!
//! Updates run on the host: the model's parameters are read after backward, updated with
//! PyTorch's exact formulas, and written back. That keeps the optimiser state a plain map of
//! named f32 buffers, which a checkpoint stores and restores bit for bit.

use std::collections::BTreeMap;
use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// `torch.optim.SGD(momentum=0.9, weight_decay=1e-4)`: torchvision's detection recipe.
    Sgd,
    /// `AdamW(betas=(0.9, 0.99), weight_decay=0.01, eps=1e-5)`: fastai's / arcgis.learn's defaults.
    Adamw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// fastai's `fit_one_cycle` (arcgis.learn's `fit`): cosine warm-up from lr/25 over the first
    /// 30 % of steps, cosine decay to lr/25e4.
    Onecycle,
    /// torchvision's reference: linear warm-up from 0.001x over up to 1000 steps, then x0.1 at
    /// 16/26 and 22/26 of the run.
    Multistep,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub momentum: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl OptimizerConfig {
    pub fn defaults(kind: OptimizerKind) -> Self {
        match kind {
            OptimizerKind::Sgd => Self { kind, momentum: 0.9, weight_decay: 1e-4, beta1: 0.0, beta2: 0.0, eps: 0.0 },
            OptimizerKind::Adamw => {
                Self { kind, momentum: 0.0, weight_decay: 0.01, beta1: 0.9, beta2: 0.99, eps: 1e-5 }
            }
        }
    }
}

/// Per-parameter buffers and the step count: everything an optimiser needs to continue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptimizerState {
    /// Completed optimiser steps (AdamW's bias correction uses it).
    pub steps: u64,
    /// SGD momentum buffers, or AdamW's first moments.
    pub first: BTreeMap<String, Vec<f32>>,
    /// AdamW's second moments (empty for SGD).
    pub second: BTreeMap<String, Vec<f32>>,
}

impl OptimizerState {
    /// One update of `params` with `grads` (same names), as `torch.optim.SGD` / `AdamW` compute it
    /// in f32.
    pub fn step(
        &mut self,
        config: &OptimizerConfig,
        lr: f64,
        params: &mut BTreeMap<String, Vec<f32>>,
        grads: &BTreeMap<String, Vec<f32>>,
    ) {
        self.steps += 1;
        let lr32 = lr as f32;
        let wd = config.weight_decay as f32;
        match config.kind {
            OptimizerKind::Sgd => {
                let momentum = config.momentum as f32;
                for (name, p) in params.iter_mut() {
                    let Some(g) = grads.get(name) else { continue };
                    match self.first.get_mut(name) {
                        Some(buf) => {
                            for ((b, &gi), pi) in buf.iter_mut().zip(g).zip(p.iter_mut()) {
                                let d = gi + wd * *pi;
                                *b = momentum * *b + d;
                                *pi -= lr32 * *b;
                            }
                        }
                        None => {
                            // torch initialises the buffer with the first (decayed) gradient.
                            let mut buf = Vec::with_capacity(p.len());
                            for (&gi, pi) in g.iter().zip(p.iter_mut()) {
                                let d = gi + wd * *pi;
                                buf.push(d);
                                *pi -= lr32 * d;
                            }
                            self.first.insert(name.clone(), buf);
                        }
                    }
                }
            }
            OptimizerKind::Adamw => {
                let (b1, b2) = (config.beta1 as f32, config.beta2 as f32);
                let t = self.steps as i32;
                let bias1 = 1.0 - (config.beta1).powi(t);
                let bias2_sqrt = (1.0 - (config.beta2).powi(t)).sqrt();
                let step_size = (lr / bias1) as f32;
                let (bias2_sqrt, eps) = (bias2_sqrt as f32, config.eps as f32);
                for (name, p) in params.iter_mut() {
                    let Some(g) = grads.get(name) else { continue };
                    let m = self.first.entry(name.clone()).or_insert_with(|| vec![0.0; p.len()]);
                    let v = self.second.entry(name.clone()).or_insert_with(|| vec![0.0; p.len()]);
                    for i in 0..p.len() {
                        p[i] *= 1.0 - lr32 * wd;
                        m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                        v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                        let denom = v[i].sqrt() / bias2_sqrt + eps;
                        p[i] -= step_size * m[i] / denom;
                    }
                }
            }
        }
    }
}

/// Global L2 norm of all gradients, and the factor `torch.nn.utils.clip_grad_norm_` scales them by.
pub fn clip_gradients(grads: &mut BTreeMap<String, Vec<f32>>, max_norm: f32) -> f32 {
    let norm = grads.values().flat_map(|g| g.iter()).map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt() as f32;
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for g in grads.values_mut() {
            g.iter_mut().for_each(|v| *v *= coef);
        }
    }
    norm
}

/// A learning rate for every step of a run of `total_steps`; a pure function of the step, so
/// resuming needs no scheduler state beyond the step count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub base_lr: f64,
    pub total_steps: usize,
    /// Warm-up length for the multistep schedule (torchvision: min(1000, steps per epoch - 1)).
    pub warmup_steps: usize,
}

impl Schedule {
    pub const ONECYCLE_DIV: f64 = 25.0;
    pub const ONECYCLE_FINAL_DIV: f64 = 25e4;
    pub const ONECYCLE_PCT_START: f64 = 0.3;
    pub const WARMUP_FACTOR: f64 = 1e-3;
    pub const MILESTONES: [f64; 2] = [16.0 / 26.0, 22.0 / 26.0];
    pub const GAMMA: f64 = 0.1;

    pub fn lr(&self, step: usize) -> f64 {
        let total = self.total_steps.max(1);
        match self.kind {
            ScheduleKind::Onecycle => {
                let warm = ((total as f64) * Self::ONECYCLE_PCT_START).round().max(1.0);
                let peak = self.base_lr;
                let start = peak / Self::ONECYCLE_DIV;
                let end = peak / Self::ONECYCLE_FINAL_DIV;
                let s = step as f64;
                if s < warm {
                    cosine(start, peak, s / warm)
                } else {
                    let rest = (total as f64 - warm).max(1.0);
                    cosine(peak, end, ((s - warm) / rest).min(1.0))
                }
            }
            ScheduleKind::Multistep => {
                let mut lr = self.base_lr;
                for m in Self::MILESTONES {
                    if step >= (m * total as f64).round() as usize {
                        lr *= Self::GAMMA;
                    }
                }
                if step < self.warmup_steps {
                    let alpha = step as f64 / self.warmup_steps as f64;
                    lr *= Self::WARMUP_FACTOR * (1.0 - alpha) + alpha;
                }
                lr
            }
        }
    }
}

fn cosine(start: f64, end: f64, pct: f64) -> f64 {
    end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_matches_torch_formulas() {
        // torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01), p = [1, -2], grads [0.5, 0.5] twice:
        // step 1: d = g + 0.01 p = [0.51, 0.48]; p = [0.949, -2.048]
        // step 2: d = [0.50949, 0.47952]; buf = 0.9*[0.51,0.48] + d = [0.96849, 0.91152]; p = [0.852151, -2.139152]
        let cfg = OptimizerConfig { weight_decay: 0.01, ..OptimizerConfig::defaults(OptimizerKind::Sgd) };
        let mut st = OptimizerState::default();
        let mut params = BTreeMap::from([("w".to_string(), vec![1.0f32, -2.0])]);
        let grads = BTreeMap::from([("w".to_string(), vec![0.5f32, 0.5])]);
        st.step(&cfg, 0.1, &mut params, &grads);
        st.step(&cfg, 0.1, &mut params, &grads);
        assert!(
            (params["w"][0] - 0.852151).abs() < 1e-6 && (params["w"][1] + 2.139152).abs() < 1e-6,
            "{:?}",
            params["w"]
        );
    }

    #[test]
    fn adamw_first_step_moves_by_lr() {
        // Bias-corrected Adam's first step is lr * g / (|g| + eps') for every element.
        let cfg = OptimizerConfig { weight_decay: 0.0, ..OptimizerConfig::defaults(OptimizerKind::Adamw) };
        let mut st = OptimizerState::default();
        let mut params = BTreeMap::from([("w".to_string(), vec![1.0f32, 1.0])]);
        let grads = BTreeMap::from([("w".to_string(), vec![3.0f32, -0.2])]);
        st.step(&cfg, 0.01, &mut params, &grads);
        assert!((params["w"][0] - 0.99).abs() < 1e-5 && (params["w"][1] - 1.01).abs() < 1e-4, "{:?}", params["w"]);
    }

    #[test]
    fn schedules_have_the_documented_shape() {
        let one = Schedule { kind: ScheduleKind::Onecycle, base_lr: 1e-3, total_steps: 100, warmup_steps: 0 };
        assert!((one.lr(0) - 1e-3 / 25.0).abs() < 1e-12);
        assert!((one.lr(30) - 1e-3).abs() < 1e-12);
        assert!(one.lr(99) < 1e-6 && one.lr(99) > 1e-3 / 25e4);
        let ms = Schedule { kind: ScheduleKind::Multistep, base_lr: 0.02, total_steps: 260, warmup_steps: 10 };
        assert!((ms.lr(0) - 0.02 * 1e-3).abs() < 1e-12);
        assert!((ms.lr(10) - 0.02).abs() < 1e-12);
        assert!(
            (ms.lr(159) - 0.02).abs() < 1e-12
                && (ms.lr(160) - 0.002).abs() < 1e-12
                && (ms.lr(220) - 0.0002).abs() < 1e-12
        );
    }

    #[test]
    fn clipping_scales_to_max_norm() {
        let mut g = BTreeMap::from([("a".to_string(), vec![3.0f32]), ("b".to_string(), vec![4.0f32])]);
        assert_eq!(clip_gradients(&mut g, 1.0), 5.0);
        assert!((g["a"][0] - 0.6).abs() < 1e-5 && (g["b"][0] - 0.8).abs() < 1e-5);
    }
}
