//! `run_train` end to end from command-line arguments: COCO data written to disk, a short R18
//! run, and a final model folder that `load_model` reads and `predict` runs.

use burn::tensor::Device;
use clap::Parser;
use maskrcnn::train_cli::{run_train, TrainArgs};
use maskrcnn_data::synthetic::{generate, write_coco, SyntheticConfig};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    train: TrainArgs,
}

#[test]
fn train_command_writes_a_loadable_model_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let data = generate(&SyntheticConfig {
        num_images: 3,
        image_size: 96,
        min_objects: 1,
        max_objects: 2,
        min_object_size: 16.0,
        max_object_size: 40.0,
        seed: 4,
    })
    .unwrap();
    let json = write_coco(&data, &tmp.path().join("data")).unwrap();
    let out = tmp.path().join("run");
    let args = [
        "test",
        "--data",
        json.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--backbone",
        "18",
        "--steps",
        "2",
        "--batch-size",
        "1",
        "--min-size",
        "96",
        "--max-size",
        "96",
        "--val-split",
        "0.34",
        "--log-every",
        "1",
        "--quiet",
        "--monitor",
        "mask-ap",
    ];
    run_train(Cli::parse_from(args).train).unwrap();
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let steps: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["kind"] == "step")
        .collect();
    assert_eq!(steps.len(), 2, "{metrics}");
    for key in [
        "step",
        "epoch",
        "lr",
        "loss",
        "loss_objectness",
        "loss_rpn_box_reg",
        "loss_classifier",
        "loss_box_reg",
        "loss_mask",
    ] {
        assert!(steps[0][key].is_number(), "metrics line lacks {key}: {}", steps[0]);
    }
    assert!(metrics.contains("\"val_loss\""), "no validation loss in {metrics}");
    let epoch: serde_json::Value = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .find(|v: &serde_json::Value| v["kind"] == "epoch")
        .unwrap();
    for key in ["val_mask_ap", "val_mask_ap50", "val_mask_ap75", "val_box_ap", "val_box_ap50"] {
        let v = epoch[key].as_f64().unwrap_or_else(|| panic!("epoch line lacks {key}: {epoch}"));
        assert!((-1.0..=1.0).contains(&v), "{key} = {v}");
    }
    assert_eq!(epoch["best"], true, "--monitor mask-ap picks best/ by validation mask AP: {epoch}");
    assert!(out.join("best/config.json").is_file());
    let curves = image::open(out.join("loss_curves.png")).expect("loss_curves.png written beside metrics.jsonl");
    assert!(curves.width() > 100 && curves.height() > 100);
    let model = maskrcnn::weights::load_model(&out.join("model"), &Device::flex()).unwrap().model;
    assert_eq!(model.config.num_classes, 4);
    assert_eq!(model.config.class_names[1], "building");
    assert_eq!(model.config.backbone.trainable_layers, 5);
    assert_eq!(
        model.config.backbone.norm,
        maskrcnn::config::NormKind::Batch,
        "from scratch trains batch norm, as torchvision"
    );
    assert!(model.config.transform.band_stats.is_none(), "8-bit RGB keeps ImageNet normalisation");
    assert_eq!(model.config.transform.pixel_scale, Some(255.0));

    // A second run into the same folder is refused unless resumed.
    let err = run_train(Cli::parse_from(args).train).unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");
}

#[test]
fn train_command_reads_rcnn_masks_and_mask_png_folders() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/data");
    for folder in ["esri_tiny", "instance_masks_tiny"] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let data = root.join(folder);
        run_train(quick_run(&data, &out, 2, &[])).unwrap_or_else(|e| panic!("{folder}: {e:#}"));
        let model = maskrcnn::weights::load_model(&out.join("model"), &Device::flex()).unwrap().model;
        assert!(model.config.num_classes >= 2, "{folder}");
        if folder == "esri_tiny" {
            // The .emd's class values travel with the model, each with its own name.
            let by_name: Vec<(String, u64)> = (1..model.config.num_classes)
                .map(|l| (model.config.class_name(l), model.config.category_id(l)))
                .collect();
            assert_eq!(by_name, [("Building".to_string(), 1), ("Pool".to_string(), 2)], "{folder}");
        }
    }
}

