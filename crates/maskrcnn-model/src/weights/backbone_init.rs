//! Starting from a pretrained classification ResNet: a torchvision `resnet50-*.pth`, a timm or
//! torchgeo (N-band) ResNet state dict, with the usual `conv1`, `bn1`, `layer1..4` and `fc` keys.
//! Its weights become the backbone's body (`fc` is dropped); the FPN, RPN and heads start fresh,
//! as torchvision's `maskrcnn_resnet50_fpn(weights_backbone=...)` does.

use anyhow::{bail, Context, Result};
use burn::tensor::Device;

use super::StateDict;
use crate::model::MaskRcnn;

/// The architecture a classification checkpoint holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassificationResNet {
    pub depth: usize,
    /// Input bands of its first convolution (3 for ImageNet, more for sensor ResNets).
    pub in_channels: usize,
}

/// `Some` when `sd` is a bare classification ResNet (no detection keys), `None` when it is
/// something else (a whole detection checkpoint, say); an error for a ResNet-like file whose
/// layers fit no torchvision depth.
pub fn classification_resnet(sd: &StateDict) -> Result<Option<ClassificationResNet>> {
    let has = |k: &str| sd.get(k).is_some();
    if let Some((name, key)) = other_classification_architecture(sd) {
        bail!(
            "this is a {name} classification checkpoint (it has `{key}`); only ResNet-18/34/50/101/152 backbones are \
             supported"
        );
    }
    if !has("conv1.weight") || !has("layer1.0.conv1.weight") || has("backbone.body.conv1.weight") {
        return Ok(None);
    }
    let bottleneck = has("layer1.0.conv3.weight");
    let blocks: Vec<usize> =
        (1..=4).map(|layer| (0..).take_while(|i| has(&format!("layer{layer}.{i}.conv1.weight"))).count()).collect();
    let depth = match (bottleneck, blocks.as_slice()) {
        (false, [2, 2, 2, 2]) => 18,
        (false, [3, 4, 6, 3]) => 34,
        (true, [3, 4, 6, 3]) => 50,
        (true, [3, 4, 23, 3]) => 101,
        (true, [3, 8, 36, 3]) => 152,
        _ => bail!(
            "a ResNet with {} blocks {blocks:?} per stage is none of torchvision's ResNet-18/34/50/101/152",
            if bottleneck { "bottleneck" } else { "basic" }
        ),
    };
    let conv1 = sd.shape("conv1.weight").unwrap_or(&[]);
    let &[64, in_channels, 7, 7] = conv1 else {
        bail!("conv1.weight has shape {conv1:?}; a torchvision ResNet's is [64, bands, 7, 7]");
    };
    Ok(Some(ClassificationResNet { depth, in_channels }))
}

/// Classification networks other than ResNet, by the key names torchvision and timm give them:
/// the architecture and the key that gave it away. Detection checkpoints (keys under
/// `backbone.`) are never taken for one.
fn other_classification_architecture(sd: &StateDict) -> Option<(&'static str, String)> {
    if sd.tensors.keys().any(|k| k.starts_with("backbone.") || k.starts_with("rpn.") || k.starts_with("roi_heads.")) {
        return None;
    }
    // (architecture, key prefix): torchvision's names first, then timm's.
    const SIGNS: [(&str, &str); 16] = [
        ("ViT", "conv_proj."),
        ("ViT", "encoder.layers."),
        ("ViT", "class_token"),
        ("ViT", "patch_embed.proj."),
        ("ViT", "cls_token"),
        ("ViT", "blocks.0."),
        ("Swin", "features.0.0.weight"),
        ("Swin", "layers.0.blocks."),
        ("ConvNeXt", "stages.0.blocks."),
        ("ConvNeXt", "downsample_layers."),
        ("EfficientNet", "conv_stem."),
        ("EfficientNet", "features.1.0.block."),
        ("MobileNet", "features.1.conv."),
        ("VGG", "classifier.6."),
        ("DenseNet", "features.denseblock1."),
        ("RegNet", "trunk_output."),
    ];
    let swin = sd.tensors.keys().any(|k| k.contains(".attn.relative_position_bias_table"));
    // torchvision's ConvNeXt blocks are `features.i.j.block` like EfficientNet's, with a layer scale.
    if let Some(key) = sd.tensors.keys().find(|k| k.ends_with(".layer_scale") || k.ends_with(".gamma")) {
        if !sd.tensors.contains_key("conv1.weight") {
            return Some(("ConvNeXt", key.clone()));
        }
    }
    for (name, prefix) in SIGNS {
        if let Some(key) = sd.tensors.keys().find(|k| k.starts_with(prefix)) {
            // torchvision's Swin, EfficientNet and MobileNet all begin with `features.0.0`; only
            // Swin has windowed attention.
            if prefix == "features.0.0.weight" && !swin {
                continue;
            }
            return Some((name, key.clone()));
        }
    }
    None
}

