//! `run_train` end to end from command-line arguments: COCO data written to disk, a short R18
//! run, and a final model folder that `load_model` reads and `predict` runs.

use burn::tensor::Device;
use clap::Parser;
use maskrcnn::train::cli::{run_train, TrainArgs};
use maskrcnn_data::synthetic::{generate, write_coco, SyntheticConfig};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    train: TrainArgs,
}

#[test]
fn train_command_writes_a_loadable_model_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let data = generate(&SyntheticConfig { num_images: 3, image_size: 96, min_objects: 1, max_objects: 2, min_object_size: 16.0, max_object_size: 40.0, seed: 4 }).unwrap();
    let json = write_coco(&data, &tmp.path().join("data")).unwrap();
    let out = tmp.path().join("run");
    let args = [
        "test", "--data", json.to_str().unwrap(), "--output", out.to_str().unwrap(), "--backbone", "18", "--steps", "2",
        "--batch-size", "1", "--min-size", "96", "--max-size", "96", "--val-split", "0.34", "--log-every", "1", "--quiet",
    ];
    run_train(Cli::parse_from(args).train).unwrap();
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let steps: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).filter(|v: &serde_json::Value| v["kind"] == "step").collect();
    assert_eq!(steps.len(), 2, "{metrics}");
    for key in ["step", "epoch", "lr", "loss", "loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"] {
        assert!(steps[0][key].is_number(), "metrics line lacks {key}: {}", steps[0]);
    }
    assert!(metrics.contains("\"val_loss\""), "no validation loss in {metrics}");
    let curves = image::open(out.join("loss_curves.png")).expect("loss_curves.png written beside metrics.jsonl");
    assert!(curves.width() > 100 && curves.height() > 100);
    let model = maskrcnn::weights::load_model(&out.join("model"), &Device::default()).unwrap().model;
    assert_eq!(model.config.num_classes, 4);
    assert_eq!(model.config.class_names[1], "building");
    assert_eq!(model.config.backbone.trainable_layers, 5);

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
        let args = [
            "test", "--data", data.to_str().unwrap(), "--output", out.to_str().unwrap(), "--backbone", "18", "--steps", "2",
            "--batch-size", "1", "--min-size", "64", "--max-size", "64", "--val-split", "0", "--quiet",
        ];
        run_train(Cli::parse_from(args).train).unwrap_or_else(|e| panic!("{folder}: {e:#}"));
        let model = maskrcnn::weights::load_model(&out.join("model"), &Device::default()).unwrap().model;
        assert!(model.config.num_classes >= 2, "{folder}");
    }
}
