//! The training loop: data order, sampling, optimiser steps, logging, validation, checkpoints.
//!
//! Determinism: every random choice is drawn from a generator derived from the run seed and a
//! counter — the epoch for the data order, (epoch, sample) for augmentation, the step for the
//! anchor/proposal sampler — so a run resumed from a checkpoint replays exactly the draws the
//! uninterrupted run would have made, and the same seed gives the same losses.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use maskrcnn_data::transforms::{augment, sample_rng, AugmentConfig};
use maskrcnn_data::Dataset;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::checkpoint::{
    load_latest_checkpoint, save_checkpoint, save_model_folder, LogState, RunState, BEST_DIR, FINAL_DIR,
};
use super::device_optim::{Optimizer, Update};
use super::forward::{LossTerms, TrainTarget};
use super::optim::{OptimizerConfig, OptimizerKind, OptimizerState, Schedule, ScheduleKind};
use super::progress::{SilentProgress, StderrProgress, TrainProgress};
use super::sampling::RandomSampler;
use super::validation::{ValidationAp, ValidationScorer};
use crate::model::MaskRcnn;
use crate::transform::ImageChw;

/// One JSON object a line (`kind`: step, epoch, skipped, unreadable, early_stop). A resumed run
/// leaves it identical to an uninterrupted run's except `seconds_per_step`, a wall-clock time.
pub const METRICS_FILE: &str = "metrics.jsonl";

type ValidationLosses = [f64; crate::train::forward::NUM_LOSS_TERMS];

/// How to train. `Default` is arcgis.learn-like: AdamW, one-cycle, lr 1e-4... see each field.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Run length in epochs (passes over the training split); ignored when `steps` is set.
    pub epochs: usize,
    /// Run length in optimiser steps, overriding `epochs`.
    pub steps: Option<usize>,
    pub batch_size: usize,
    /// Peak (one-cycle) or base (multistep) learning rate.
    pub lr: f64,
    pub optimizer: OptimizerConfig,
    pub schedule: ScheduleKind,
    /// Clip the global gradient norm to this value (`clip_grad_norm_`).
    pub clip_grad_norm: Option<f32>,
    /// Fraction of the dataset held out for validation (deterministic by seed).
    pub val_split: f32,
    pub seed: u64,
    /// Write a `metrics.jsonl` line every this many steps.
    pub log_every: usize,
    /// Also checkpoint every this many steps (every epoch end always checkpoints).
    pub checkpoint_every: Option<usize>,
    pub augment: Option<AugmentConfig>,
    /// Divides raw pixel values to reach the model's 0..1 input range; `None` guesses 1, 255 or
    /// 65535 from the largest value in the first training images.
    pub pixel_scale: Option<f32>,
    pub progress: bool,
    /// Stop with an error after this many non-finite steps in a row.
    pub max_consecutive_skips: usize,
    /// Stop (without finishing the run) after this many steps in this call, as if killed;
    /// for tests and time-boxed sessions.
    pub stop_after: Option<usize>,
    /// Test hook: steps whose loss is replaced by NaN.
    pub poison_steps: Vec<usize>,
    /// Stop once the monitored value has not improved for this many epochs.
    pub early_stopping_patience: Option<usize>,
    /// Score the validation split (mask and box AP) at every epoch end, besides its loss.
    pub val_ap: bool,
    /// What picks the best model and drives early stopping.
    pub monitor: Monitor,
}

/// The number that selects `best/` and drives early stopping (arcgis.learn's `monitor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Monitor {
    /// Validation loss (training loss when there is no validation split), lower is better.
    #[default]
    ValidLoss,
    /// Validation mask AP (COCO AP@[.5:.95]), higher is better; needs a validation split.
    MaskAp,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 10,
            steps: None,
            batch_size: 2,
            lr: 1e-4,
            optimizer: OptimizerConfig::defaults(OptimizerKind::Adamw),
            schedule: ScheduleKind::Onecycle,
            clip_grad_norm: Some(10.0),
            val_split: 0.1,
            seed: 0,
            log_every: 10,
            checkpoint_every: None,
            augment: None,
            pixel_scale: None,
            progress: true,
            max_consecutive_skips: 5,
            stop_after: None,
            poison_steps: Vec::new(),
            early_stopping_patience: None,
            val_ap: true,
            monitor: Monitor::ValidLoss,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TrainReport {
    /// Steps done in total (including earlier sessions of a resumed run).
    pub steps: usize,
    pub finished: bool,
    pub skipped_steps: usize,
    /// Last logged training loss terms, in [`LossTerms::NAMES`] order.
    pub last_losses: Option<[f32; crate::train::forward::NUM_LOSS_TERMS]>,
    pub best_val_loss: Option<f64>,
    /// The final model folder (`None` when stopped early).
    pub final_model: Option<PathBuf>,
    /// Dataset items skipped because they could not be read (index, reason), over the whole run
    /// (a resumed run remembers those of its earlier sessions).
    pub unreadable: Vec<(usize, String)>,
}

