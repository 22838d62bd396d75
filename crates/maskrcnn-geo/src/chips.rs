//! Training chips from a GeoTIFF and label polygons (GeoJSON or GeoPackage), written as an
//! ArcGIS `RCNN_Masks` export or as COCO instance JSON.
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
//! - Labels are not reprojected: they must already be in the raster's CRS, checked up front,
//!   because a silent mismatch produces chips with no labels at all.
//! - Tiles are laid out from the top-left every `stride` pixels; the last row/column is moved
//!   inwards so every chip holds real pixels (no padded edge chips). A raster smaller than a
//!   chip is padded with nodata (or 0) to the full chip size, so chips batch together.
//! - Polygons are burnt largest first, so an object inside a bigger one (a kiosk on a car park)
//!   is not hidden by it.
//! - COCO polygons are the label polygons clipped exactly to the chip (better than tracing
//!   pixel masks); clipped shapes with holes, which COCO polygons cannot express, are written
//!   as uncompressed RLE of their rasterised mask.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{anyhow, bail, ensure, Context, Result};
use geo::{Area, BooleanOps, BoundingRect, Coord, LineString, MultiPolygon, Polygon};
use serde_json::{json, Value};

use crate::output::{geometry_from_geojson, wkt_for_epsg};
use crate::raster::{Crs, GeoTiff, GeoTransform, PixelWindow, SampleType, Samples};
use crate::vectorize::rasterize_polygons;

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
    /// `.geojson`/`.json` or `.gpkg` (a single feature table), in the raster's CRS.
    pub labels: PathBuf,
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

// ---------------------------------------------------------------- label input

/// The CRS a label file declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelCrs {
    Epsg(u32),
    /// GeoJSON without a `crs` member: RFC 7946 says WGS 84 longitude/latitude.
    ImplicitWgs84,
    /// A CRS is declared but not as an EPSG code we can read (the text says what was found).
    Unrecognised(String),
    /// GeoPackage srs_id 0 / -1: "undefined" coordinates.
    Undefined,
}

impl LabelCrs {
    fn describe(&self) -> String {
        match self {
            LabelCrs::Epsg(c) => format!("EPSG:{c}"),
            LabelCrs::ImplicitWgs84 => "WGS 84 (no \"crs\" member, so RFC 7946 longitude/latitude)".into(),
            LabelCrs::Unrecognised(s) => format!("unrecognised CRS {s:?}"),
            LabelCrs::Undefined => "undefined CRS (GeoPackage srs_id 0/-1)".into(),
        }
    }
}

/// A class attribute value, normalised so "3", 3 and 3.0 are the same class.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClassKey {
    Int(i64),
    Text(String),
}

impl ClassKey {
    fn from_text(s: &str) -> ClassKey {
        match s.trim().parse::<i64>() {
            Ok(v) => ClassKey::Int(v),
            Err(_) => ClassKey::Text(s.to_string()),
        }
    }
    fn from_f64(v: f64) -> ClassKey {
        if v.fract() == 0.0 && v.abs() < 9e15 {
            ClassKey::Int(v as i64)
        } else {
            ClassKey::Text(v.to_string())
        }
    }
    fn name(&self) -> String {
        match self {
            ClassKey::Int(v) => v.to_string(),
            ClassKey::Text(s) => s.clone(),
        }
    }
}

/// Polygons read from a label file, in the file's coordinates.
#[derive(Debug, Clone)]
pub struct LabelLayer {
    pub path: PathBuf,
    pub crs: LabelCrs,
    /// (geometry, class) per feature; the class is `None` when no class field was asked for.
    pub features: Vec<(MultiPolygon<f64>, Option<ClassKey>)>,
}

/// Read Polygon/MultiPolygon features from GeoJSON or a GeoPackage. Non-polygon or missing
/// geometries and features without the class field are errors naming the feature.
pub fn read_label_polygons(path: &Path, class_field: Option<&str>) -> Result<LabelLayer> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let layer = match ext.as_str() {
        "geojson" | "json" => read_geojson_labels(path, class_field),
        "gpkg" => read_gpkg_labels(path, class_field),
        _ => bail!("{}: unsupported label format {ext:?}; use .geojson or .gpkg", path.display()),
    }?;
    ensure!(!layer.features.is_empty(), "{}: the label file has no features; nothing to train on", path.display());
    Ok(layer)
}

fn parse_crs_name(name: &str) -> LabelCrs {
    let upper = name.to_ascii_uppercase();
    if upper.ends_with("CRS84") || upper.ends_with("CRS:84") {
        return LabelCrs::Epsg(4326);
    }
    // "EPSG:32616", "urn:ogc:def:crs:EPSG::32616", "urn:ogc:def:crs:EPSG:9.9:32616",
    // "http://www.opengis.net/def/crs/EPSG/0/32616".
    if upper.contains("EPSG") {
        let digits: String = upper.chars().rev().take_while(|c| c.is_ascii_digit()).collect();
        if let Ok(code) = digits.chars().rev().collect::<String>().parse::<u32>() {
            return LabelCrs::Epsg(code);
        }
    }
    LabelCrs::Unrecognised(name.to_string())
}

fn read_geojson_labels(path: &Path, class_field: Option<&str>) -> Result<LabelLayer> {
    let text = fs::read_to_string(path).with_context(|| format!("cannot read labels {}", path.display()))?;
    ensure!(!text.trim().is_empty(), "{}: the label file is empty", path.display());
    let doc: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
    let crs = match doc.get("crs") {
        None | Some(Value::Null) => LabelCrs::ImplicitWgs84,
        Some(c) => match c.pointer("/properties/name").and_then(Value::as_str) {
            Some(name) => parse_crs_name(name),
            None => LabelCrs::Unrecognised(c.to_string()),
        },
    };
    let features: Vec<&Value> = match doc.get("type").and_then(Value::as_str) {
        Some("FeatureCollection") => doc
            .get("features")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("{}: FeatureCollection without a \"features\" array", path.display()))?
            .iter()
            .collect(),
        Some("Feature") => vec![&doc],
        other => bail!("{}: expected a GeoJSON FeatureCollection, found type {other:?}", path.display()),
    };
    let mut out = Vec::with_capacity(features.len());
    let mut fields_seen: Vec<String> = Vec::new();
    for (i, f) in features.iter().enumerate() {
        let geometry = match f.get("geometry") {
            None | Some(Value::Null) => bail!("{}: feature {i} has no geometry", path.display()),
            Some(g) => geometry_from_geojson(g).with_context(|| format!("{}: feature {i}", path.display()))?,
        };
        let class = match class_field {
            None => None,
            Some(field) => {
                let props = f.get("properties").and_then(Value::as_object);
                if fields_seen.is_empty() {
                    if let Some(p) = props {
                        fields_seen = p.keys().cloned().collect();
                    }
                }
                let value = props.and_then(|p| p.get(field));
                Some(match value {
                    Some(Value::String(s)) if !s.trim().is_empty() => ClassKey::from_text(s),
                    Some(Value::Number(n)) => match n.as_i64() {
                        Some(v) => ClassKey::Int(v),
                        None => ClassKey::from_f64(n.as_f64().unwrap_or(f64::NAN)),
                    },
                    Some(Value::Bool(b)) => ClassKey::Text(b.to_string()),
                    None if props.is_some_and(|p| !p.contains_key(field)) && i == 0 => bail!(
                        "{}: class field {field:?} not found; the features have the fields {:?}",
                        path.display(),
                        fields_seen
                    ),
                    other => bail!(
                        "{}: feature {i} has no usable value in class field {field:?} (found {})",
                        path.display(),
                        other.map(|v| v.to_string()).unwrap_or_else(|| "nothing".into())
                    ),
                })
            }
        };
        out.push((geometry, class));
    }
    Ok(LabelLayer { path: path.to_path_buf(), crs, features: out })
}

