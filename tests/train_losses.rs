//! Training losses and gradients against torchvision, on the fixture written by
//! `tools/reference/train/make_loss_fixtures.py` (r18_tiny parity model, two images, sampled
//! indices recorded from torchvision and replayed here).

mod common;

use burn::tensor::Device;
use common::{fixture, relative_error};
use maskrcnn::train::params::{freeze_layers, gradients_by_name};
use maskrcnn::train::TrainTrace;
use maskrcnn::weights::checkpoint::read_config;
use maskrcnn::weights::StateDict;
use maskrcnn::MaskRcnn;

#[test]
fn losses_and_gradients_match_torchvision() {
    let device = Device::flex().autodiff();
    let root = fixture("parity/r18_tiny");
    let config = read_config(&root.join("config.json")).unwrap();
    let trainable = config.backbone.trainable_layers;
    let mut model = MaskRcnn::new(config, &device).unwrap();
    StateDict::read(&root.join("model.safetensors")).unwrap().load_into(&mut model.net, "", &device).unwrap();
    freeze_layers(&mut model.net, trainable);

    let (images, targets, mut sampler, fx) = common::loss_fixture_batch();
    let get = |k: &str| fx.get(k).unwrap_or_else(|| panic!("fixture lacks {k}"));

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
