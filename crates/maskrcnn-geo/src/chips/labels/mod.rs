//! Label input: polygon layers from GeoJSON or GeoPackage, the CRS check against the raster,
//! and the export's classes derived from the label values.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure, Context, Result};
use geo::{Coord, LineString, MultiPolygon, Polygon};
use serde_json::Value;

use super::ChipClass;
use crate::output::geometry_from_geojson;
use crate::raster::Crs;

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
        _ => bail!(
            "{}: unsupported label format {ext:?}; use .geojson or .gpkg (convert with `ogr2ogr labels.gpkg {}`)",
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
            Some(g) => match g.get("type").and_then(Value::as_str) {
                Some("Polygon" | "MultiPolygon") => {
                    geometry_from_geojson(g).with_context(|| format!("{}: feature {i}", path.display()))?
                }
                other => bail!(
                    "{}: feature {i} is a {}; training chips need Polygon or MultiPolygon labels",
                    path.display(),
                    other.unwrap_or("geometry without a type")
                ),
            },
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

pub(super) fn check_crs(labels: &LabelLayer, raster_crs: Option<&Crs>, raster_path: &Path) -> Result<()> {
    let raster_desc = raster_crs.map(Crs::describe).unwrap_or_else(|| "no CRS".into());
    let hint = |epsg: Option<u32>| match epsg {
        Some(code) => format!(
            "reproject the labels first, e.g. `ogr2ogr -t_srs EPSG:{code} labels_{code}.geojson {}`; if the \
             coordinates already are EPSG:{code} and only the declared CRS is missing or wrong, assign it with \
             `ogr2ogr -a_srs EPSG:{code} ...` instead",
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
