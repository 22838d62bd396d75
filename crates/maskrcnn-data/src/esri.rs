//! ArcGIS "Export Training Data For Deep Learning" folders in `RCNN_Masks` format:
//!
//! ```text
//! root/
//!   images/000000000.tif ...            any raster: RGB, multispectral, 16-bit
//!   labels/<class>/000000000.tif ...    instance raster per class per chip, same stem
//!   map.txt                             "images\x.tif labels\<class>\x.tif" lines
//!   esri_model_definition.emd           JSON: Classes, ImageSpaceUsed, band names/stats
//!   esri_accumulated_stats.json         JSON: MetaDataMode = "RCNN_Masks", NumBands, ...
//! ```
//!
//! In a label raster 0 is background and each distinct positive value is one instance of the
//! folder's class; multi-band label rasters contribute the instances of every band. Class
//! folders may be named by class name (what arcgis.learn expects) or by class value.
//!
//! Differences from arcgis.learn, on purpose: chips with no label file in any class folder are
//! kept as negatives and counted in [`EsriLoadReport::negative_chips`] (arcgis.learn drops
//! them); a class folder that matches no class is an error rather than silently ignored; a
//! missing `map.txt` or stats file is tolerated and reported, while the `.emd` (which holds the
//! classes) is required.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::image_io::{is_raster_path, read_image, read_label_raster, RASTER_EXTENSIONS};
use crate::{mask_to_box, Dataset, ImageTensor, Sample, Target};

/// One class of the `.emd`.
#[derive(Debug, Clone, PartialEq)]
pub struct EsriClass {
    /// The pixel value of the class in the label rasters (`Value` / `ClassValue`).
    pub value: i64,
    /// `Name` / `ClassName`, else the value as text.
    pub name: String,
    /// RGB display colour, when the `.emd` gives one.
    pub color: Option<[u8; 3]>,
}

/// Per-band statistics from the `.emd`'s `AllTilesStats`.
#[derive(Debug, Clone, PartialEq)]
pub struct EsriTileStats {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub std: f64,
}

/// Metadata read from the export's `.emd`.
#[derive(Debug, Clone, PartialEq)]
pub struct EsriExportInfo {
    /// Sorted by value; `classes[label - 1]` is the class of model label `label`.
    pub classes: Vec<EsriClass>,
    /// `MAP_SPACE` (default) or `PIXEL_SPACE`; dihedral augmentation only makes sense in map space.
    pub image_space_used: String,
    pub band_names: Vec<String>,
    pub sensor_name: Option<String>,
    /// One entry per band, in band order.
    pub tile_stats: Vec<EsriTileStats>,
    /// Chip size in pixels (`ImageHeight` / `ImageWidth`).
    pub image_height: Option<usize>,
    pub image_width: Option<usize>,
    /// Ground size of a pixel in the source raster's units (`MinCellSize` / `MaxCellSize`).
    pub min_cell_size: Option<f64>,
    pub max_cell_size: Option<f64>,
}

impl EsriExportInfo {
    /// Whether chips were exported in map space, so flips and 90 degree turns keep them valid.
    pub fn is_map_space(&self) -> bool {
        self.image_space_used.eq_ignore_ascii_case("MAP_SPACE")
    }
}

/// What was found while opening the export.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EsriLoadReport {
    /// Image chips found in `images/`.
    pub chips: usize,
    /// Stems of chips with no label file in any class folder, kept as negative examples.
    pub negative_chips: Vec<String>,
    /// Label rasters matched to a chip, over all class folders.
    pub label_files: usize,
    /// Metadata files arcgis.learn requires that were absent (`map.txt`, the stats JSON).
    pub missing_metadata: Vec<String>,
    /// Class folder name -> class name, for folders named by value.
    pub folders_by_value: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
struct Chip {
    stem: String,
    image: PathBuf,
    /// (label, label raster path)
    labels: Vec<(i64, PathBuf)>,
}