/// One example ready for the model.
pub struct Example {
    pub image: ImageChw,
    pub target: TrainTarget,
}

/// Reads sample `index`, augments it with its (seed, epoch, index) generator, scales pixels, and
/// keeps the instances torchvision's reference trains on (no crowd regions, no empty boxes).
pub fn load_example(
    dataset: &dyn Dataset,
    index: usize,
    epoch: usize,
    seed: u64,
    augment_config: Option<&AugmentConfig>,
    pixel_scale: f32,
    bands: usize,
) -> Result<Example> {
    let mut sample = dataset.get(index).with_context(|| format!("reading training sample {index}"))?;
    if let Some(cfg) = augment_config {
        let mut rng = sample_rng(seed, epoch as u64, index as u64);
        augment(&mut sample, cfg, &mut rng);
    }
    if sample.image.channels == 1 && bands == 3 {
        sample.image = sample.image.gray_to_rgb();
    }
    ensure!(
        sample.image.channels == bands,
        "sample {index} ({}) has {} bands but the model takes {bands}",
        sample.file_name,
        sample.image.channels
    );
    let t = &sample.target;
    let mut target = TrainTarget::default();
    for k in 0..t.len() {
        let b = t.boxes[k];
        if t.iscrowd.get(k).copied().unwrap_or(false) || !(b[2] > b[0] && b[3] > b[1]) {
            continue;
        }
        ensure!(t.labels[k] >= 1, "sample {index} ({}): label {} (labels start at 1)", sample.file_name, t.labels[k]);
        target.boxes.push(b);
        target.labels.push(t.labels[k] as usize);
        target.masks.push(t.masks[k].clone());
    }
    let img = sample.image;
    let inv = 1.0 / pixel_scale;
    let image = ImageChw {
        channels: img.channels,
        height: img.height,
        width: img.width,
        data: img.data.iter().map(|v| v * inv).collect(),
    };
    Ok(Example { image, target })
}

/// The divisor a new run trains with: maskrcnn-data's rule over the largest pixel value of a few
/// images (1, 255, 65535 or the maximum itself). It is stored with the model.
pub fn guess_pixel_scale(dataset: &dyn Dataset, indices: &[usize]) -> Result<f32> {
    Ok(maskrcnn_data::scaling::PixelScale::from_dataset(dataset, indices)?.divisor())
}

/// Deterministic validation split (maskrcnn-data's seeded split, so other tools reproduce it).
/// A single image is never held out: it has to train.
pub fn split_indices(n: usize, fraction: f32, seed: u64) -> (Vec<usize>, Vec<usize>) {
    if n < 2 {
        return ((0..n).collect(), Vec::new());
    }
    maskrcnn_data::split_indices(n, f64::from(fraction), seed)
}

/// Order of the training indices in `epoch`.
pub fn epoch_order(train: &[usize], seed: u64, epoch: usize) -> Vec<usize> {
    let mut order = train.to_vec();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream((1u64 << 40) | epoch as u64);
    order.shuffle(&mut rng);
    order
}

/// The anchor/proposal sampler's generator for one step.
pub fn step_rng(seed: u64, step: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5851_F42D_4C95_7F2D);
    rng.set_stream(step as u64);
    rng
}

enum StepOutcome {
    Applied { losses: [f32; crate::train::forward::NUM_LOSS_TERMS], grad_norm: f32 },
    Skipped { losses: [f32; crate::train::forward::NUM_LOSS_TERMS], reason: String },
}

struct Trainer<'a> {
    model: &'a mut MaskRcnn,
    dataset: &'a dyn Dataset,
    options: &'a TrainOptions,
    run_dir: PathBuf,
    state: RunState,
    optimizer: Optimizer,
    /// Dataset items that could not be read, with why; they are skipped, not fatal.
    unreadable: std::collections::BTreeMap<usize, String>,
    /// Those not yet reported.
    newly_unreadable: Vec<usize>,
}

