//! Checkpoint formats: torch.save zip pickles, safetensors, pre-0.13 key names, wrapped dicts,
//! arcgis.learn packages, and the errors users see when a file is wrong.

mod common;

use std::io::Write;

use burn::tensor::Device;
use common::fixture;
use maskrcnn::weights::checkpoint::{infer_config, read_config};
use maskrcnn::weights::{load_model, save_model_dir, StateDict};

fn loader(name: &str) -> std::path::PathBuf {
    fixture(&format!("parity/loader/{name}"))
}

#[test]
fn pth_safetensors_and_legacy_wrapped_hold_the_same_weights() {
    let st = StateDict::read(&loader("model.safetensors")).unwrap();
    let pth = StateDict::read(&loader("model.pth")).unwrap();
    let legacy = StateDict::read(&loader("model_legacy_wrapped.pth")).unwrap();
    assert_eq!(st.tensors.len(), 49, "every tensor of the tiny loader model");
    assert_eq!(st.tensors.keys().collect::<Vec<_>>(), pth.tensors.keys().collect::<Vec<_>>());
    assert_eq!(st.tensors.keys().collect::<Vec<_>>(), legacy.tensors.keys().collect::<Vec<_>>());
    for (k, v) in &st.tensors {
        assert_eq!(&pth.tensors[k], v, "{k} differs between .pth and .safetensors");
        assert_eq!(&legacy.tensors[k], v, "{k} differs in the legacy wrapped checkpoint");
    }
}

#[test]
fn architecture_is_inferred_from_tensor_shapes() {
    let config = read_config(&loader("config.json")).unwrap();
    let inferred = infer_config(&StateDict::read(&loader("model.pth")).unwrap()).unwrap();
    assert_eq!(inferred.num_classes, config.num_classes);
    assert_eq!(inferred.backbone.depth, config.backbone.depth);
    assert_eq!(inferred.backbone.returned_layers, config.backbone.returned_layers);
    assert_eq!(inferred.backbone.fpn_out_channels, config.backbone.fpn_out_channels);
    assert_eq!(inferred.roi_heads.representation_size, config.roi_heads.representation_size);
    assert_eq!(inferred.roi_heads.mask_layers, config.roi_heads.mask_layers);
    assert_eq!(inferred.roi_heads.mask_predictor_channels, config.roi_heads.mask_predictor_channels);
}

#[test]
fn every_format_loads_into_a_model() {
    let device = Device::flex();
    for name in ["model.pth", "model.safetensors", "model_legacy_wrapped.pth"] {
        let loaded = load_model(&loader(name), &device).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        // config.json beside the weights wins over inference.
        assert_eq!(loaded.model.config, read_config(&loader("config.json")).unwrap());
    }
}

#[test]
fn saved_model_folder_round_trips() {
    let device = Device::flex();
    let mut model = load_model(&fixture("parity/r18_tiny"), &device).unwrap().model;
    let dir = tempfile::tempdir().unwrap();
    save_model_dir(&mut model, dir.path()).unwrap();
    let original = StateDict::read(&fixture("parity/r18_tiny/model.safetensors")).unwrap();
    let saved = StateDict::read(&dir.path().join("model.safetensors")).unwrap();
    assert_eq!(original.tensors, saved.tensors);
    let again = load_model(dir.path(), &device).unwrap();
    assert_eq!(again.model.config, model.config);
}

fn write_safetensors_without(prefix: &str, path: &std::path::Path) {
    let mut sd = StateDict::read(&loader("model.safetensors")).unwrap();
    sd.tensors.retain(|k, _| !k.starts_with(prefix));
    sd.write_safetensors(path).unwrap();
}

#[test]
fn wrong_architecture_is_a_clear_error() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    // A Faster R-CNN-like checkpoint: no mask head.
    let path = dir.path().join("faster.safetensors");
    write_safetensors_without("roi_heads.mask", &path);
    let err = format!("{:#}", load_model(&path, &device).err().expect("must fail"));
    assert!(err.contains("mask head") && err.contains("faster.safetensors"), "{err}");

    // A mis-shaped tensor under an explicit config names the key and both shapes.
    let mut sd = StateDict::read(&loader("model.safetensors")).unwrap();
    let t = sd.tensors.get_mut("roi_heads.box_predictor.cls_score.weight").unwrap();
    t.shape[0] += 1;
    t.data.extend(vec![0.0; t.shape[1]]);
    let shaped = dir.path().join("shaped");
    std::fs::create_dir_all(&shaped).unwrap();
    sd.write_safetensors(&shaped.join("model.safetensors")).unwrap();
    std::fs::copy(loader("config.json"), shaped.join("config.json")).unwrap();
    let err = format!("{:#}", load_model(&shaped, &device).err().expect("must fail"));
    assert!(err.contains("roi_heads.box_predictor.cls_score.weight") && err.contains("shape"), "{err}");
}

