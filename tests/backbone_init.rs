//! A torchvision classification ResNet as the backbone: the body loaded from a checkpoint in
//! torchvision's key names gives torchvision's `IntermediateLayerGetter` features (layer1..4).
//! Weights come from one integer formula on both sides, so the fixture is only the key list, the
//! input and the features (`tools/reference/backbone/make_backbone_fixture.py`).

mod common;

use std::collections::BTreeMap;

use burn::tensor::Device;
use common::{assert_close, fixture, read_safetensors};
use maskrcnn::tensor_util::{tensor_from_vec, tensor_to_vec};
use maskrcnn::weights::backbone_init::{classification_resnet, load_backbone_body, ClassificationResNet};
use maskrcnn::weights::{HostTensor, StateDict};

/// The fixture script's `formula`: ((j * 7919 + index * 104729) mod 2001) / 1000 - 1, in f32.
fn formula(index: u64, n: usize) -> Vec<f32> {
    (0..n as u64).map(|j| ((j * 7919 + index * 104729) % 2001) as f32 / 1000.0 - 1.0).collect()
}

/// The fixture script's `value`: batch-norm statistics and scales near their usual values,
/// convolution weights scaled by 1/sqrt(fan-in).
fn value(key: &str, index: u64, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let v = formula(index, n);
    if key.ends_with("running_var") {
        v.iter().map(|x| 1.0 + 0.5 * x.abs()).collect()
    } else if key.ends_with("running_mean") || key.ends_with("bias") {
        v.iter().map(|x| 0.1 * x).collect()
    } else if key.ends_with("weight") && shape.len() == 1 {
        v.iter().map(|x| 1.0 + 0.1 * x).collect()
    } else {
        let scale = (1.0 / (n / shape[0]) as f64).sqrt() as f32;
        v.iter().map(|x| x * scale).collect()
    }
}

#[test]
fn a_torchvision_resnet18_body_gives_torchvisions_features() {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("backbone/resnet18_keys.json")).unwrap()).unwrap();
    let keys = meta["float_keys"].as_object().unwrap();
    let mut tensors = BTreeMap::new();
    // Keys in sorted order, as the script numbers them.
    let mut sorted: Vec<&String> = keys.keys().collect();
    sorted.sort();
    for (index, key) in sorted.into_iter().enumerate() {
        let shape: Vec<usize> = keys[key].as_array().unwrap().iter().map(|s| s.as_u64().unwrap() as usize).collect();
        let data = value(key, index as u64, &shape);
        tensors.insert(key.clone(), HostTensor { shape, data });
    }
    let sd = StateDict { tensors };
    assert_eq!(classification_resnet(&sd).unwrap(), Some(ClassificationResNet { depth: 18, in_channels: 3 }));

    let device = Device::flex();
    let names = vec!["object".to_string()];
    let mut model = maskrcnn::MaskRcnn::new(maskrcnn::MaskRcnnConfig::for_classes(18, &names, 3, 5), &device).unwrap();
    let loaded = load_backbone_body(&mut model, &sd, &device).unwrap();
    assert_eq!(loaded, keys.keys().filter(|k| !k.starts_with("fc.")).count(), "every body tensor loaded");

    let expected = read_safetensors(&fixture("backbone/resnet18_features.safetensors"));
    let (shape, input) = &expected["input"];
    let x = tensor_from_vec(input.clone(), [shape[0], shape[1], shape[2], shape[3]], &device);
    let features = model.net.backbone.body.forward(x, &[1, 2, 3, 4]);
    for (i, feature) in features.into_iter().enumerate() {
        let name = format!("layer{}", i + 1);
        let (shape, want) = &expected[&name];
        assert_eq!(&feature.dims().to_vec(), shape, "{name} shape");
        assert_close(&name, &tensor_to_vec(feature), want, 1e-4);
    }
}