impl Trainer<'_> {
    /// The examples of `indices`; an item that cannot be read (a missing or corrupt image) is
    /// left out and remembered, so one bad file does not end a run of hours (or its resume).
    fn examples(&mut self, indices: &[usize], epoch: usize, augmented: bool) -> (Vec<ImageChw>, Vec<TrainTarget>) {
        let bands = self.model.config.backbone.in_channels;
        let aug = if augmented { self.options.augment.as_ref() } else { None };
        let mut images = Vec::with_capacity(indices.len());
        let mut targets = Vec::with_capacity(indices.len());
        for &i in indices {
            match load_example(self.dataset, i, epoch, self.state.seed, aug, self.state.pixel_scale, bands) {
                Ok(ex) => {
                    images.push(ex.image);
                    targets.push(ex.target);
                }
                Err(e) => {
                    if self.unreadable.insert(i, format!("{e:#}")).is_none() {
                        self.newly_unreadable.push(i);
                    }
                }
            }
        }
        (images, targets)
    }

    /// Warning lines and `metrics.jsonl` lines for items found unreadable since the last call.
    fn report_unreadable(&mut self, bar: &dyn TrainProgress) -> Result<()> {
        for i in std::mem::take(&mut self.newly_unreadable) {
            let reason = &self.unreadable[&i];
            bar.println(format!("warning: training item {i}: {reason}; skipped"));
            append_metrics(
                &self.metrics_path(),
                &json!({"kind": "unreadable", "step": self.state.step, "index": i, "reason": reason}),
            )?;
        }
        Ok(())
    }

    fn step(&mut self, images: &[ImageChw], targets: &[TrainTarget]) -> Result<StepOutcome> {
        let step = self.state.step;
        let mut rng = step_rng(self.state.seed, step);
        let losses: LossTerms = self.model.forward_train(images, targets, &mut RandomSampler { rng: &mut rng })?;
        let values = losses.values();
        let total: f32 = values.iter().sum();
        if !total.is_finite() || self.options.poison_steps.contains(&step) {
            return Ok(StepOutcome::Skipped {
                losses: values,
                reason: format!("loss is {}", if total.is_finite() { f32::NAN } else { total }),
            });
        }
        let grads = losses.total().backward();
        let lr = self.state.schedule.lr(step);
        let max_norm = self.state.clip_grad_norm.unwrap_or(f32::INFINITY);
        let device = self.model.device.clone();
        let grad_norm =
            match self.optimizer.update(&self.state.optimizer, lr, &mut self.model.net, grads, max_norm, &device) {
                Update::Applied { grad_norm } => grad_norm,
                Update::NonFinite { grad_norm } => {
                    return Ok(StepOutcome::Skipped { losses: values, reason: format!("gradient norm is {grad_norm}") })
                }
            };
        if !losses.batch_norm_stats.is_empty() {
            self.model.net.backbone.body.update_running_stats(&losses.batch_norm_stats)?;
        }
        Ok(StepOutcome::Applied { losses: values, grad_norm })
    }

    /// Mean loss terms over the validation split, with a fixed sampler stream so epochs compare,
    /// and (with `val_ap`) its mask and box AP.
    fn validate(&mut self) -> Result<Option<(ValidationLosses, Option<ValidationAp>)>> {
        if self.state.val_indices.is_empty() {
            return Ok(None);
        }
        let mut scorer = if self.options.val_ap { Some(ValidationScorer::new(self.model)?) } else { None };
        let mut sums = [0.0f64; crate::train::forward::NUM_LOSS_TERMS];
        let mut batches = 0usize;
        let val = self.state.val_indices.clone();
        for (b, chunk) in val.chunks(self.state.batch_size).enumerate() {
            let (images, targets) = self.examples(chunk, 0, false);
            if images.is_empty() {
                continue;
            }
            let mut rng = ChaCha8Rng::seed_from_u64(self.state.seed ^ 0x0056_414C);
            rng.set_stream(b as u64);
            let losses = self.model.forward_train(&images, &targets, &mut RandomSampler { rng: &mut rng })?;
            for (s, v) in sums.iter_mut().zip(losses.values()) {
                *s += v as f64;
            }
            batches += 1;
            if let Some(scorer) = scorer.as_mut() {
                scorer.add(&images, &targets);
            }
        }
        if batches == 0 {
            return Ok(None);
        }
        let ap = match scorer {
            Some(scorer) => scorer.finish()?,
            None => None,
        };
        Ok(Some((sums.map(|s| s / batches as f64), ap)))
    }

    fn save_best(&mut self, val_loss: f64) -> Result<()> {
        let best = self.run_dir.join(BEST_DIR);
        let tmp = self.run_dir.join(".best.tmp");
        let old = self.run_dir.join(".best.old");
        for p in [&tmp, &old] {
            if p.exists() {
                std::fs::remove_dir_all(p)?;
            }
        }
        save_model_folder(
            &tmp,
            self.model,
            &json!({"step": self.state.step, "epoch": self.state.epoch(), "val_loss": val_loss}),
        )?;
        if best.exists() {
            std::fs::rename(&best, &old)?;
        }
        std::fs::rename(&tmp, &best).with_context(|| format!("moving {} into place", best.display()))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }
}

