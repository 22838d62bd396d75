//! Label input: polygon layers from GeoJSON, GeoPackage, Shapefile or FlatGeobuf, their CRS
//! against the raster's (reprojected when they differ), and the export's classes derived from the
//! label values.
//!
//! Each format has its own reader (one file each); they all hand [`RawFeature`]s to one
//! [`LayerBuilder`], so class values, geometry rules and errors are the same whatever the format.
//! Rules shared by every reader:
//! - a feature without geometry, or with a point/line geometry, is an error naming the feature;
//! - an empty polygon is kept and simply burns nothing;
//! - rings are oriented exterior counter-clockwise, holes clockwise (Shapefile stores the
//!   opposite), so every format yields identical coordinates;
//! - class values "3", 3 and 3.0 are the same class; a missing field is an error listing the
//!   fields the layer has.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use geo::orient::{Direction, Orient};
use geo::MultiPolygon;

use super::ChipClass;
use crate::raster::Crs;
use crate::reproject::Reprojector;

mod flatgeobuf;
mod geojson;
mod gpkg;
mod shapefile;
mod wkt;

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
    /// The file declares no CRS at all (the text says where it was looked for, e.g. "no .prj file").
    Missing(String),
}

impl LabelCrs {
    pub fn describe(&self) -> String {
        match self {
            LabelCrs::Epsg(c) => format!("EPSG:{c}"),
            LabelCrs::ImplicitWgs84 => "WGS 84 (no \"crs\" member, so RFC 7946 longitude/latitude)".into(),
            LabelCrs::Unrecognised(s) => format!("unrecognised CRS {s:?}"),
            LabelCrs::Undefined => "undefined CRS (GeoPackage srs_id 0/-1)".into(),
            LabelCrs::Missing(why) => format!("undeclared CRS ({why})"),
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
    /// The layer read: the GeoPackage table, otherwise the name GDAL gives the file's one layer.
    pub layer: String,
    pub crs: LabelCrs,
    /// (geometry, class) per feature; the class is `None` when no class field was asked for.
    pub features: Vec<(MultiPolygon<f64>, Option<ClassKey>)>,
}

/// Read Polygon/MultiPolygon features from a single-layer label file (or a GeoPackage with one
/// feature table). See [`read_labels`].
pub fn read_label_polygons(path: &Path, class_field: Option<&str>) -> Result<LabelLayer> {
    read_labels(path, None, class_field)
}

/// Read Polygon/MultiPolygon features from GeoJSON (`.geojson`/`.json`), GeoPackage (`.gpkg`),
/// Shapefile (`.shp` with its `.shx` and `.dbf`; CRS from `.prj`) or FlatGeobuf (`.fgb`).
///
/// `layer` picks the feature table of a GeoPackage that has several (it is required then). The
/// other formats hold one layer; a `layer` given for them must be that layer's name (the file
/// name without extension, or the name stored in the file), so a wrong file is not used silently.
/// Non-polygon or missing geometries and features without the class field are errors naming the
/// feature.
pub fn read_labels(path: &Path, layer: Option<&str>, class_field: Option<&str>) -> Result<LabelLayer> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if path.is_dir() {
        let shp: Vec<String> = std::fs::read_dir(path)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.to_ascii_lowercase().ends_with(".shp"))
                    .collect()
            })
            .unwrap_or_default();
        bail!("{}: labels are a folder; pass the label file itself (Shapefiles in it: {shp:?})", path.display());
    }
    let layer = match ext.as_str() {
        "geojson" | "json" => geojson::read(path, layer, class_field),
        "gpkg" => gpkg::read(path, layer, class_field),
        "shp" => shapefile::read(path, layer, class_field),
        "fgb" => flatgeobuf::read(path, layer, class_field),
        _ => bail!(
            "{}: unsupported label format {ext:?}; use .geojson, .gpkg, .shp or .fgb (convert with \
             `ogr2ogr labels.gpkg {}`)",
            path.display(),
            path.display()
        ),
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

/// The name GDAL gives a single-layer file's layer when the file stores none: its stem.
fn file_stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A single-layer format was asked for a layer by name: it must be the one it holds.
/// `format` goes into the message as is ("a Shapefile").
fn check_single_layer(path: &Path, format: &str, name: &str, wanted: Option<&str>) -> Result<()> {
    match wanted {
        Some(w) if w != name => {
            bail!("{}: no label layer named {w:?}; {format} holds one layer, {name:?}", path.display())
        }
        _ => Ok(()),
    }
}

/// An attribute value as a reader found it, before it becomes a [`ClassKey`].
#[derive(Debug)]
enum RawValue<'a> {
    /// Null, or the feature does not carry the field.
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Bool(bool),
    /// A type that cannot name a class (date, blob, JSON object, ...), described for the error.
    Other(String),
}

/// A feature's geometry as a reader found it.
enum RawGeometry {
    Polygons(MultiPolygon<f64>),
    /// No geometry at all (GeoJSON null, SQL NULL, Shapefile null shape, FlatGeobuf none).
    Missing,
    /// A geometry type chips cannot use, by name ("Point", "LineString", ...).
    NotPolygon(String),
}

/// Collects the features every reader yields, applying the shared rules (see the module docs).
struct LayerBuilder<'a> {
    path: &'a Path,
    /// " of layer X" for formats with several layers, "" otherwise; used in errors.
    where_: String,
    class_field: Option<&'a str>,
    features: Vec<(MultiPolygon<f64>, Option<ClassKey>)>,
}