/// An ArcGIS "Export Training Data For Deep Learning" folder in `RCNN_Masks` format: `images/`
/// chips, `labels/<class>/` instance rasters with the same stems, and the `.emd` naming the classes.
#[derive(Debug, Clone)]
pub struct EsriRcnnMasksDataset {
    root: PathBuf,
    info: EsriExportInfo,
    class_names: Vec<String>,
    chips: Vec<Chip>,
    report: EsriLoadReport,
}

/// The model definition ArcGIS writes beside the chips: classes, bands, chip size.
pub const EMD_FILE: &str = "esri_model_definition.emd";
/// Export statistics; its `MetaDataMode` says which export format the folder holds.
pub const STATS_FILE: &str = "esri_accumulated_stats.json";
/// Chip-to-label listing, read for the label files' extension.
pub const MAP_FILE: &str = "map.txt";

impl EsriRcnnMasksDataset {
    /// Indexes the export at `root` (chips and labels are read lazily on [`Dataset::get`]).
    /// Missing `map.txt` or stats JSON are tolerated and listed in the [`EsriLoadReport`].
    pub fn open(root: &Path) -> Result<Self> {
        Self::open_inner(root).with_context(|| format!("opening RCNN_Masks export {}", root.display()))
    }

    fn open_inner(root: &Path) -> Result<Self> {
        ensure!(root.is_dir(), "not a folder");
        let mut report = EsriLoadReport::default();

        let stats_path = root.join(STATS_FILE);
        if stats_path.exists() {
            let stats = read_json(&stats_path)?;
            if let Some(mode) = stats.get("MetaDataMode").and_then(Value::as_str) {
                ensure!(
                    mode == "RCNN_Masks",
                    "{} says MetaDataMode \"{mode}\"; Mask R-CNN needs an export in \"RCNN_Masks\" format \
                     (instance rasters), re-export with that metadata format",
                    stats_path.display()
                );
            }
        } else {
            report.missing_metadata.push(STATS_FILE.to_string());
        }

        let emd_path = find_emd(root)?;
        let info = parse_emd(&read_json(&emd_path)?).with_context(|| format!("in {}", emd_path.display()))?;
        let class_names: Vec<String> = info.classes.iter().map(|c| c.name.clone()).collect();

        let label_ext = match std::fs::read_to_string(root.join(MAP_FILE)) {
            Ok(text) => label_extension_from_map(&text),
            Err(_) => {
                report.missing_metadata.push(MAP_FILE.to_string());
                None
            }
        };

        let labels_dir = root.join("labels");
        ensure!(labels_dir.is_dir(), "there is no labels/ folder (an RCNN_Masks export has labels/<class>/)");
        let mut folders: Vec<(i64, PathBuf)> = Vec::new();
        let mut label_of_folder: HashMap<i64, String> = HashMap::new();
        for entry in sorted_entries(&labels_dir)? {
            if !entry.is_dir() {
                continue;
            }
            let folder = entry.file_name().unwrap().to_string_lossy().to_string();
            let by_name = info.classes.iter().position(|c| c.name == folder);
            let by_value = folder.parse::<i64>().ok().and_then(|v| info.classes.iter().position(|c| c.value == v));
            let index = match (by_name, by_value) {
                (Some(i), _) => i,
                (None, Some(i)) => {
                    report.folders_by_value.push((folder.clone(), info.classes[i].name.clone()));
                    i
                }
                (None, None) => bail!(
                    "class folder labels/{folder} matches no class of {} (names: {:?}, values: {:?})",
                    emd_path.display(),
                    class_names,
                    info.classes.iter().map(|c| c.value).collect::<Vec<_>>()
                ),
            };
            let label = index as i64 + 1;
            if let Some(other) = label_of_folder.insert(label, folder.clone()) {
                bail!("labels/{other} and labels/{folder} are both class \"{}\"", info.classes[index].name);
            }
            folders.push((label, entry));
        }
        ensure!(!folders.is_empty(), "labels/ has no class folders (the export produced no labels)");
        // Instances come out in label order whatever the folders are called.
        folders.sort_by_key(|(label, _)| *label);

        let images_dir = root.join("images");
        ensure!(images_dir.is_dir(), "there is no images/ folder");
        let mut chips = Vec::new();
        for image in sorted_entries(&images_dir)? {
            if !image.is_file() || !is_raster_path(&image) {
                continue;
            }
            let stem = image.file_stem().unwrap().to_string_lossy().to_string();
            let mut labels = Vec::new();
            for (label, folder) in &folders {
                if let Some(path) = find_by_stem(folder, &stem, label_ext.as_deref()) {
                    labels.push((*label, path));
                }
            }
            if labels.is_empty() {
                report.negative_chips.push(stem.clone());
            }
            report.label_files += labels.len();
            chips.push(Chip { stem, image, labels });
        }
        ensure!(!chips.is_empty(), "images/ holds no rasters ({:?})", RASTER_EXTENSIONS);
        report.chips = chips.len();
        Ok(EsriRcnnMasksDataset { root: root.to_path_buf(), info, class_names, chips, report })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn info(&self) -> &EsriExportInfo {
        &self.info
    }

    pub fn report(&self) -> &EsriLoadReport {
        &self.report
    }

    /// The `.emd` class value of a model label (`1..=C`), for writing results back.
    pub fn label_to_class_value(&self, label: i64) -> Option<i64> {
        usize::try_from(label - 1).ok().and_then(|i| self.info.classes.get(i)).map(|c| c.value)
    }

    /// File stem of chip `index`, which names its label rasters too.
    pub fn chip_stem(&self, index: usize) -> Option<&str> {
        self.chips.get(index).map(|c| c.stem.as_str())
    }

    fn chip(&self, index: usize) -> Result<&Chip> {
        self.chips.get(index).with_context(|| format!("index {index} is out of range for {} chips", self.chips.len()))
    }
}

impl Dataset for EsriRcnnMasksDataset {
    fn len(&self) -> usize {
        self.chips.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let chip = self.chip(index)?;
        let image = read_image(&chip.image)?;
        let (h, w) = (image.height, image.width);
        let mut target = Target::default();
        for (label, path) in &chip.labels {
            let raster = read_label_raster(path)?;
            ensure!(
                raster.height == h && raster.width == w,
                "label raster {} is {}x{} but its chip {} is {}x{}",
                path.display(),
                raster.width,
                raster.height,
                chip.image.display(),
                w,
                h
            );
            for band in 0..raster.bands {
                let instances = crate::split_instance_ids(raster.band(band), target.len())
                    .with_context(|| format!("label raster {}", path.display()))?;
                for (_, mask) in instances {
                    let bbox = mask_to_box(&mask, h, w).expect("instance masks are non-empty");
                    target.push(bbox, *label, mask, false);
                }
            }
        }
        Ok(Sample { image, target, image_id: index as u64, file_name: chip.stem.clone() })
    }

