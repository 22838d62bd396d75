//! Shared helpers for integration tests: fixture lookup and tolerant comparisons.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(rel: &str) -> PathBuf {
    repo_root().join("fixtures").join(rel)
}

/// The parity fixture photograph written to `path` as a GeoTIFF in UTM 16N (EPSG:32616) at twice its
/// size, 368x308 at 1 m with its top-left corner at `origin` (metres): 42 tiles of 64 px.
pub fn fixture_scene_tif(path: &Path, origin: (u32, u32)) -> PathBuf {
    let (x, y) = origin;
    let ullr = [x, y, x + 368, y - 308].map(|v| v.to_string());
    let status = std::process::Command::new("gdal_translate")
        .args(["-q", "-of", "GTiff", "-outsize", "200%", "200%", "-a_srs", "EPSG:32616", "-a_ullr"])
        .args(&ullr)
        .arg(fixture("parity/r18_tiny/image.png"))
        .arg(path)
        .status()
        .expect("this test needs GDAL's gdal_translate (Debian package gdal-bin; .ci/run installs it)");
    assert!(status.success(), "gdal_translate failed");
    path.to_path_buf()
}

/// `maskrcnn detect` with the r18_tiny parity model on 64 px tiles (8 px overlap, threshold 0.05),
/// then `extra`.
pub fn detect_r18_tiny(raster: &Path, output: &Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_maskrcnn"));
    cmd.arg("detect")
        .arg("--model")
        .arg(fixture("parity/r18_tiny"))
        .arg("--raster")
        .arg(raster)
        .arg("--output")
        .arg(output)
        .args(["--tile-size", "64", "--overlap", "8", "--threshold", "0.05"])
        .args(extra);
    cmd
}

/// `../shared/data` beside the repository (as CI lays it out), or a loud failure.
pub fn shared_data(rel: &str) -> PathBuf {
    let p = repo_root().join("..").join("shared").join("data").join(rel);
    assert!(p.exists(), "shared data {} is absent: this test needs ../shared/data next to the repository", p.display());
    p
}

/// Every float tensor of a safetensors file, as `(shape, values)`.
pub fn read_safetensors(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let data: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F32 => {
                    view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
                }
                safetensors::Dtype::I64 => {
                    view.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32).collect()
                }
                safetensors::Dtype::F64 => {
                    view.data().chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32).collect()
                }
                other => panic!("{name}: unexpected dtype {other:?}"),
            };
            (name, (view.shape().to_vec(), data))
        })
        .collect()
}

/// One tensor of the training-loss fixture, in its own dtype (f32, i64 or u8).
pub struct FixtureTensor {
    pub shape: Vec<usize>,
    pub f32s: Vec<f32>,
    pub ints: Vec<i64>,
    pub bytes: Vec<u8>,
}

/// Every tensor of a safetensors file in its own dtype (f32, i64, u8).
pub fn read_typed_safetensors(path: &Path) -> HashMap<String, FixtureTensor> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            let d = v.data();
            let mut raw = FixtureTensor { shape: v.shape().to_vec(), f32s: vec![], ints: vec![], bytes: vec![] };
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

/// The training-loss fixture (`tools/reference/train/make_loss_fixtures.py`): its two images, their
/// targets and torchvision's recorded sampling, and every tensor of the file.
pub fn loss_fixture_batch() -> (
    Vec<maskrcnn::transform::ImageChw>,
    Vec<maskrcnn::train::TrainTarget>,
    maskrcnn::train::RecordedSampler,
    HashMap<String, FixtureTensor>,
) {
    let fx = read_typed_safetensors(&fixture("train/loss_r18_tiny.safetensors"));
    let get = |k: &str| fx.get(k).unwrap_or_else(|| panic!("fixture lacks {k}"));
    let indices = |k: &str| get(k).ints.iter().map(|&v| v as usize).collect::<Vec<usize>>();
    let (mut images, mut targets, mut sampler) = (Vec::new(), Vec::new(), maskrcnn::train::RecordedSampler::default());
    for i in 0..2 {
        let img = get(&format!("image.{i}"));
        images.push(maskrcnn::transform::ImageChw {
            channels: img.shape[0],
            height: img.shape[1],
            width: img.shape[2],
            data: img.bytes.iter().map(|&v| v as f32 / 255.0).collect(),
        });
        let masks = get(&format!("target.{i}.masks"));
        let plane = masks.shape[1] * masks.shape[2];
        targets.push(maskrcnn::train::TrainTarget {
            boxes: get(&format!("target.{i}.boxes")).f32s.chunks_exact(4).map(|b| [b[0], b[1], b[2], b[3]]).collect(),
            labels: get(&format!("target.{i}.labels")).ints.iter().map(|&l| l as usize).collect(),
            masks: masks.bytes.chunks_exact(plane).map(|m| m.to_vec()).collect(),
        });
        sampler.rpn.push((indices(&format!("rpn.pos.{i}")), indices(&format!("rpn.neg.{i}"))));
        sampler.roi_heads.push((indices(&format!("roi.pos.{i}")), indices(&format!("roi.neg.{i}"))));
    }
    (images, targets, sampler, fx)
}

/// Max |a - b| relative to the largest reference magnitude.
pub fn relative_error(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len(), "length mismatch");
    let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    let diff = actual.iter().zip(expected).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

pub fn assert_close(name: &str, actual: &[f32], expected: &[f32], tolerance: f32) {
    assert_eq!(actual.len(), expected.len(), "{name}: {} values vs {} expected", actual.len(), expected.len());
    let err = relative_error(actual, expected);
    if std::env::var_os("PARITY_VERBOSE").is_some() {
        let (i, _) = actual.iter().zip(expected).enumerate().fold((0, 0.0f32), |m, (i, (a, b))| {
            if (a - b).abs() > m.1 {
                (i, (a - b).abs())
            } else {
                m
            }
        });
        eprintln!("{name}: relative error {err:.2e} (worst at {i}: {} vs {})", actual[i], expected[i]);
    }
    assert!(err <= tolerance, "{name}: relative error {err:.3e} > {tolerance:.0e}");
}
