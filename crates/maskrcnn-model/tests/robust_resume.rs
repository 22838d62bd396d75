//! A training run killed and resumed leaves the same `metrics.jsonl` (and weights) as one that
//! never stopped. The only field allowed to differ is `seconds_per_step`, a wall-clock time.
//!
//! The runs are shaped so that every piece of state between log lines matters: checkpoints fall
//! between `metrics.jsonl` step lines and in the middle of epochs, one training item is
//! unreadable, and the kill leaves a half-written last line behind.

use std::path::Path;

use anyhow::{bail, Result};
use burn::tensor::Device;
use maskrcnn_data::synthetic::{generate, SyntheticConfig, SyntheticDataset};
use maskrcnn_data::{Dataset, Sample};
use maskrcnn_model::train::optim::{OptimizerConfig, OptimizerKind, ScheduleKind};
use maskrcnn_model::train::params::freeze_layers;
use maskrcnn_model::train::trainer::{train, TrainOptions, METRICS_FILE};
use maskrcnn_model::weights::StateDict;
use maskrcnn_model::{MaskRcnn, MaskRcnnConfig};

/// Synthetic images with one item that cannot be read, as a corrupt file would be.
struct OneBadItem {
    inner: SyntheticDataset,
    bad: usize,
}

impl Dataset for OneBadItem {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn get(&self, index: usize) -> Result<Sample> {
        if index == self.bad {
            bail!("item {index}: truncated file");
        }
        self.inner.get(index)
    }
    fn class_names(&self) -> &[String] {
        self.inner.class_names()
    }
}

fn dataset() -> OneBadItem {
    let inner = generate(&SyntheticConfig {
        num_images: 8,
        image_size: 64,
        min_objects: 1,
        max_objects: 2,
        min_object_size: 12.0,
        max_object_size: 28.0,
        seed: 21,
    })
    .unwrap();
    OneBadItem { inner, bad: 5 }
}

fn config() -> MaskRcnnConfig {
    MaskRcnnConfig::small(4, 64, 8)
}

/// Models with identical initial weights (burn draws initial weights from a global generator).
fn model(initial: &StateDict) -> MaskRcnn {
    let device = Device::flex().autodiff();
    let mut model = MaskRcnn::new(config(), &device).unwrap();
    initial.load_into(&mut model.net, "", &device).unwrap();
    freeze_layers(&mut model.net, model.config.backbone.trainable_layers);
    model
}

/// 8 items, 2 held out, batch 2: 3 steps per epoch, 8 steps. Step lines every 3 steps and
/// checkpoints every 2 (and at epoch ends), so the checkpoint at step 4 sits one step into a
/// log window and one step into epoch 1.
fn options() -> TrainOptions {
    TrainOptions {
        steps: Some(8),
        batch_size: 2,
        lr: 0.01,
        optimizer: OptimizerConfig::defaults(OptimizerKind::Sgd),
        schedule: ScheduleKind::Multistep,
        val_split: 0.25,
        seed: 3,
        log_every: 3,
        checkpoint_every: Some(2),
        pixel_scale: Some(255.0),
        progress: false,
        augment: Some(maskrcnn_data::transforms::AugmentConfig::photo()),
        ..TrainOptions::default()
    }
}

/// `metrics.jsonl` lines with the wall-clock field removed, each re-serialised.
fn metrics_without_times(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join(METRICS_FILE)).unwrap();
    assert!(text.ends_with('\n'), "{}: last line unterminated", dir.display());
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: `{l}`: {e}", dir.display()));
            v.as_object_mut().unwrap().remove("seconds_per_step");
            v.to_string()
        })
        .collect()
}