impl<'a> LayerBuilder<'a> {
    /// `fields` are the layer's attribute names when the format has a schema; the class field
    /// must be among them. GeoJSON has none: pass `None` and check per feature.
    fn new(path: &'a Path, where_: String, class_field: Option<&'a str>, fields: Option<&[String]>) -> Result<Self> {
        if let (Some(field), Some(fields)) = (class_field, fields) {
            if !fields.iter().any(|f| f == field) {
                return Err(field_not_found(path, &where_, field, fields));
            }
        }
        Ok(LayerBuilder { path, where_, class_field, features: Vec::new() })
    }

    /// Adds feature `i` (0-based, in file order).
    fn push(&mut self, i: usize, geometry: RawGeometry, class: RawValue<'_>) -> Result<()> {
        let (path, where_) = (self.path.display(), &self.where_);
        let geometry = match geometry {
            RawGeometry::Polygons(g) => g.orient(Direction::Default),
            RawGeometry::Missing => bail!("{path}: feature {i}{where_} has no geometry"),
            RawGeometry::NotPolygon(kind) => {
                bail!("{path}: feature {i}{where_} is a {kind}; only Polygon or MultiPolygon features can be used")
            }
        };
        let class = match self.class_field {
            None => None,
            Some(field) => Some(match class {
                RawValue::Int(v) => ClassKey::Int(v),
                RawValue::Real(v) if v.is_finite() => ClassKey::from_f64(v),
                RawValue::Text(s) if !s.trim().is_empty() => ClassKey::from_text(s),
                RawValue::Bool(b) => ClassKey::Text(b.to_string()),
                other => bail!(
                    "{path}: feature {i}{where_} has no usable value in class field {field:?} (found {})",
                    match other {
                        RawValue::Null => "nothing".to_string(),
                        RawValue::Real(v) => v.to_string(),
                        RawValue::Text(s) => format!("{s:?}"),
                        RawValue::Other(s) => s,
                        _ => unreachable!("usable values are matched above"),
                    }
                ),
            }),
        };
        self.features.push((geometry, class));
        Ok(())
    }

    fn finish(self, layer: String, crs: LabelCrs) -> LabelLayer {
        LabelLayer { path: self.path.to_path_buf(), layer, crs, features: self.features }
    }
}

fn field_not_found(path: &Path, where_: &str, field: &str, fields: &[String]) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: class field {field:?} not found{where_}; the features have the fields {fields:?}",
        path.display()
    )
}

/// How the labels' coordinates reach the raster's CRS: `None` when they already are in it, or the
/// reprojection from the CRS they declare. Labels whose CRS cannot be told (undeclared, undefined,
/// unrecognised) against a raster with an EPSG code are refused, as a silent mismatch gives chips
/// without labels.
pub(super) fn labels_to_raster(
    labels: &LabelLayer,
    raster_crs: Option<&Crs>,
    raster_path: &Path,
) -> Result<Option<Reprojector>> {
    let raster_desc = raster_crs.map(Crs::describe).unwrap_or_else(|| "no CRS".into());
    let hint = |epsg: Option<u32>| match epsg {
        Some(code) => format!(
            "declare the labels' CRS, e.g. `ogr2ogr -a_srs EPSG:<their code> labels.gpkg {}`, or reproject them \
             with `ogr2ogr -t_srs EPSG:{code} labels_{code}.gpkg {}`",
            labels.path.display(),
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
    match (raster_crs, label_epsg) {
        (Some(_), Some(l)) if raster_epsg == Some(l) => Ok(None),
        (Some(raster), Some(l)) if raster.is_described() => {
            Reprojector::new(&Crs::from_epsg(l), raster).map(Some).with_context(|| {
                format!(
                    "labels {} are in {} and raster {} in {raster_desc}, and they cannot be reprojected",
                    labels.path.display(),
                    labels.crs.describe(),
                    raster_path.display()
                )
            })
        }
        (Some(_), None) if raster_epsg.is_some() => bail!(
            "labels {} have an {}, so they cannot be checked against raster {} ({raster_desc}); {}",
            labels.path.display(),
            labels.crs.describe(),
            raster_path.display(),
            hint(raster_epsg)
        ),
        // A raster CRS that cannot be compared: the overlap check that follows still catches
        // labels in the wrong coordinates.
        _ => Ok(None),
    }
}

/// [`read_labels`] (without a class field) and then into the CRS of the raster at `raster_path`,
/// reprojected when the file declares another; edges are densified to `max_error_pixels` raster
/// pixels. For polygons that are not training labels (`detect --aoi`).
pub fn read_labels_in_crs(
    path: &Path,
    layer: Option<&str>,
    raster_crs: Option<&Crs>,
    raster_path: &Path,
    max_error_pixels: f64,
    pixel_size: f64,
) -> Result<LabelLayer> {
    let mut labels = read_labels(path, layer, None)?;
    if let Some(reprojector) = labels_to_raster(&labels, raster_crs, raster_path)? {
        reproject_features(&mut labels, &reprojector, max_error_pixels * pixel_size)?;
    }
    Ok(labels)
}

/// Label polygons moved into the raster's CRS, edges densified so each stays within
/// `max_error` raster units of its true course.
pub(super) fn reproject_features(labels: &mut LabelLayer, reprojector: &Reprojector, max_error: f64) -> Result<()> {
    for (i, (geometry, _)) in labels.features.iter_mut().enumerate() {
        let (moved, _) = reprojector
            .multipolygon_valid(geometry, max_error)
            .with_context(|| format!("{}: feature {i}", labels.path.display()))?;
        *geometry = moved.orient(Direction::Default);
    }
    Ok(())
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
pub(super) fn build_classes(
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

#[cfg(test)]
mod tests {
    use super::*;

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
