//! Hostile model files: packages that point outside themselves, zip bombs and lying zip headers,
//! and checkpoints with tensors of the wrong rank or shape. Each must give one clear error line
//! naming the file and the problem, never a panic, a read outside the package or an unbounded
//! write.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use common::fixture;
use maskrcnn::weights::arcgis::{extract_dlpk_with, DlpkLimits};
use maskrcnn::weights::{load_model, HostTensor, StateDict};

fn loader(name: &str) -> PathBuf {
    fixture(&format!("parity/loader/{name}"))
}

/// `load_model`'s error as one line, failing the test if it loads.
fn load_error(path: &Path) -> String {
    let err = format!("{:#}", load_model(path, &Device::flex()).err().expect("a hostile file must not load"));
    assert!(!err.contains('\n'), "one line, got {err:?}");
    err
}

fn emd_text(model_file: &str) -> String {
    serde_json::json!({
        "ModelParameters": {"pointrend": false, "backbone": "resnet18", "backend": "pytorch"},
        "Framework": "arcgis.learn.models._inferencing",
        "ModelType": "InstanceDetection",
        "Classes": [{"Value": 1, "Name": "a"}, {"Value": 2, "Name": "b"}, {"Value": 3, "Name": "c"}],
        "ModelFile": model_file,
    })
    .to_string()
}

/// A zip of `(name, bytes)` entries, deflated.
fn zip_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(&mut bytes));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
    }
    bytes
}

// ---- .emd files naming paths outside their package ----

#[test]
fn emd_model_file_outside_the_folder_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let pkg = root.path().join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    // A real, loadable checkpoint just outside the package: only the check stops it loading.
    std::fs::copy(loader("model.pth"), root.path().join("secret.pth")).unwrap();
    let absolute = root.path().join("secret.pth").display().to_string();
    for hostile in ["/etc/passwd", "../secret.pth", "./../secret.pth", "..\\secret.pth", absolute.as_str()] {
        let emd = pkg.join("model.emd");
        std::fs::write(&emd, emd_text(hostile)).unwrap();
        for path in [emd.clone(), pkg.clone()] {
            let err = load_error(&path);
            assert!(
                err.contains(&format!("ModelFile \"{hostile}\" points outside the package"))
                    && err.contains(&emd.display().to_string()),
                "{hostile}: {err}"
            );
        }
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(root.path().join("secret.pth"), pkg.join("link.pth")).unwrap();
        std::fs::write(pkg.join("model.emd"), emd_text("link.pth")).unwrap();
        let err = load_error(&pkg.join("model.emd"));
        assert!(err.contains("ModelFile \"link.pth\" points outside the package"), "{err}");
    }
    // The same package with the weights inside loads.
    std::fs::copy(loader("model.pth"), pkg.join("inside.pth")).unwrap();
    std::fs::write(pkg.join("model.emd"), emd_text("inside.pth")).unwrap();
    load_model(&pkg.join("model.emd"), &Device::flex()).expect("weights inside the package load");
}

#[test]
fn dlpk_emd_pointing_outside_the_package_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let weights = std::fs::read(loader("model.pth")).unwrap();
    for hostile in ["/etc/passwd", "../model.pth", "sub/../../model.pth"] {
        let dlpk = dir.path().join("hostile.dlpk");
        let emd = emd_text(hostile);
        std::fs::write(&dlpk, zip_bytes(&[("model.emd", emd.as_bytes()), ("model.pth", &weights)])).unwrap();
        let err = load_error(&dlpk);
        assert!(
            err.contains("hostile.dlpk")
                && err.contains(&format!("ModelFile \"{hostile}\" points outside the package")),
            "{hostile}: {err}"
        );
    }
}

// ---- .dlpk extraction: zip slip, zip bombs, lying headers ----

#[test]
fn dlpk_entries_escaping_the_folder_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let unique = format!("maskrcnn-zip-slip-{}", std::process::id());
    let escapes = [format!("../{unique}.emd"), format!("/tmp/{unique}.emd"), format!("a/../../{unique}.emd")];
    for name in &escapes {
        let dlpk = dir.path().join("slip.dlpk");
        std::fs::write(&dlpk, zip_bytes(&[("ok.txt", b"fine"), (name.as_str(), emd_text("x.pth").as_bytes())]))
            .unwrap();
        let err = load_error(&dlpk);
        assert!(err.contains("slip.dlpk") && err.contains(&format!("entry \"{name}\" points outside")), "{err}");
    }
    assert!(!std::env::temp_dir().join(format!("{unique}.emd")).exists(), "nothing was written outside");
    assert!(!Path::new("/tmp").join(format!("{unique}.emd")).exists(), "nothing was written outside");

    // A symbolic link entry is refused too.
    let dlpk = dir.path().join("link.dlpk");
    let mut bytes = Vec::new();
    {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(&mut bytes));
        zip.add_symlink("model.pth", "/etc/passwd", zip::write::SimpleFileOptions::default()).unwrap();
        zip.finish().unwrap();
    }
    std::fs::write(&dlpk, bytes).unwrap();
    let err = load_error(&dlpk);
    assert!(err.contains("link.dlpk") && err.contains("symbolic link"), "{err}");
}