fn read_gpkg_labels(path: &Path, class_field: Option<&str>) -> Result<LabelLayer> {
    use rusqlite::{types::ValueRef, Connection, OpenFlags};
    ensure!(path.is_file(), "{}: label GeoPackage not found", path.display());
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open GeoPackage {}", path.display()))?;
    let gp = |e: rusqlite::Error| anyhow!("{}: not a readable GeoPackage: {e}", path.display());
    let mut stmt = conn
        .prepare(
            "SELECT c.table_name, g.column_name, g.srs_id FROM gpkg_contents c \
             JOIN gpkg_geometry_columns g ON g.table_name = c.table_name WHERE c.data_type = 'features'",
        )
        .map_err(gp)?;
    let tables: Vec<(String, String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(gp)?
        .collect::<rusqlite::Result<_>>()
        .map_err(gp)?;
    let (table, geom_col, srs_id) = match tables.as_slice() {
        [one] => one.clone(),
        [] => bail!("{}: the GeoPackage has no feature table", path.display()),
        many => bail!(
            "{}: the GeoPackage has {} feature tables ({:?}); extract the label layer with \
             `ogr2ogr labels.gpkg {} <layer>`",
            path.display(),
            many.len(),
            many.iter().map(|t| &t.0).collect::<Vec<_>>(),
            path.display()
        ),
    };
    let crs = if srs_id == 0 || srs_id == -1 {
        LabelCrs::Undefined
    } else {
        let row: Option<(String, i64)> = conn
            .query_row(
                "SELECT organization, organization_coordsys_id FROM gpkg_spatial_ref_sys WHERE srs_id = ?1",
                [srs_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        match row {
            Some((org, code)) if org.eq_ignore_ascii_case("EPSG") && code > 0 => LabelCrs::Epsg(code as u32),
            Some((org, code)) => LabelCrs::Unrecognised(format!("{org}:{code}")),
            None => LabelCrs::Unrecognised(format!("srs_id {srs_id} missing from gpkg_spatial_ref_sys")),
        }
    };
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let columns: Vec<String> = conn
        .prepare(&format!("PRAGMA table_info({})", quote(&table)))
        .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(1))?.collect())
        .map_err(gp)?;
    if let Some(field) = class_field {
        ensure!(
            columns.iter().any(|c| c == field),
            "{}: class field {field:?} not found in table {table}; its columns are {:?}",
            path.display(),
            columns
        );
    }
    let class_sql = class_field.map(quote).unwrap_or_else(|| "NULL".into());
    let sql = format!("SELECT {}, {} FROM {}", quote(&geom_col), class_sql, quote(&table));
    let mut stmt = conn.prepare(&sql).map_err(gp)?;
    let mut rows = stmt.query([]).map_err(gp)?;
    let mut features = Vec::new();
    let mut i = 0usize;
    while let Some(row) = rows.next().map_err(gp)? {
        let blob = match row.get_ref(0).map_err(gp)? {
            ValueRef::Blob(b) => b,
            ValueRef::Null => bail!("{}: feature {i} of {table} has no geometry", path.display()),
            _ => bail!("{}: feature {i} of {table}: geometry is not a blob", path.display()),
        };
        let geometry =
            parse_gpkg_geometry(blob).with_context(|| format!("{}: feature {i} of {table}", path.display()))?;
        let class = match class_field {
            None => None,
            Some(field) => Some(match row.get_ref(1).map_err(gp)? {
                ValueRef::Integer(v) => ClassKey::Int(v),
                ValueRef::Real(v) => ClassKey::from_f64(v),
                ValueRef::Text(t) if !String::from_utf8_lossy(t).trim().is_empty() => {
                    ClassKey::from_text(&String::from_utf8_lossy(t))
                }
                _ => bail!("{}: feature {i} of {table} has no value in class field {field:?}", path.display()),
            }),
        };
        features.push((geometry, class));
        i += 1;
    }
    Ok(LabelLayer { path: path.to_path_buf(), crs, features })
}

/// GeoPackage binary geometry: "GP" header (+ envelope), then WKB Polygon/MultiPolygon.
fn parse_gpkg_geometry(blob: &[u8]) -> Result<MultiPolygon<f64>> {
    ensure!(blob.len() >= 8 && &blob[0..2] == b"GP", "not a GeoPackage geometry blob");
    let flags = blob[3];
    let envelope_len = match (flags >> 1) & 0b111 {
        0 => 0,
        1 => 32,
        2 | 3 => 48,
        4 => 64,
        e => bail!("invalid envelope code {e} in geometry header"),
    };
    if flags & 0b1_0000 != 0 {
        return Ok(MultiPolygon::new(vec![]));
    }
    let mut wkb = Wkb { bytes: &blob[8 + envelope_len..], pos: 0, little: true };
    let geometry = wkb.geometry()?;
    Ok(geometry)
}

struct Wkb<'a> {
    bytes: &'a [u8],
    pos: usize,
    little: bool,
}

impl Wkb<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.bytes.get(self.pos..self.pos + N).ok_or_else(|| anyhow!("truncated WKB geometry"))?;
        self.pos += N;
        Ok(s.try_into().unwrap())
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take::<4>()?;
        Ok(if self.little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) })
    }
    fn f64(&mut self) -> Result<f64> {
        let b = self.take::<8>()?;
        Ok(if self.little { f64::from_le_bytes(b) } else { f64::from_be_bytes(b) })
    }
    /// Reads the byte order and type; returns (base type, coordinate dimensions).
    fn header(&mut self) -> Result<(u32, usize)> {
        self.little = self.take::<1>()?[0] == 1;
        let raw = self.u32()?;
        // EWKB flags (PostGIS) or ISO 1000/2000/3000 offsets for Z/M/ZM.
        let (ewkb_z, ewkb_m) = (raw & 0x8000_0000 != 0, raw & 0x4000_0000 != 0);
        if raw & 0x2000_0000 != 0 {
            self.u32()?; // EWKB SRID
        }
        let code = raw & 0x0FFF_FFFF;
        let (base, iso_dims) = (code % 1000, code / 1000);
        let extra = match iso_dims {
            0 => ewkb_z as usize + ewkb_m as usize,
            1 | 2 => 1,
            3 => 2,
            _ => bail!("unknown WKB geometry type {raw}"),
        };
        Ok((base, 2 + extra))
    }
    fn polygon_body(&mut self, dims: usize) -> Result<Polygon<f64>> {
        let nrings = self.u32()? as usize;
        let mut rings = Vec::with_capacity(nrings);
        for _ in 0..nrings {
            let n = self.u32()? as usize;
            ensure!(n <= self.bytes.len() / 16, "WKB ring claims {n} points, more than the blob holds");
            let mut pts = Vec::with_capacity(n);
            for _ in 0..n {
                let x = self.f64()?;
                let y = self.f64()?;
                for _ in 2..dims {
                    self.f64()?;
                }
                pts.push(Coord { x, y });
            }
            rings.push(LineString::new(pts));
        }
        let mut it = rings.into_iter();
        let exterior = it.next().unwrap_or_else(|| LineString::new(vec![]));
        Ok(Polygon::new(exterior, it.collect()))
    }
    fn geometry(&mut self) -> Result<MultiPolygon<f64>> {
        let (kind, dims) = self.header()?;
        match kind {
            3 => Ok(MultiPolygon::new(vec![self.polygon_body(dims)?])),
            6 => {
                let n = self.u32()? as usize;
                let mut polys = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    let (k, d) = self.header()?;
                    ensure!(k == 3, "MultiPolygon member of WKB type {k}");
                    polys.push(self.polygon_body(d)?);
                }
                Ok(MultiPolygon::new(polys))
            }
            other => bail!(
                "geometry type {} is not a polygon; chips need Polygon or MultiPolygon labels",
                match other {
                    1 => "Point",
                    2 => "LineString",
                    4 => "MultiPoint",
                    5 => "MultiLineString",
                    7 => "GeometryCollection",
                    _ => "unknown",
                }
            ),
        }
    }
}

