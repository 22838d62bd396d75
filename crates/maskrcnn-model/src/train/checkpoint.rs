//! Training checkpoints that lose nothing: weights, optimiser buffers, and the run position
//! (from which the schedule, data order and random streams are all derived).
//!
//! Layout inside the run directory:
//! ```text
//! checkpoints/step-000123/{config.json, model.safetensors, optimizer.safetensors, state.json}
//! checkpoints/latest            name of the newest complete checkpoint folder
//! best/{config.json, model.safetensors, state.json}   lowest validation loss so far
//! model/{config.json, model.safetensors}              final weights (a model folder)
//! ```
//! A checkpoint folder is written under a temporary name and renamed when complete, and
//! `latest` is replaced atomically after that, so a crash at any point leaves the previous
//! checkpoint usable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::optim::{OptimizerConfig, OptimizerState, Schedule};
use crate::io_util::write_atomic;
use crate::model::MaskRcnn;
use crate::weights::checkpoint::{read_config, CONFIG_FILE, WEIGHTS_FILE};
use crate::weights::{HostTensor, StateDict};

pub const CHECKPOINTS_DIR: &str = "checkpoints";
pub const LATEST_FILE: &str = "latest";
pub const STATE_FILE: &str = "state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const BEST_DIR: &str = "best";
pub const FINAL_DIR: &str = "model";

/// Where a run stands. Everything random in training is derived from `seed` and these counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Optimiser steps attempted so far (skipped non-finite steps included).
    pub step: usize,
    pub total_steps: usize,
    pub steps_per_epoch: usize,
    pub seed: u64,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    pub schedule: Schedule,
    pub clip_grad_norm: Option<f32>,
    /// Steps skipped because the loss or gradients were not finite.
    pub skipped_steps: usize,
    pub consecutive_skipped: usize,
    pub best_val_loss: Option<f64>,
    pub best_step: Option<usize>,
    /// Indices (into the dataset) held out for validation, so a resumed run validates on the
    /// same images even if the split rule changes.
    pub val_indices: Vec<usize>,
    pub train_indices: Vec<usize>,
    pub pixel_scale: f32,
    /// Bytes of `metrics.jsonl` when the checkpoint was taken: a resumed run cuts the file back
    /// to exactly this, dropping lines (and a half-written line) from after the checkpoint.
    /// `None` in checkpoints written before it was recorded.
    #[serde(default)]
    pub metrics_len: Option<u64>,
    /// The loss averages in progress, so the first log and epoch lines after a resume average
    /// the same steps as an uninterrupted run's.
    #[serde(default)]
    pub log: LogState,
    /// Dataset items found unreadable (index, reason), so a resumed run does not report them again.
    #[serde(default)]
    pub unreadable: BTreeMap<usize, String>,
}

/// Running loss sums between `metrics.jsonl` lines, as f64 (f32 for losses) bit patterns:
/// serde_json's default float parsing can be one unit in the last place off, and the averages
/// written after a resume must be bit-identical.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LogState {
    /// Per loss term, the sum since the last step line, and how many steps it holds.
    pub window: Vec<u64>,
    pub window_n: usize,
    /// Sum of total losses over the epoch so far, and how many steps it holds.
    pub epoch_sum: u64,
    pub epoch_n: usize,
    /// The progress display's exponential average.
    pub running: Option<Vec<u64>>,
    pub last_losses: Option<Vec<u32>>,
}

impl RunState {
    pub fn epoch(&self) -> usize {
        self.step / self.steps_per_epoch.max(1)
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, serde_json::to_string_pretty(value)?.as_bytes())
}

fn optimizer_to_state_dict(opt: &OptimizerState, shapes: &BTreeMap<String, Vec<usize>>) -> StateDict {
    let mut sd = StateDict::default();
    let shape_of = |name: &str, len: usize| shapes.get(name).cloned().unwrap_or_else(|| vec![len]);
    for (name, v) in &opt.first {
        sd.tensors.insert(format!("first.{name}"), HostTensor { shape: shape_of(name, v.len()), data: v.clone() });
    }
    for (name, v) in &opt.second {
        sd.tensors.insert(format!("second.{name}"), HostTensor { shape: shape_of(name, v.len()), data: v.clone() });
    }
    sd
}