#[test]
fn corrupt_and_missing_files_are_clear_errors() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.pth");
    let bytes = std::fs::read(loader("model.pth")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let err = format!("{:#}", load_model(&truncated, &device).err().expect("must fail"));
    assert!(err.contains("truncated.pth"), "{err}");

    let err = format!("{:#}", load_model(&dir.path().join("nope.pth"), &device).err().expect("must fail"));
    assert!(err.contains("nope.pth") && err.contains("no such file"), "{err}");
}

fn emd_text(model_file: &str) -> String {
    format!(
        r#"{{"ModelParameters": {{"pointrend": false, "backbone": "resnet18", "backend": "pytorch"}},
        "Framework": "arcgis.learn.models._inferencing", "ModelConfiguration": "_maskrcnn_inferencing",
        "ModelType": "InstanceDetection", "MaskRCNNkwargs": {{"box_detections_per_img": 7}},
        "Classes": [{{"Value": 5, "Name": "Person", "Color": [255,0,0]}}, {{"Value": 7, "Name": "Tie", "Color": [0,255,0]}}, {{"Value": 9, "Name": "Scissors", "Color": [0,0,255]}}],
        "ModelFile": "{model_file}", "ImageHeight": 128, "ImageWidth": 128}}"#
    )
}

#[test]
fn arcgis_emd_and_dlpk_load_with_their_classes() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(loader("model.pth"), dir.path().join("people.pth")).unwrap();
    std::fs::write(dir.path().join("people.emd"), emd_text("people.pth")).unwrap();
    let model = load_model(&dir.path().join("people.emd"), &device).unwrap().model;
    assert_eq!(model.config.class_names, vec!["background", "Person", "Tie", "Scissors"]);
    assert_eq!(model.config.category_id(2), 7);
    assert_eq!(model.config.transform.min_size, 192);
    assert_eq!(model.config.transform.max_size, 256);
    assert_eq!(model.config.roi_heads.box_detections_per_img, 7);

    // The .dlpk is a plain zip of the folder.
    let dlpk = dir.path().join("people.dlpk");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&dlpk).unwrap());
    for name in ["people.pth", "people.emd"] {
        zip.start_file(name, zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(&std::fs::read(dir.path().join(name)).unwrap()).unwrap();
    }
    zip.finish().unwrap();
    let from_dlpk = load_model(&dlpk, &device).unwrap().model;
    assert_eq!(from_dlpk.config, model.config);

    // An .emd naming a missing weights file says which.
    std::fs::write(dir.path().join("broken.emd"), emd_text("gone.pth")).unwrap();
    let err = format!("{:#}", load_model(&dir.path().join("broken.emd"), &device).err().expect("must fail"));
    assert!(err.contains("gone.pth") && err.contains("does not exist"), "{err}");
}

#[test]
fn arcgis_package_round_trips() {
    let device = Device::flex();
    let mut model = load_model(&fixture("parity/r18_tiny"), &device).unwrap().model;
    model.config.class_names = vec!["background".into(), "person".into(), "tie".into(), "scissors".into()];
    model.config.category_ids = vec![0, 1, 32, 87];
    let dir = tempfile::tempdir().unwrap();
    let dlpk = maskrcnn::weights::arcgis::save_package(&mut model, dir.path(), "people").unwrap();
    let emd: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("people.emd")).unwrap()).unwrap();
    assert_eq!(emd["ModelFile"], "people.pth");
    assert_eq!(emd["ModelParameters"]["backbone"], "resnet18");
    assert_eq!(emd["Classes"][1]["Value"], 32);
    assert_eq!(emd["Classes"][1]["Name"], "tie");
    let original = StateDict::read(&fixture("parity/r18_tiny/model.safetensors")).unwrap();
    for path in [dir.path().join("people.emd"), dlpk] {
        let mut loaded = load_model(&path, &device).unwrap();
        let sd = StateDict::from_module(&mut loaded.model.net, "");
        assert_eq!(sd.tensors, original.tensors, "{}", path.display());
        assert_eq!(loaded.model.config.category_id(2), 32);
        assert_eq!(loaded.model.config.class_name(3), "scissors");
    }
}
