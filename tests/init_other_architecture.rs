//! `train --init` with a classification checkpoint of another architecture (a ViT in torchvision's
//! or timm's key names) fails in one line naming the file and what it is, and writes nothing.

use std::collections::BTreeMap;
use std::process::Command;

use maskrcnn::weights::{HostTensor, StateDict};
use maskrcnn_data::synthetic::{generate, write_coco, SyntheticConfig};

fn tensor(shape: &[usize]) -> HostTensor {
    HostTensor { shape: shape.to_vec(), data: vec![0.01; shape.iter().product()] }
}

#[test]
fn a_vit_checkpoint_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate(&SyntheticConfig {
        num_images: 2,
        image_size: 32,
        min_objects: 1,
        max_objects: 1,
        min_object_size: 8.0,
        max_object_size: 12.0,
        seed: 3,
    })
    .unwrap();
    let annotations = write_coco(&data, &dir.path().join("data")).unwrap();

    // torchvision's vit_b_16 names and timm's vit_base_patch16_224 names, at toy sizes.
    let torchvision: &[(&str, &[usize])] = &[
        ("class_token", &[1, 1, 8]),
        ("conv_proj.weight", &[8, 3, 4, 4]),
        ("conv_proj.bias", &[8]),
        ("encoder.pos_embedding", &[1, 5, 8]),
        ("encoder.layers.encoder_layer_0.ln_1.weight", &[8]),
        ("encoder.layers.encoder_layer_0.self_attention.in_proj_weight", &[24, 8]),
        ("heads.head.weight", &[10, 8]),
    ];
    let timm: &[(&str, &[usize])] = &[
        ("cls_token", &[1, 1, 8]),
        ("pos_embed", &[1, 5, 8]),
        ("patch_embed.proj.weight", &[8, 3, 4, 4]),
        ("blocks.0.norm1.weight", &[8]),
        ("blocks.0.attn.qkv.weight", &[24, 8]),
        ("head.weight", &[10, 8]),
    ];
    for (name, keys) in [("vit_b_16", torchvision), ("vit_base_patch16_224", timm)] {
        let sd =
            StateDict { tensors: keys.iter().map(|(k, s)| (k.to_string(), tensor(s))).collect::<BTreeMap<_, _>>() };
        let checkpoint = dir.path().join(format!("{name}.safetensors"));
        sd.write_safetensors(&checkpoint).unwrap();
        let run = dir.path().join(format!("run-{name}"));
        let out = Command::new(env!("CARGO_BIN_EXE_maskrcnn"))
            .args(["train", "--data"])
            .arg(&annotations)
            .arg("--init")
            .arg(&checkpoint)
            .arg("--output")
            .arg(&run)
            .args(["--steps", "1", "--quiet"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{name}: one line: {stderr}");
        assert!(lines[0].contains(&checkpoint.display().to_string()), "{name}: names the file: {stderr}");
        assert!(
            lines[0].contains("is a ViT classification checkpoint")
                && lines[0].contains("only ResNet-18/34/50/101/152 backbones are supported"),
            "{name}: {stderr}"
        );
        assert!(!run.exists(), "{name}: no run folder is left behind");
    }
}
