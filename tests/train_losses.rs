//! Training losses and gradients against torchvision, on the fixture written by
//! `tools/reference/train/make_loss_fixtures.py` (r18_tiny parity model, two images, sampled
//! indices recorded from torchvision and replayed here).

mod common;

use std::collections::HashMap;

use burn::tensor::Device;
use common::{fixture, relative_error};
use maskrcnn::train::params::{freeze_layers, gradients_by_name};
use maskrcnn::train::{RecordedSampler, TrainTarget, TrainTrace};
use maskrcnn::transform::ImageChw;
use maskrcnn::weights::checkpoint::read_config;
use maskrcnn::weights::StateDict;
use maskrcnn::MaskRcnn;

struct Raw {
    shape: Vec<usize>,
    f32s: Vec<f32>,
    ints: Vec<i64>,
    bytes: Vec<u8>,
}

fn read_all(path: &std::path::Path) -> HashMap<String, Raw> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            let d = v.data();
            let mut raw = Raw { shape: v.shape().to_vec(), f32s: vec![], ints: vec![], bytes: vec![] };
            match v.dtype() {
                safetensors::Dtype::F32 => {
                    raw.f32s = d.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
                }
                safetensors::Dtype::I64 => {
                    raw.ints = d.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()
                }
                safetensors::Dtype::U8 => raw.bytes = d.to_vec(),
                other => panic!("{name}: unexpected dtype {other:?}"),
            }
            (name, raw)
        })
        .collect()
}

#[test]
fn losses_and_gradients_match_torchvision() {
    let device = Device::flex().autodiff();
    let root = fixture("parity/r18_tiny");
    let config = read_config(&root.join("config.json")).unwrap();
    let trainable = config.backbone.trainable_layers;
    let mut model = MaskRcnn::new(config, &device).unwrap();
    StateDict::read(&root.join("model.safetensors")).unwrap().load_into(&mut model.net, "", &device).unwrap();
    freeze_layers(&mut model.net, trainable);

    let fx = read_all(&fixture("train/loss_r18_tiny.safetensors"));
    let get = |k: &str| fx.get(k).unwrap_or_else(|| panic!("fixture lacks {k}"));
    let mut images = Vec::new();
    let mut targets = Vec::new();
    let mut sampler = RecordedSampler::default();
    let indices = |k: &str| get(k).ints.iter().map(|&v| v as usize).collect::<Vec<usize>>();
    for i in 0..2 {
        let img = get(&format!("image.{i}"));
        images.push(ImageChw {
            channels: img.shape[0],
            height: img.shape[1],
            width: img.shape[2],
            data: img.bytes.iter().map(|&v| v as f32 / 255.0).collect(),
        });
        let boxes = &get(&format!("target.{i}.boxes")).f32s;
        let masks = get(&format!("target.{i}.masks"));
        let plane = masks.shape[1] * masks.shape[2];
        targets.push(TrainTarget {
            boxes: boxes.chunks_exact(4).map(|b| [b[0], b[1], b[2], b[3]]).collect(),
            labels: get(&format!("target.{i}.labels")).ints.iter().map(|&l| l as usize).collect(),
            masks: masks.bytes.chunks_exact(plane).map(|m| m.to_vec()).collect(),
        });
        sampler.rpn.push((indices(&format!("rpn.pos.{i}")), indices(&format!("rpn.neg.{i}"))));
        sampler.roi_heads.push((indices(&format!("roi.pos.{i}")), indices(&format!("roi.neg.{i}"))));
    }

    // Proposals first (a dry run with the recorded sampler), so the recorded RoI indices can be
    // mapped onto our proposal order: boxes with equal scores may leave NMS in another order
    // than torch's unstable sort gives, which must not count as a loss mismatch.
    let mut trace = TrainTrace::default();
    model
        .forward_train_traced(&images, &targets, &mut sampler.clone(), Some(&mut trace))
        .unwrap_or_else(|_| panic!("dry run"));
    for i in 0..2 {
        let expected: Vec<[f32; 4]> =
            get(&format!("proposals.{i}")).f32s.chunks_exact(4).map(|b| [b[0], b[1], b[2], b[3]]).collect();
        let ours = &trace.proposals[i];
        assert_eq!(ours.len(), expected.len(), "image {i}: proposal count");
        let mut used = vec![false; ours.len()];
        let mut map = Vec::with_capacity(expected.len());
        let mut moved = 0;
        for (k, e) in expected.iter().enumerate() {
            let close = |j: usize| (0..4).all(|c| (ours[j][c] - e[c]).abs() <= 1e-4 * e[c].abs().max(1.0));
            let j = if !used[k] && close(k) {
                k
            } else {
                moved += 1;
                (0..ours.len())
                    .find(|&j| !used[j] && close(j))
                    .unwrap_or_else(|| panic!("image {i}: torchvision proposal {k} {e:?} has no counterpart"))
            };
            used[j] = true;
            map.push(j);
        }
        println!("image {i}: {} proposals match torchvision ({moved} in another order among equal scores)", ours.len());
        let n_props = ours.len();
        let remap = |v: &Vec<usize>| {
            let mut r: Vec<usize> = v.iter().map(|&k| if k < n_props { map[k] } else { k }).collect();
            r.sort_unstable();
            r
        };
        let (pos, neg) = sampler.roi_heads[i].clone();
        sampler.roi_heads[i] = (remap(&pos), remap(&neg));
    }
    let losses = model.forward_train(&images, &targets, &mut sampler).unwrap();

    // torchvision's order in the fixture: classifier, box_reg, mask, objectness, rpn_box_reg.
    let reference = &get("losses").f32s;
    let v = losses.values();
    let ours = [v[2], v[3], v[4], v[0], v[1]];
    let names = ["loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"];
    for k in 0..5 {
        let rel = (ours[k] - reference[k]).abs() / reference[k].abs();
        println!("{:>18}: ours {:.7} torchvision {:.7} (relative {rel:.1e})", names[k], ours[k], reference[k]);
        assert!(rel < 1e-4, "{}: {} vs torchvision {}", names[k], ours[k], reference[k]);
    }

    let grads = losses.total().backward();
    let by_name = gradients_by_name(&mut model.net, &grads);
    assert!(!by_name.contains_key("backbone.body.layer1.0.conv1.weight"), "frozen layer1 got a gradient");
    assert!(!by_name.contains_key("backbone.body.conv1.weight"), "frozen conv1 got a gradient");
    let mut checked = 0;
    for (key, raw) in &fx {
        let Some(name) = key.strip_prefix("grad.") else { continue };
        let ours = by_name.get(name).unwrap_or_else(|| panic!("no gradient for {name}"));
        let err = relative_error(ours, &raw.f32s);
        println!("{name:>50}: relative error {err:.2e}");
        assert!(err < 1e-4, "gradient of {name}: relative error {err:.2e}");
        checked += 1;
    }
    assert!(checked >= 8, "fixture holds only {checked} gradients");
}