fn check_crs(labels: &LabelLayer, raster_crs: Option<&Crs>, raster_path: &Path) -> Result<()> {
    let raster_desc = raster_crs.map(Crs::describe).unwrap_or_else(|| "no CRS".into());
    let hint = |epsg: Option<u32>| match epsg {
        Some(code) => format!(
            "reproject the labels first, e.g. `ogr2ogr -t_srs EPSG:{code} labels_{code}.geojson {}`",
            labels.path.display()
        ),
        None => "reproject the labels to the raster's CRS first (ogr2ogr -t_srs)".into(),
    };
    let raster_epsg = raster_crs.and_then(|c| c.epsg);
    let label_epsg = match &labels.crs {
        LabelCrs::Epsg(c) => Some(*c),
        LabelCrs::ImplicitWgs84 => Some(4326),
        _ => None,
    };
    match (raster_epsg, label_epsg) {
        (Some(r), Some(l)) if r == l => Ok(()),
        (Some(r), Some(_)) => bail!(
            "labels {} are in {} but raster {} is in {raster_desc}; {}",
            labels.path.display(),
            labels.crs.describe(),
            raster_path.display(),
            hint(Some(r))
        ),
        (Some(r), None) => bail!(
            "labels {} have an {}, so they cannot be checked against raster {} ({raster_desc}); {}",
            labels.path.display(),
            labels.crs.describe(),
            raster_path.display(),
            hint(Some(r))
        ),
        // A raster CRS without an EPSG code cannot be compared; the overlap check that follows
        // still catches labels in the wrong coordinates.
        (None, _) => Ok(()),
    }
}

// ---------------------------------------------------------------- classes

fn safe_folder_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.trim() == name
        && !name.chars().any(|c| matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|') || c.is_control())
}

/// Classes from the label values: positive integers keep their value; otherwise values are
/// sorted (integers numerically, then text) and numbered 1..K.
fn build_classes(
    features: &[(MultiPolygon<f64>, Option<ClassKey>)],
) -> (Vec<ChipClass>, HashMap<Option<ClassKey>, usize>) {
    let mut keys: Vec<Option<ClassKey>> = features.iter().map(|f| f.1.clone()).collect();
    keys.sort();
    keys.dedup();
    let keep_values = keys.iter().all(|k| matches!(k, Some(ClassKey::Int(v)) if *v > 0));
    let mut classes = Vec::with_capacity(keys.len());
    let mut index = HashMap::new();
    for (i, key) in keys.into_iter().enumerate() {
        let (value, name) = match &key {
            None => (1, "object".to_string()),
            Some(k @ ClassKey::Int(v)) if keep_values => (*v, k.name()),
            Some(k) => (i as i64 + 1, k.name()),
        };
        let folder = if safe_folder_name(&name) { name.clone() } else { value.to_string() };
        index.insert(key, classes.len());
        classes.push(ChipClass { value, name, folder, objects: 0 });
    }
    (classes, index)
}

fn class_color(i: usize) -> [u8; 3] {
    const PALETTE: [[u8; 3]; 10] = [
        [255, 0, 0],
        [0, 170, 255],
        [255, 200, 0],
        [0, 200, 80],
        [200, 0, 255],
        [255, 120, 0],
        [0, 255, 220],
        [150, 90, 40],
        [255, 0, 150],
        [120, 120, 255],
    ];
    PALETTE[i % PALETTE.len()]
}

// ---------------------------------------------------------------- tiling

/// Chip origins along one axis: every `stride` from 0, the last one moved in to end at `len`.
fn chip_starts(len: u32, tile: u32, stride: u32) -> Vec<u32> {
    if len <= tile {
        return vec![0];
    }
    let mut starts = Vec::new();
    let mut s = 0u32;
    loop {
        if s + tile >= len {
            starts.push(len - tile);
            break;
        }
        starts.push(s);
        s += stride;
    }
    starts.dedup();
    starts
}

/// The chip windows `export_chips` uses for a `width`×`height` raster, row-major.
pub fn chip_windows(width: u32, height: u32, tile_size: u32, stride: u32) -> Vec<PixelWindow> {
    let xs = chip_starts(width, tile_size, stride);
    let ys = chip_starts(height, tile_size, stride);
    let (w, h) = (tile_size.min(width), tile_size.min(height));
    ys.iter().flat_map(|&y| xs.iter().map(move |&x| PixelWindow::new(x, y, w, h))).collect()
}

// ---------------------------------------------------------------- export

/// A label polygon in full-raster pixel coordinates.
struct PixelPolygon {
    geometry: MultiPolygon<f64>,
    class: usize,
    /// (min_x, min_y, max_x, max_y) in pixels.
    bbox: (f64, f64, f64, f64),
    area: f64,
}

/// One object in one chip.
struct ChipObject {
    polygon: usize,
    class: usize,
    /// Pixels of the object alone (before overlaps are resolved), row-major over the chip.
    own_pixels: Vec<(u32, u32)>,
}

struct BandStats {
    min: f64,
    max: f64,
    sum: f64,
    sum_sq: f64,
    count: u64,
}

const OUR_OUTPUTS: [&str; 6] =
    ["images", "labels", "map.txt", "esri_model_definition.emd", "esri_accumulated_stats.json", "annotations.json"];

fn prepare_output(opts: &ExportChipsOptions) -> Result<()> {
    let out = &opts.output;
    if out.exists() {
        ensure!(out.is_dir(), "output {} exists and is not a folder", out.display());
        let non_empty = fs::read_dir(out).with_context(|| format!("cannot list {}", out.display()))?.next().is_some();
        if non_empty && !opts.overwrite {
            bail!(
                "output folder {} already exists and is not empty; choose another folder or allow overwriting",
                out.display()
            );
        }
        for name in OUR_OUTPUTS {
            let p = out.join(name);
            if p.is_dir() {
                fs::remove_dir_all(&p).with_context(|| format!("cannot remove old {}", p.display()))?;
            } else if p.exists() {
                fs::remove_file(&p).with_context(|| format!("cannot remove old {}", p.display()))?;
            }
        }
    }
    fs::create_dir_all(out.join("images")).with_context(|| format!("cannot create {}", out.display()))?;
    Ok(())
}