fn append_metrics(path: &Path, line: &serde_json::Value) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(f, "{line}").with_context(|| format!("writing {}", path.display()))
}

/// Cuts `metrics.jsonl` back to what it held when the checkpoint `state` was taken, so the log
/// reads as if the run had never stopped: lines written after the checkpoint, and a line half
/// written when the process was killed, go. Checkpoints that did not record the length (older
/// ones, or a file shorter than recorded) fall back to keeping the whole lines of steps up to the
/// checkpoint's, less the early-stop line, which a resumed run writes again.
fn truncate_metrics(path: &Path, state: &RunState) -> Result<()> {
    let Ok(bytes) = std::fs::read(path) else { return Ok(()) };
    if let Some(len) = state.metrics_len.and_then(|l| usize::try_from(l).ok()).filter(|&l| l <= bytes.len()) {
        return crate::io_util::write_atomic(path, &bytes[..len]);
    }
    let text = String::from_utf8_lossy(&bytes);
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else { return false };
            let step = v.get("step").and_then(|s| s.as_u64()).map(|s| s as usize);
            let early_stop = v.get("kind").and_then(|k| k.as_str()) == Some("early_stop");
            step.is_some_and(|s| s < state.step || (s == state.step && !early_stop))
        })
        .collect();
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    crate::io_util::write_atomic(path, out.as_bytes())
}

fn loss_fields(
    prefix: &str,
    values: &[f64; crate::train::forward::NUM_LOSS_TERMS],
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert(format!("{prefix}loss"), json!(values.iter().sum::<f64>()));
    for (name, v) in LossTerms::NAMES.iter().zip(values) {
        m.insert(format!("{prefix}{name}"), json!(v));
    }
    m
}

/// Trains `model` (built on an autodiff device, frozen layers already applied) on `dataset`,
/// writing checkpoints, metrics and the final model folder under `run_dir`. With `resume`, the
/// run continues from the newest checkpoint in `run_dir` (its saved settings win over
/// `options` for anything that shapes the run: seed, batch size, schedule, optimiser, split).
pub fn train(
    model: &mut MaskRcnn,
    dataset: &dyn Dataset,
    run_dir: &Path,
    options: &TrainOptions,
    resume: bool,
) -> Result<TrainReport> {
    let progress: &dyn TrainProgress = if options.progress { &StderrProgress } else { &SilentProgress };
    train_with_progress(model, dataset, run_dir, options, resume, progress)
}

