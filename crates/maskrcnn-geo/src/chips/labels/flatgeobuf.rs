//! FlatGeobuf labels (also what `maskrcnn predict` writes): geometries from the FlatBuffers
//! records, the CRS from the header (EPSG code, else its WKT).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{anyhow, ensure, Context, Result};
use flatgeobuf::{FallibleStreamingIterator, FgbReader, GeometryType};
use geo::{Coord, LineString, MultiPolygon, Polygon};
use geozero::{ColumnValue, FeatureProperties, PropertyProcessor};

use super::{check_single_layer, file_stem, parse_crs_name, wkt, LabelCrs, LabelLayer, LayerBuilder};
use super::{RawGeometry, RawValue};

pub(super) fn read(path: &Path, layer: Option<&str>, class_field: Option<&str>) -> Result<LabelLayer> {
    let shown = path.display();
    ensure!(path.is_file(), "{shown}: label FlatGeobuf not found");
    let mut file = BufReader::new(File::open(path).with_context(|| format!("cannot open labels {}", path.display()))?);
    let fgb = FgbReader::open(&mut file).map_err(|e| anyhow!("{shown}: not a readable FlatGeobuf: {e}"))?;
    let header = fgb.header();
    let name = header.name().filter(|n| !n.is_empty()).map(str::to_string).unwrap_or_else(|| file_stem(path));
    check_single_layer(path, "a FlatGeobuf file", &name, layer)?;
    let crs = match header.crs() {
        None => LabelCrs::Missing("no CRS in the FlatGeobuf header".into()),
        Some(c) => {
            let org = c.org().unwrap_or("EPSG");
            if c.code() > 0 && org.eq_ignore_ascii_case("EPSG") {
                LabelCrs::Epsg(c.code() as u32)
            } else if let Some(code) = c.code_string().filter(|s| !s.is_empty()) {
                parse_crs_name(code)
            } else if let Some(text) = c.wkt().filter(|s| !s.trim().is_empty()) {
                wkt::crs_from_wkt(text)
            } else if c.code() > 0 {
                LabelCrs::Unrecognised(format!("{org}:{}", c.code()))
            } else {
                LabelCrs::Missing("the FlatGeobuf header's CRS has no code and no WKT".into())
            }
        }
    };
    let fields: Vec<String> =
        header.columns().map(|cols| cols.iter().map(|c| c.name().to_string()).collect()).unwrap_or_default();
    let layer_type = header.geometry_type();
    let mut out = LayerBuilder::new(path, String::new(), class_field, Some(&fields))?;
    let mut features = fgb.select_all_seq().map_err(|e| anyhow!("{shown}: {e}"))?;
    let mut i = 0usize;
    while let Some(feature) = features.next().map_err(|e| anyhow!("{shown}: feature {i}: {e}"))? {
        let geometry = match feature.geometry() {
            None => RawGeometry::Missing,
            Some(g) => {
                // Layers of mixed types store each feature's type; single-type layers only the header's.
                let kind = if layer_type == GeometryType::Unknown { g.type_() } else { layer_type };
                convert(&g, kind).with_context(|| format!("{shown}: feature {i}"))?
            }
        };
        let mut value = ClassValue { field: class_field, found: None };
        if class_field.is_some() {
            feature.process_properties(&mut value).map_err(|e| anyhow!("{shown}: feature {i}: attributes: {e}"))?;
        }
        out.push(i, geometry, value.raw())?;
        i += 1;
    }
    Ok(out.finish(name, crs))
}

fn convert(g: &flatgeobuf::Geometry<'_>, kind: GeometryType) -> Result<RawGeometry> {
    Ok(match kind {
        GeometryType::Polygon => RawGeometry::Polygons(MultiPolygon::new(vec![polygon(g)?])),
        GeometryType::MultiPolygon => {
            let parts = g.parts().map(|ps| ps.iter().map(|p| polygon(&p)).collect::<Result<Vec<_>>>()).transpose()?;
            RawGeometry::Polygons(MultiPolygon::new(parts.unwrap_or_default()))
        }
        other => RawGeometry::NotPolygon(format!("{other:?}")),
    })
}

/// A FlatGeobuf polygon: all rings' coordinates in `xy`, ring ends (in points) in `ends`.
fn polygon(g: &flatgeobuf::Geometry<'_>) -> Result<Polygon<f64>> {
    let xy: Vec<f64> = g.xy().map(|v| v.iter().collect()).unwrap_or_default();
    ensure!(xy.len().is_multiple_of(2), "odd number of polygon coordinates");
    let points = xy.len() / 2;
    let ends: Vec<usize> = match g.ends() {
        Some(e) if !e.is_empty() => e.iter().map(|v| v as usize).collect(),
        _ if points > 0 => vec![points],
        _ => Vec::new(),
    };
    let mut rings = Vec::with_capacity(ends.len());
    let mut start = 0;
    for end in ends {
        ensure!(start <= end && end <= points, "ring ends at point {end} of {points}");
        rings.push(LineString::new((start..end).map(|k| Coord { x: xy[2 * k], y: xy[2 * k + 1] }).collect()));
        start = end;
    }
    let mut it = rings.into_iter();
    Ok(match it.next() {
        Some(exterior) => Polygon::new(exterior, it.collect()),
        None => Polygon::new(LineString::new(vec![]), vec![]),
    })
}

/// Picks the class field out of a feature's properties (FlatGeobuf stores only non-null ones).
struct ClassValue<'a> {
    field: Option<&'a str>,
    found: Option<Found>,
}

enum Found {
    Int(i64),
    Real(f64),
    Text(String),
    Bool(bool),
    Other(String),
}

impl ClassValue<'_> {
    fn raw(&self) -> RawValue<'_> {
        match &self.found {
            None => RawValue::Null,
            Some(Found::Int(v)) => RawValue::Int(*v),
            Some(Found::Real(v)) => RawValue::Real(*v),
            Some(Found::Text(s)) => RawValue::Text(s),
            Some(Found::Bool(b)) => RawValue::Bool(*b),
            Some(Found::Other(s)) => RawValue::Other(s.clone()),
        }
    }
}

impl PropertyProcessor for ClassValue<'_> {
    fn property(&mut self, _i: usize, name: &str, value: &ColumnValue) -> geozero::error::Result<bool> {
        if Some(name) != self.field {
            return Ok(false);
        }
        self.found = Some(match value {
            ColumnValue::Byte(v) => Found::Int(*v as i64),
            ColumnValue::UByte(v) => Found::Int(*v as i64),
            ColumnValue::Short(v) => Found::Int(*v as i64),
            ColumnValue::UShort(v) => Found::Int(*v as i64),
            ColumnValue::Int(v) => Found::Int(*v as i64),
            ColumnValue::UInt(v) => Found::Int(*v as i64),
            ColumnValue::Long(v) => Found::Int(*v),
            ColumnValue::ULong(v) => match i64::try_from(*v) {
                Ok(v) => Found::Int(v),
                Err(_) => Found::Text(v.to_string()),
            },
            ColumnValue::Float(v) => Found::Real(*v as f64),
            ColumnValue::Double(v) => Found::Real(*v),
            ColumnValue::String(s) => Found::Text(s.to_string()),
            ColumnValue::Bool(b) => Found::Bool(*b),
            ColumnValue::Json(s) => Found::Other(format!("JSON {s}")),
            ColumnValue::DateTime(s) => Found::Other(format!("date {s}")),
            ColumnValue::Binary(_) => Found::Other("binary data".into()),
        });
        // Found it: stop reading the other properties.
        Ok(true)
    }
}