/// 16-bit imagery from scratch: per-band statistics are computed once, stored in the model's
/// config (and .emd) and used as the input normalisation at inference.
#[test]
fn sixteen_bit_imagery_gets_per_band_statistics_stored_with_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("images")).unwrap();
    std::fs::create_dir_all(data.join("masks")).unwrap();
    let (w, h) = (64u32, 64u32);
    for (k, name) in ["a", "b"].iter().enumerate() {
        let image = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(w, h, |x, y| {
            let inside = (16..40).contains(&x) && (12..36 + k as u32 * 8).contains(&y);
            let base = if inside { 3000 } else { 1000 };
            image::Rgb([base + (x * 7) as u16, base / 2 + (y * 5) as u16, 200 + ((x + y) % 50) as u16])
        });
        image.save(data.join("images").join(format!("{name}.png"))).unwrap();
        let mask = image::GrayImage::from_fn(w, h, |x, y| {
            image::Luma([u8::from((16..40).contains(&x) && (12..36 + k as u32 * 8).contains(&y))])
        });
        mask.save(data.join("masks").join(format!("{name}.png"))).unwrap();
    }
    let out = tmp.path().join("run");
    let args = [
        "test",
        "--data",
        data.to_str().unwrap(),
        "--format",
        "mask-png",
        "--output",
        out.to_str().unwrap(),
        "--backbone",
        "18",
        "--steps",
        "1",
        "--batch-size",
        "1",
        "--min-size",
        "64",
        "--max-size",
        "64",
        "--val-split",
        "0",
        "--quiet",
    ];
    run_train(Cli::parse_from(args).train).unwrap();
    let model = maskrcnn::weights::load_model(&out.join("model"), &Device::flex()).unwrap().model;
    let t = &model.config.transform;
    let stats = t.band_stats.as_ref().expect("band statistics stored with the model");
    assert_eq!(t.pixel_scale, Some(65535.0));
    assert_eq!(stats.bands(), 3);
    assert!(stats.max[0] > 3000.0 && stats.min[2] >= 200.0, "{stats:?}");
    for b in 0..3 {
        assert!((t.image_mean[b] as f64 - stats.mean[b] / 65535.0).abs() < 1e-6, "mean of band {b}");
        assert!((t.image_std[b] as f64 - stats.std[b] / 65535.0).abs() < 1e-6, "std of band {b}");
    }
    assert!(t.image_mean[0] < 0.1, "not ImageNet's mean: {:?}", t.image_mean);
    // The statistics survive into the arcgis.learn package description.
    let emd = maskrcnn::weights::arcgis::emd_json(&model.config, "m");
    assert_eq!(emd["NormalizationStats"]["band_mean_values"].as_array().unwrap().len(), 3);
    assert_eq!(emd["IsImageNetNormalization"], false);
    // Inference reads the 16-bit file (/65535) and normalises with the stored statistics.
    let image = maskrcnn::image_io::load_image(&data.join("images/a.png"), 3).unwrap();
    let _ = model.predict(std::slice::from_ref(&image));
}

/// COCO data whose category ids have gaps (COCO itself, CVAT exports): the model must keep the
/// data's ids, so results and packages name the right categories.
/// A synthetic COCO set of 64 px images under `dir/data`; returns the JSON's path.
fn small_coco(dir: &std::path::Path, num_images: usize, max_objects: usize, seed: u64) -> std::path::PathBuf {
    let data = generate(&SyntheticConfig {
        num_images,
        image_size: 64,
        min_objects: 1,
        max_objects,
        min_object_size: 16.0,
        max_object_size: 30.0,
        seed,
    })
    .unwrap();
    write_coco(&data, &dir.join("data")).unwrap()
}