    fn image(&self, index: usize) -> Result<ImageTensor> {
        read_image(&self.chip(index)?.image)
    }

    fn class_names(&self) -> &[String] {
        &self.class_names
    }

    fn category_ids(&self) -> Vec<u64> {
        // Class values are positive in Esri exports (0 is background); a negative one keeps its label.
        self.info.classes.iter().enumerate().map(|(i, c)| u64::try_from(c.value).unwrap_or(i as u64 + 1)).collect()
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(!text.trim().is_empty(), "{} is empty", path.display());
    // Some exports start with a UTF-8 byte-order mark, which serde_json rejects.
    serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .with_context(|| format!("{} is not valid JSON", path.display()))
}

fn find_emd(root: &Path) -> Result<PathBuf> {
    let default = root.join(EMD_FILE);
    if default.is_file() {
        return Ok(default);
    }
    let emds: Vec<PathBuf> = sorted_entries(root)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("emd")))
        .collect();
    match emds.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no {EMD_FILE} (the model definition with the class list) in the export"),
        _ => bail!("several .emd files and no {EMD_FILE}: {emds:?}"),
    }
}

fn parse_emd(emd: &Value) -> Result<EsriExportInfo> {
    let raw_classes = emd
        .get("Classes")
        .and_then(Value::as_array)
        .context("the .emd has no \"Classes\" list; export with a class value field")?;
    let mut classes = Vec::new();
    for (i, c) in raw_classes.iter().enumerate() {
        let value = c
            .get("Value")
            .or_else(|| c.get("ClassValue"))
            .and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())))
            .with_context(|| format!("Classes[{i}] has no integer Value/ClassValue"))?;
        let name = c
            .get("Name")
            .or_else(|| c.get("ClassName"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        let color = c.get("Color").and_then(Value::as_array).and_then(|rgb| {
            let v: Vec<u8> = rgb.iter().filter_map(|x| x.as_u64().map(|x| x.min(255) as u8)).collect();
            (v.len() >= 3).then(|| [v[0], v[1], v[2]])
        });
        if value != 0 {
            classes.push(EsriClass { value, name, color });
        }
    }
    ensure!(!classes.is_empty(), "the .emd \"Classes\" list has no class with a non-zero value");
    classes.sort_by_key(|c| c.value);
    for pair in classes.windows(2) {
        ensure!(pair[0].value != pair[1].value, "class value {} appears twice in the .emd", pair[0].value);
    }
    let props = emd.get("InputRastersProps");
    let band_names = props
        .and_then(|p| p.get("BandNames"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|b| b.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let sensor_name = props.and_then(|p| p.get("SensorName")).and_then(Value::as_str).map(str::to_string);
    let tile_stats = emd
        .get("AllTilesStats")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    let f = |k: &str| s.get(k).and_then(Value::as_f64);
                    Some(EsriTileStats { min: f("Min")?, max: f("Max")?, mean: f("Mean")?, std: f("StdDev")? })
                })
                .collect()
        })
        .unwrap_or_default();
    let usize_field = |k: &str| emd.get(k).and_then(Value::as_u64).map(|v| v as usize);
    Ok(EsriExportInfo {
        classes,
        image_space_used: emd.get("ImageSpaceUsed").and_then(Value::as_str).unwrap_or("MAP_SPACE").to_string(),
        band_names,
        sensor_name,
        tile_stats,
        image_height: usize_field("ImageHeight"),
        image_width: usize_field("ImageWidth"),
        min_cell_size: emd.get("MinCellSize").and_then(Value::as_f64),
        max_cell_size: emd.get("MaxCellSize").and_then(Value::as_f64),
    })
}