#[test]
fn zip_bomb_dlpk_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let dlpk = dir.path().join("bomb.dlpk");
    // 64 MiB of zeros deflate to about 64 kB: a ratio no model package has.
    std::fs::write(&dlpk, zip_bytes(&[("model.pth", &vec![0u8; 64 << 20])])).unwrap();
    assert!(std::fs::metadata(&dlpk).unwrap().len() < 1 << 20);
    let start = Instant::now();
    let err = load_error(&dlpk);
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
    assert!(err.contains("bomb.dlpk") && err.contains("\"model.pth\"") && err.contains("zip bomb"), "{err}");

    // The same archive under a ratio limit it passes, but a smaller total budget.
    let limits = DlpkLimits { max_ratio: u64::MAX, max_total_bytes: 1 << 20, ..DlpkLimits::default() };
    let err = format!("{:#}", extract_dlpk_with(&dlpk, &limits).expect_err("over budget"));
    assert!(err.contains("bomb.dlpk") && err.contains("\"model.pth\"") && err.contains("1048576 bytes"), "{err}");
}

#[test]
fn too_many_dlpk_entries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dlpk = dir.path().join("many.dlpk");
    let names: Vec<String> = (0..=maskrcnn::weights::arcgis::DLPK_MAX_ENTRIES).map(|i| format!("f{i}")).collect();
    let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
    std::fs::write(&dlpk, zip_bytes(&entries)).unwrap();
    let err = load_error(&dlpk);
    assert!(err.contains("many.dlpk") && err.contains("10001 entries"), "{err}");
}

/// Overwrites the uncompressed size of the (single) entry in both its local header and the
/// central directory.
fn patch_uncompressed_size(bytes: &mut [u8], size: u32) {
    assert_eq!(&bytes[..4], b"PK\x03\x04");
    bytes[22..26].copy_from_slice(&size.to_le_bytes());
    let central = bytes.windows(4).position(|w| w == b"PK\x01\x02").expect("central directory");
    bytes[central + 24..central + 28].copy_from_slice(&size.to_le_bytes());
}

#[test]
fn lying_zip_header_stops_at_the_declared_size() {
    let dir = tempfile::tempdir().unwrap();
    let dlpk = dir.path().join("liar.dlpk");
    // 1 MiB of zeros that claims to be 1000 bytes (so neither the budget nor the ratio objects).
    let mut bytes = zip_bytes(&[("model.pth", &vec![0u8; 1 << 20])]);
    patch_uncompressed_size(&mut bytes, 1000);
    std::fs::write(&dlpk, bytes).unwrap();
    let err = format!("{:#}", extract_dlpk_with(&dlpk, &DlpkLimits::default()).expect_err("a lying header"));
    assert!(err.contains("liar.dlpk") && err.contains("model.pth"), "{err}");
    let err = load_error(&dlpk);
    assert!(err.contains("liar.dlpk") && err.contains("model.pth"), "{err}");
}

// ---- checkpoints with tensors of the wrong rank or shape ----

fn base() -> StateDict {
    StateDict::read(&loader("model.safetensors")).unwrap()
}

fn set(sd: &mut StateDict, key: &str, shape: Vec<usize>) {
    let n = shape.iter().product();
    sd.tensors.insert(key.to_string(), HostTensor { shape, data: vec![0.5; n] });
}

/// Writes `sd` as `<dir>/<name>.safetensors` and returns `load_model`'s error.
fn safetensors_error(dir: &Path, name: &str, sd: &StateDict) -> (PathBuf, String) {
    let path = dir.join(format!("{name}.safetensors"));
    sd.write_safetensors(&path).unwrap();
    let err = load_error(&path);
    (path, err)
}

#[test]
fn tensors_of_the_wrong_rank_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let sd = base();
    let numel = |key: &str| sd.tensors[key].data.len();
    let cases: Vec<(&str, Vec<usize>, &str)> = vec![
        ("roi_heads.box_predictor.cls_score.weight", vec![numel("roi_heads.box_predictor.cls_score.weight")], "2-d"),
        ("roi_heads.box_predictor.cls_score.weight", vec![], "2-d"),
        ("backbone.body.conv1.weight", vec![64, numel("backbone.body.conv1.weight") / 64], "4-d"),
        ("backbone.body.conv1.weight", vec![], "4-d"),
        ("backbone.fpn.inner_blocks.0.0.weight", vec![numel("backbone.fpn.inner_blocks.0.0.weight")], "4-d"),
        ("backbone.fpn.inner_blocks.1.0.weight", vec![3, 5], "4-d"),
        ("backbone.fpn.layer_blocks.0.0.weight", vec![7], "4-d"),
        ("rpn.head.cls_logits.weight", vec![3], "4-d"),
        ("rpn.head.bbox_pred.weight", vec![12, 2], "4-d"),
        ("roi_heads.box_head.fc6.weight", vec![numel("roi_heads.box_head.fc6.weight")], "2-d"),
        ("roi_heads.box_head.fc7.weight", vec![2, 2, 2], "2-d"),
        ("roi_heads.box_predictor.bbox_pred.weight", vec![16], "2-d"),
        ("roi_heads.mask_head.0.0.weight", vec![], "4-d"),
        ("roi_heads.mask_head.1.0.weight", vec![4, 4], "4-d"),
        ("roi_heads.mask_predictor.conv5_mask.weight", vec![8, 8], "4-d"),
        ("roi_heads.mask_predictor.mask_fcn_logits.weight", vec![4], "4-d"),
    ];
    for (i, (key, shape, rank)) in cases.into_iter().enumerate() {
        let mut bad = sd.clone();
        set(&mut bad, key, shape.clone());
        let (path, err) = safetensors_error(dir.path(), &format!("rank{i}"), &bad);
        let expected = format!("tensor {key} has shape {shape:?}, expected a {rank} tensor");
        assert!(err.contains(&expected) && err.contains(&path.display().to_string()), "{key} {shape:?}: {err}");
    }
}

