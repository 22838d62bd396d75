//! Folders of images with instance-id masks, as in the Penn-Fudan pedestrian dataset:
//!
//! ```text
//! DIR/images/FudanPed00001.png
//! DIR/masks/FudanPed00001_mask.png     (or FudanPed00001.png)
//! ```
//!
//! In a mask, 0 is background and every other value is one instance. Without a class map all
//! instances are one class; with a class map (a JSON object `{"<mask value>": "<class name>"}`)
//! each mask value also names its class, and classes are numbered in ascending order of the
//! smallest value that maps to them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use crate::esri::sorted_entries;
use crate::image_io::{is_raster_path, read_image, read_label_raster};
use crate::{mask_to_box, Dataset, ImageTensor, Sample, Target};

const MASK_EXTENSIONS: &[&str] = &["png", "tif", "tiff"];

/// An `images/` + `masks/` folder (see the module docs), paired by file stem.
#[derive(Debug, Clone)]
pub struct InstanceMaskFolder {
    pairs: Vec<(PathBuf, PathBuf)>,
    class_names: Vec<String>,
    /// Mask value -> label; `None` means every instance is label 1.
    label_of_value: Option<BTreeMap<u32, i64>>,
}

impl InstanceMaskFolder {
    /// All instances are one class called `class_name`.
    pub fn open(dir: &Path, class_name: &str) -> Result<Self> {
        let pairs = pair_images_and_masks(dir)?;
        Ok(InstanceMaskFolder { pairs, class_names: vec![class_name.to_string()], label_of_value: None })
    }

    /// Instance values are assigned classes by the JSON object in `class_map`.
    pub fn open_with_class_map(dir: &Path, class_map: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(class_map).with_context(|| format!("reading class map {}", class_map.display()))?;
        let (class_names, label_of_value) =
            parse_class_map(&text).with_context(|| format!("in class map {}", class_map.display()))?;
        let pairs = pair_images_and_masks(dir)?;
        Ok(InstanceMaskFolder { pairs, class_names, label_of_value: Some(label_of_value) })
    }

    pub fn image_path(&self, index: usize) -> Option<&Path> {
        self.pairs.get(index).map(|p| p.0.as_path())
    }

    pub fn mask_path(&self, index: usize) -> Option<&Path> {
        self.pairs.get(index).map(|p| p.1.as_path())
    }

    fn pair(&self, index: usize) -> Result<&(PathBuf, PathBuf)> {
        self.pairs.get(index).with_context(|| format!("index {index} is out of range for {} images", self.pairs.len()))
    }
}

fn parse_class_map(text: &str) -> Result<(Vec<String>, BTreeMap<u32, i64>)> {
    let raw: BTreeMap<String, String> = serde_json::from_str(text)
        .context("a class map must be a JSON object of mask value -> class name, e.g. {\"1\": \"person\"}")?;
    ensure!(!raw.is_empty(), "the class map is empty");
    let mut by_value: BTreeMap<u32, String> = BTreeMap::new();
    for (key, name) in raw {
        let value: u32 = key.trim().parse().with_context(|| format!("key \"{key}\" is not a mask value"))?;
        ensure!(value != 0, "mask value 0 is background and cannot have a class");
        by_value.insert(value, name);
    }
    let mut class_names: Vec<String> = Vec::new();
    let mut label_of_value = BTreeMap::new();
    for (value, name) in by_value {
        let index = match class_names.iter().position(|n| *n == name) {
            Some(i) => i,
            None => {
                class_names.push(name);
                class_names.len() - 1
            }
        };
        label_of_value.insert(value, index as i64 + 1);
    }
    Ok((class_names, label_of_value))
}

fn pair_images_and_masks(dir: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let images_dir = dir.join("images");
    let masks_dir = dir.join("masks");
    ensure!(images_dir.is_dir(), "{} has no images/ folder", dir.display());
    ensure!(masks_dir.is_dir(), "{} has no masks/ folder", dir.display());
    let mut pairs = Vec::new();
    let mut missing = Vec::new();
    for image in sorted_entries(&images_dir)? {
        if !image.is_file() || !is_raster_path(&image) {
            continue;
        }
        let stem = image.file_stem().unwrap().to_string_lossy().to_string();
        let found = [format!("{stem}_mask"), stem.clone()].into_iter().find_map(|name| {
            MASK_EXTENSIONS.iter().map(|ext| masks_dir.join(format!("{name}.{ext}"))).find(|p| p.is_file())
        });
        match found {
            Some(mask) => pairs.push((image, mask)),
            None => missing.push(stem),
        }
    }
    if !missing.is_empty() {
        bail!(
            "{} image(s) in {} have no mask <stem>_mask.png or <stem>.png in {} (first: {:?}); \
             give background-only images an all-zero mask",
            missing.len(),
            images_dir.display(),
            masks_dir.display(),
            &missing[..missing.len().min(5)]
        );
    }
    ensure!(!pairs.is_empty(), "{} holds no images", images_dir.display());
    Ok(pairs)
}

impl Dataset for InstanceMaskFolder {
    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let (image_path, mask_path) = self.pair(index)?;
        let image = read_image(image_path)?;
        let ids = read_label_raster(mask_path)?;
        ensure!(
            ids.bands == 1,
            "instance mask {} has {} bands; expected one band of instance ids",
            mask_path.display(),
            ids.bands
        );
        ensure!(
            ids.height == image.height && ids.width == image.width,
            "mask {} is {}x{} but image {} is {}x{}",
            mask_path.display(),
            ids.width,
            ids.height,
            image_path.display(),
            image.width,
            image.height
        );
        let mut target = Target::default();
        let instances = crate::split_instance_ids(&ids.data, 0)
            .with_context(|| format!("instance mask {}", mask_path.display()))?;
        for (value, mask) in instances {
            let label = match &self.label_of_value {
                None => 1,
                Some(map) => *map.get(&value).with_context(|| {
                    format!(
                        "mask {} has instance value {value}, which the class map does not list",
                        mask_path.display()
                    )
                })?,
            };
            let bbox = mask_to_box(&mask, ids.height, ids.width).expect("instance masks are non-empty");
            target.push(bbox, label, mask, false);
        }
        let file_name = image_path.file_name().unwrap().to_string_lossy().to_string();
        Ok(Sample { image, target, image_id: index as u64, file_name })
    }

    fn image(&self, index: usize) -> Result<ImageTensor> {
        read_image(&self.pair(index)?.0)
    }

    fn class_names(&self) -> &[String] {
        &self.class_names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_map_orders_classes_by_smallest_value() {
        let (names, map) = parse_class_map(r#"{"7": "car", "2": "person", "3": "car"}"#).unwrap();
        assert_eq!(names, vec!["person", "car"]);
        assert_eq!(map.into_iter().collect::<Vec<_>>(), vec![(2, 1), (3, 2), (7, 2)]);
        assert!(parse_class_map(r#"{"0": "bg"}"#).is_err());
        assert!(parse_class_map(r#"{"x": "bg"}"#).is_err());
        assert!(parse_class_map(r#"[1]"#).is_err());
    }
}
