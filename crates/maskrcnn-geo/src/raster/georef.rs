//! Georeferencing: the pixel→map transform, the CRS, nodata and GDAL metadata, read from the
//! GeoTIFF tags (ModelPixelScale/Tiepoint/Transformation, GeoKeyDirectory) and GDAL's own.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;

use anyhow::{bail, Result};
use tiff::decoder::Decoder;
use tiff::tags::Tag;

const TAG_MODEL_PIXEL_SCALE: u16 = 33550;
const TAG_MODEL_TIEPOINT: u16 = 33922;
const TAG_MODEL_TRANSFORMATION: u16 = 34264;
const TAG_GEO_KEY_DIRECTORY: u16 = 34735;
const TAG_GEO_DOUBLE_PARAMS: u16 = 34736;
const TAG_GEO_ASCII_PARAMS: u16 = 34737;
pub(super) const TAG_GDAL_METADATA: u16 = 42112;
pub(super) const TAG_GDAL_NODATA: u16 = 42113;

const KEY_MODEL_TYPE: u16 = 1024;
const KEY_RASTER_TYPE: u16 = 1025;
const KEY_GT_CITATION: u16 = 1026;
const KEY_GEOGRAPHIC_TYPE: u16 = 2048;
const KEY_GEOG_CITATION: u16 = 2049;
const KEY_PROJECTED_CS_TYPE: u16 = 3072;
const KEY_PCS_CITATION: u16 = 3073;
const USER_DEFINED: u16 = 32767;
const RASTER_PIXEL_IS_POINT: u16 = 2;

/// Affine pixel→map transform in GDAL order:
/// `x_map = gt[0] + col*gt[1] + row*gt[2]`, `y_map = gt[3] + col*gt[4] + row*gt[5]`,
/// where (col, row) are pixel-corner coordinates (the top-left corner of pixel (0,0) is (0,0)).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GeoTransform(pub [f64; 6]);

impl GeoTransform {
    /// Pixel coordinates are used as map coordinates (for rasters without georeferencing).
    pub const IDENTITY: GeoTransform = GeoTransform([0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);

    pub fn pixel_to_map(&self, col: f64, row: f64) -> (f64, f64) {
        let g = &self.0;
        (g[0] + col * g[1] + row * g[2], g[3] + col * g[4] + row * g[5])
    }

    /// Inverse of [`GeoTransform::pixel_to_map`]; errors on a degenerate (non-invertible) transform.
    pub fn map_to_pixel(&self, x: f64, y: f64) -> Result<(f64, f64)> {
        let g = &self.0;
        let det = g[1] * g[5] - g[2] * g[4];
        if det == 0.0 || !det.is_finite() {
            bail!("geotransform {:?} is not invertible", g);
        }
        let dx = x - g[0];
        let dy = y - g[3];
        Ok(((dx * g[5] - dy * g[2]) / det, (dy * g[1] - dx * g[4]) / det))
    }

    /// Area of one pixel in map units² (absolute value of the determinant).
    pub fn pixel_area(&self) -> f64 {
        (self.0[1] * self.0[5] - self.0[2] * self.0[4]).abs()
    }

    /// Mean pixel size in map units (square root of the pixel area).
    pub fn pixel_size(&self) -> f64 {
        self.pixel_area().sqrt()
    }

    /// Transform of the sub-raster whose pixel (0,0) is pixel (col, row) of this raster.
    pub fn shifted(&self, col: f64, row: f64) -> GeoTransform {
        let (x0, y0) = self.pixel_to_map(col, row);
        let g = &self.0;
        GeoTransform([x0, g[1], g[2], y0, g[4], g[5]])
    }

    /// True when the determinant is negative, i.e. rows go "down" in map space (north-up images).
    /// Ring orientation flips under such a transform.
    pub fn flips_orientation(&self) -> bool {
        self.0[1] * self.0[5] - self.0[2] * self.0[4] < 0.0
    }
}

/// Coordinate reference system as found in the file.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Crs {
    /// EPSG code from ProjectedCSTypeGeoKey / GeographicTypeGeoKey (None when user-defined).
    pub epsg: Option<u32>,
    /// WKT from an "ESRI PE String" citation or GDAL_METADATA, when present.
    pub wkt: Option<String>,
    /// Free-text citations (GTCitation, PCSCitation, GeogCitation), for reporting.
    pub citation: Option<String>,
}

impl Crs {
    pub fn from_epsg(code: u32) -> Crs {
        Crs { epsg: Some(code), wkt: None, citation: None }
    }

