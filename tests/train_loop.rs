//! The training loop on a tiny model and tiny synthetic data: exact resume after a "kill",
//! determinism, non-finite step handling, and an overfit check scored with maskrcnn-eval.

use std::path::Path;

use burn::tensor::Device;
use maskrcnn::config::MaskRcnnConfig;
use maskrcnn::train::optim::{OptimizerConfig, OptimizerKind, ScheduleKind};
use maskrcnn::train::params::freeze_layers;
use maskrcnn::train::trainer::{train, TrainOptions};
use maskrcnn::transform::ImageChw;
use maskrcnn::MaskRcnn;
use maskrcnn_data::synthetic::{generate, SyntheticConfig, SyntheticDataset};
use maskrcnn_data::Dataset;

/// R18 cut after layer2, 32-channel FPN, small heads, 128 px images.
fn tiny_config(num_classes: usize) -> MaskRcnnConfig {
    MaskRcnnConfig::small(num_classes, 128, 32)
}

fn synthetic(num_images: usize, seed: u64) -> SyntheticDataset {
    generate(&SyntheticConfig {
        num_images,
        image_size: 128,
        min_objects: 1,
        max_objects: 3,
        min_object_size: 20.0,
        max_object_size: 48.0,
        seed,
    })
    .unwrap()
}

/// A freshly initialised model whose weights depend only on `seed`: burn's random initialisers
/// draw from a global generator, so the weights are built once per seed and copied.
fn fresh_model(config: &MaskRcnnConfig, seed: u64) -> MaskRcnn {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static INITIAL: Mutex<Option<HashMap<(String, u64), maskrcnn::weights::StateDict>>> = Mutex::new(None);
    let device = Device::flex().autodiff();
    let mut model = MaskRcnn::new(config.clone(), &device).unwrap();
    let key = (serde_json::to_string(config).unwrap(), seed);
    let mut cache = INITIAL.lock().unwrap();
    let sd = cache
        .get_or_insert_with(HashMap::new)
        .entry(key)
        .or_insert_with(|| maskrcnn::weights::StateDict::from_module(&mut model.net, ""));
    sd.load_into(&mut model.net, "", &device).unwrap();
    freeze_layers(&mut model.net, config.backbone.trainable_layers);
    model
}

fn quiet(options: TrainOptions) -> TrainOptions {
    TrainOptions { progress: false, ..options }
}

/// Panics naming the first tensor whose bits differ between two model folders.
fn assert_same_weights(a: &Path, b: &Path, what: &str) {
    let (sa, sb) = (
        maskrcnn::weights::StateDict::read(&a.join("model.safetensors")).unwrap(),
        maskrcnn::weights::StateDict::read(&b.join("model.safetensors")).unwrap(),
    );
    assert_eq!(sa.tensors.len(), sb.tensors.len());
    for (name, ta) in &sa.tensors {
        let tb = &sb.tensors[name];
        let differing = ta.data.iter().zip(&tb.data).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
        let max = ta.data.iter().zip(&tb.data).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(
            differing == 0,
            "{what}: `{name}` differs in {differing} of {} values (max |diff| {max:e})",
            ta.data.len()
        );
    }
}

