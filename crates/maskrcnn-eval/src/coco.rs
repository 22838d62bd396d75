//! COCO ground-truth and results files.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use maskrcnn_masks::Segmentation;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::EvalError;

/// An entry of the ground truth's `images` list; sizes are what polygons are rasterised at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoImage {
    pub id: i64,
    pub width: usize,
    pub height: usize,
    #[serde(default)]
    pub file_name: String,
}

/// An entry of the ground truth's `categories` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoCategory {
    pub id: i64,
    pub name: String,
}

/// One ground-truth instance; `bbox` is COCO's `[x, y, w, h]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoAnnotation {
    pub id: i64,
    pub image_id: i64,
    pub category_id: i64,
    #[serde(default)]
    pub segmentation: Option<Segmentation>,
    /// Used for the small/medium/large split exactly as stored (COCO's area is the polygon
    /// area, not the rasterised pixel count). When absent, the mask (or box) area is used.
    #[serde(default)]
    pub area: Option<f64>,
    #[serde(default, deserialize_with = "deserialize_optional_bbox")]
    pub bbox: Option<[f64; 4]>,
    #[serde(default, deserialize_with = "deserialize_flag")]
    pub iscrowd: bool,
    /// Only the boundary evaluation honours this (as boundary_iou_api does);
    /// pycocotools' COCOeval overwrites it with `iscrowd`.
    #[serde(default, deserialize_with = "deserialize_flag")]
    pub ignore: bool,
}

/// A COCO instances file (`images`, `categories`, `annotations`; other keys are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoGroundTruth {
    pub images: Vec<CocoImage>,
    pub categories: Vec<CocoCategory>,
    #[serde(default)]
    pub annotations: Vec<CocoAnnotation>,
}

/// One detection in the COCO results format. Unknown fields (e.g. `file_name`) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionResult {
    pub image_id: i64,
    pub category_id: i64,
    #[serde(default, deserialize_with = "deserialize_optional_bbox", skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f64; 4]>,
    pub score: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<Segmentation>,
}

impl DetectionResult {
    /// What every evaluator checks before using result number `index`: its image and category
    /// exist in the ground truth, and its score is finite, since a NaN would make the score
    /// ranking arbitrary. Returns the result's image.
    pub(crate) fn check_against<'a, V>(
        &self,
        index: usize,
        images: &HashMap<i64, &'a CocoImage>,
        categories: &HashMap<i64, V>,
    ) -> Result<&'a CocoImage, EvalError> {
        let Some(image) = images.get(&self.image_id) else {
            return Err(EvalError::UnknownImage { index, image_id: self.image_id });
        };
        if !categories.contains_key(&self.category_id) {
            return Err(EvalError::UnknownCategory { index, category_id: self.category_id });
        }
        if !self.score.is_finite() {
            return Err(EvalError::InvalidResult { index, reason: format!("score {} is not finite", self.score) });
        }
        Ok(image)
    }
}

fn deserialize_flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Int(i64),
    }
    Ok(match Flag::deserialize(deserializer)? {
        Flag::Bool(b) => b,
        Flag::Int(i) => i != 0,
    })
}

/// pycocotools treats `"bbox": []` as "no box", so it maps to `None` here.
fn deserialize_optional_bbox<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<[f64; 4]>, D::Error> {
    let values: Option<Vec<f64>> = Option::deserialize(deserializer)?;
    match values {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.len() == 4 => Ok(Some([v[0], v[1], v[2], v[3]])),
        Some(v) => Err(serde::de::Error::custom(format!("bbox must have 4 numbers [x, y, w, h], got {}", v.len()))),
    }
}

impl CocoGroundTruth {
    /// Parses and [validates](CocoGroundTruth::validate) a ground-truth JSON already in memory.
    pub fn from_json_str(json: &str) -> Result<CocoGroundTruth, EvalError> {
        let gt: CocoGroundTruth =
            serde_json::from_str(json).map_err(|source| EvalError::Json { path: "<ground truth>".into(), source })?;
        gt.validate("<ground truth>")?;
        Ok(gt)
    }

    /// Checks what evaluation relies on: unique ids and annotations that point at known
    /// images and categories.
    pub fn validate(&self, source: &str) -> Result<(), EvalError> {
        let invalid = |reason: String| EvalError::InvalidGroundTruth { path: source.to_string(), reason };
        let mut image_ids = HashSet::new();
        for image in &self.images {
            if !image_ids.insert(image.id) {
                return Err(invalid(format!("image id {} appears twice", image.id)));
            }
        }
        let mut category_ids = HashSet::new();
        for category in &self.categories {
            if !category_ids.insert(category.id) {
                return Err(invalid(format!("category id {} appears twice", category.id)));
            }
        }
        let mut annotation_ids = HashSet::new();
        for ann in &self.annotations {
            if !annotation_ids.insert(ann.id) {
                return Err(invalid(format!("annotation id {} appears twice", ann.id)));
            }
            if !image_ids.contains(&ann.image_id) {
                return Err(invalid(format!("annotation {} refers to unknown image id {}", ann.id, ann.image_id)));
            }
            if !category_ids.contains(&ann.category_id) {
                return Err(invalid(format!(
                    "annotation {} refers to unknown category id {}",
                    ann.id, ann.category_id
                )));
            }
        }
        Ok(())
    }

    /// Images by id.
    pub fn image_index(&self) -> HashMap<i64, &CocoImage> {
        self.images.iter().map(|image| (image.id, image)).collect()
    }
}

/// Reads and validates a COCO instances JSON file.
pub fn load_ground_truth(path: impl AsRef<Path>) -> Result<CocoGroundTruth, EvalError> {
    let path = path.as_ref();
    let text =
        std::fs::read_to_string(path).map_err(|source| EvalError::Io { path: path.display().to_string(), source })?;
    let gt: CocoGroundTruth =
        serde_json::from_str(&text).map_err(|source| EvalError::Json { path: path.display().to_string(), source })?;
    gt.validate(&path.display().to_string())?;
    Ok(gt)
}

/// Reads a COCO results JSON file (a list of detections). Ids are checked against the
/// ground truth in [`crate::evaluate`].
pub fn load_results(path: impl AsRef<Path>) -> Result<Vec<DetectionResult>, EvalError> {
    let path = path.as_ref();
    let text =
        std::fs::read_to_string(path).map_err(|source| EvalError::Io { path: path.display().to_string(), source })?;
    serde_json::from_str(&text).map_err(|source| EvalError::Json { path: path.display().to_string(), source })
}