fn assert_same_run(full: &Path, resumed: &Path) {
    let (a, b) = (metrics_without_times(full), metrics_without_times(resumed));
    let first_difference = a.iter().zip(&b).position(|(x, y)| x != y);
    assert!(
        a == b,
        "metrics.jsonl differs ({} vs {} lines); first differing line {first_difference:?}:\nuninterrupted:\n{}\nresumed:\n{}",
        a.len(),
        b.len(),
        a.join("\n"),
        b.join("\n")
    );
    let weights = |d: &Path| std::fs::read(d.join("model/model.safetensors")).unwrap();
    assert!(weights(full) == weights(resumed), "final weights differ");
}

/// Appends what a kill in the middle of a `metrics.jsonl` write leaves: part of a line.
fn append_torn_line(dir: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(dir.join(METRICS_FILE)).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn killed_and_resumed_run_writes_the_same_metrics() {
    let data = dataset();
    let initial = StateDict::from_module(&mut MaskRcnn::new(config(), &Device::flex()).unwrap().net, "");
    let tmp = tempfile::tempdir().unwrap();
    let (full, killed) = (tmp.path().join("full"), tmp.path().join("killed"));

    let report = train(&mut model(&initial), &data, &full, &options(), false).unwrap();
    assert!(report.finished && report.steps == 8);
    let full_metrics = metrics_without_times(&full);
    let unreadable = full_metrics.iter().filter(|l| l.contains("\"kind\":\"unreadable\"")).count();
    assert_eq!(unreadable, 1, "the bad item is reported once:\n{}", full_metrics.join("\n"));

    // Killed after step 5: the newest checkpoint is step 4's; step 5's work and a torn line
    // of step 6 are on disk after it.
    let stopped =
        train(&mut model(&initial), &data, &killed, &TrainOptions { stop_after: Some(5), ..options() }, false).unwrap();
    assert!(!stopped.finished && stopped.steps == 5);
    let latest = std::fs::read_to_string(killed.join("checkpoints/latest")).unwrap();
    assert_eq!(latest.trim(), "step-000000004");
    append_torn_line(&killed, "{\"epoch\":1,\"grad_norm\":0.5,\"kind\":\"st");

    let resumed = train(&mut model(&initial), &data, &killed, &options(), true).unwrap();
    assert!(resumed.finished && resumed.steps == 8);
    assert_eq!(resumed.unreadable.len(), 1, "the resumed run remembers the unreadable item");
    assert_same_run(&full, &killed);
}

#[test]
fn a_run_killed_before_its_early_stop_line_stops_at_the_same_step() {
    let data = dataset();
    let initial = StateDict::from_module(&mut MaskRcnn::new(config(), &Device::flex()).unwrap().net, "");
    let tmp = tempfile::tempdir().unwrap();
    let (full, killed) = (tmp.path().join("full"), tmp.path().join("killed"));
    // Patience 0 stops at the first epoch end (step 3), right after its checkpoint.
    let options = TrainOptions { early_stopping_patience: Some(0), ..options() };
    let report = train(&mut model(&initial), &data, &full, &options, false).unwrap();
    assert!(report.finished && report.steps == 3);
    assert!(metrics_without_times(&full).last().unwrap().contains("early_stop"));

    // The kill: after the step-3 checkpoint, half-way through the early-stop line, before the
    // final model.
    let run = |name: &str| full.join(name);
    std::fs::create_dir_all(&killed).unwrap();
    for name in ["checkpoints", "best"] {
        copy_dir(&run(name), &killed.join(name));
    }
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run("checkpoints/step-000000003/state.json")).unwrap()).unwrap();
    let at_checkpoint = state["run"]["metrics_len"].as_u64().unwrap() as usize;
    let text = std::fs::read_to_string(run(METRICS_FILE)).unwrap();
    assert!(text[at_checkpoint..].starts_with("{\"") && text[at_checkpoint..].contains("early_stop"));
    std::fs::write(killed.join(METRICS_FILE), &text[..at_checkpoint + 12]).unwrap();

    let resumed = train(&mut model(&initial), &data, &killed, &options, true).unwrap();
    assert!(resumed.finished && resumed.steps == 3, "the resumed run must stop where the uninterrupted one did");
    assert_same_run(&full, &killed);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}
