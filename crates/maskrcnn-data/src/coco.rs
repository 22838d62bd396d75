//! COCO instance-segmentation JSON (`instances_*.json`) reader.
//!
//! - Category ids (any, possibly sparse) map to contiguous labels `1..=C` in ascending id order;
//!   [`CocoDataset::label_to_category_id`] maps back when writing results.
//! - Segmentations may be polygons, uncompressed RLE or compressed RLE (rasterised with
//!   `maskrcnn-masks`, which follows pycocotools). Annotations without a segmentation get a
//!   box-shaped mask (and are counted), so detection-only data still trains.
//! - `iscrowd` regions are kept and flagged in [`Target::iscrowd`].
//! - Boxes are clipped to the image; annotations whose clipped box has zero area (degenerate
//!   boxes, polygons entirely outside the image) are dropped at load time and counted in
//!   [`CocoLoadReport::dropped_degenerate`]. Images without instances are kept.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use maskrcnn_masks::{Rle, Segmentation};
use serde::Deserialize;

use crate::image_io::read_image;
use crate::{Dataset, Sample, Target};

#[derive(Deserialize)]
struct RawFile {
    images: Option<Vec<RawImage>>,
    annotations: Option<Vec<RawAnnotation>>,
    categories: Option<Vec<RawCategory>>,
}

#[derive(Deserialize)]
struct RawImage {
    id: u64,
    file_name: String,
    height: usize,
    width: usize,
}

#[derive(Deserialize)]
struct RawAnnotation {
    #[serde(default)]
    id: Option<u64>,
    image_id: u64,
    category_id: u64,
    #[serde(default)]
    bbox: Option<Vec<f64>>,
    #[serde(default)]
    segmentation: Option<serde_json::Value>,
    #[serde(default)]
    iscrowd: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawCategory {
    id: u64,
    name: String,
}

/// Counts gathered while loading, for the user to see what was kept and what was not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CocoLoadReport {
    pub images: usize,
    pub images_without_annotations: usize,
    /// Annotations kept (crowd included).
    pub annotations: usize,
    pub crowd_annotations: usize,
    /// Annotations dropped because their box, clipped to the image, has zero area.
    pub dropped_degenerate: usize,
    /// Kept annotations with no (or an empty) segmentation; their mask is the filled box.
    pub without_segmentation: usize,
}

#[derive(Debug, Clone)]
struct Annotation {
    id: Option<u64>,
    label: i64,
    bbox: [f32; 4],
    segmentation: Option<Segmentation>,
    iscrowd: bool,
}

/// One image entry of the JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CocoImageInfo {
    pub id: u64,
    pub file_name: String,
    pub height: usize,
    pub width: usize,
}

#[derive(Debug, Clone)]
struct ImageEntry {
    info: CocoImageInfo,
    annotations: Vec<Annotation>,
}

/// Where a COCO JSON's images are when no folder is given: `images/` beside the JSON when that
/// folder exists (the layout `synthetic::write_coco` and chip export write), else the JSON's
/// own folder (COCO's `train2017/` style, where the JSON sits next to the pictures).
pub fn default_image_dir(annotation_file: &Path) -> PathBuf {
    let dir = annotation_file.parent().unwrap_or(Path::new("."));
    let images = dir.join("images");
    if images.is_dir() {
        images
    } else {
        dir.to_path_buf()
    }
}

/// A COCO instances file plus the folder its `file_name`s are relative to.
#[derive(Debug, Clone)]
pub struct CocoDataset {
    image_dir: PathBuf,
    images: Vec<ImageEntry>,
    class_names: Vec<String>,
    category_ids: Vec<u64>,
    report: CocoLoadReport,
    gray_to_rgb: bool,
}

