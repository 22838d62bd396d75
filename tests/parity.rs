//! Stage-by-stage parity with torchvision on fixtures written by
//! `tools/reference/parity/make_parity_fixtures.py` (seeded, briefly trained small models).

mod common;

use burn::tensor::Device;
use common::{assert_close, fixture, read_safetensors};
use maskrcnn::model::ForwardTrace;
use maskrcnn::ops::boxes::box_iou;
use maskrcnn::tensor_util::tensor_to_vec;
use maskrcnn::transform::ImageChw;
use maskrcnn::weights::checkpoint::read_config;
use maskrcnn::weights::StateDict;
use maskrcnn::MaskRcnn;

const TOL: f32 = 1e-4;

fn load(dir: &str, device: &Device) -> MaskRcnn {
    let root = fixture(&format!("parity/{dir}"));
    let config = read_config(&root.join("config.json")).unwrap();
    let mut model = MaskRcnn::new(config, device).unwrap();
    let sd = StateDict::read(&root.join("model.safetensors")).unwrap();
    sd.load_into(&mut model.net, "", device).unwrap();
    model
}

/// Flattens torchvision's per-level `[1, A*K, H, W]` head output to anchor order `(h, w, a, k)`.
fn flatten_head(shape: &[usize], values: &[f32], k: usize) -> Vec<f32> {
    let (ak, h, w) = (shape[1], shape[2], shape[3]);
    let a = ak / k;
    let mut out = Vec::with_capacity(values.len());
    for y in 0..h {
        for x in 0..w {
            for ai in 0..a {
                for ki in 0..k {
                    out.push(values[((ai * k + ki) * h + y) * w + x]);
                }
            }
        }
    }
    out
}