/// Cut `opts.raster` into chips with instance labels from `opts.labels`. See the module docs.
pub fn export_chips(opts: &ExportChipsOptions) -> Result<ExportSummary> {
    ensure!(opts.tile_size > 0, "tile size must be positive");
    ensure!(opts.stride > 0, "stride must be positive");
    if opts.output.exists()
        && !opts.overwrite
        && fs::read_dir(&opts.output).map(|mut d| d.next().is_some()).unwrap_or(false)
    {
        bail!(
            "output folder {} already exists and is not empty; choose another folder or allow overwriting",
            opts.output.display()
        );
    }
    let mut raster = GeoTiff::open(&opts.raster)?;
    let info = raster.info().clone();
    let gt = info.geotransform.ok_or_else(|| {
        anyhow!("raster {} has no georeferencing, so label polygons cannot be placed on it", opts.raster.display())
    })?;
    let labels = read_label_polygons(&opts.labels, opts.class_field.as_deref())?;
    check_crs(&labels, info.crs.as_ref(), &opts.raster)?;
    let bands: Vec<usize> = if opts.bands.is_empty() { (1..=info.bands).collect() } else { opts.bands.clone() };
    if let Some(b) = bands.iter().find(|&&b| b == 0 || b > info.bands) {
        bail!("band {b} requested but raster {} has bands 1..={}", opts.raster.display(), info.bands);
    }

    let (mut classes, class_index) = build_classes(&labels.features);
    let mut polygons = Vec::with_capacity(labels.features.len());
    for (geometry, key) in &labels.features {
        let px = to_pixels(geometry, &gt)?;
        let Some(r) = px.bounding_rect() else { continue };
        polygons.push(PixelPolygon {
            area: px.unsigned_area(),
            geometry: px,
            class: class_index[key],
            bbox: (r.min().x, r.min().y, r.max().x, r.max().y),
        });
    }
    let (w, h) = (info.width as f64, info.height as f64);
    if !polygons.iter().any(|p| p.bbox.0 < w && p.bbox.2 > 0.0 && p.bbox.1 < h && p.bbox.3 > 0.0) {
        let (x0, y0, x1, y1) = info.map_bounds();
        bail!(
            "none of the {} label polygons in {} overlaps raster {} (extent {x0:.3},{y0:.3} .. {x1:.3},{y1:.3}); \
             are the labels in the raster's CRS ({})?",
            labels.features.len(),
            opts.labels.display(),
            opts.raster.display(),
            info.crs.as_ref().map(Crs::describe).unwrap_or_else(|| "unknown".into())
        );
    }

    prepare_output(opts)?;
    let image_format = match (info.sample_type, bands.len()) {
        (SampleType::U8, 1 | 3) => ChipImageFormat::Png,
        _ => ChipImageFormat::Tiff,
    };
    let out = &opts.output;
    if opts.format == ChipFormat::RcnnMasks {
        for c in &classes {
            fs::create_dir_all(out.join("labels").join(&c.folder))
                .with_context(|| format!("cannot create labels/{} in {}", c.folder, out.display()))?;
        }
    }

    let tile = opts.tile_size;
    let mut summary = ExportSummary {
        chips_written: 0,
        chips_empty_skipped: 0,
        chips_nodata_skipped: 0,
        objects: 0,
        classes: Vec::new(),
        image_format,
        label_polygons: labels.features.len(),
    };
    let mut stats: Vec<BandStats> =
        bands.iter().map(|_| BandStats { min: f64::MAX, max: f64::MIN, sum: 0.0, sum_sq: 0.0, count: 0 }).collect();
    let mut map_lines = String::new();
    let mut coco_images = Vec::new();
    let mut coco_annotations = Vec::new();
    let mut objects_per_chip: Vec<usize> = Vec::new();
    let mut object_areas: Vec<f64> = Vec::new();
    let mut class_pixels = vec![0u64; classes.len()];

    let index = PolygonIndex::new(&polygons, info.width, info.height, tile);
    for window in chip_windows(info.width, info.height, tile, opts.stride) {
        let data = raster.read_window_typed(window, &bands)?;
        if let Some(nd) = info.nodata {
            let all_nodata = {
                let v = data.data.to_f32();
                v.iter().all(|&s| s as f64 == nd || (nd.is_nan() && s.is_nan()))
            };
            if all_nodata {
                summary.chips_nodata_skipped += 1;
                continue;
            }
        }
        let objects = chip_objects(&polygons, &index.candidates(window), window, tile)?;
        if objects.is_empty() && !opts.keep_empty {
            summary.chips_empty_skipped += 1;
            continue;
        }
        let stem = format!("{:09}", summary.chips_written);
        let chip_gt = gt.shifted(window.x as f64, window.y as f64);
        let pixels = pad_to_tile(&data.data, window, tile, bands.len(), info.nodata.unwrap_or(0.0));
        accumulate_stats(&mut stats, &pixels, (tile * tile) as usize, info.nodata);
        let image_path = out.join("images").join(format!("{stem}.{}", image_format.extension()));
        write_chip(&image_path, image_format, tile, bands.len(), &pixels, &chip_gt, info.crs.as_ref(), info.nodata)?;

        match opts.format {
            ChipFormat::RcnnMasks => {
                let mut first_label: Option<String> = None;
                let mut written_here = 0;
                for (ci, class) in classes.iter_mut().enumerate() {
                    let of_class: Vec<&ChipObject> = objects.iter().filter(|o| o.class == ci).collect();
                    if of_class.is_empty() && !objects.is_empty() {
                        continue; // arcgis.learn treats a missing class file as "no such objects"
                    }
                    let ids = burn_instances(&of_class, &polygons, tile);
                    let n = ids.iter().copied().max().unwrap_or(0);
                    class.objects += n as usize;
                    written_here += n as usize;
                    class_pixels[ci] += ids.iter().filter(|&&v| v != 0).count() as u64;
                    let rel = format!("labels/{}/{stem}.{}", class.folder, image_format.extension());
                    write_label_chip(&out.join(&rel), image_format, tile, &ids, &chip_gt, info.crs.as_ref())?;
                    first_label.get_or_insert(rel);
                }
                summary.objects += written_here;
                objects_per_chip.push(written_here);
                // arcgis.learn reads only the first line's tokens, with backslashes, as Pro writes them.
                let image_rel = format!("images\\{stem}.{}", image_format.extension());
                let label_rel = first_label.unwrap_or_default().replace('/', "\\");
                map_lines.push_str(&format!("{image_rel} {label_rel}\n"));
            }
            ChipFormat::Coco => {
                let image_id = summary.chips_written as u64 + 1;
                coco_images.push(json!({
                    "id": image_id,
                    "file_name": format!("{stem}.{}", image_format.extension()),
                    "width": tile,
                    "height": tile,
                    "window": [window.x, window.y, window.width, window.height],
                    "geotransform": chip_gt.0,
                }));
                for o in &objects {
                    let segmentation = coco_segmentation(&polygons[o.polygon].geometry, window, tile, o)?;
                    let (area, bbox) = segmentation_extent(&segmentation, o);
                    object_areas.push(area);
                    classes[o.class].objects += 1;
                    class_pixels[o.class] += o.own_pixels.len() as u64;
                    coco_annotations.push(json!({
                        "id": coco_annotations.len() + 1,
                        "image_id": image_id,
                        "category_id": classes[o.class].value,
                        "segmentation": segmentation,
                        "area": area,
                        "bbox": bbox,
                        "iscrowd": 0,
                    }));
                }
                summary.objects += objects.len();
                objects_per_chip.push(objects.len());
            }
        }
        if opts.format == ChipFormat::RcnnMasks {
            for o in &objects {
                object_areas.push(o.own_pixels.len() as f64);
            }
        }
        summary.chips_written += 1;
    }

    if summary.chips_written == 0 {
        bail!(
            "no chips written to {}: {} chips have no label polygon{} and {} are entirely nodata",
            out.display(),
            summary.chips_empty_skipped,
            if opts.keep_empty { "" } else { " (they are kept only when empty chips are asked for)" },
            summary.chips_nodata_skipped
        );
    }
    match opts.format {
        ChipFormat::RcnnMasks => {
            write_text(&out.join("map.txt"), &map_lines)?;
            let emd = esri_emd(&classes, &bands, &stats, tile, &gt);
            write_text(&out.join("esri_model_definition.emd"), &serde_json::to_string_pretty(&emd)?)?;
            let acc = esri_stats(&summary, &classes, &bands, tile, &objects_per_chip, &object_areas, &class_pixels);
            write_text(&out.join("esri_accumulated_stats.json"), &serde_json::to_string_pretty(&acc)?)?;
        }
        ChipFormat::Coco => {
            let categories: Vec<Value> =
                classes.iter().map(|c| json!({"id": c.value, "name": c.name, "supercategory": c.name})).collect();
            let doc = json!({
                "info": {
                    "description": format!("chips of {} labelled from {}", opts.raster.display(), opts.labels.display()),
                    "crs": info.crs.as_ref().map(Crs::describe),
                    "tile_size": tile,
                    "stride": opts.stride,
                },
                "images": coco_images,
                "annotations": coco_annotations,
                "categories": categories,
            });
            write_text(&out.join("annotations.json"), &serde_json::to_string(&doc)?)?;
        }
    }
    summary.classes = classes;
    Ok(summary)
}