impl CocoDataset {
    /// Loads `annotation_file`; images are read lazily from `image_dir` on [`Dataset::get`].
    pub fn open(annotation_file: &Path, image_dir: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(annotation_file)
            .with_context(|| format!("reading COCO annotations {}", annotation_file.display()))?;
        Self::from_json_str(&text, image_dir)
            .with_context(|| format!("loading COCO annotations {}", annotation_file.display()))
    }

    /// [`CocoDataset::open`] on JSON text already in memory.
    pub fn from_json_str(json: &str, image_dir: &Path) -> Result<Self> {
        ensure!(!json.trim().is_empty(), "the annotation file is empty");
        let raw: RawFile = serde_json::from_str(json).context("not a valid COCO instances JSON")?;
        let raw_images = raw.images.context("the JSON has no \"images\" list")?;
        let raw_categories =
            raw.categories.context("the JSON has no \"categories\" list (needed to name the classes)")?;
        ensure!(!raw_categories.is_empty(), "the \"categories\" list is empty");
        let raw_annotations = raw.annotations.unwrap_or_default();

        let mut categories: Vec<RawCategory> = raw_categories;
        categories.sort_by_key(|c| c.id);
        for pair in categories.windows(2) {
            ensure!(pair[0].id != pair[1].id, "category id {} appears twice", pair[0].id);
        }
        let category_ids: Vec<u64> = categories.iter().map(|c| c.id).collect();
        let class_names: Vec<String> = categories.into_iter().map(|c| c.name).collect();
        let label_of: HashMap<u64, i64> = category_ids.iter().enumerate().map(|(i, &id)| (id, i as i64 + 1)).collect();

        let mut images: Vec<ImageEntry> = Vec::with_capacity(raw_images.len());
        let mut index_of: HashMap<u64, usize> = HashMap::new();
        for img in raw_images {
            ensure!(
                img.height > 0 && img.width > 0,
                "image id {} ({}) has size {}x{}",
                img.id,
                img.file_name,
                img.width,
                img.height
            );
            if index_of.insert(img.id, images.len()).is_some() {
                bail!("image id {} appears twice in \"images\"", img.id);
            }
            images.push(ImageEntry {
                info: CocoImageInfo { id: img.id, file_name: img.file_name, height: img.height, width: img.width },
                annotations: Vec::new(),
            });
        }

        let mut report = CocoLoadReport { images: images.len(), ..Default::default() };
        let mut seen_annotation_ids = HashSet::new();
        for (position, ann) in raw_annotations.into_iter().enumerate() {
            let name = match ann.id {
                Some(id) => format!("annotation id {id}"),
                None => format!("annotation #{position} (no id)"),
            };
            if let Some(id) = ann.id {
                ensure!(seen_annotation_ids.insert(id), "{name} appears twice");
            }
            let &image_index = index_of
                .get(&ann.image_id)
                .with_context(|| format!("{name} refers to image id {} which is not in \"images\"", ann.image_id))?;
            let &label = label_of.get(&ann.category_id).with_context(|| {
                format!(
                    "{name} has category id {} which is not in \"categories\" (known ids: {:?})",
                    ann.category_id, category_ids
                )
            })?;
            let iscrowd = match &ann.iscrowd {
                None | Some(serde_json::Value::Null) => false,
                Some(serde_json::Value::Bool(b)) => *b,
                Some(serde_json::Value::Number(n)) => n.as_f64() != Some(0.0),
                Some(other) => bail!("{name} has iscrowd = {other}, expected 0 or 1"),
            };
            let info = &images[image_index].info;
            let segmentation = parse_segmentation(ann.segmentation).with_context(|| name.clone())?;
            let xywh: [f64; 4] = match ann.bbox {
                Some(b) => {
                    ensure!(b.len() == 4, "{name} has a bbox with {} numbers, expected [x, y, w, h]", b.len());
                    ensure!(b.iter().all(|v| v.is_finite()), "{name} has a non-finite bbox {b:?}");
                    [b[0], b[1], b[2], b[3]]
                }
                None => match &segmentation {
                    Some(seg) => {
                        seg.to_rle(info.height, info.width).map_err(|e| anyhow::anyhow!("{name}: {e}"))?.to_bbox()
                    }
                    None => bail!("{name} has neither a bbox nor a segmentation"),
                },
            };
            let clipped = clip_xywh(xywh, info.width, info.height);
            if clipped[2] <= clipped[0] || clipped[3] <= clipped[1] {
                report.dropped_degenerate += 1;
                continue;
            }
            if segmentation.is_none() {
                report.without_segmentation += 1;
            }
            report.annotations += 1;
            report.crowd_annotations += iscrowd as usize;
            images[image_index].annotations.push(Annotation {
                id: ann.id,
                label,
                bbox: clipped,
                segmentation,
                iscrowd,
            });
        }
        report.images_without_annotations = images.iter().filter(|i| i.annotations.is_empty()).count();
        Ok(CocoDataset {
            image_dir: image_dir.to_path_buf(),
            images,
            class_names,
            category_ids,
            report,
            gray_to_rgb: true,
        })
    }