/// The label file extension, from the last token of the first `map.txt` line with 2+ tokens
/// (as arcgis.learn reads it).
fn label_extension_from_map(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.split_whitespace().count() >= 2)?;
    let last = line.split_whitespace().last()?.replace('\\', "/");
    Path::new(&last).extension().map(|e| e.to_string_lossy().to_ascii_lowercase())
}

fn find_by_stem(folder: &Path, stem: &str, preferred_ext: Option<&str>) -> Option<PathBuf> {
    let candidates = preferred_ext.into_iter().chain(RASTER_EXTENSIONS.iter().copied());
    for ext in candidates {
        for e in [ext.to_string(), ext.to_ascii_uppercase()] {
            let p = folder.join(format!("{stem}.{e}"));
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    entries.sort();
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_txt_extension_uses_first_line_with_two_tokens() {
        assert_eq!(label_extension_from_map("\nonly\nimages\\a.tif labels\\B\\a.PNG\nx y.tif\n"), Some("png".into()));
        assert_eq!(label_extension_from_map("single\n"), None);
    }

    #[test]
    fn emd_classes_both_spellings_sorted_without_zero() {
        let emd: Value = serde_json::from_str(
            r#"{"Classes":[{"Value":5,"Name":"Tank"},{"ClassValue":0,"ClassName":"NoData"},{"ClassValue":"2","ClassName":"Ship","Color":[1,2,3]}]}"#,
        )
        .unwrap();
        let info = parse_emd(&emd).unwrap();
        assert_eq!(
            info.classes.iter().map(|c| (c.value, c.name.as_str())).collect::<Vec<_>>(),
            vec![(2, "Ship"), (5, "Tank")]
        );
        assert_eq!(info.classes[0].color, Some([1, 2, 3]));
        assert!(info.is_map_space());
        let msg = format!("{:#}", parse_emd(&serde_json::json!({"ImageHeight": 256})).unwrap_err());
        assert!(msg.contains("Classes"), "{msg}");
    }
}