/// [`train`] reporting to `bar`.
pub fn train_with_progress(
    model: &mut MaskRcnn,
    dataset: &dyn Dataset,
    run_dir: &Path,
    options: &TrainOptions,
    resume: bool,
    bar: &dyn TrainProgress,
) -> Result<TrainReport> {
    ensure!(model.device.is_autodiff(), "the model must live on an autodiff device to train (Device::autodiff())");
    // The commands change sizes (--min-size, --max-size) after the model is built.
    model.config.validate().context("invalid model configuration")?;
    check_options(dataset, options, resume)?;
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let _lock = super::run_lock::RunLock::acquire(run_dir)?;
    let (state, optimizer) = start_or_resume(model, dataset, run_dir, options, resume)?;
    let model_device = model.device.clone();
    let mut log = StepLog::from_state(&state.log);
    let mut trainer = Trainer {
        model,
        dataset,
        options,
        run_dir: run_dir.to_path_buf(),
        unreadable: state.unreadable.clone(),
        state,
        optimizer: Optimizer::new(optimizer, &model_device),
        newly_unreadable: Vec::new(),
    };
    let total = trainer.state.total_steps;
    bar.start(total as u64, trainer.state.step as u64);
    let mut steps_this_call = 0usize;
    // The checkpoint at an epoch end is written before the early-stopping decision, so a run
    // resumed from one makes that decision again (its metrics line was cut with the rest).
    let resumed_at = trainer.state.step;
    let resumed_at_epoch_end =
        resumed_at > 0 && (resumed_at.is_multiple_of(trainer.state.steps_per_epoch) || resumed_at == total);
    let stopped_early =
        resumed_at_epoch_end && trainer.should_stop_early((resumed_at - 1) / trainer.state.steps_per_epoch, bar)?;
    while trainer.state.step < total && !stopped_early {
        if options.stop_after.is_some_and(|n| steps_this_call >= n) {
            bar.finish(Some("stopped early"));
            return Ok(trainer.report(log.last_losses, None));
        }
        if bar.stop_requested() {
            if steps_this_call > 0 {
                trainer.checkpoint(&log)?;
            }
            bar.finish(Some("interrupted"));
            bail!(
                "interrupted at step {} of {total}; continue from the last checkpoint in {} with --resume",
                trainer.state.step,
                run_dir.display()
            );
        }
        let step = trainer.state.step;
        let spe = trainer.state.steps_per_epoch;
        let epoch = step / spe;
        let position = step % spe;
        let order = epoch_order(&trainer.state.train_indices, trainer.state.seed, epoch);
        let bs = trainer.state.batch_size;
        let batch: Vec<usize> = order[position * bs..((position + 1) * bs).min(order.len())].to_vec();
        let (images, targets) = trainer.examples(&batch, epoch, true);
        trainer.report_unreadable(bar)?;
        let outcome = if images.is_empty() {
            StepOutcome::Skipped {
                losses: [f32::NAN; crate::train::forward::NUM_LOSS_TERMS],
                reason: "no readable image in the batch".into(),
            }
        } else {
            trainer.step(&images, &targets)?
        };
        let lr = trainer.state.schedule.lr(step);
        trainer.state.step += 1;
        steps_this_call += 1;
        trainer.record_step(outcome, &mut log, lr, bar)?;
        bar.set_position(trainer.state.step as u64);

        let epoch_end = trainer.state.step.is_multiple_of(spe) || trainer.state.step == total;
        let mut stop = false;
        if epoch_end {
            trainer.end_epoch(epoch, lr, &mut log, bar)?;
        }
        let periodic = options.checkpoint_every.is_some_and(|n| n > 0 && trainer.state.step.is_multiple_of(n));
        if epoch_end || periodic {
            trainer.checkpoint(&log)?;
        }
        if epoch_end {
            write_loss_curves(run_dir);
            stop = trainer.should_stop_early(epoch, bar)?;
        }
        if stop {
            break;
        }
    }
    bar.finish(None);
    write_loss_curves(run_dir);
    let final_dir = run_dir.join(FINAL_DIR);
    save_model_folder(
        &final_dir,
        trainer.model,
        &json!({"steps": trainer.state.step, "seed": trainer.state.seed, "best_val_loss": trainer.state.best_val_loss, "skipped_steps": trainer.state.skipped_steps}),
    )?;
    Ok(trainer.report(log.last_losses, Some(final_dir)))
}

fn check_options(dataset: &dyn Dataset, options: &TrainOptions, resume: bool) -> Result<()> {
    ensure!(options.batch_size >= 1, "batch size must be at least 1");
    ensure!(options.log_every >= 1, "--log-every must be at least 1");
    ensure!((0.0..1.0).contains(&options.val_split), "--val-split must be in [0, 1), got {}", options.val_split);
    ensure!(!dataset.is_empty(), "the dataset has no images");
    ensure!(
        options.monitor != Monitor::MaskAp || (options.val_ap && options.val_split > 0.0) || resume,
        "--monitor mask-ap needs validation AP: give --val-split above 0 and do not pass --no-val-ap"
    );
    Ok(())
}