fn to_pixels(mp: &MultiPolygon<f64>, gt: &GeoTransform) -> Result<MultiPolygon<f64>> {
    let ring = |ls: &LineString<f64>| -> Result<LineString<f64>> {
        ls.0.iter()
            .map(|c| gt.map_to_pixel(c.x, c.y).map(|(x, y)| Coord { x, y }))
            .collect::<Result<Vec<_>>>()
            .map(LineString::new)
    };
    mp.0.iter()
        .map(|p| Ok(Polygon::new(ring(p.exterior())?, p.interiors().iter().map(ring).collect::<Result<_>>()?)))
        .collect::<Result<Vec<_>>>()
        .map(MultiPolygon::new)
}

/// Polygons bucketed by raster cells of one chip size, so each chip only looks at the polygons
/// near it (large label sets over large rasters would otherwise cost chips × polygons).
struct PolygonIndex {
    cell: f64,
    cols: usize,
    rows: usize,
    cells: Vec<Vec<u32>>,
}

impl PolygonIndex {
    fn new(polygons: &[PixelPolygon], width: u32, height: u32, cell: u32) -> PolygonIndex {
        let cell = cell.max(1) as f64;
        let cols = (width as f64 / cell).ceil().max(1.0) as usize;
        let rows = (height as f64 / cell).ceil().max(1.0) as usize;
        let mut cells = vec![Vec::new(); cols * rows];
        for (i, p) in polygons.iter().enumerate() {
            let (x0, y0, x1, y1) = p.bbox;
            if x1 <= 0.0 || y1 <= 0.0 || x0 >= width as f64 || y0 >= height as f64 {
                continue;
            }
            let c0 = (x0.max(0.0) / cell) as usize;
            let r0 = (y0.max(0.0) / cell) as usize;
            let c1 = ((x1 / cell) as usize).min(cols - 1);
            let r1 = ((y1 / cell) as usize).min(rows - 1);
            for r in r0..=r1 {
                for c in c0..=c1 {
                    cells[r * cols + c].push(i as u32);
                }
            }
        }
        PolygonIndex { cell, cols, rows, cells }
    }

