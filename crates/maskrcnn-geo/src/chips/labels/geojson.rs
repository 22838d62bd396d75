//! GeoJSON labels: a FeatureCollection (or one Feature); the CRS from the legacy `crs` member,
//! RFC 7946 WGS 84 without it.

use std::fs;
use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;

use super::{check_single_layer, field_not_found, file_stem, parse_crs_name, LabelCrs, LabelLayer, LayerBuilder};
use super::{RawGeometry, RawValue};
use crate::output::geometry_from_geojson;

pub(super) fn read(path: &Path, layer: Option<&str>, class_field: Option<&str>) -> Result<LabelLayer> {
    let text = fs::read_to_string(path).with_context(|| format!("cannot read labels {}", path.display()))?;
    ensure!(!text.trim().is_empty(), "{}: the label file is empty", path.display());
    let doc: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
    // GDAL names the layer after the collection's "name" member, else after the file.
    let name = doc.get("name").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| file_stem(path));
    check_single_layer(path, "a GeoJSON file", &name, layer)?;
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
    // GeoJSON has no schema: the class field is checked on the features themselves.
    let mut out = LayerBuilder::new(path, String::new(), class_field, None)?;
    for (i, f) in features.iter().enumerate() {
        let geometry = match f.get("geometry") {
            None | Some(Value::Null) => RawGeometry::Missing,
            Some(g) => match g.get("type").and_then(Value::as_str) {
                Some("Polygon" | "MultiPolygon") => RawGeometry::Polygons(
                    geometry_from_geojson(g).with_context(|| format!("{}: feature {i}", path.display()))?,
                ),
                other => RawGeometry::NotPolygon(other.unwrap_or("geometry without a type").to_string()),
            },
        };
        let props = f.get("properties").and_then(Value::as_object);
        let value = match class_field {
            None => RawValue::Null,
            Some(field) => match props.and_then(|p| p.get(field)) {
                // The first feature lacking the field most likely means a wrong field name.
                None if i == 0 && props.is_some() => {
                    let fields: Vec<String> = props.map(|p| p.keys().cloned().collect()).unwrap_or_default();
                    return Err(field_not_found(path, "", field, &fields));
                }
                None | Some(Value::Null) => RawValue::Null,
                Some(Value::String(s)) => RawValue::Text(s),
                Some(Value::Number(n)) => match n.as_i64() {
                    Some(v) => RawValue::Int(v),
                    None => RawValue::Real(n.as_f64().unwrap_or(f64::NAN)),
                },
                Some(Value::Bool(b)) => RawValue::Bool(*b),
                Some(other) => RawValue::Other(other.to_string()),
            },
        };
        out.push(i, geometry, value)?;
    }
    Ok(out.finish(name, crs))
}