/// The run's position and optimiser state: restored from the newest checkpoint in `run_dir` when
/// resuming, else a new run (split, step count, pixel scale, warm-up).
fn start_or_resume(
    model: &mut MaskRcnn,
    dataset: &dyn Dataset,
    run_dir: &Path,
    options: &TrainOptions,
    resume: bool,
) -> Result<(RunState, OptimizerState)> {
    let metrics_path = run_dir.join(METRICS_FILE);
    let resumed = if resume { load_latest_checkpoint(run_dir)? } else { None };
    if resume && resumed.is_none() {
        eprintln!("note: no checkpoint in {} yet; starting a new run", run_dir.display());
    }
    if !resume && run_dir.join(super::checkpoint::CHECKPOINTS_DIR).join(super::checkpoint::LATEST_FILE).exists() {
        bail!(
            "{} already holds a training run; pass --resume to continue it or choose another --output",
            run_dir.display()
        );
    }
    if let Some(ck) = resumed {
        ensure!(
            ck.config == model.config,
            "the checkpoint in {} was made for another model configuration than the one requested",
            ck.dir.display()
        );
        let device = model.device.clone();
        ck.weights
            .load_into(&mut model.net, "", &device)
            .with_context(|| format!("restoring weights from {}", ck.dir.display()))?;
        super::params::freeze_layers(&mut model.net, model.config.backbone.trainable_layers);
        truncate_metrics(&metrics_path, &ck.state)?;
        eprintln!("resuming from {} (step {} of {})", ck.dir.display(), ck.state.step, ck.state.total_steps);
        return Ok((ck.state, ck.optimizer));
    }
    let (train_indices, val_indices) = split_indices(dataset.len(), options.val_split, options.seed);
    ensure!(!train_indices.is_empty(), "no training images left after the validation split");
    let steps_per_epoch = train_indices.len().div_ceil(options.batch_size);
    let total_steps = options.steps.unwrap_or(options.epochs * steps_per_epoch);
    ensure!(total_steps > 0, "nothing to train: 0 steps");
    let pixel_scale = match options.pixel_scale {
        Some(s) => s,
        None => guess_pixel_scale(dataset, &train_indices)?,
    };
    // torchvision warms up for min(1000, iterations in epoch 0 - 1); short runs on few
    // images would get no warm-up at all, so at least 5 % of the run warms up.
    let warmup_steps = 1000.min(steps_per_epoch.saturating_sub(1).max(total_steps / 20));
    let state = RunState {
        step: 0,
        total_steps,
        steps_per_epoch,
        seed: options.seed,
        batch_size: options.batch_size,
        optimizer: options.optimizer,
        schedule: Schedule { kind: options.schedule, base_lr: options.lr, total_steps, warmup_steps },
        clip_grad_norm: options.clip_grad_norm,
        skipped_steps: 0,
        consecutive_skipped: 0,
        best_val_loss: None,
        best_step: None,
        val_indices,
        train_indices,
        pixel_scale,
        metrics_len: None,
        log: LogState::default(),
        unreadable: Default::default(),
    };
    if metrics_path.exists() {
        std::fs::remove_file(&metrics_path)?;
    }
    Ok((state, OptimizerState::default()))
}

/// Running loss averages between log lines and over the epoch.
struct StepLog {
    running: Option<[f64; crate::train::forward::NUM_LOSS_TERMS]>,
    last_losses: Option<[f32; crate::train::forward::NUM_LOSS_TERMS]>,
    window: [f64; crate::train::forward::NUM_LOSS_TERMS],
    window_n: usize,
    epoch_sum: f64,
    epoch_n: usize,
    clock: Instant,
}

impl StepLog {
    /// The averages a checkpoint left in progress (empty for a new run).
    fn from_state(state: &LogState) -> Self {
        let f64s = |bits: &[u64]| -> [f64; crate::train::forward::NUM_LOSS_TERMS] {
            std::array::from_fn(|k| bits.get(k).map_or(0.0, |&b| f64::from_bits(b)))
        };
        Self {
            running: state.running.as_deref().map(f64s),
            last_losses: state
                .last_losses
                .as_deref()
                .map(|bits| std::array::from_fn(|k| bits.get(k).map_or(0.0, |&b| f32::from_bits(b)))),
            window: f64s(&state.window),
            window_n: state.window_n,
            epoch_sum: f64::from_bits(state.epoch_sum),
            epoch_n: state.epoch_n,
            clock: Instant::now(),
        }
    }

    fn to_state(&self) -> LogState {
        LogState {
            window: self.window.iter().map(|v| v.to_bits()).collect(),
            window_n: self.window_n,
            epoch_sum: self.epoch_sum.to_bits(),
            epoch_n: self.epoch_n,
            running: self.running.map(|r| r.iter().map(|v| v.to_bits()).collect()),
            last_losses: self.last_losses.map(|l| l.iter().map(|v| v.to_bits()).collect()),
        }
    }
}

