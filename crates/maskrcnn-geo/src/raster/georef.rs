//! Georeferencing: the pixel→map transform, the CRS, nodata and GDAL metadata, read from the
//! GeoTIFF tags (ModelPixelScale/Tiepoint/Transformation, GeoKeyDirectory) and GDAL's own.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use tiff::decoder::Decoder;
use tiff::tags::Tag;

pub(super) use super::crs_wkt::looks_like_wkt;
use super::crs_wkt::{crs_from_geokeys, top_level_epsg};
use super::gcp::{fit_affine, gcps_from_tiepoints};
use super::geokeys::*;

const TAG_MODEL_PIXEL_SCALE: u16 = 33550;
const TAG_MODEL_TIEPOINT: u16 = 33922;
const TAG_MODEL_TRANSFORMATION: u16 = 34264;
pub(super) const TAG_GDAL_METADATA: u16 = 42112;
pub(super) const TAG_GDAL_NODATA: u16 = 42113;

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
    /// WKT describing a CRS that has no EPSG code: from an "ESRI PE String" citation, a `.aux.xml`
    /// or `.prj` sidecar, GDAL_METADATA, or built from the GeoKeys (WKT1 as GDAL writes it).
    pub wkt: Option<String>,
    /// Free-text citations (GTCitation, PCSCitation, GeogCitation), for reporting.
    pub citation: Option<String>,
    /// Why neither an EPSG code nor a WKT could be found for a CRS the file states (e.g. a
    /// projection method we do not know); writers warn that their output carries no CRS.
    #[serde(default)]
    pub unresolved: Option<String>,
    /// Metres per unit of a projected CRS known by its EPSG code, from ProjLinearUnitsGeoKey
    /// (a WKT says its own unit).
    #[serde(default)]
    pub metres_per_unit: Option<f64>,
}

impl Crs {
    pub fn from_epsg(code: u32) -> Crs {
        Crs { epsg: Some(code), ..Crs::default() }
    }

    /// A CRS given only as WKT (an EPSG code named at its top level is taken as its code).
    pub fn from_wkt(wkt: impl Into<String>) -> Crs {
        let wkt = wkt.into();
        Crs { epsg: top_level_epsg(&wkt), wkt: Some(wkt), ..Crs::default() }
    }

    /// True for EPSG:4326 (WGS 84 geographic), where RFC 7946 GeoJSON applies as-is.
    pub fn is_wgs84(&self) -> bool {
        self.epsg == Some(4326)
    }

    /// True when an output can say what this CRS is (an EPSG code or a WKT).
    pub fn is_described(&self) -> bool {
        self.epsg.is_some() || self.wkt.is_some()
    }

    /// "EPSG:32616", "USA_Contiguous_Albers_Equal_Area_Conic (user-defined WKT)", or the
    /// citation with the reason no description was found, for messages.
    pub fn describe(&self) -> String {
        match (&self.epsg, &self.wkt, &self.citation) {
            (Some(code), _, _) => format!("EPSG:{code}"),
            (None, Some(wkt), _) => match wkt_name(wkt).filter(|n| !n.is_empty() && *n != "unknown") {
                Some(name) => format!("{name} (user-defined WKT)"),
                // GDAL names CRSs made from PROJ strings "unknown"; the method and datum say more.
                None => {
                    let method = wkt_value(wkt, "PROJECTION[").unwrap_or("CRS");
                    match wkt_value(wkt, "GEOGCS[").filter(|g| *g != "unknown") {
                        Some(gcs) => format!("user-defined {method} on {gcs} (WKT)"),
                        None => format!("user-defined {method} (WKT)"),
                    }
                }
            },
            (None, None, c) => {
                let what = c.as_deref().map(shorten).unwrap_or_else(|| "unknown CRS".into());
                match &self.unresolved {
                    Some(why) => format!("{what} (user-defined; no WKT could be built: {why})"),
                    None => format!("{what} (user-defined, not described)"),
                }
            }
        }
    }
}