/// Saves a complete checkpoint for `state` and points `latest` at it; older step folders are
/// removed afterwards.
pub fn save_checkpoint(
    run_dir: &Path,
    model: &mut MaskRcnn,
    optimizer: &OptimizerState,
    state: &RunState,
) -> Result<PathBuf> {
    let root = run_dir.join(CHECKPOINTS_DIR);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let name = format!("step-{:09}", state.step);
    let tmp = root.join(format!(".{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing stale {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp)?;
    let weights = StateDict::from_module(&mut model.net, "");
    weights.write_safetensors(&tmp.join(WEIGHTS_FILE))?;
    write_json(&tmp.join(CONFIG_FILE), &model.config)?;
    let shapes = weights.tensors.iter().map(|(k, t)| (k.clone(), t.shape.clone())).collect();
    let mut opt_sd = optimizer_to_state_dict(optimizer, &shapes);
    // The step count rides along as a tensor so the file alone describes the optimiser.
    opt_sd.tensors.insert("steps".into(), HostTensor { shape: vec![1], data: vec![optimizer.steps as f32] });
    opt_sd.write_safetensors(&tmp.join(OPTIMIZER_FILE))?;
    write_json(&tmp.join(STATE_FILE), &OptimizerSteps { optimizer_steps: optimizer.steps, run: state.clone() })?;
    let dest = root.join(&name);
    if dest.exists() {
        std::fs::remove_dir_all(&dest).with_context(|| format!("replacing {}", dest.display()))?;
    }
    std::fs::rename(&tmp, &dest).with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    sync_dir(&root);
    write_atomic(&root.join(LATEST_FILE), name.as_bytes())?;
    for entry in std::fs::read_dir(&root)?.flatten() {
        let n = entry.file_name().to_string_lossy().into_owned();
        if n.starts_with("step-") && n != name {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(dest)
}

#[derive(Serialize, Deserialize)]
struct OptimizerSteps {
    /// Exact (the f32 copy in optimizer.safetensors is only informative).
    optimizer_steps: u64,
    run: RunState,
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// A checkpoint read back from disk.
pub struct LoadedCheckpoint {
    pub dir: PathBuf,
    pub weights: StateDict,
    pub config: crate::config::MaskRcnnConfig,
    pub optimizer: OptimizerState,
    pub state: RunState,
}

/// Reads the checkpoint `latest` points to, or `None` when the run has none yet.
pub fn load_latest_checkpoint(run_dir: &Path) -> Result<Option<LoadedCheckpoint>> {
    let root = run_dir.join(CHECKPOINTS_DIR);
    let latest = root.join(LATEST_FILE);
    if !latest.is_file() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&latest).with_context(|| format!("reading {}", latest.display()))?;
    let dir = root.join(name.trim());
    if !dir.is_dir() {
        bail!("{} names {}, which does not exist", latest.display(), dir.display());
    }
    let config = read_config(&dir.join(CONFIG_FILE))?;
    let weights = StateDict::read(&dir.join(WEIGHTS_FILE))?;
    let text = std::fs::read_to_string(dir.join(STATE_FILE))
        .with_context(|| format!("reading {}", dir.join(STATE_FILE).display()))?;
    let saved: OptimizerSteps = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid run state", dir.join(STATE_FILE).display()))?;
    let mut optimizer = OptimizerState { steps: saved.optimizer_steps, ..Default::default() };
    for (key, data) in read_raw_f32(&dir.join(OPTIMIZER_FILE))? {
        if let Some(name) = key.strip_prefix("first.") {
            optimizer.first.insert(name.to_string(), data);
        } else if let Some(name) = key.strip_prefix("second.") {
            optimizer.second.insert(name.to_string(), data);
        } else if key != "steps" {
            return Err(anyhow!("{}: unexpected tensor `{key}`", dir.join(OPTIMIZER_FILE).display()));
        }
    }
    Ok(Some(LoadedCheckpoint { dir, weights, config, optimizer, state: saved.run }))
}

/// Every f32 tensor of a safetensors file under its stored name (no checkpoint-key rewriting,
/// unlike [`StateDict::read`], which would mistake `first.backbone...` for a wrapped model).
fn read_raw_f32(path: &Path) -> Result<Vec<(String, Vec<f32>)>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow!("{}: not a valid safetensors file: {e}", path.display()))?;
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            if view.dtype() != safetensors::Dtype::F32 {
                bail!("{}: tensor `{name}` is {:?}, expected F32", path.display(), view.dtype());
            }
            Ok((name, view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()))
        })
        .collect()
}

/// Writes a loadable model folder (config.json + model.safetensors) plus a note of where it
/// came from.
pub fn save_model_folder(dir: &Path, model: &mut MaskRcnn, note: &serde_json::Value) -> Result<()> {
    crate::weights::save_model_dir(model, dir)?;
    write_json(&dir.join("training.json"), note)
}