fn run_parity(dir: &str) {
    let device = Device::default();
    let model = load(dir, &device);
    let reference = read_safetensors(&fixture(&format!("parity/{dir}/outputs.safetensors")));
    let get = |k: &str| reference.get(k).unwrap_or_else(|| panic!("fixture lacks {k}")).clone();
    let (shape, data) = get("input_image");
    let image = ImageChw { channels: shape[0], height: shape[1], width: shape[2], data };
    let mut trace = Some(ForwardTrace::default());
    let detections = model.predict_traced(std::slice::from_ref(&image), &mut trace);
    let t = trace.unwrap();

    let (tshape, tdata) = get("transformed_image");
    assert_eq!(t.batch.as_ref().unwrap().dims().to_vec(), tshape, "padded batch shape");
    assert_close("transformed_image", &tensor_to_vec(t.batch.clone().unwrap()), &tdata, TOL);

    let level_names: Vec<String> = (0..model.config.backbone.returned_layers.len()).map(|i| i.to_string()).chain(["pool".to_string()]).collect();
    for (i, name) in level_names.iter().enumerate() {
        let (s, v) = get(&format!("features.{name}"));
        assert_eq!(t.features[i].dims().to_vec(), s, "features.{name} shape");
        assert_close(&format!("features.{name}"), &tensor_to_vec(t.features[i].clone()), &v, TOL);
    }

    let (_, anchors) = get("anchors");
    let ours: Vec<f32> = t.anchors.iter().flatten().copied().collect();
    assert_close("anchors", &ours, &anchors, 1e-6);

    let mut objectness = Vec::new();
    let mut deltas = Vec::new();
    for level in 0..level_names.len() {
        let (s, v) = get(&format!("rpn.objectness.{level}"));
        objectness.extend(flatten_head(&s, &v, 1));
        let (s, v) = get(&format!("rpn.deltas.{level}"));
        deltas.extend(flatten_head(&s, &v, 4));
    }
    assert_close("rpn objectness", &t.objectness, &objectness, TOL);
    assert_close("rpn deltas", &t.rpn_deltas, &deltas, TOL);

    let (_, proposals) = get("proposals");
    let ours: Vec<f32> = t.proposals[0].iter().flatten().copied().collect();
    assert_close("proposals", &ours, &proposals, TOL);

    assert_close("box_roi_pool", &tensor_to_vec(t.box_pooled.clone().unwrap()), &get("box_roi_pool").1, TOL);
    assert_close("box_head", &tensor_to_vec(t.box_features.clone().unwrap()), &get("box_head").1, TOL);
    assert_close("class_logits", &t.class_logits, &get("class_logits").1, TOL);
    assert_close("box_regression", &t.box_regression, &get("box_regression").1, TOL);

    let raw = &t.detections[0];
    let (_, ref_labels) = get("detections.labels");
    assert_eq!(raw.labels.iter().map(|&l| l as f32).collect::<Vec<_>>(), ref_labels, "detection labels");
    assert_close("detections.boxes", &raw.boxes.iter().flatten().copied().collect::<Vec<_>>(), &get("detections.boxes").1, TOL);
    assert_close("detections.scores", &raw.scores, &get("detections.scores").1, TOL);

    assert_close("mask_roi_pool", &tensor_to_vec(t.mask_pooled.clone().unwrap()), &get("mask_roi_pool").1, TOL);
    assert_close("mask_logits", &tensor_to_vec(t.mask_logits.clone().unwrap()), &get("mask_logits").1, TOL);
    let probs: Vec<f32> = t.mask_probs[0].iter().flatten().copied().collect();
    assert_close("mask_probs", &probs, &get("mask_probs").1, TOL);

    // Final outputs in original image coordinates: every detection matched both ways.
    let (_, fboxes) = get("final.boxes");
    let (_, fscores) = get("final.scores");
    let (_, flabels) = get("final.labels");
    let (mshape, fmasks) = get("final.masks");
    let (h, w) = (mshape[2], mshape[3]);
    let dets = &detections[0];
    assert_eq!(dets.len(), fscores.len(), "number of final detections");
    for (i, d) in dets.iter().enumerate() {
        let rb = [fboxes[i * 4], fboxes[i * 4 + 1], fboxes[i * 4 + 2], fboxes[i * 4 + 3]];
        assert_eq!(d.label as f32, flabels[i], "label of detection {i}");
        assert!(box_iou(&d.bbox, &rb) >= 0.99, "box {i}: {:?} vs {rb:?}", d.bbox);
        assert!((d.score - fscores[i]).abs() <= 1e-3, "score {i}: {} vs {}", d.score, fscores[i]);
        let ours = d.mask.to_full(h, w);
        let theirs = &fmasks[i * h * w..(i + 1) * h * w];
        assert_close(&format!("final mask probabilities {i}"), &ours, theirs, TOL);
        let inter = ours.iter().zip(theirs).filter(|(a, b)| **a > 0.5 && **b > 0.5).count();
        let union = ours.iter().zip(theirs).filter(|(a, b)| **a > 0.5 || **b > 0.5).count();
        assert!(union == 0 || inter as f32 / union as f32 >= 0.98, "mask IoU of detection {i}");
    }
}

#[test]
fn resnet18_fpn_matches_torchvision_stage_by_stage() {
    run_parity("r18_tiny");
}

#[test]
fn resnet50_fpn_matches_torchvision_stage_by_stage() {
    run_parity("r50_small");
}

/// The full-size maskrcnn_resnet50_fpn check reads a fixture generated on demand
/// (`make_parity_fixtures.py --full`); run with `cargo test --release -- --ignored`.
#[test]
#[ignore = "needs fixtures/generated/r50_full from make_parity_fixtures.py --full"]
fn full_size_resnet50_fpn_matches_torchvision() {
    let dir = fixture("generated/r50_full");
    assert!(dir.join("outputs.safetensors").is_file(), "{} is missing: run tools/reference/parity/make_parity_fixtures.py --full", dir.display());
    run_parity("../generated/r50_full");
}
