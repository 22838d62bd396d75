//! Training chips from a GeoTIFF and label polygons (GeoJSON, GeoPackage, Shapefile or
//! FlatGeobuf), written as an ArcGIS `RCNN_Masks` export or as COCO instance JSON.
//!
//! Layouts written (see `docs/arcgis-learn-maskrcnn.md` §2 for what arcgis.learn reads):
//!
//! ```text
//! RCNN_Masks                                    COCO
//!   images/000000000.tif (+ .tfw, .aux.xml)       images/000000000.tif (+ .tfw, .aux.xml)
//!   labels/<class name>/000000000.tif             annotations.json
//!   map.txt
//!   esri_model_definition.emd
//!   esri_accumulated_stats.json
//! ```
//!
//! Choices, and why:
//! - Image chips keep the raster's sample type and bands as TIFF (with GeoTIFF tags), except
//!   8-bit 1- or 3-band data, which is written as PNG (what photo tooling expects). Every chip
//!   also gets a world file and a `.aux.xml` with the CRS, as Esri's exporter writes.
//! - Label chips use the image format; each object gets its own positive value (1..n per class
//!   per chip) so touching buildings stay separate instances.
//! - Class folders are named by class *name*, which is what arcgis.learn matches; names that
//!   cannot be folder names fall back to the class value (maskrcnn-data reads both).
//! - Labels in another CRS than the raster's are reprojected to it (see [`crate::reproject`]),
//!   edges densified to a twentieth of a pixel; labels whose CRS cannot be told are refused up
//!   front, because a silent mismatch produces chips with no labels at all.
//! - Tiles are laid out from the top-left every `stride` pixels; the last row/column is moved
//!   inwards so every chip holds real pixels (no padded edge chips). A raster smaller than a
//!   chip is padded with nodata (or 0) to the full chip size, so chips batch together.
//! - Polygons are burnt largest first, so an object inside a bigger one (a kiosk on a car park)
//!   is not hidden by it.
//! - COCO polygons are the label polygons clipped exactly to the chip (better than tracing
//!   pixel masks); clipped shapes with holes, which COCO polygons cannot express, are written
//!   as uncompressed RLE of their rasterised mask.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Result};

use crate::raster::{Crs, GeoTransform, PixelWindow};

mod coco;
mod esri;
mod export;
mod files;
mod labels;
mod layout;

pub use export::export_chips;
pub use labels::{read_label_polygons, read_labels, read_labels_in_crs, ClassKey, LabelCrs, LabelLayer};
pub use layout::chip_windows;
/// Map coordinates to raster pixel coordinates (column, row), for polygons read with the label
/// readers.
pub use layout::to_pixels as to_pixel_coordinates;

/// Layout of the exported training data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChipFormat {
    /// ArcGIS "Export Training Data For Deep Learning", metadata format `RCNN_Masks`.
    RcnnMasks,
    /// `images/` + `annotations.json` (COCO instances).
    Coco,
}

impl FromStr for ChipFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<ChipFormat> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "rcnn_masks" | "rcnnmasks" | "esri" => Ok(ChipFormat::RcnnMasks),
            "coco" => Ok(ChipFormat::Coco),
            _ => bail!("unknown chip format {s:?}; use RCNN_Masks or COCO"),
        }
    }
}

impl fmt::Display for ChipFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChipFormat::RcnnMasks => "RCNN_Masks",
            ChipFormat::Coco => "COCO",
        })
    }
}

/// File format of the image and label chips (chosen from the raster, see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChipImageFormat {
    Png,
    Tiff,
}

impl ChipImageFormat {
    pub fn extension(&self) -> &'static str {
        match self {
            ChipImageFormat::Png => "png",
            ChipImageFormat::Tiff => "tif",
        }
    }
    fn world_file_extension(&self) -> &'static str {
        match self {
            ChipImageFormat::Png => "pgw",
            ChipImageFormat::Tiff => "tfw",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExportChipsOptions {
    pub raster: PathBuf,
    /// `.geojson`/`.json`, `.gpkg`, `.shp` (with `.shx`, `.dbf`, `.prj`) or `.fgb`; reprojected to the
    /// raster's CRS when they declare another.
    pub labels: PathBuf,
    /// Feature layer to read: required for a GeoPackage with several feature tables; for the
    /// single-layer formats it must match the layer's name when given. See [`read_labels`].
    pub label_layer: Option<String>,
    /// Attribute holding the class (strings or integers); `None` gives one class, "object".
    pub class_field: Option<String>,
    /// Output folder; created if missing.
    pub output: PathBuf,
    pub tile_size: u32,
    /// Distance between chip origins in pixels (< `tile_size` gives overlapping chips).
    pub stride: u32,
    pub format: ChipFormat,
    /// 1-based raster bands to export, in this order; empty = all bands.
    pub bands: Vec<usize>,
    /// Replace a previous export in `output` (only the files an export writes are removed).
    pub overwrite: bool,
    /// Also write chips without any object (negatives for training).
    pub keep_empty: bool,
}

impl ExportChipsOptions {
    /// 256-pixel chips, stride 256, all bands, no overwrite, no empty chips.
    pub fn new(
        raster: impl Into<PathBuf>,
        labels: impl Into<PathBuf>,
        output: impl Into<PathBuf>,
        format: ChipFormat,
    ) -> Self {
        ExportChipsOptions {
            raster: raster.into(),
            labels: labels.into(),
            label_layer: None,
            class_field: None,
            output: output.into(),
            tile_size: 256,
            stride: 256,
            format,
            bands: Vec::new(),
            overwrite: false,
            keep_empty: false,
        }
    }
}

/// One class of the export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipClass {
    /// `Value` in the `.emd`, `id` in COCO categories (always > 0).
    pub value: i64,
    pub name: String,
    /// Folder under `labels/` (RCNN_Masks): the name, or the value when the name is not a safe
    /// folder name.
    pub folder: String,
    /// Object instances of this class written over all chips.
    pub objects: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    pub chips_written: usize,
    /// Chips with no object, not written because `keep_empty` was off.
    pub chips_empty_skipped: usize,
    /// Chips whose pixels are all nodata (never written).
    pub chips_nodata_skipped: usize,
    /// Object instances written (a polygon cut by several chips counts once per chip).
    pub objects: usize,
    /// Sorted by value.
    pub classes: Vec<ChipClass>,
    pub image_format: ChipImageFormat,
    /// Label polygons read from the input.
    pub label_polygons: usize,
}

/// One image chip being written, as the label and annotation writers need it.
struct ChipContext<'a> {
    /// The export's output folder.
    out: &'a Path,
    /// File name without extension, shared by the image and its labels.
    stem: &'a str,
    format: ChipImageFormat,
    tile: u32,
    /// Raster pixels the chip covers (smaller than tile×tile only for rasters smaller than a chip).
    window: PixelWindow,
    /// Map transform of the chip's pixel (0,0) corner.
    gt: &'a GeoTransform,
    crs: Option<&'a Crs>,
}
