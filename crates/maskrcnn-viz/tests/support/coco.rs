//! Test/demo helper: reads a COCO image and its annotations from the shared data folder and turns
//! them into full-image masks (polygons filled at pixel centres, uncompressed crowd RLE decoded).
//! Kept out of the library: masks and polygons belong to maskrcnn-masks; this only feeds pictures.
#![allow(dead_code)]

use image::RgbImage;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub struct GtObject {
    pub category_id: u64,
    pub category_name: String,
    pub bbox_xyxy: [f32; 4],
    pub mask: Vec<u8>,
    pub is_crowd: bool,
}

/// The repo root is the nearest folder above this crate that holds Cargo.lock.
pub fn repo_root() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !dir.join("Cargo.lock").exists() {
        assert!(dir.pop(), "no Cargo.lock above {}", env!("CARGO_MANIFEST_DIR"));
    }
    dir
}

/// `../shared/data/coco128-permissive` beside the repo; panics with instructions when missing,
/// so a test never passes without having looked at real data.
pub fn coco_dir() -> PathBuf {
    let dir = repo_root().join("../shared/data/coco128-permissive");
    assert!(
        dir.join("instances.json").exists(),
        "real COCO data not found at {} (expected shared/ beside the repo root, with coco128-permissive/instances.json and images/)",
        dir.display()
    );
    dir
}

pub fn load_instances_json(dir: &Path) -> Value {
    let path = dir.join("instances.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The image and its annotated objects, in annotation order.
pub fn load_annotated(dir: &Path, coco: &Value, file_name: &str) -> (RgbImage, Vec<GtObject>) {
    let path = dir.join("images").join(file_name);
    let image = image::open(&path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display())).to_rgb8();
    let (w, h) = image.dimensions();
    let info = coco["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["file_name"] == file_name)
        .unwrap_or_else(|| panic!("{file_name} not in instances.json"));
    let image_id = info["id"].as_u64().unwrap();
    let category_name = |id: u64| {
        coco["categories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"].as_u64() == Some(id))
            .map(|c| c["name"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let mut objects = Vec::new();
    for ann in coco["annotations"].as_array().unwrap().iter().filter(|a| a["image_id"].as_u64() == Some(image_id)) {
        let mut mask = vec![0u8; (w * h) as usize];
        match &ann["segmentation"] {
            Value::Array(polygons) => {
                for polygon in polygons {
                    let coords: Vec<f64> = polygon.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
                    fill_polygon(&mut mask, w, h, &coords);
                }
            }
            Value::Object(rle) => {
                if let Some(counts) = rle["counts"].as_array() {
                    decode_uncompressed_rle(&mut mask, w, h, counts);
                }
            }
            _ => {}
        }
        let b: Vec<f32> = ann["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let category_id = ann["category_id"].as_u64().unwrap();
        objects.push(GtObject {
            category_id,
            category_name: category_name(category_id),
            bbox_xyxy: [b[0], b[1], b[0] + b[2], b[1] + b[3]],
            mask,
            is_crowd: ann["iscrowd"].as_u64() == Some(1),
        });
    }
    (image, objects)
}

/// Even-odd fill: a pixel is inside when its centre is.
pub fn fill_polygon(mask: &mut [u8], w: u32, h: u32, coords: &[f64]) {
    let points: Vec<(f64, f64)> = coords.chunks_exact(2).map(|p| (p[0], p[1])).collect();
    if points.len() < 3 {
        return;
    }
    for y in 0..h {
        let cy = y as f64 + 0.5;
        let mut crossings: Vec<f64> = Vec::new();
        for i in 0..points.len() {
            let (a, b) = (points[i], points[(i + 1) % points.len()]);
            if (a.1 <= cy) != (b.1 <= cy) {
                crossings.push(a.0 + (cy - a.1) / (b.1 - a.1) * (b.0 - a.0));
            }
        }
        crossings.sort_by(f64::total_cmp);
        for pair in crossings.chunks_exact(2) {
            let x0 = (pair[0] - 0.5).ceil().max(0.0) as u32;
            let x1 = ((pair[1] - 0.5).floor() as i64).min(w as i64 - 1);
            for x in x0 as i64..=x1 {
                mask[(y as i64 * w as i64 + x) as usize] = 1;
            }
        }
    }
}

/// COCO uncompressed RLE: alternating run lengths of 0s and 1s in column-major order.
fn decode_uncompressed_rle(mask: &mut [u8], w: u32, h: u32, counts: &[Value]) {
    let mut index = 0u64;
    for (run, count) in counts.iter().enumerate() {
        let count = count.as_u64().unwrap();
        if run % 2 == 1 {
            for i in index..(index + count).min(w as u64 * h as u64) {
                let (x, y) = (i / h as u64, i % h as u64);
                mask[(y * w as u64 + x) as usize] = 1;
            }
        }
        index += count;
    }
}