    /// Whether single-band images are repeated to 3 channels (default true: COCO mixes a few
    /// grayscale photos into RGB data). Multi-band images are never changed.
    pub fn with_gray_to_rgb(mut self, enabled: bool) -> Self {
        self.gray_to_rgb = enabled;
        self
    }

    pub fn report(&self) -> &CocoLoadReport {
        &self.report
    }

    pub fn image_dir(&self) -> &Path {
        &self.image_dir
    }

    /// COCO category id of a contiguous label (`1..=C`).
    pub fn label_to_category_id(&self, label: i64) -> Option<u64> {
        usize::try_from(label - 1).ok().and_then(|i| self.category_ids.get(i).copied())
    }

    /// Contiguous label (`1..=C`) of a COCO category id; `None` for an id the JSON does not list.
    pub fn category_id_to_label(&self, category_id: u64) -> Option<i64> {
        self.category_ids.binary_search(&category_id).ok().map(|i| i as i64 + 1)
    }

    /// Category ids in label order: `category_ids()[label - 1]`.
    pub fn category_ids(&self) -> &[u64] {
        &self.category_ids
    }

    pub fn image_info(&self, index: usize) -> Option<&CocoImageInfo> {
        self.images.get(index).map(|e| &e.info)
    }

    /// Dataset index of the image with COCO id `image_id`.
    pub fn index_of_image_id(&self, image_id: u64) -> Option<usize> {
        self.images.iter().position(|e| e.info.id == image_id)
    }

    /// COCO annotation ids of the kept instances of image `index`, in target order.
    pub fn annotation_ids(&self, index: usize) -> Vec<Option<u64>> {
        self.images.get(index).map(|e| e.annotations.iter().map(|a| a.id).collect()).unwrap_or_default()
    }

    /// The target of image `index` at the size given in the JSON, without reading the image.
    pub fn target(&self, index: usize) -> Result<Target> {
        let entry = self
            .images
            .get(index)
            .with_context(|| format!("index {index} is out of range for a dataset of {} images", self.images.len()))?;
        let (h, w) = (entry.info.height, entry.info.width);
        crate::check_mask_budget(entry.annotations.len(), h.saturating_mul(w)).with_context(|| {
            format!(
                "image {} ({}) is {w}x{h} with {} annotations",
                entry.info.id,
                entry.info.file_name,
                entry.annotations.len()
            )
        })?;
        let mut target = Target::default();
        for ann in &entry.annotations {
            let rle = match &ann.segmentation {
                Some(seg) => seg.to_rle(h, w).map_err(|e| {
                    anyhow::anyhow!("image {} ({}), annotation {:?}: {e}", entry.info.id, entry.info.file_name, ann.id)
                })?,
                None => {
                    let [x1, y1, x2, y2] = ann.bbox;
                    Rle::from_bbox([x1 as f64, y1 as f64, (x2 - x1) as f64, (y2 - y1) as f64], h, w)
                }
            };
            target.push(ann.bbox, ann.label, rle.to_mask(), ann.iscrowd);
        }
        Ok(target)
    }
}