/// `train` arguments for a quiet R18 run at 64 px, batch 1, without a validation split.
fn quick_run(json: &std::path::Path, out: &std::path::Path, steps: usize, extra: &[&str]) -> TrainArgs {
    let steps = steps.to_string();
    let mut args =
        vec!["test", "--data", json.to_str().unwrap(), "--output", out.to_str().unwrap(), "--backbone", "18"];
    args.extend(["--steps", &steps, "--batch-size", "1", "--min-size", "64", "--max-size", "64", "--val-split", "0"]);
    args.extend(extra);
    args.push("--quiet");
    Cli::parse_from(args).train
}

#[test]
fn category_ids_with_gaps_round_trip_through_training() {
    let tmp = tempfile::tempdir().unwrap();
    let json = small_coco(tmp.path(), 2, 2, 9);
    let mut coco: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let gapped = |id: u64| id * 4 + 3;
    for c in coco["categories"].as_array_mut().unwrap() {
        c["id"] = gapped(c["id"].as_u64().unwrap()).into();
    }
    for a in coco["annotations"].as_array_mut().unwrap() {
        a["category_id"] = gapped(a["category_id"].as_u64().unwrap()).into();
    }
    let mut expected: Vec<u64> =
        coco["categories"].as_array().unwrap().iter().map(|c| c["id"].as_u64().unwrap()).collect();
    expected.sort_unstable();
    std::fs::write(&json, serde_json::to_string(&coco).unwrap()).unwrap();
    let out = tmp.path().join("run");
    run_train(quick_run(&json, &out, 1, &[])).unwrap();
    let model = maskrcnn::weights::load_model(&out.join("model"), &Device::flex()).unwrap().model;
    let ids: Vec<u64> = (1..model.config.num_classes).map(|l| model.config.category_id(l)).collect();
    assert_eq!(ids, expected, "the model keeps the data's category ids in label order");

    // The package's .emd and the results of `predict` carry the same ids.
    let bin = env!("CARGO_BIN_EXE_maskrcnn");
    let packages = tmp.path().join("packages");
    let status = std::process::Command::new(bin)
        .args(["package", "--model", out.join("model").to_str().unwrap(), "--output", packages.to_str().unwrap()])
        .args(["--name", "gaps"])
        .status()
        .unwrap();
    assert!(status.success());
    let emd: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(packages.join("gaps.emd")).unwrap()).unwrap();
    let values: Vec<u64> = emd["Classes"].as_array().unwrap().iter().map(|c| c["Value"].as_u64().unwrap()).collect();
    assert_eq!(values, expected);
    let results = tmp.path().join("results.json");
    let images = maskrcnn_data::coco::default_image_dir(&json);
    let status = std::process::Command::new(bin)
        .args(["predict", "--model", out.join("model").to_str().unwrap(), "--input", images.to_str().unwrap()])
        .args(["--output", results.to_str().unwrap(), "--score-threshold", "0"])
        .status()
        .unwrap();
    assert!(status.success());
    let results: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
    for r in results.as_array().unwrap() {
        assert!(expected.contains(&r["category_id"].as_u64().unwrap()), "{r}");
    }
}

/// A missing image does not end the run (nor its resume): it is skipped, named in a warning
/// line of metrics.jsonl, and the run finishes with a model folder.
#[test]
fn an_unreadable_training_image_is_skipped_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let json = small_coco(tmp.path(), 3, 2, 5);
    let coco: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let first = coco["images"][0]["file_name"].as_str().unwrap().to_string();
    let image_dir = maskrcnn_data::coco::default_image_dir(&json);
    std::fs::write(image_dir.join(&first), b"not an image").unwrap();
    let out = tmp.path().join("run");
    run_train(quick_run(&json, &out, 3, &["--log-every", "1"])).unwrap();
    assert!(out.join("model").join("config.json").is_file());
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let unreadable: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["kind"] == "unreadable")
        .collect();
    assert_eq!(unreadable.len(), 1, "{metrics}");
    assert!(unreadable[0]["reason"].as_str().unwrap().contains(&first), "{}", unreadable[0]);
    assert!(!out.join(maskrcnn::train::run_lock::LOCK_FILE).exists(), "the run folder's lock is released");
}

