//! Running a model over images and writing COCO results.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::model::{Detection, MaskRcnn};

/// One line of a COCO results file, as pycocotools' `loadRes` reads it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CocoResult {
    pub image_id: u64,
    pub file_name: String,
    pub category_id: u64,
    pub bbox: [f64; 4],
    pub score: f64,
    pub segmentation: RleJson,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RleJson {
    pub size: [usize; 2],
    pub counts: String,
}

pub fn to_coco_results(
    model: &MaskRcnn,
    image_id: u64,
    file_name: &str,
    size: (usize, usize),
    dets: &[Detection],
) -> Vec<CocoResult> {
    dets.iter()
        .map(|d| {
            let rle = d.to_rle(size.0, size.1);
            let b = d.bbox;
            CocoResult {
                image_id,
                file_name: file_name.to_string(),
                category_id: model.config.category_id(d.label),
                bbox: [b[0] as f64, b[1] as f64, (b[2] - b[0]) as f64, (b[3] - b[1]) as f64],
                score: d.score as f64,
                segmentation: RleJson { size: [size.0, size.1], counts: rle.to_coco_string() },
            }
        })
        .collect()
}

/// Image ids by file name from a COCO annotation file, so results line up with its ground truth.
pub fn image_ids_from_coco(path: &Path) -> Result<HashMap<String, u64>> {
    #[derive(Deserialize)]
    struct Img {
        id: u64,
        file_name: String,
    }
    #[derive(Deserialize)]
    struct Doc {
        images: Vec<Img>,
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Doc =
        serde_json::from_str(&text).with_context(|| format!("{}: not a COCO annotation file", path.display()))?;
    Ok(doc.images.into_iter().map(|i| (i.file_name, i.id)).collect())
}

/// Resolves the image id of `file`: from the id map by file name when given, else its position.
pub fn image_id_for(file: &Path, index: usize, ids: Option<&HashMap<String, u64>>) -> Result<u64> {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match ids {
        Some(map) => map.get(&name).copied().with_context(|| format!("{name}: not listed in the COCO image list")),
        None => Ok(index as u64 + 1),
    }
}

pub fn display_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

pub fn overlay_path(dir: &Path, image: &Path) -> PathBuf {
    let stem = image.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
    dir.join(format!("{stem}.png"))
}

/// [`crate::image_io::load_model_input`], after checking that a JPEG is complete: the JPEG decoder
/// fills a file cut short with grey and reports no error, so a truncated image would otherwise be
/// predicted (and scored) as if it were whole.
pub fn load_checked_input(path: &Path, config: &crate::config::MaskRcnnConfig) -> Result<crate::transform::ImageChw> {
    crate::image_io::load_model_input(path, config)
}
