//! PointRend models: built, saved, reloaded and run through `predict`, and the errors when heads
//! and checkpoints disagree.

mod common;

use burn::tensor::Device;
use common::fixture;
use maskrcnn::model::ForwardTrace;
use maskrcnn::weights::checkpoint::{infer_config, read_config};
use maskrcnn::weights::{load_model, save_model_dir, StateDict};
use maskrcnn::MaskRcnn;

fn tiny_pointrend_config() -> maskrcnn::MaskRcnnConfig {
    let mut config = read_config(&fixture("parity/r18_tiny/config.json")).unwrap();
    config.mask_head = maskrcnn::config::MaskHeadKind::PointRend;
    config
}

#[test]
fn pointrend_model_saves_reloads_and_predicts_224_masks() {
    let device = Device::flex();
    let mut model = MaskRcnn::new(tiny_pointrend_config(), &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_model_dir(&mut model, dir.path()).unwrap();
    let sd = StateDict::read(&dir.path().join("model.safetensors")).unwrap();
    for key in [
        "roi_heads.mask_head.reduce_spatial_dim_conv.weight",
        "roi_heads.mask_head.coarse_mask_fc1.weight",
        "roi_heads.mask_head.coarse_mask_fc2.weight",
        "roi_heads.mask_head.prediction.weight",
        "roi_heads.mask_predictor.mask_point_head.fc1.weight",
        "roi_heads.mask_predictor.mask_point_head.predictor.weight",
    ] {
        assert!(sd.get(key).is_some(), "{key}");
    }
    assert_eq!(sd.shape("roi_heads.mask_head.prediction.weight"), Some(&[4 * 49, 1024][..]));
    assert_eq!(sd.shape("roi_heads.mask_predictor.mask_point_head.fc1.weight"), Some(&[256, 32 + 4, 1][..]));
    assert!(sd.get("roi_heads.mask_head.0.0.weight").is_none());
    assert!(infer_config(&sd).unwrap().is_pointrend(), "PointRend is recognised from the keys");

    let reloaded = load_model(dir.path(), &device).unwrap().model;
    assert!(reloaded.config.is_pointrend());
    let image = maskrcnn::image_io::load_image(&fixture("parity/r18_tiny/image.png"), 3).unwrap();
    let mut trace = Some(ForwardTrace::default());
    let dets = reloaded.predict_traced(std::slice::from_ref(&image), &mut trace);
    let trace = trace.unwrap();
    assert!(!dets[0].is_empty(), "random heads over 4 classes still pass the 0.05 score threshold");
    for probs in &trace.mask_probs[0] {
        assert_eq!(probs.len(), 224 * 224, "refined to 224x224");
        assert!(probs.iter().all(|p| (0.0..=1.0).contains(p)));
    }
    let d = &dets[0][0];
    assert!(d.mask.width > 0 && d.mask.x0 + d.mask.width <= image.width && d.mask.y0 + d.mask.height <= image.height);
}

#[test]
fn plain_checkpoint_asked_to_run_pointrend_names_the_missing_keys() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("parity/r18_tiny/model.safetensors"), dir.path().join("model.safetensors")).unwrap();
    std::fs::write(dir.path().join("config.json"), serde_json::to_string(&tiny_pointrend_config()).unwrap()).unwrap();
    let err = format!("{:#}", load_model(dir.path(), &device).err().expect("must fail"));
    assert!(err.contains("roi_heads.mask_head.reduce_spatial_dim_conv.weight"), "{err}");
}

#[test]
fn a_plain_checkpoint_starts_pointrend_fine_tuning_with_a_new_head_keeping_the_rest() {
    let device = Device::flex();
    let plain = load_model(&fixture("parity/r18_tiny"), &device).unwrap().model;
    let mut plain_for_keys = load_model(&fixture("parity/r18_tiny"), &device).unwrap().model;
    let before = StateDict::from_module(&mut plain_for_keys.net, "");
    let mut converted = plain.with_new_pointrend_head();
    assert!(
        converted.config.is_pointrend()
            && matches!(converted.net.roi_heads.mask, maskrcnn::roi_heads::MaskBranch::PointRend(_))
    );
    let after = StateDict::from_module(&mut converted.net, "");
    for key in ["backbone.body.conv1.weight", "rpn.head.conv.0.0.weight", "roi_heads.box_predictor.cls_score.weight"] {
        assert_eq!(before.get(key).unwrap().data, after.get(key).unwrap().data, "{key} kept");
    }
    assert!(after.get("roi_heads.mask_predictor.mask_point_head.predictor.weight").is_some());
    let image = maskrcnn::image_io::load_image(&fixture("parity/r18_tiny/image.png"), 3).unwrap();
    assert!(!converted.predict(std::slice::from_ref(&image))[0].is_empty());
}