impl Trainer<'_> {
    fn report(
        &self,
        last_losses: Option<[f32; crate::train::forward::NUM_LOSS_TERMS]>,
        final_model: Option<PathBuf>,
    ) -> TrainReport {
        TrainReport {
            steps: self.state.step,
            finished: final_model.is_some(),
            skipped_steps: self.state.skipped_steps,
            last_losses,
            best_val_loss: self.state.best_val_loss,
            final_model,
            unreadable: self.unreadable.iter().map(|(&i, r)| (i, r.clone())).collect(),
        }
    }

    fn metrics_path(&self) -> PathBuf {
        self.run_dir.join(METRICS_FILE)
    }

    /// Saves a checkpoint that also records how far `metrics.jsonl`, the loss averages and the
    /// unreadable-item reports had got, so a resume continues all three exactly.
    fn checkpoint(&mut self, log: &StepLog) -> Result<()> {
        let metrics = self.metrics_path();
        self.state.metrics_len = Some(match std::fs::metadata(&metrics) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e).with_context(|| format!("reading the size of {}", metrics.display())),
        });
        self.state.log = log.to_state();
        self.state.unreadable = self.unreadable.clone();
        save_checkpoint(&self.run_dir, self.model, &self.optimizer.host_state(), &self.state)?;
        Ok(())
    }

    /// Progress message, `metrics.jsonl` step lines every `log_every` steps, skipped-step lines.
    fn record_step(&mut self, outcome: StepOutcome, log: &mut StepLog, lr: f64, bar: &dyn TrainProgress) -> Result<()> {
        let step = self.state.step - 1;
        let epoch = step / self.state.steps_per_epoch;
        let total = self.state.total_steps;
        match outcome {
            StepOutcome::Applied { losses, grad_norm } => {
                self.state.consecutive_skipped = 0;
                log.last_losses = Some(losses);
                let l = losses.map(|v| v as f64);
                log.running = Some(match log.running {
                    None => l,
                    Some(r) => std::array::from_fn(|k| 0.9 * r[k] + 0.1 * l[k]),
                });
                for (sum, value) in log.window.iter_mut().zip(l) {
                    *sum += value;
                }
                log.window_n += 1;
                log.epoch_sum += l.iter().sum::<f64>();
                log.epoch_n += 1;
                let r = log.running.unwrap_or(l);
                bar.set_message(format!(
                    "loss {:.3} (obj {:.3} rpn {:.3} cls {:.3} box {:.3} mask {:.3}) lr {lr:.2e}",
                    r.iter().sum::<f64>(),
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4]
                ));
                if self.state.step.is_multiple_of(self.options.log_every) || self.state.step == total {
                    let mean = log.window.map(|s| s / log.window_n as f64);
                    let mut line = loss_fields("", &mean);
                    line.insert("kind".into(), json!("step"));
                    line.insert("step".into(), json!(self.state.step));
                    line.insert("epoch".into(), json!(epoch));
                    line.insert("lr".into(), json!(lr));
                    line.insert("grad_norm".into(), json!(grad_norm));
                    line.insert(
                        "seconds_per_step".into(),
                        json!(log.clock.elapsed().as_secs_f64() / log.window_n as f64),
                    );
                    append_metrics(&self.metrics_path(), &serde_json::Value::Object(line))?;
                    log.window = [0.0; crate::train::forward::NUM_LOSS_TERMS];
                    log.window_n = 0;
                    log.clock = Instant::now();
                }
            }
            StepOutcome::Skipped { losses, reason } => {
                self.state.skipped_steps += 1;
                self.state.consecutive_skipped += 1;
                bar.println(format!("step {step}: skipped ({reason}; losses {losses:?})"));
                append_metrics(
                    &self.metrics_path(),
                    &json!({"kind": "skipped", "step": self.state.step, "epoch": epoch, "reason": reason}),
                )?;
                if self.state.consecutive_skipped >= self.options.max_consecutive_skips {
                    bar.finish(None);
                    bail!(
                        "stopping: {} steps in a row had a non-finite loss or gradient (last: {reason}). Lower --lr, \
                         keep gradient clipping on, or check the data for broken boxes; the last good checkpoint is in {}",
                        self.state.consecutive_skipped,
                        self.run_dir.join(super::checkpoint::CHECKPOINTS_DIR).display()
                    );
                }
            }
        }
        Ok(())
    }

    /// Validation, the epoch line of `metrics.jsonl`, and `best/` when the monitored value improved.
    fn end_epoch(&mut self, epoch: usize, lr: f64, log: &mut StepLog, bar: &dyn TrainProgress) -> Result<()> {
        let validation = self.validate()?;
        self.report_unreadable(bar)?;
        let (val, val_ap) = match &validation {
            Some((losses, ap)) => (Some(*losses), *ap),
            None => (None, None),
        };
        let train_loss = if log.epoch_n > 0 { Some(log.epoch_sum / log.epoch_n as f64) } else { None };
        let monitored = match self.options.monitor {
            Monitor::ValidLoss => val.map(|v| v.iter().sum::<f64>()).or(train_loss),
            // Stored lower-is-better, like a loss, so checkpoints keep one comparison.
            Monitor::MaskAp => val_ap.map(|a| 1.0 - a.mask_ap.max(0.0)),
        };
        let mut line = serde_json::Map::new();
        line.insert("kind".into(), json!("epoch"));
        line.insert("epoch".into(), json!(epoch));
        line.insert("step".into(), json!(self.state.step));
        line.insert("lr".into(), json!(lr));
        line.insert("train_loss".into(), json!(train_loss));
        line.insert("skipped_steps".into(), json!(self.state.skipped_steps));
        if let Some(v) = &val {
            line.extend(loss_fields("val_", v));
        }
        if let Some(a) = &val_ap {
            for (key, value) in [
                ("val_mask_ap", a.mask_ap),
                ("val_mask_ap50", a.mask_ap50),
                ("val_mask_ap75", a.mask_ap75),
                ("val_box_ap", a.box_ap),
                ("val_box_ap50", a.box_ap50),
            ] {
                line.insert(key.into(), json!(value));
            }
        }
        bar.println(epoch_summary(epoch, train_loss, val.as_ref(), val_ap.as_ref()));
        if let Some(m) = monitored {
            if self.state.best_val_loss.is_none_or(|b| m < b) {
                self.state.best_val_loss = Some(m);
                self.state.best_step = Some(self.state.step);
                self.save_best(m)?;
                line.insert("best".into(), json!(true));
            }
        }
        append_metrics(&self.metrics_path(), &serde_json::Value::Object(line))?;
        log.epoch_sum = 0.0;
        log.epoch_n = 0;
        Ok(())
    }

    /// Early stopping (fastai's, as arcgis.learn uses it): no better monitored value for
    /// `patience` epochs. Derived from the checkpointed best step, so it survives a resume.
    fn should_stop_early(&self, epoch: usize, bar: &dyn TrainProgress) -> Result<bool> {
        let spe = self.state.steps_per_epoch;
        let stale = self.state.best_step.map(|b| (self.state.step - b) / spe.max(1));
        if let (Some(patience), Some(stale)) = (self.options.early_stopping_patience, stale) {
            if stale >= patience {
                bar.println(format!("early stopping: no better monitored loss for {stale} epochs"));
                append_metrics(
                    &self.metrics_path(),
                    &json!({"kind": "early_stop", "step": self.state.step, "epoch": epoch, "epochs_without_improvement": stale}),
                )?;
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn epoch_summary(
    epoch: usize,
    train_loss: Option<f64>,
    val: Option<&ValidationLosses>,
    ap: Option<&ValidationAp>,
) -> String {
    let mut text = format!("epoch {epoch}:");
    if let Some(t) = train_loss {
        text += &format!(" train loss {t:.4}");
    }
    if let Some(v) = val {
        text += &format!(", val loss {:.4}", v.iter().sum::<f64>());
    }
    if let Some(a) = ap {
        text += &format!(", val mask AP {:.3} (AP50 {:.3}), box AP {:.3}", a.mask_ap, a.mask_ap50, a.box_ap);
    }
    text
}

/// `loss_curves.png` beside `metrics.jsonl`. A picture that fails to render must not stop training,
/// so problems are reported and skipped.
fn write_loss_curves(run_dir: &Path) {
    let picture = maskrcnn_viz::loss_curves_from_metrics_jsonl(run_dir.join("metrics.jsonl"))
        .and_then(|image| maskrcnn_viz::save_png(&image, run_dir.join("loss_curves.png")));
    if let Err(e) = picture {
        eprintln!("warning: loss curves not drawn: {e:#}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_order_are_deterministic() {
        let (t1, v1) = split_indices(20, 0.2, 7);
        let (t2, v2) = split_indices(20, 0.2, 7);
        assert_eq!((t1.clone(), v1.clone()), (t2, v2));
        assert_eq!(v1.len(), 4);
        assert_eq!(t1.len() + v1.len(), 20);
        assert_ne!(split_indices(20, 0.2, 8).1, v1);
        assert_eq!(epoch_order(&t1, 7, 3), epoch_order(&t1, 7, 3));
        assert_ne!(epoch_order(&t1, 7, 3), epoch_order(&t1, 7, 4));
        assert_eq!(split_indices(1, 0.5, 0).1.len(), 0);
    }
}