#[test]
fn killed_and_resumed_run_ends_with_identical_weights() {
    let data = synthetic(4, 11);
    // The AdamW run also trains batch norm, so its running statistics must survive the kill too.
    for (optimizer, schedule, norm) in [
        (OptimizerKind::Sgd, ScheduleKind::Multistep, maskrcnn::config::NormKind::Frozen),
        (OptimizerKind::Adamw, ScheduleKind::Onecycle, maskrcnn::config::NormKind::Batch),
    ] {
        let mut config = tiny_config(4);
        config.backbone.norm = norm;
        let lr = if optimizer == OptimizerKind::Sgd { 0.01 } else { 1e-3 };
        let options = quiet(TrainOptions {
            steps: Some(6),
            batch_size: 2,
            lr,
            optimizer: OptimizerConfig::defaults(optimizer),
            schedule,
            val_split: 0.25,
            seed: 5,
            log_every: 1,
            checkpoint_every: Some(2),
            augment: Some(maskrcnn_data::transforms::AugmentConfig::photo()),
            ..TrainOptions::default()
        });
        let tmp = tempfile::tempdir().unwrap();
        let (full_dir, killed_dir) = (tmp.path().join("full"), tmp.path().join("killed"));

        let mut model = fresh_model(&config, 1);
        let full = train(&mut model, &data, &full_dir, &options, false).unwrap();
        assert!(full.finished && full.steps == 6);

        // "Kill" after step 3: the checkpoint of step 2 survives, step 3's work is lost.
        let mut model = fresh_model(&config, 1);
        let stopped =
            train(&mut model, &data, &killed_dir, &TrainOptions { stop_after: Some(3), ..options.clone() }, false)
                .unwrap();
        assert!(!stopped.finished && stopped.steps == 3);
        drop(model);
        assert!(
            train(&mut fresh_model(&config, 99), &data, &killed_dir, &options, false).is_err(),
            "a second run into the same folder must be refused"
        );
        // Resume into a model with different random weights: everything must come from disk.
        let mut model = fresh_model(&config, 99);
        let resumed = train(&mut model, &data, &killed_dir, &options, true).unwrap();
        assert!(resumed.finished && resumed.steps == 6);

        assert_same_weights(
            &full_dir.join("model"),
            &killed_dir.join("model"),
            &format!("{optimizer:?}: resumed vs uninterrupted run"),
        );
        let weights = maskrcnn::weights::StateDict::read(&full_dir.join("model/model.safetensors")).unwrap();
        let running_mean = &weights.get("backbone.body.layer1.0.bn1.running_mean").unwrap().data;
        let bn_weight = &weights.get("backbone.body.layer1.0.bn1.weight").unwrap().data;
        let moved = running_mean.iter().any(|v| *v != 0.0) && bn_weight.iter().any(|v| *v != 1.0);
        assert_eq!(
            moved,
            norm == maskrcnn::config::NormKind::Batch,
            "{norm:?}: batch-norm statistics and affine terms train only with norm = batch"
        );
        let metrics = |d: &Path| std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
        let strip = |s: String| {
            s.lines()
                .map(|l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v.as_object_mut().unwrap().remove("seconds_per_step");
                    v
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(metrics(&full_dir)), strip(metrics(&killed_dir)), "metrics.jsonl of the resumed run differs");
        let loaded = maskrcnn::weights::load_model(&full_dir.join("model"), &Device::flex()).unwrap();
        assert_eq!(loaded.model.config, config);
        assert!(full_dir.join("best/model.safetensors").is_file());
    }
}

#[test]
fn non_finite_losses_are_skipped_then_stop_the_run() {
    let data = synthetic(2, 3);
    let config = tiny_config(4);
    let tmp = tempfile::tempdir().unwrap();
    let base =
        quiet(TrainOptions { steps: Some(3), batch_size: 1, val_split: 0.0, log_every: 1, ..TrainOptions::default() });
    let mut model = fresh_model(&config, 2);
    let report =
        train(&mut model, &data, &tmp.path().join("a"), &TrainOptions { poison_steps: vec![1], ..base.clone() }, false)
            .unwrap();
    assert_eq!((report.steps, report.skipped_steps), (3, 1));
    let mut model = fresh_model(&config, 2);
    let err = train(
        &mut model,
        &data,
        &tmp.path().join("b"),
        &TrainOptions { steps: Some(10), poison_steps: (0..10).collect(), ..base },
        false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("5 steps in a row"), "{err}");
}

/// Mask AP50 of `model` on the dataset's own images, scored by maskrcnn-eval (COCOeval port).
fn mask_ap50(model: &MaskRcnn, data: &SyntheticDataset) -> f64 {
    use maskrcnn_eval::{
        evaluate, CocoAnnotation, CocoCategory, CocoGroundTruth, CocoImage, DetectionResult, EvalParams, IouType,
    };
    use maskrcnn_masks::{Rle, Segmentation};
    let mut gt = CocoGroundTruth {
        images: vec![],
        categories: (1..=data.class_names().len() as i64)
            .map(|id| CocoCategory { id, name: format!("c{id}") })
            .collect(),
        annotations: vec![],
    };
    let mut results = Vec::new();
    for i in 0..data.len() {
        let s = data.get(i).unwrap();
        let (h, w) = (s.image.height, s.image.width);
        gt.images.push(
            serde_json::from_value::<CocoImage>(
                serde_json::json!({"id": i as i64, "width": w, "height": h, "file_name": s.file_name}),
            )
            .unwrap(),
        );
        for k in 0..s.target.len() {
            let rle = Rle::from_mask(&s.target.masks[k], h, w);
            let b = s.target.boxes[k];
            gt.annotations.push(CocoAnnotation {
                id: gt.annotations.len() as i64 + 1,
                image_id: i as i64,
                category_id: s.target.labels[k],
                segmentation: Some(Segmentation::from_rle(&rle)),
                area: None,
                bbox: Some([b[0] as f64, b[1] as f64, (b[2] - b[0]) as f64, (b[3] - b[1]) as f64]),
                iscrowd: false,
                ignore: false,
            });
        }
        let image =
            ImageChw { channels: 3, height: h, width: w, data: s.image.data.iter().map(|v| v / 255.0).collect() };
        for d in model.predict(&[image]).remove(0) {
            let full: Vec<u8> = d.mask.to_full(h, w).iter().map(|&p| (p > 0.5) as u8).collect();
            results.push(DetectionResult {
                image_id: i as i64,
                category_id: d.label as i64,
                bbox: Some([
                    d.bbox[0] as f64,
                    d.bbox[1] as f64,
                    (d.bbox[2] - d.bbox[0]) as f64,
                    (d.bbox[3] - d.bbox[1]) as f64,
                ]),
                score: d.score as f64,
                segmentation: Some(Segmentation::from_rle(&Rle::from_mask(&full, h, w))),
            });
        }
    }
    evaluate(&gt, &results, &EvalParams::new(IouType::Segm)).unwrap().stat("AP50")
}

#[test]
fn tiny_model_overfits_synthetic_images() {
    let started = std::time::Instant::now();
    let data = synthetic(3, 21);
    let config = tiny_config(4);
    let tmp = tempfile::tempdir().unwrap();
    let mut model = fresh_model(&config, 4);
    let options = quiet(TrainOptions {
        steps: Some(std::env::var("OVERFIT_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(150)),
        batch_size: 3,
        lr: 2e-3,
        optimizer: OptimizerConfig::defaults(OptimizerKind::Adamw),
        schedule: ScheduleKind::Onecycle,
        val_split: 0.0,
        seed: 1,
        log_every: 10,
        ..TrainOptions::default()
    });
    let report = train(&mut model, &data, tmp.path(), &options, false).unwrap();
    let metrics = std::fs::read_to_string(tmp.path().join("metrics.jsonl")).unwrap();
    for line in metrics.lines().filter(|l| l.contains("\"step\"")) {
        println!("{line}");
    }
    let loaded = maskrcnn::weights::load_model(report.final_model.as_ref().unwrap(), &Device::flex()).unwrap().model;
    let ap50 = mask_ap50(&loaded, &data);
    println!("mask AP50 after {} steps: {ap50:.3} ({:.0} s)", report.steps, started.elapsed().as_secs_f64());
    assert!(ap50 > 0.9, "mask AP50 {ap50:.3} <= 0.9 after overfitting 3 images");
}

#[test]
fn early_stopping_ends_the_run_when_the_monitored_loss_stalls() {
    let data = synthetic(3, 5);
    let config = tiny_config(4);
    let tmp = tempfile::tempdir().unwrap();
    let mut model = fresh_model(&config, 4);
    // A zero learning rate leaves the weights, and so the validation loss, unchanged after epoch 1.
    let options = quiet(TrainOptions {
        epochs: 10,
        batch_size: 2,
        lr: 0.0,
        val_split: 0.34,
        seed: 3,
        log_every: 1,
        early_stopping_patience: Some(2),
        ..TrainOptions::default()
    });
    let report = train(&mut model, &data, tmp.path(), &options, false).unwrap();
    let metrics = std::fs::read_to_string(tmp.path().join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("\"early_stop\""), "{metrics}");
    // Two training images at batch 2: one step per epoch; best at epoch 1, stop after 2 more.
    assert_eq!(report.steps, 3, "{metrics}");
    assert!(report.final_model.is_some_and(|p| p.join("model.safetensors").is_file()));
}