    /// True for EPSG:4326 (WGS 84 geographic), where RFC 7946 GeoJSON applies as-is.
    pub fn is_wgs84(&self) -> bool {
        self.epsg == Some(4326)
    }

    /// "EPSG:32616", or a shortened citation, for messages.
    pub fn describe(&self) -> String {
        match (&self.epsg, &self.citation) {
            (Some(code), _) => format!("EPSG:{code}"),
            (None, Some(c)) => format!("user-defined ({c})"),
            (None, None) if self.wkt.is_some() => "user-defined (WKT)".to_string(),
            _ => "unknown".to_string(),
        }
    }
}

pub(super) fn read_geotransform(decoder: &mut Decoder<BufReader<File>>) -> Result<Option<GeoTransform>> {
    let transform = read_geotransform_tags(decoder)?;
    if let Some(g) = &transform {
        check_geotransform(g)?;
    }
    Ok(transform)
}

/// A transform with a zero or non-finite pixel size would put every polygon at one point (or at
/// NaN) without a word; such a file is refused instead.
pub(super) fn check_geotransform(g: &GeoTransform) -> Result<()> {
    let v = &g.0;
    let determinant = v[1] * v[5] - v[2] * v[4];
    if v.iter().any(|x| !x.is_finite()) || determinant == 0.0 || !determinant.is_finite() {
        bail!(
            "degenerate geotransform {v:?} (the pixel size is zero or not finite); fix the georeferencing, e.g. \
             with gdal_edit.py -a_ullr or -a_srs"
        );
    }
    Ok(())
}

fn read_geotransform_tags(decoder: &mut Decoder<BufReader<File>>) -> Result<Option<GeoTransform>> {
    if let Some(v) = decoder.find_tag(Tag::Unknown(TAG_MODEL_TRANSFORMATION))? {
        let m = v.into_f64_vec()?;
        if m.len() < 16 {
            bail!("ModelTransformation has {} values, expected 16", m.len());
        }
        return Ok(Some(GeoTransform([m[3], m[0], m[1], m[7], m[4], m[5]])));
    }
    let scale = decoder.find_tag(Tag::Unknown(TAG_MODEL_PIXEL_SCALE))?.map(|v| v.into_f64_vec()).transpose()?;
    let tie = decoder.find_tag(Tag::Unknown(TAG_MODEL_TIEPOINT))?.map(|v| v.into_f64_vec()).transpose()?;
    match (scale, tie) {
        (Some(s), Some(t)) if s.len() >= 2 && t.len() >= 6 => {
            let (i, j, x, y) = (t[0], t[1], t[3], t[4]);
            Ok(Some(GeoTransform([x - i * s[0], s[0], 0.0, y + j * s[1], 0.0, -s[1]])))
        }
        // Tiepoints without a scale are ground control points; warping is out of scope, so the
        // raster is treated as not georeferenced (the caller reports it).
        _ => Ok(None),
    }
}