#[test]
fn empty_and_inconsistent_dimensions_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let sd = base();
    let shape = |key: &str| sd.tensors[key].shape.clone();
    // Zero-sized dimensions.
    for key in
        ["roi_heads.box_predictor.cls_score.weight", "roi_heads.box_head.fc6.weight", "backbone.body.conv1.weight"]
    {
        let mut bad = sd.clone();
        let mut s = shape(key);
        s[0] = 0;
        set(&mut bad, key, s);
        let (_, err) = safetensors_error(dir.path(), "empty", &bad);
        assert!(err.contains(key) && err.contains("empty dimension") && err.contains("empty.safetensors"), "{err}");
    }
    // Shapes that disagree with the widths the other tensors imply: refused before a model of
    // that size is built.
    let cls = shape("roi_heads.box_predictor.cls_score.weight");
    let cases = [
        ("roi_heads.box_predictor.bbox_pred.weight", vec![cls[0] * 4 + 4, cls[1]]),
        ("roi_heads.box_predictor.cls_score.weight", vec![cls[0], cls[1] + 1]),
        ("backbone.fpn.layer_blocks.0.0.weight", {
            let mut s = shape("backbone.fpn.layer_blocks.0.0.weight");
            s[1] += 1;
            s
        }),
        ("roi_heads.mask_predictor.mask_fcn_logits.weight", {
            let mut s = shape("roi_heads.mask_predictor.mask_fcn_logits.weight");
            s[0] += 1;
            s
        }),
    ];
    for (key, bad_shape) in cases {
        let mut bad = sd.clone();
        set(&mut bad, key, bad_shape.clone());
        let (_, err) = safetensors_error(dir.path(), "inconsistent", &bad);
        assert!(err.contains(&format!("tensor {key} has shape {bad_shape:?}, expected [")), "{key}: {err}");
    }
}

#[test]
fn wrong_rank_under_an_explicit_config_and_in_a_pth_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut sd = base();
    let key = "roi_heads.box_predictor.cls_score.weight";
    let n = sd.tensors[key].data.len();
    set(&mut sd, key, vec![n]);
    // A model folder: config.json + model.safetensors.
    let folder = dir.path().join("folder");
    std::fs::create_dir_all(&folder).unwrap();
    sd.write_safetensors(&folder.join("model.safetensors")).unwrap();
    std::fs::copy(loader("config.json"), folder.join("config.json")).unwrap();
    let err = load_error(&folder);
    assert!(err.contains(key) && err.contains("2-d") && err.contains("model.safetensors"), "{err}");
    // A torch.save checkpoint.
    let pth = dir.path().join("rank.pth");
    maskrcnn::weights::pth_writer::write_pth(&sd, &pth).unwrap();
    let err = load_error(&pth);
    assert!(err.contains(key) && err.contains("2-d") && err.contains("rank.pth"), "{err}");
}

#[test]
fn unusual_key_names_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut sd = base();
    // torchvision counts legacy mask layers from 1; a `mask_fcn0` must not underflow.
    set(&mut sd, "roi_heads.mask_head.mask_fcn0.weight", vec![2, 2, 3, 3]);
    let path = dir.path().join("odd.safetensors");
    sd.write_safetensors(&path).unwrap();
    // Extra tensors are ignored; the model still loads.
    load_model(&path, &Device::flex()).expect("an extra tensor is ignored");
}

#[test]
fn the_checks_accept_real_checkpoints() {
    use maskrcnn::weights::checkpoint::{check_config_matches, infer_config, read_config};
    for name in ["r18_tiny", "r50_small"] {
        let folder = fixture(&format!("parity/{name}"));
        let sd = StateDict::read(&folder.join("model.safetensors")).unwrap();
        let config = read_config(&folder.join("config.json")).unwrap();
        check_config_matches(&sd, &config).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let inferred = infer_config(&sd).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(inferred.backbone.returned_layers, config.backbone.returned_layers, "{name}");
        assert_eq!(inferred.roi_heads.mask_layers, config.roi_heads.mask_layers, "{name}");
    }
}