/// The name of the CRS a WKT describes (its first quoted string).
pub fn wkt_name(wkt: &str) -> Option<&str> {
    let start = wkt.find('"')? + 1;
    let len = wkt[start..].find('"')?;
    Some(&wkt[start..start + len])
}

/// The quoted name of the first `keyword` node of a WKT, e.g. `PROJECTION[` → "Mollweide".
fn wkt_value<'a>(wkt: &'a str, keyword: &str) -> Option<&'a str> {
    let at = wkt.find(keyword)? + keyword.len();
    wkt_name(&wkt[at..])
}

fn shorten(s: &str) -> String {
    let s = s.replace('|', "; ");
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

/// The raster's geotransform and the CRS of its map coordinates, as GDAL would report them:
/// GeoTIFF tags (ground control points fitted to an affine transform or refused), PixelIsPoint
/// moved to pixel corners, the CRS from a `.aux.xml` sidecar first (GDAL's PAM takes precedence
/// over the file), then the GeoKeys, then WKT in GDAL_METADATA, then a `.prj` sidecar. A raster
/// without a geotransform gets no CRS: its outputs are in pixel coordinates, whatever CRS the
/// file names.
pub(super) fn read_georeferencing(
    decoder: &mut Decoder<BufReader<File>>,
    path: &Path,
    gdal_metadata: &[(String, String)],
) -> Result<(Option<GeoTransform>, Option<Crs>)> {
    let geotransform = read_geotransform(decoder, path)?;
    let (crs, raster_is_point) =
        read_geokeys(decoder).with_context(|| format!("{}: bad GeoKeyDirectory", path.display()))?;
    // GDAL's default: a PixelIsPoint tiepoint refers to the pixel centre.
    let geotransform = geotransform.map(|gt| if raster_is_point { gt.shifted(-0.5, -0.5) } else { gt });
    if geotransform.is_none() {
        return Ok((None, None));
    }
    if let Some(crs) = read_aux_xml_srs(path)? {
        return Ok((geotransform, Some(crs)));
    }
    let metadata_wkt = || gdal_metadata.iter().map(|(_, v)| v).find(|v| looks_like_wkt(v));
    let crs = match crs {
        Some(c) if c.is_described() => Some(c),
        Some(c) => match metadata_wkt() {
            Some(wkt) => Some(Crs { wkt: Some(wkt.clone()), unresolved: None, ..c }),
            None => Some(c),
        },
        None => match metadata_wkt() {
            Some(wkt) => Some(Crs::from_wkt(wkt.clone())),
            None => read_prj(path)?.map(Crs::from_wkt),
        },
    };
    Ok((geotransform, crs))
}

fn read_geotransform(decoder: &mut Decoder<BufReader<File>>, path: &Path) -> Result<Option<GeoTransform>> {
    let transform = read_geotransform_tags(decoder, path)?;
    if let Some(g) = &transform {
        check_geotransform(g).with_context(|| format!("{}: bad georeferencing tags", path.display()))?;
    }
    Ok(transform)
}

/// The SRS a PAM sidecar (`<raster>.aux.xml`, as GDAL writes when a read-only file is given a
/// CRS) holds, if any.
fn read_aux_xml_srs(path: &Path) -> Result<Option<Crs>> {
    let mut aux = path.as_os_str().to_owned();
    aux.push(".aux.xml");
    let aux = PathBuf::from(aux);
    let Ok(xml) = std::fs::read_to_string(&aux) else { return Ok(None) };
    let Some(start) = xml.find("<SRS") else { return Ok(None) };
    let rest = &xml[start..];
    let (Some(open_end), Some(close)) = (rest.find('>'), rest.find("</SRS>")) else {
        bail!("{}: unterminated <SRS> element", aux.display());
    };
    if close < open_end {
        return Ok(None);
    }
    let srs = xml_unescape(rest[open_end + 1..close].trim());
    if srs.is_empty() {
        return Ok(None);
    }
    if let Some(code) = srs.strip_prefix("EPSG:").and_then(|c| c.parse().ok()) {
        return Ok(Some(Crs::from_epsg(code)));
    }
    if !looks_like_wkt(&srs) {
        bail!(
            "{}: <SRS> holds {:?}, which is not WKT; rewrite it with e.g. `gdal_edit.py -a_srs EPSG:xxxx {}`",
            aux.display(),
            shorten(&srs),
            path.display()
        );
    }
    Ok(Some(Crs::from_wkt(srs)))
}

/// WKT from a `.prj` sidecar (Esri's convention) when the raster states no CRS itself.
fn read_prj(path: &Path) -> Result<Option<String>> {
    let prj = path.with_extension("prj");
    let Ok(text) = std::fs::read_to_string(&prj) else { return Ok(None) };
    let text = text.trim();
    if !looks_like_wkt(text) {
        bail!("{}: not a WKT CRS (a .prj beside a raster must hold one)", prj.display());
    }
    Ok(Some(text.to_string()))
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

fn read_geotransform_tags(decoder: &mut Decoder<BufReader<File>>, path: &Path) -> Result<Option<GeoTransform>> {
    let ctx = || format!("{}: bad georeferencing tags", path.display());
    if let Some(v) = decoder.find_tag(Tag::Unknown(TAG_MODEL_TRANSFORMATION)).with_context(ctx)? {
        let m = v.into_f64_vec().with_context(ctx)?;
        if m.len() < 16 {
            bail!("{}: ModelTransformation has {} values, expected 16", path.display(), m.len());
        }
        return Ok(Some(GeoTransform([m[3], m[0], m[1], m[7], m[4], m[5]])));
    }
    let scale = decoder
        .find_tag(Tag::Unknown(TAG_MODEL_PIXEL_SCALE))
        .with_context(ctx)?
        .map(|v| v.into_f64_vec())
        .transpose()?;
    let tie =
        decoder.find_tag(Tag::Unknown(TAG_MODEL_TIEPOINT)).with_context(ctx)?.map(|v| v.into_f64_vec()).transpose()?;
    match (scale, tie) {
        (Some(s), Some(t)) if s.len() >= 2 && t.len() >= 6 => {
            let (i, j, x, y) = (t[0], t[1], t[3], t[4]);
            Ok(Some(GeoTransform([x - i * s[0], s[0], 0.0, y + j * s[1], 0.0, -s[1]])))
        }
        // Tiepoints without a scale are ground control points.
        (None, Some(t)) if t.len() >= 6 => {
            let gcps = gcps_from_tiepoints(&t);
            fit_affine(&gcps).map(Some).map_err(|e| {
                anyhow!(
                    "{}: {e}; warp it to a regular grid first, e.g. `gdalwarp -order 1 {p} out.tif` (affine) or \
                     `gdalwarp -tps {p} out.tif` (thin-plate spline through every point)",
                    path.display(),
                    p = path.display()
                )
            })
        }
        _ => Ok(None),
    }
}

/// Returns (CRS, raster-is-point).
fn read_geokeys(decoder: &mut Decoder<BufReader<File>>) -> Result<(Option<Crs>, bool)> {
    let Some(dir) = decoder.find_tag(Tag::Unknown(TAG_GEO_KEY_DIRECTORY))? else {
        return Ok((None, false));
    };
    let dir: Vec<u16> = dir.into_u16_vec()?;
    let ascii = match decoder.find_tag(Tag::Unknown(TAG_GEO_ASCII_PARAMS))? {
        Some(v) => v.into_string().unwrap_or_default(),
        None => String::new(),
    };
    let doubles = match decoder.find_tag(Tag::Unknown(TAG_GEO_DOUBLE_PARAMS))? {
        Some(v) => v.into_f64_vec()?,
        None => Vec::new(),
    };
    let keys = GeoKeys::parse(&dir, &doubles, &ascii)?;
    let raster_is_point = keys.short(GT_RASTER_TYPE) == Some(RASTER_PIXEL_IS_POINT);
    Ok((crs_from_geokeys(&keys), raster_is_point))
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