/// Returns (CRS, raster-is-point).
pub(super) fn read_geokeys(decoder: &mut Decoder<BufReader<File>>) -> Result<(Option<Crs>, bool)> {
    let Some(dir) = decoder.find_tag(Tag::Unknown(TAG_GEO_KEY_DIRECTORY))? else {
        return Ok((None, false));
    };
    let dir: Vec<u16> = dir.into_u16_vec()?;
    let ascii = match decoder.find_tag(Tag::Unknown(TAG_GEO_ASCII_PARAMS))? {
        Some(v) => v.into_string().unwrap_or_default(),
        None => String::new(),
    };
    let _doubles = decoder.find_tag(Tag::Unknown(TAG_GEO_DOUBLE_PARAMS))?;
    if dir.len() < 4 {
        bail!("GeoKeyDirectory has {} values, expected at least 4", dir.len());
    }
    let n = dir[3] as usize;
    let mut shorts: HashMap<u16, u16> = HashMap::new();
    let mut strings: HashMap<u16, String> = HashMap::new();
    for k in 0..n {
        let Some(e) = dir.get(4 + 4 * k..8 + 4 * k) else { bail!("GeoKeyDirectory is shorter than its {n} keys") };
        let (key, loc, count, value) = (e[0], e[1], e[2] as usize, e[3] as usize);
        match loc {
            0 => {
                shorts.insert(key, e[3]);
            }
            TAG_GEO_ASCII_PARAMS => {
                let s: String = ascii.chars().skip(value).take(count).collect();
                strings.insert(key, s.trim_end_matches(['|', '\0']).to_string());
            }
            _ => {}
        }
    }
    let raster_is_point = shorts.get(&KEY_RASTER_TYPE) == Some(&RASTER_PIXEL_IS_POINT);
    let model_type = shorts.get(&KEY_MODEL_TYPE).copied();
    let projected = shorts.get(&KEY_PROJECTED_CS_TYPE).copied().filter(|&c| c != USER_DEFINED && c != 0);
    let geographic = shorts.get(&KEY_GEOGRAPHIC_TYPE).copied().filter(|&c| c != USER_DEFINED && c != 0);
    let epsg = match model_type {
        Some(2) => geographic,
        _ => projected.or(if model_type == Some(1) { None } else { geographic }),
    }
    .map(u32::from);
    let citations: Vec<&String> =
        [KEY_GT_CITATION, KEY_PCS_CITATION, KEY_GEOG_CITATION].iter().filter_map(|k| strings.get(k)).collect();
    let mut wkt = None;
    for c in &citations {
        if let Some(pos) = c.find("ESRI PE String = ") {
            wkt = Some(c[pos + "ESRI PE String = ".len()..].to_string());
        } else if looks_like_wkt(c) {
            wkt = Some(c.to_string());
        }
    }
    let citation = citations.first().map(|s| s.to_string());
    if epsg.is_none() && wkt.is_none() && citation.is_none() {
        return Ok((None, raster_is_point));
    }
    Ok((Some(Crs { epsg, wkt, citation }), raster_is_point))
}

pub(super) fn looks_like_wkt(s: &str) -> bool {
    let s = s.trim_start();
    ["PROJCS[", "GEOGCS[", "PROJCRS[", "GEOGCRS[", "COMPD_CS[", "BOUNDCRS[", "GEODCRS["]
        .iter()
        .any(|p| s.starts_with(p))
}

pub(super) fn parse_nodata(s: &str) -> Result<f64> {
    match s.to_ascii_lowercase().as_str() {
        "nan" | "-nan" => Ok(f64::NAN),
        "inf" | "+inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        _ => Ok(s.parse::<f64>()?),
    }
}

/// Minimal parser for GDAL's `<GDALMetadata><Item name="..">value</Item>...` XML.
pub(super) fn parse_gdal_metadata(xml: &str) -> Vec<(String, String)> {
    let mut items = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<Item") {
        rest = &rest[start + 5..];
        let Some(tag_end) = rest.find('>') else { break };
        let attrs = &rest[..tag_end];
        let name = attrs.split("name=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("").to_string();
        rest = &rest[tag_end + 1..];
        let Some(close) = rest.find("</Item>") else { break };
        let value = xml_unescape(&rest[..close]);
        items.push((name, value));
        rest = &rest[close..];
    }
    items
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_geotransforms_are_refused() {
        for g in [[0.0, 0.0, 0.0, 0.0, 0.0, -1.0], [0.0, f64::NAN, 0.0, 0.0, 0.0, -1.0], [0.0, 1.0, 1.0, 0.0, 1.0, 1.0]]
        {
            let err = check_geotransform(&GeoTransform(g)).unwrap_err().to_string();
            assert!(err.contains("degenerate geotransform"), "{err}");
        }
        check_geotransform(&GeoTransform([500000.0, 0.5, 0.0, 4e6, 0.0, -0.5])).unwrap();
    }

    #[test]
    fn geotransform_roundtrip() {
        let gt = GeoTransform([733601.0, 0.5, 0.0, 3725139.0, 0.0, -0.5]);
        let (x, y) = gt.pixel_to_map(10.0, 20.0);
        assert_eq!((x, y), (733606.0, 3725129.0));
        let (c, r) = gt.map_to_pixel(x, y).unwrap();
        assert!((c - 10.0).abs() < 1e-9 && (r - 20.0).abs() < 1e-9);
        assert!(gt.flips_orientation());
        assert_eq!(gt.pixel_area(), 0.25);
    }

    #[test]
    fn gdal_metadata_items() {
        let xml = "<GDALMetadata>\n  <Item name=\"AREA_OR_POINT\">Area</Item>\n  <Item name=\"X\" sample=\"0\">a &amp; b</Item>\n</GDALMetadata>";
        let items = parse_gdal_metadata(xml);
        assert_eq!(items, vec![("AREA_OR_POINT".into(), "Area".into()), ("X".into(), "a & b".into())]);
    }
}