    /// Indices of polygons whose box may meet `window`, ascending (file order).
    fn candidates(&self, window: PixelWindow) -> Vec<usize> {
        let c0 = (window.x as f64 / self.cell) as usize;
        let r0 = (window.y as f64 / self.cell) as usize;
        let c1 = ((window.right() as f64 / self.cell) as usize).min(self.cols - 1);
        let r1 = ((window.bottom() as f64 / self.cell) as usize).min(self.rows - 1);
        let mut out: Vec<usize> = Vec::new();
        for r in r0..=r1 {
            for c in c0..=c1 {
                out.extend(self.cells[r * self.cols + c].iter().map(|&i| i as usize));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Objects with at least one pixel centre inside `window`, each rasterised on its own.
fn chip_objects(
    polygons: &[PixelPolygon],
    candidates: &[usize],
    window: PixelWindow,
    tile: u32,
) -> Result<Vec<ChipObject>> {
    let (wx0, wy0) = (window.x as f64, window.y as f64);
    let (wx1, wy1) = (wx0 + window.width as f64, wy0 + window.height as f64);
    let mut out = Vec::new();
    for &i in candidates {
        let p = &polygons[i];
        let (x0, y0, x1, y1) = p.bbox;
        if x1 <= wx0 || x0 >= wx1 || y1 <= wy0 || y0 >= wy1 {
            continue;
        }
        // Rasterise only over the polygon's box clipped to the window.
        let cx0 = (x0.floor().max(wx0)) as u32;
        let cy0 = (y0.floor().max(wy0)) as u32;
        let cx1 = (x1.ceil().min(wx1)) as u32;
        let cy1 = (y1.ceil().min(wy1)) as u32;
        if cx1 <= cx0 || cy1 <= cy0 {
            continue;
        }
        let (bw, bh) = ((cx1 - cx0) as usize, (cy1 - cy0) as usize);
        let local = GeoTransform::IDENTITY.shifted(cx0 as f64, cy0 as f64);
        let burnt = rasterize_polygons(&[(p.geometry.clone(), 1u8)], bw, bh, &local, 0u8)?;
        let own_pixels: Vec<(u32, u32)> = burnt
            .iter()
            .enumerate()
            .filter(|(_, &v)| v != 0)
            .map(|(k, _)| (cx0 - window.x + (k % bw) as u32, cy0 - window.y + (k / bw) as u32))
            .filter(|&(x, y)| x < tile && y < tile)
            .collect();
        if !own_pixels.is_empty() {
            out.push(ChipObject { polygon: i, class: p.class, own_pixels });
        }
    }
    Ok(out)
}

/// Instance-id raster of one class: ids 1..n in object order; larger objects are burnt first so
/// smaller ones on top of them survive. Objects left with no pixel are dropped and ids stay
/// consecutive.
fn burn_instances(objects: &[&ChipObject], polygons: &[PixelPolygon], tile: u32) -> Vec<u32> {
    let mut order: Vec<usize> = (0..objects.len()).collect();
    order.sort_by(|&a, &b| {
        polygons[objects[b].polygon].area.total_cmp(&polygons[objects[a].polygon].area).then(a.cmp(&b))
    });
    let mut slot = vec![0u32; (tile * tile) as usize];
    for &k in &order {
        for &(x, y) in &objects[k].own_pixels {
            slot[(y * tile + x) as usize] = k as u32 + 1;
        }
    }
    let mut present = vec![false; objects.len() + 1];
    for &v in &slot {
        present[v as usize] = true;
    }
    let mut renumber = vec![0u32; objects.len() + 1];
    let mut next = 0;
    for (k, &p) in present.iter().enumerate().skip(1) {
        if p {
            next += 1;
            renumber[k] = next;
        }
    }
    slot.iter().map(|&v| renumber[v as usize]).collect()
}

/// COCO segmentation of one object: the polygon clipped to the chip, in chip pixels; an
/// uncompressed RLE of its own mask when the clipped shape has holes.
fn coco_segmentation(
    geometry: &MultiPolygon<f64>,
    window: PixelWindow,
    tile: u32,
    object: &ChipObject,
) -> Result<Value> {
    let (x0, y0) = (window.x as f64, window.y as f64);
    let rect = Polygon::new(
        LineString::from(vec![
            (x0, y0),
            (x0 + window.width as f64, y0),
            (x0 + window.width as f64, y0 + window.height as f64),
            (x0, y0 + window.height as f64),
            (x0, y0),
        ]),
        vec![],
    );
    let clipped = geometry.intersection(&MultiPolygon::new(vec![rect]));
    let has_holes = clipped.0.iter().any(|p| !p.interiors().is_empty());
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    let mut rings: Vec<Vec<f64>> = Vec::new();
    if !has_holes {
        for p in &clipped.0 {
            let pts = &p.exterior().0;
            let n = if pts.len() > 1 && pts[0] == pts[pts.len() - 1] { pts.len() - 1 } else { pts.len() };
            if n < 3 || p.unsigned_area() <= 0.0 {
                continue;
            }
            rings.push(pts[..n].iter().flat_map(|c| [round(c.x - x0), round(c.y - y0)]).collect());
        }
    }
    if !has_holes && !rings.is_empty() {
        return Ok(json!(rings));
    }
    // Column-major run lengths starting with background, as COCO's uncompressed RLE.
    let mut mask = vec![false; (tile * tile) as usize];
    for &(x, y) in &object.own_pixels {
        mask[(x * tile + y) as usize] = true;
    }
    let mut counts = Vec::new();
    let (mut current, mut run) = (false, 0u32);
    for &m in &mask {
        if m != current {
            counts.push(run);
            current = m;
            run = 0;
        }
        run += 1;
    }
    counts.push(run);
    Ok(json!({"counts": counts, "size": [tile, tile]}))
}

/// (area, [x, y, w, h]) of a segmentation: polygon area and extent, or pixel count and pixel box.
fn segmentation_extent(seg: &Value, object: &ChipObject) -> (f64, [f64; 4]) {
    if let Some(rings) = seg.as_array() {
        let mut area = 0.0;
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for ring in rings {
            let pts: Vec<f64> = ring.as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
            let n = pts.len() / 2;
            let mut twice = 0.0;
            for i in 0..n {
                let j = (i + 1) % n;
                twice += pts[2 * i] * pts[2 * j + 1] - pts[2 * j] * pts[2 * i + 1];
                x0 = x0.min(pts[2 * i]);
                x1 = x1.max(pts[2 * i]);
                y0 = y0.min(pts[2 * i + 1]);
                y1 = y1.max(pts[2 * i + 1]);
            }
            area += twice.abs() / 2.0;
        }
        return (area, [x0, y0, x1 - x0, y1 - y0]);
    }
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for &(x, y) in &object.own_pixels {
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    (object.own_pixels.len() as f64, [x0 as f64, y0 as f64, (x1 - x0 + 1) as f64, (y1 - y0 + 1) as f64])
}

// ---------------------------------------------------------------- pixels and files

/// Band-major samples of a window, padded to tile×tile with `fill` (only rasters smaller than a
/// chip need it).
fn pad_to_tile(samples: &Samples, window: PixelWindow, tile: u32, bands: usize, fill: f64) -> Samples {
    let (w, h, t) = (window.width as usize, window.height as usize, tile as usize);
    if w == t && h == t {
        return samples.clone();
    }
    macro_rules! pad {
        ($v:expr, $variant:ident, $ty:ty) => {{
            let mut out = vec![fill as $ty; t * t * bands];
            for b in 0..bands {
                for y in 0..h {
                    let src = &$v[b * w * h + y * w..b * w * h + y * w + w];
                    out[b * t * t + y * t..b * t * t + y * t + w].copy_from_slice(src);
                }
            }
            Samples::$variant(out)
        }};
    }
    match samples {
        Samples::U8(v) => pad!(v, U8, u8),
        Samples::U16(v) => pad!(v, U16, u16),
        Samples::U32(v) => pad!(v, U32, u32),
        Samples::U64(v) => pad!(v, U64, u64),
        Samples::I8(v) => pad!(v, I8, i8),
        Samples::I16(v) => pad!(v, I16, i16),
        Samples::I32(v) => pad!(v, I32, i32),
        Samples::I64(v) => pad!(v, I64, i64),
        Samples::F32(v) => pad!(v, F32, f32),
        Samples::F64(v) => pad!(v, F64, f64),
    }
}

fn accumulate_stats(stats: &mut [BandStats], samples: &Samples, plane: usize, nodata: Option<f64>) {
    let values = samples.to_f32();
    for (b, s) in stats.iter_mut().enumerate() {
        for &v in &values[b * plane..(b + 1) * plane] {
            let v = v as f64;
            if v.is_nan() || nodata == Some(v) {
                continue;
            }
            s.min = s.min.min(v);
            s.max = s.max.max(v);
            s.sum += v;
            s.sum_sq += v * v;
            s.count += 1;
        }
    }
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// World file (pixel-centre origin) and a PAM `.aux.xml` carrying the CRS, as Esri's exporter
/// leaves beside each chip; GDAL, QGIS and ArcGIS place PNG chips with them.
fn write_sidecars(path: &Path, format: ChipImageFormat, gt: &GeoTransform, crs: Option<&Crs>) -> Result<()> {
    let g = &gt.0;
    let (cx, cy) = gt.pixel_to_map(0.5, 0.5);
    let world = format!("{:.12}\n{:.12}\n{:.12}\n{:.12}\n{:.12}\n{:.12}\n", g[1], g[4], g[2], g[5], cx, cy);
    write_text(&path.with_extension(format.world_file_extension()), &world)?;
    if let Some(crs) = crs {
        let srs = crs
            .wkt
            .clone()
            .or_else(|| crs.epsg.and_then(wkt_for_epsg))
            .or_else(|| crs.epsg.map(|c| format!("EPSG:{c}")));
        if let Some(srs) = srs {
            let escaped = srs.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
            let mut aux = path.as_os_str().to_owned();
            aux.push(".aux.xml");
            write_text(Path::new(&aux), &format!("<PAMDataset>\n  <SRS>{escaped}</SRS>\n</PAMDataset>\n"))?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn write_chip(
    path: &Path,
    format: ChipImageFormat,
    tile: u32,
    bands: usize,
    samples: &Samples,
    gt: &GeoTransform,
    crs: Option<&Crs>,
    nodata: Option<f64>,
) -> Result<()> {
    match (format, samples) {
        (ChipImageFormat::Png, Samples::U8(v)) => {
            let plane = (tile * tile) as usize;
            let hwc: Vec<u8> = (0..plane).flat_map(|p| (0..bands).map(move |b| v[b * plane + p])).collect();
            write_png(path, tile, bands, png::BitDepth::Eight, &hwc)?;
        }
        (ChipImageFormat::Png, _) => bail!("internal: PNG chips need 8-bit samples"),
        (ChipImageFormat::Tiff, _) => {
            let tags = TiffChip { tile, bands, samples, gt, crs, nodata };
            let bytes = tags.encode()?;
            fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    write_sidecars(path, format, gt, crs)
}

/// Label chip: 8-bit when ids fit, else 16-bit (PNG) or 32-bit (TIFF).
fn write_label_chip(
    path: &Path,
    format: ChipImageFormat,
    tile: u32,
    ids: &[u32],
    gt: &GeoTransform,
    crs: Option<&Crs>,
) -> Result<()> {
    let max = ids.iter().copied().max().unwrap_or(0);
    match format {
        ChipImageFormat::Png => {
            if max <= 255 {
                let bytes: Vec<u8> = ids.iter().map(|&v| v as u8).collect();
                write_png(path, tile, 1, png::BitDepth::Eight, &bytes)?;
            } else {
                ensure!(max <= 65535, "{}: {max} objects in one chip do not fit a 16-bit PNG label", path.display());
                let bytes: Vec<u8> = ids.iter().flat_map(|&v| (v as u16).to_be_bytes()).collect();
                write_png(path, tile, 1, png::BitDepth::Sixteen, &bytes)?;
            }
            write_sidecars(path, format, gt, crs)
        }
        ChipImageFormat::Tiff => {
            let samples = if max <= 255 {
                Samples::U8(ids.iter().map(|&v| v as u8).collect())
            } else if max <= 65535 {
                Samples::U16(ids.iter().map(|&v| v as u16).collect())
            } else {
                Samples::U32(ids.to_vec())
            };
            write_chip(path, format, tile, 1, &samples, gt, crs, None)
        }
    }
}

fn write_png(path: &Path, tile: u32, channels: usize, depth: png::BitDepth, bytes: &[u8]) -> Result<()> {
    let run = || -> Result<()> {
        let file = std::io::BufWriter::new(fs::File::create(path)?);
        let mut enc = png::Encoder::new(file, tile, tile);
        enc.set_color(if channels == 3 { png::ColorType::Rgb } else { png::ColorType::Grayscale });
        enc.set_depth(depth);
        let mut writer = enc.write_header()?;
        writer.write_image_data(bytes)?;
        writer.finish()?;
        Ok(())
    };
    run().with_context(|| format!("cannot write PNG {}", path.display()))
}

/// A chip as a Deflate-compressed, pixel-interleaved GeoTIFF in the raster's own sample type.
struct TiffChip<'a> {
    tile: u32,
    bands: usize,
    samples: &'a Samples,
    gt: &'a GeoTransform,
    crs: Option<&'a Crs>,
    nodata: Option<f64>,
}

enum TagValue {
    Short(Vec<u16>),
    Long(Vec<u32>),
    Double(Vec<f64>),
    Ascii(String),
}

impl TiffChip<'_> {
    fn encode(&self) -> Result<Vec<u8>> {
        let plane = (self.tile * self.tile) as usize;
        let (bits, format, bytes_per): (u16, u16, usize) = match self.samples {
            Samples::U8(_) => (8, 1, 1),
            Samples::U16(_) => (16, 1, 2),
            Samples::U32(_) => (32, 1, 4),
            Samples::U64(_) => (64, 1, 8),
            Samples::I8(_) => (8, 2, 1),
            Samples::I16(_) => (16, 2, 2),
            Samples::I32(_) => (32, 2, 4),
            Samples::I64(_) => (64, 2, 8),
            Samples::F32(_) => (32, 3, 4),
            Samples::F64(_) => (64, 3, 8),
        };
        ensure!(self.samples.len() == plane * self.bands, "internal: chip has {} samples", self.samples.len());
        let mut raw = Vec::with_capacity(plane * self.bands * bytes_per);
        macro_rules! interleave {
            ($v:expr) => {
                for p in 0..plane {
                    for b in 0..self.bands {
                        raw.extend_from_slice(&$v[b * plane + p].to_le_bytes());
                    }
                }
            };
        }
        match self.samples {
            Samples::U8(v) => interleave!(v),
            Samples::U16(v) => interleave!(v),
            Samples::U32(v) => interleave!(v),
            Samples::U64(v) => interleave!(v),
            Samples::I8(v) => interleave!(v),
            Samples::I16(v) => interleave!(v),
            Samples::I32(v) => interleave!(v),
            Samples::I64(v) => interleave!(v),
            Samples::F32(v) => interleave!(v),
            Samples::F64(v) => interleave!(v),
        }
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
        enc.write_all(&raw)?;
        let strip = enc.finish()?;

        let rgb = self.bands == 3 && bits == 8;
        let mut tags: Vec<(u16, TagValue)> = vec![
            (256, TagValue::Long(vec![self.tile])),
            (257, TagValue::Long(vec![self.tile])),
            (258, TagValue::Short(vec![bits; self.bands])),
            (259, TagValue::Short(vec![8])),
            (262, TagValue::Short(vec![if rgb { 2 } else { 1 }])),
            (273, TagValue::Long(vec![8])),
            (277, TagValue::Short(vec![self.bands as u16])),
            (278, TagValue::Long(vec![self.tile])),
            (279, TagValue::Long(vec![strip.len() as u32])),
            (284, TagValue::Short(vec![1])),
            (339, TagValue::Short(vec![format; self.bands])),
        ];
        let extra = if rgb { 0 } else { self.bands - 1 };
        if extra > 0 {
            // Unspecified extra samples: spectral bands, not alpha.
            tags.push((338, TagValue::Short(vec![0; extra])));
        }
        let g = &self.gt.0;
        if g[2] == 0.0 && g[4] == 0.0 {
            tags.push((33550, TagValue::Double(vec![g[1], -g[5], 0.0])));
            tags.push((33922, TagValue::Double(vec![0.0, 0.0, 0.0, g[0], g[3], 0.0])));
        } else {
            #[rustfmt::skip]
            let m = vec![g[1], g[2], 0.0, g[0], g[4], g[5], 0.0, g[3], 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
            tags.push((34264, TagValue::Double(m)));
        }
        let mut keys: Vec<[u16; 4]> = Vec::new();
        match self.crs.and_then(|c| c.epsg) {
            Some(code) if (4000..5000).contains(&code) => {
                keys.push([1024, 0, 1, 2]);
                keys.push([1025, 0, 1, 1]);
                keys.push([2048, 0, 1, code as u16]);
            }
            Some(code) if code <= u16::MAX as u32 => {
                keys.push([1024, 0, 1, 1]);
                keys.push([1025, 0, 1, 1]);
                keys.push([3072, 0, 1, code as u16]);
            }
            _ => keys.push([1025, 0, 1, 1]),
        }
        let mut dir = vec![1u16, 1, 0, keys.len() as u16];
        for k in keys {
            dir.extend(k);
        }
        tags.push((34735, TagValue::Short(dir)));
        if let Some(nd) = self.nodata {
            tags.push((42113, TagValue::Ascii(format!("{nd}\0"))));
        }
        tags.sort_by_key(|t| t.0);

        // Layout: header, strip, out-of-line values, IFD.
        let mut out = Vec::with_capacity(strip.len() + 1024);
        out.extend(b"II");
        out.extend(42u16.to_le_bytes());
        out.extend(0u32.to_le_bytes()); // IFD offset, patched below
        out.extend(&strip);
        let mut entries: Vec<(u16, u16, u32, [u8; 4])> = Vec::new();
        for (tag, value) in &tags {
            let (typ, count, bytes): (u16, u32, Vec<u8>) = match value {
                TagValue::Short(v) => (3, v.len() as u32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                TagValue::Long(v) => (4, v.len() as u32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                TagValue::Double(v) => (12, v.len() as u32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                TagValue::Ascii(s) => (2, s.len() as u32, s.as_bytes().to_vec()),
            };
            let mut field = [0u8; 4];
            if bytes.len() <= 4 {
                field[..bytes.len()].copy_from_slice(&bytes);
            } else {
                if out.len() % 2 == 1 {
                    out.push(0);
                }
                field = (out.len() as u32).to_le_bytes();
                out.extend(&bytes);
            }
            entries.push((*tag, typ, count, field));
        }
        if out.len() % 2 == 1 {
            out.push(0);
        }
        let ifd = out.len() as u32;
        out[4..8].copy_from_slice(&ifd.to_le_bytes());
        out.extend((entries.len() as u16).to_le_bytes());
        for (tag, typ, count, field) in entries {
            out.extend(tag.to_le_bytes());
            out.extend(typ.to_le_bytes());
            out.extend(count.to_le_bytes());
            out.extend(field);
        }
        out.extend(0u32.to_le_bytes());
        Ok(out)
    }
}

// ---------------------------------------------------------------- Esri metadata

fn band_stats_json(bands: &[usize], stats: &[BandStats]) -> Vec<Value> {
    bands
        .iter()
        .zip(stats)
        .map(|(b, s)| {
            let n = s.count.max(1) as f64;
            let mean = s.sum / n;
            let var = (s.sum_sq / n - mean * mean).max(0.0);
            let (min, max) = if s.count == 0 { (0.0, 0.0) } else { (s.min, s.max) };
            json!({"BandName": format!("Band_{b}"), "Min": min, "Max": max, "Mean": mean, "StdDev": var.sqrt()})
        })
        .collect()
}

fn esri_emd(classes: &[ChipClass], bands: &[usize], stats: &[BandStats], tile: u32, gt: &GeoTransform) -> Value {
    let cell = gt.pixel_size();
    json!({
        "Framework": "",
        "ModelConfiguration": "",
        "ModelType": "InstanceDetection",
        "ImageHeight": tile,
        "ImageWidth": tile,
        "ExtractBands": (0..bands.len()).collect::<Vec<_>>(),
        "ImageSpaceUsed": "MAP_SPACE",
        "IsMultidimensional": false,
        "InputRastersProps": {
            "RasterCount": 1,
            "SensorName": "",
            "BandNames": bands.iter().map(|b| format!("Band_{b}")).collect::<Vec<_>>(),
        },
        "AllTilesStats": band_stats_json(bands, stats),
        "MinCellSize": cell,
        "MaxCellSize": cell,
        "Classes": classes
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"Value": c.value, "Name": c.name, "Color": class_color(i)}))
            .collect::<Vec<_>>(),
    })
}

fn min_max_mean(v: &[f64]) -> Value {
    if v.is_empty() {
        return json!({"Min": 0, "Max": 0, "Mean": 0});
    }
    let min = v.iter().copied().fold(f64::MAX, f64::min);
    let max = v.iter().copied().fold(f64::MIN, f64::max);
    json!({"Min": min, "Max": max, "Mean": v.iter().sum::<f64>() / v.len() as f64})
}

fn esri_stats(
    summary: &ExportSummary,
    classes: &[ChipClass],
    bands: &[usize],
    tile: u32,
    objects_per_chip: &[usize],
    object_areas: &[f64],
    class_pixels: &[u64],
) -> Value {
    let per_chip: Vec<f64> = objects_per_chip.iter().map(|&n| n as f64).collect();
    let total_pixels = (summary.chips_written as u64 * tile as u64 * tile as u64).max(1) as f64;
    let mut by_class = BTreeMap::new();
    for (c, &px) in classes.iter().zip(class_pixels) {
        by_class.insert(
            c.value,
            json!({"ClassValue": c.value, "ClassName": c.name, "NumFeatures": c.objects, "NumPixels": px,
                   "PixelFraction": px as f64 / total_pixels}),
        );
    }
    json!({
        "MetaDataMode": "RCNN_Masks",
        "ImageSpaceUsed": "MAP_SPACE",
        "NumTiles": summary.chips_written,
        "NumTilesSkippedEmpty": summary.chips_empty_skipped,
        "NumTilesSkippedNoData": summary.chips_nodata_skipped,
        "NumFeatures": summary.objects,
        "NumBands": bands.len(),
        "ImageHeight": tile,
        "ImageWidth": tile,
        "FeatureStats": {
            "NumFeaturesPerImage": min_max_mean(&per_chip),
            "FeatureAreaInPixels": min_max_mean(object_areas),
        },
        "ClassPixelStats": by_class.into_values().collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_cover_the_axis_and_end_inside() {
        assert_eq!(chip_starts(900, 256, 256), vec![0, 256, 512, 644]);
        assert_eq!(chip_starts(512, 256, 256), vec![0, 256]);
        assert_eq!(chip_starts(100, 256, 256), vec![0]);
        assert_eq!(chip_starts(600, 256, 128), vec![0, 128, 256, 344]);
        assert_eq!(chip_starts(1000, 100, 300), vec![0, 300, 600, 900]);
    }

    #[test]
    fn crs_names() {
        assert_eq!(parse_crs_name("urn:ogc:def:crs:EPSG::32616"), LabelCrs::Epsg(32616));
        assert_eq!(parse_crs_name("EPSG:3857"), LabelCrs::Epsg(3857));
        assert_eq!(parse_crs_name("urn:ogc:def:crs:OGC:1.3:CRS84"), LabelCrs::Epsg(4326));
        assert!(matches!(parse_crs_name("LOCAL_CS[foo]"), LabelCrs::Unrecognised(_)));
    }

    #[test]
    fn classes_keep_positive_integers_and_number_text() {
        let mp = MultiPolygon::new(vec![]);
        let f = |k: ClassKey| (mp.clone(), Some(k));
        let (c, _) = build_classes(&[f(ClassKey::Int(5)), f(ClassKey::Int(2)), f(ClassKey::Int(5))]);
        assert_eq!(c.iter().map(|c| (c.value, c.name.as_str())).collect::<Vec<_>>(), vec![(2, "2"), (5, "5")]);
        let (c, _) =
            build_classes(&[f(ClassKey::Text("tank".into())), f(ClassKey::Text("ship".into())), f(ClassKey::Int(0))]);
        assert_eq!(
            c.iter().map(|c| (c.value, c.name.as_str())).collect::<Vec<_>>(),
            vec![(1, "0"), (2, "ship"), (3, "tank")]
        );
        let (c, _) = build_classes(&[f(ClassKey::Text("a/b".into()))]);
        assert_eq!(c[0].folder, "1");
    }
}