fn parse_segmentation(value: Option<serde_json::Value>) -> Result<Option<Segmentation>> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Array(a)) if a.is_empty() => Ok(None),
        Some(v) => {
            let seg: Segmentation = serde_json::from_value(v)
                .context("segmentation is neither a polygon list, {size, counts: [..]} nor {size, counts: \"..\"}")?;
            if let Segmentation::Polygons(polygons) = &seg {
                if polygons.iter().all(|p| p.is_empty()) {
                    return Ok(None);
                }
            }
            Ok(Some(seg))
        }
    }
}

fn clip_xywh(b: [f64; 4], width: usize, height: usize) -> [f32; 4] {
    let (w, h) = (width as f64, height as f64);
    let x1 = b[0].clamp(0.0, w);
    let y1 = b[1].clamp(0.0, h);
    let x2 = (b[0] + b[2].max(0.0)).clamp(0.0, w);
    let y2 = (b[1] + b[3].max(0.0)).clamp(0.0, h);
    [x1 as f32, y1 as f32, x2 as f32, y2 as f32]
}

impl Dataset for CocoDataset {
    fn len(&self) -> usize {
        self.images.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        // The image first: it checks the size the JSON declares, which the masks are built at.
        let image = self.image(index)?;
        let target = self.target(index)?;
        let info = &self.images[index].info;
        Ok(Sample { image, target, image_id: info.id, file_name: info.file_name.clone() })
    }

    fn image(&self, index: usize) -> Result<crate::ImageTensor> {
        let entry = self
            .images
            .get(index)
            .with_context(|| format!("index {index} is out of range for a dataset of {} images", self.images.len()))?;
        let info = &entry.info;
        let path = self.image_dir.join(&info.file_name);
        let mut image = read_image(&path)?;
        ensure!(
            image.height == info.height && image.width == info.width,
            "image {} is {}x{} (w x h) but the COCO JSON says {}x{}",
            path.display(),
            image.width,
            image.height,
            info.width,
            info.height
        );
        if self.gray_to_rgb && image.channels == 1 {
            image = image.gray_to_rgb();
        }
        Ok(image)
    }

    fn category_ids(&self) -> Vec<u64> {
        self.category_ids.clone()
    }

    fn class_names(&self) -> &[String] {
        &self.class_names
    }
}

/// Number of instances per label (index `label - 1`), crowd excluded; for summaries.
pub fn instances_per_label(dataset: &CocoDataset) -> Vec<usize> {
    let mut counts = vec![0usize; dataset.class_names.len()];
    for entry in &dataset.images {
        for ann in entry.annotations.iter().filter(|a| !a.iscrowd) {
            counts[(ann.label - 1) as usize] += 1;
        }
    }
    counts
}

/// Groups images by the labels they contain, e.g. to check that a split sees every class.
pub fn images_per_label(dataset: &CocoDataset) -> BTreeMap<i64, usize> {
    let mut map = BTreeMap::new();
    for entry in &dataset.images {
        let labels: HashSet<i64> = entry.annotations.iter().map(|a| a.label).collect();
        for l in labels {
            *map.entry(l).or_insert(0) += 1;
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_folder_beside_the_json_is_preferred() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("instances.json");
        assert_eq!(default_image_dir(&json), dir.path());
        std::fs::write(dir.path().join("images"), b"a file, not a folder").unwrap();
        assert_eq!(default_image_dir(&json), dir.path());
        std::fs::remove_file(dir.path().join("images")).unwrap();
        std::fs::create_dir(dir.path().join("images")).unwrap();
        assert_eq!(default_image_dir(&json), dir.path().join("images"));
    }
}