/// Loads the classification weights into `model`'s ResNet body, whose depth and input bands must
/// be the checkpoint's; returns the number of tensors loaded.
pub fn load_backbone_body(model: &mut MaskRcnn, sd: &StateDict, device: &Device) -> Result<usize> {
    let body = StateDict {
        tensors: sd
            .tensors
            .iter()
            .filter(|(k, _)| !k.starts_with("fc."))
            .map(|(k, t)| (format!("backbone.body.{k}"), t.clone()))
            .collect(),
    };
    body.load_into(&mut model.net.backbone.body, "backbone.body", device)
        .context("not a torchvision-compatible ResNet backbone")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MaskRcnnConfig;

    /// A classification checkpoint as torchvision writes one: the body's keys without prefix,
    /// `num_batches_tracked` counters and an `fc` layer.
    fn classification_checkpoint(model: &mut MaskRcnn) -> StateDict {
        let full = StateDict::from_module(&mut model.net.backbone.body, "backbone.body");
        let mut tensors: std::collections::BTreeMap<_, _> =
            full.tensors.into_iter().map(|(k, t)| (k["backbone.body.".len()..].to_string(), t)).collect();
        let fc = super::super::HostTensor { shape: vec![1000, 512], data: vec![0.5; 512_000] };
        tensors.insert("fc.weight".into(), fc);
        StateDict { tensors }
    }

    #[test]
    fn a_classification_resnet_becomes_the_body() {
        let device = Device::flex();
        let names = vec!["building".to_string()];
        let mut source = MaskRcnn::new(MaskRcnnConfig::for_classes(18, &names, 3, 3), &device).unwrap();
        let sd = classification_checkpoint(&mut source);
        assert_eq!(classification_resnet(&sd).unwrap(), Some(ClassificationResNet { depth: 18, in_channels: 3 }));

        let mut fresh = MaskRcnn::new(MaskRcnnConfig::for_classes(18, &names, 3, 3), &device).unwrap();
        let loaded = load_backbone_body(&mut fresh, &sd, &device).unwrap();
        assert!(loaded > 60, "{loaded} tensors");
        let a = StateDict::from_module(&mut source.net.backbone.body, "backbone.body");
        let b = StateDict::from_module(&mut fresh.net.backbone.body, "backbone.body");
        for (k, t) in &a.tensors {
            assert_eq!(t.data, b.tensors[k].data, "{k}");
        }

        // Whole detection checkpoints and other networks are not taken for one.
        let detection = StateDict::from_module(&mut source.net, "");
        assert_eq!(classification_resnet(&detection).unwrap(), None);
        let mut odd = sd.clone();
        odd.tensors.retain(|k, _| !k.starts_with("layer3.1."));
        let err = classification_resnet(&odd).unwrap_err().to_string();
        assert!(err.contains("[2, 2, 1, 2]"), "{err}");
    }

    #[test]
    fn other_architectures_are_named() {
        let tensor = || super::super::HostTensor { shape: vec![2], data: vec![0.0; 2] };
        let sd = |keys: &[&str]| StateDict { tensors: keys.iter().map(|k| (k.to_string(), tensor())).collect() };
        for (keys, name) in [
            (&["conv_proj.weight", "encoder.layers.encoder_layer_0.ln_1.weight"][..], "ViT"),
            (&["patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "cls_token"][..], "ViT"),
            (&["features.0.0.weight", "features.1.0.attn.relative_position_bias_table"][..], "Swin"),
            (&["features.0.0.weight", "features.1.0.block.0.0.weight"][..], "EfficientNet"),
            (&["stem.0.weight", "stages.0.blocks.0.conv_dw.weight"][..], "ConvNeXt"),
        ] {
            let err = classification_resnet(&sd(keys)).unwrap_err().to_string();
            assert!(err.contains(&format!("a {name} classification checkpoint")), "{keys:?}: {err}");
            assert!(err.contains("only ResNet-18/34/50/101/152"), "{err}");
        }
        // Something unknown is not guessed at: the loader says what it lacks.
        assert_eq!(classification_resnet(&sd(&["foo.weight"])).unwrap(), None);
    }
}