/// A run folder another live process is writing to is refused, with nothing written to it.
#[test]
fn a_run_folder_in_use_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let json = small_coco(tmp.path(), 2, 1, 2);
    let out = tmp.path().join("run");
    std::fs::create_dir_all(&out).unwrap();
    // Process 1 (init) is always alive: the folder counts as in use.
    std::fs::write(out.join(maskrcnn::train::run_lock::LOCK_FILE), "1\n").unwrap();
    let err = run_train(quick_run(&json, &out, 1, &[])).unwrap_err().to_string();
    assert!(err.contains("another training run (process 1)"), "{err}");
    assert!(!out.join("metrics.jsonl").exists() && !out.join("checkpoints").exists());
}

/// The run folder may not be the data folder or lie inside it.
#[test]
fn a_run_folder_inside_the_data_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let json = small_coco(tmp.path(), 1, 1, 3);
    let images = maskrcnn_data::coco::default_image_dir(&json);
    for out in [images.clone(), images.join("run")] {
        let args =
            ["test", "--data", json.to_str().unwrap(), "--output", out.to_str().unwrap(), "--steps", "1", "--quiet"];
        let err = run_train(Cli::parse_from(args).train).unwrap_err().to_string();
        assert!(err.contains("is also an input"), "{err}");
    }
    assert!(!images.join("run").exists());
}

/// `--init resnet18.safetensors`, a bare classification ResNet as torchvision or timm save one
/// (`conv1`, `bn1`, `layer1..4`, `fc`, batch-norm counters): its weights start the backbone
/// (4-band data gets the first convolution adapted) and the run trains; the final model's body
/// still holds the checkpoint's frozen stem.
#[test]
fn a_classification_resnet_starts_the_backbone() {
    use maskrcnn::weights::{HostTensor, StateDict};
    let tmp = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let names = vec!["object".to_string()];
    let mut source = maskrcnn::MaskRcnn::new(maskrcnn::MaskRcnnConfig::for_classes(18, &names, 3, 3), &device).unwrap();
    let body = StateDict::from_module(&mut source.net.backbone.body, "backbone.body");
    let mut tensors: std::collections::BTreeMap<String, HostTensor> =
        body.tensors.into_iter().map(|(k, t)| (k["backbone.body.".len()..].to_string(), t)).collect();
    tensors.insert("fc.weight".into(), HostTensor { shape: vec![10, 512], data: vec![0.1; 5120] });
    tensors.insert("fc.bias".into(), HostTensor { shape: vec![10], data: vec![0.0; 10] });
    let stem = tensors["conv1.weight"].clone();
    let checkpoint = tmp.path().join("resnet18.safetensors");
    StateDict { tensors }.write_safetensors(&checkpoint).unwrap();

    let json = small_coco(tmp.path(), 2, 2, 5);
    let out = tmp.path().join("run");
    run_train(quick_run(&json, &out, 1, &["--init", checkpoint.to_str().unwrap()])).unwrap();
    let mut trained = maskrcnn::weights::load_model(&out.join("model"), &device).unwrap().model;
    let after = StateDict::from_module(&mut trained.net.backbone.body, "backbone.body");
    // The stem is frozen (trainable layers 3, as torchvision's default for a pretrained backbone).
    assert_eq!(after.tensors["backbone.body.conv1.weight"], stem);

    // A ResNet of no torchvision depth is refused, naming the file.
    let mut odd = StateDict::read(&checkpoint).unwrap();
    odd.tensors.retain(|k, _| !k.starts_with("layer4.1."));
    let odd_path = tmp.path().join("odd.safetensors");
    odd.write_safetensors(&odd_path).unwrap();
    let err =
        run_train(quick_run(&json, &tmp.path().join("run2"), 1, &["--init", odd_path.to_str().unwrap()])).unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("odd.safetensors") && err.contains("[2, 2, 2, 1]"), "{err}");
}
