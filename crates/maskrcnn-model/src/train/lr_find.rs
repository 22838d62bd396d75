//! The learning-rate finder (fastai's `lr_find`, as arcgis.learn uses it): train briefly while the
//! learning rate grows exponentially, and suggest a rate from where the loss falls fastest.

use anyhow::Result;
use maskrcnn_data::Dataset;

use super::device_optim::{Optimizer, Update};
use super::optim::{OptimizerConfig, OptimizerState};
use super::sampling::RandomSampler;
use super::trainer::{epoch_order, guess_pixel_scale, load_example, step_rng};
use crate::model::MaskRcnn;

#[derive(Debug, Clone)]
pub struct LrFindOptions {
    pub start_lr: f64,
    pub end_lr: f64,
    pub iterations: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    pub seed: u64,
    pub pixel_scale: Option<f32>,
    pub clip_grad_norm: f32,
}

impl LrFindOptions {
    /// arcgis.learn's sweep: 150 iterations from 1e-6 to 1.
    pub fn new(optimizer: OptimizerConfig) -> Self {
        Self {
            start_lr: 1e-6,
            end_lr: 1.0,
            iterations: 150,
            batch_size: 2,
            optimizer,
            seed: 0,
            pixel_scale: None,
            clip_grad_norm: 10.0,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LrFindResult {
    pub lrs: Vec<f64>,
    /// fastai's exponentially smoothed (β 0.98, debiased) training loss at each rate.
    pub losses: Vec<f64>,
    pub suggested_lr: Option<f64>,
}

/// Sweeps the learning rate on `model` (which it trains: pass a throwaway copy) and suggests one.
/// Stops early, as fastai does, once the smoothed loss exceeds four times its minimum.
pub fn lr_find(
    model: &mut MaskRcnn,
    dataset: &dyn Dataset,
    options: &LrFindOptions,
    mut on_step: impl FnMut(usize, f64, f64),
) -> Result<LrFindResult> {
    // The commands change sizes (--min-size, --max-size) after the model is built.
    model.config.validate().map_err(|e| e.context("invalid model configuration"))?;
    let all: Vec<usize> = (0..dataset.len()).collect();
    anyhow::ensure!(!all.is_empty(), "the dataset is empty");
    let pixel_scale = match options.pixel_scale {
        Some(s) => s,
        None => guess_pixel_scale(dataset, &all[..all.len().min(8)])?,
    };
    let bands = model.config.backbone.in_channels;
    let device = model.device.clone();
    let mut optimizer = Optimizer::new(OptimizerState::default(), &device);
    let (mut lrs, mut losses) = (Vec::new(), Vec::new());
    let (mut average, mut best) = (0.0f64, f64::INFINITY);
    let n = options.iterations.max(2);
    let mut order = Vec::new();
    let mut epoch = 0;
    for step in 0..n {
        let lr = options.start_lr * (options.end_lr / options.start_lr).powf(step as f64 / (n - 1) as f64);
        if order.len() < options.batch_size {
            order.extend(epoch_order(&all, options.seed, epoch));
            epoch += 1;
        }
        let batch: Vec<usize> = order.drain(..options.batch_size.min(order.len())).collect();
        let mut images = Vec::new();
        let mut targets = Vec::new();
        for &i in &batch {
            let ex = load_example(dataset, i, epoch, options.seed, None, pixel_scale, bands)?;
            images.push(ex.image);
            targets.push(ex.target);
        }
        let mut rng = step_rng(options.seed, step);
        let terms = model.forward_train(&images, &targets, &mut RandomSampler { rng: &mut rng })?;
        let loss: f64 = terms.values().iter().map(|&v| v as f64).sum();
        if !loss.is_finite() {
            break;
        }
        let grads = terms.total().backward();
        if let Update::NonFinite { .. } =
            optimizer.update(&options.optimizer, lr, &mut model.net, grads, options.clip_grad_norm, &device)
        {
            break;
        }
        average = 0.98 * average + 0.02 * loss;
        let smoothed = average / (1.0 - 0.98f64.powi(step as i32 + 1));
        lrs.push(lr);
        losses.push(smoothed);
        on_step(step, lr, smoothed);
        best = best.min(smoothed);
        if smoothed > 4.0 * best {
            break;
        }
    }
    let suggested_lr = suggest_lr(&lrs, &losses);
    Ok(LrFindResult { lrs, losses, suggested_lr })
}

/// arcgis.learn's rule: drop the first and last 5 points, find the longest run of strictly
/// decreasing losses (length `L`, ending at `e`), and take the rate at `e - L + L/3 + L/6`, a
/// third of the way down the steepest sustained descent.
pub fn suggest_lr(lrs: &[f64], losses: &[f64]) -> Option<f64> {
    const TRIM: usize = 5;
    if losses.len() <= 2 * TRIM + 1 {
        return None;
    }
    let trimmed = &losses[TRIM..losses.len() - TRIM];
    let (mut best_len, mut best_end) = (0usize, 0usize);
    let mut run = 0usize;
    for i in 1..trimmed.len() {
        run = if trimmed[i] < trimmed[i - 1] { run + 1 } else { 0 };
        if run > best_len {
            best_len = run;
            best_end = i;
        }
    }
    if best_len == 0 {
        return None;
    }
    let start = best_end - best_len;
    Some(lrs[TRIM + start + best_len / 3 + best_len / 6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestion_sits_a_third_down_the_longest_descent() {
        let lrs: Vec<f64> = (0..40).map(|i| 1e-6 * 10f64.powf(i as f64 / 6.0)).collect();
        // Flat, then 18 steps of steady descent (indices 10..=28), then divergence.
        let mut losses = vec![3.0; 40];
        for (i, loss) in losses.iter_mut().enumerate().take(29).skip(10) {
            *loss = 3.0 - 0.1 * (i - 9) as f64;
        }
        for (i, loss) in losses.iter_mut().enumerate().skip(29) {
            *loss = 1.0 + (i - 28) as f64;
        }
        // Trimmed by 5: the run ends at trimmed index 23 with length 19 (from index 4): 4 + 6 + 3 = 13.
        assert_eq!(suggest_lr(&lrs, &losses), Some(lrs[5 + 13]));
        assert_eq!(suggest_lr(&lrs[..8], &losses[..8]), None);
        assert_eq!(suggest_lr(&lrs, &[2.0; 40]), None);
    }
}
