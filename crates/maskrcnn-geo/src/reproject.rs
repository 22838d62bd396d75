//! Reprojection between CRSs, in pure Rust: label polygons to the raster's CRS, outputs to
//! `--output-crs`, areas of interest to the raster's CRS.
//!
//! The projections are proj4rs's (a port of PROJ.4's: 2D, Helmert `towgs84` datum shifts through
//! WGS 84, no grid shifts unless a grid file is present). CRSs are found, in this order:
//! - by EPSG code in crs-definitions' table (codes 2000..=32766: geographic, UTM and national
//!   grids; 6,184 codes, which also give the WKT that outputs declare);
//! - from WKT (a raster's user-defined CRS, a `--output-crs` WKT file) through proj4wkt.
//!
//! Anything else (a code outside the table, a projection method proj4rs lacks, a geocentric CRS)
//! is a one-line error that says so and how to reproject with GDAL instead.
//!
//! Polygons are reprojected vertex by vertex with their edges densified: a straight edge in one
//! CRS is a curve in the other, so an edge is split until the projected midpoint lies within the
//! tolerance of the projected chord. Results are checked with [`crate::vectorize::validity`];
//! should an invalid one come out of a valid input, it is retried without densification, which
//! keeps the input's vertices only (and so its touching points) exactly.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use geo::{Coord, LineString, MultiPolygon, Polygon};
use proj4rs::Proj;

use crate::output::{Feature, FeatureSink};
use crate::raster::Crs;
use crate::vectorize::validity::is_valid_multipolygon;

/// How deep an edge is split in halves at most (2^12 pieces), so a degenerate projection (a
/// pole, an antimeridian crossing) cannot run away.
const MAX_SPLIT_DEPTH: u32 = 12;

/// Metres in a degree of latitude, to turn metre tolerances into degrees for geographic CRSs.
const METRES_PER_DEGREE: f64 = 111_320.0;

/// What users are told to do for a CRS the library does not know.
fn gdal_hint() -> &'static str {
    "use an EPSG code between 2000 and 32766 (or reproject with GDAL first: `ogr2ogr -t_srs EPSG:<code> out in`)"
}

/// A CRS ready to transform coordinates.
pub struct Projection {
    proj: Proj,
    /// proj4rs works in radians for geographic CRSs; coordinates here are degrees.
    latlong: bool,
    /// For messages: "EPSG:27700", or the WKT's name.
    name: String,
}

impl std::fmt::Debug for Projection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Projection({})", self.name)
    }
}

impl Projection {
    /// The projection of `crs`: its EPSG code if the table has it, else its WKT.
    pub fn of_crs(crs: &Crs) -> Result<Projection> {
        let name = crs.describe();
        if let Some(code) = crs.epsg {
            if let Some(def) = epsg_definition(code) {
                return Projection::from_proj_string(def.proj4, name);
            }
            if crs.wkt.is_none() {
                bail!(
                    "EPSG:{code} is not in the projection library's EPSG table (proj4rs with crs-definitions: \
                     codes 2000..=32766); {}",
                    gdal_hint()
                );
            }
        }
        let Some(wkt) = &crs.wkt else {
            bail!("{name} has neither an EPSG code nor a WKT definition, so it cannot be reprojected; {}", gdal_hint())
        };
        let proj_string = proj4wkt::wkt_to_projstring(wkt)
            .map_err(|e| anyhow!("{name}: the WKT cannot be turned into a projection ({e}); {}", gdal_hint()))?;
        check_datum_shift_known(&proj_string, &name)?;
        Projection::from_proj_string(&proj_string, name)
    }

    fn from_proj_string(proj_string: &str, name: String) -> Result<Projection> {
        let method =
            proj_string.split_whitespace().find_map(|t| t.strip_prefix("+proj=")).unwrap_or("(no +proj)").to_string();
        if method == "geocent" {
            bail!("{name} is a geocentric (X/Y/Z) CRS, not a map CRS; choose a geographic or projected CRS");
        }
        let proj = Proj::from_proj_string(proj_string).map_err(|e| {
            anyhow!(
                "{name}: the projection library cannot set up {proj_string:?} ({e}; method {method:?}); {}",
                gdal_hint()
            )
        })?;
        Ok(Projection { latlong: proj.is_latlong(), proj, name })
    }

    pub fn is_geographic(&self) -> bool {
        self.latlong
    }

    /// Metres per coordinate unit (about, for geographic CRSs: a degree of latitude).
    pub fn metres_per_unit(&self) -> f64 {
        if self.latlong {
            METRES_PER_DEGREE
        } else {
            self.proj.to_meter()
        }
    }
}

/// The EPSG table's entry for `code`.
pub fn epsg_definition(code: u32) -> Option<crs_definitions::Def> {
    u16::try_from(code).ok().and_then(crs_definitions::from_code)
}

/// proj4wkt knows no datum database: a WKT on a datum other than WGS 84 / GRS 1980 without a
/// TOWGS84 would be moved with no datum shift, hundreds of metres off, without a word.
fn check_datum_shift_known(proj_string: &str, name: &str) -> Result<()> {
    let has = |key: &str| proj_string.split_whitespace().any(|t| t.starts_with(key));
    if has("+towgs84=") || has("+nadgrids=") || has("+datum=WGS84") {
        return Ok(());
    }
    let value = |key: &str| {
        proj_string.split_whitespace().find_map(|t| t.strip_prefix(key)).and_then(|v| v.parse::<f64>().ok())
    };
    let a = value("+a=");
    let rf = value("+rf=");
    let ellps = proj_string.split_whitespace().find_map(|t| t.strip_prefix("+ellps="));
    let wgs84_like = matches!(ellps, Some("WGS84" | "GRS80"))
        || (a.is_some_and(|a| (a - 6_378_137.0).abs() < 1e-3)
            && rf.is_some_and(|rf| (rf - 298.257_223_563).abs() < 1e-6 || (rf - 298.257_222_101).abs() < 1e-6));
    if wgs84_like {
        return Ok(());
    }
    bail!(
        "{name}: its WKT gives a datum on another ellipsoid without a TOWGS84 shift, so it cannot be reprojected \
         accurately here; {}",
        gdal_hint()
    )
}

/// A CRS as `--output-crs` takes it: `EPSG:27700` (also `epsg:27700`, `urn:ogc:def:crs:EPSG::27700`,
/// `CRS84`/`WGS84` for EPSG:4326), WKT text, or a file holding WKT (a `.prj`, a `.wkt`). The CRS
/// comes back with the WKT outputs declare, and known to the projection library.
pub fn parse_crs(text: &str) -> Result<Crs> {
    let t = text.trim();
    let upper = t.to_ascii_uppercase();
    let code = if matches!(upper.as_str(), "WGS84" | "CRS84" | "OGC:CRS84" | "URN:OGC:DEF:CRS:OGC:1.3:CRS84") {
        Some(4326)
    } else if let Some(rest) = upper.strip_prefix("EPSG:").or_else(|| upper.strip_prefix("URN:OGC:DEF:CRS:EPSG:")) {
        let digits = rest.rsplit(':').next().unwrap_or("");
        Some(digits.parse::<u32>().map_err(|_| anyhow!("--output-crs {t:?}: {digits:?} is not an EPSG code"))?)
    } else {
        None
    };
    let crs = if let Some(code) = code {
        let def = epsg_definition(code).ok_or_else(|| {
            anyhow!(
                "--output-crs {t}: EPSG:{code} is not in the projection library's EPSG table (codes 2000..=32766 \
                 of crs-definitions); {}",
                gdal_hint()
            )
        })?;
        Crs { epsg: Some(code), wkt: Some(def.wkt.to_string()), ..Crs::default() }
    } else if t.starts_with('+') {
        bail!("--output-crs {t:?}: PROJ strings cannot be declared in the outputs; give an EPSG code or a WKT file")
    } else if looks_like_wkt(t) {
        Crs::from_wkt(t)
    } else if Path::new(t).is_file() {
        let wkt = std::fs::read_to_string(t).with_context(|| format!("--output-crs: cannot read {t}"))?;
        let wkt = wkt.trim().trim_start_matches('\u{feff}');
        if !looks_like_wkt(wkt) {
            bail!("--output-crs {t}: the file does not hold a WKT CRS (it should start with PROJCS[, GEOGCS[, ...)");
        }
        Crs::from_wkt(wkt)
    } else {
        bail!("--output-crs {t:?}: not an EPSG code (EPSG:4326), a WKT, nor a WKT file")
    };
    Projection::of_crs(&crs).with_context(|| format!("--output-crs {}", shorten(t)))?;
    Ok(crs)
}

fn looks_like_wkt(t: &str) -> bool {
    let upper = t.trim_start().to_ascii_uppercase();
    ["PROJCS[", "GEOGCS[", "PROJCRS[", "GEOGCRS[", "GEODCRS[", "PROJECTEDCRS[", "GEOGRAPHICCRS[", "BOUNDCRS["]
        .iter()
        .any(|k| upper.starts_with(k))
}

fn shorten(t: &str) -> String {
    if t.chars().count() > 40 {
        format!("{}…", t.chars().take(40).collect::<String>())
    } else {
        t.to_string()
    }
}

/// Coordinates from one CRS to another.
#[derive(Debug)]
pub struct Reprojector {
    src: Projection,
    dst: Projection,
    /// Same EPSG code both sides: coordinates pass through untouched.
    identity: bool,
}

impl Reprojector {
    pub fn new(src: &Crs, dst: &Crs) -> Result<Reprojector> {
        let identity = src.epsg.is_some() && src.epsg == dst.epsg;
        Ok(Reprojector { src: Projection::of_crs(src)?, dst: Projection::of_crs(dst)?, identity })
    }

    pub fn is_identity(&self) -> bool {
        self.identity
    }

    pub fn source(&self) -> &Projection {
        &self.src
    }

    pub fn target(&self) -> &Projection {
        &self.dst
    }

    /// One point; degrees for geographic CRSs (longitude first).
    pub fn point(&self, x: f64, y: f64) -> Result<(f64, f64)> {
        if self.identity {
            return Ok((x, y));
        }
        let mut p = if self.src.latlong { (x.to_radians(), y.to_radians(), 0.0) } else { (x, y, 0.0) };
        proj4rs::transform::transform(&self.src.proj, &self.dst.proj, &mut p).map_err(|e| {
            anyhow!("point {x} {y} cannot be reprojected from {} to {} ({e})", self.src.name, self.dst.name)
        })?;
        let out = if self.dst.latlong { (p.0.to_degrees(), p.1.to_degrees()) } else { (p.0, p.1) };
        if !(out.0.is_finite() && out.1.is_finite()) {
            bail!("point {x} {y} has no position in {} (reprojected from {})", self.dst.name, self.src.name);
        }
        Ok(out)
    }

    fn coord(&self, c: Coord<f64>) -> Result<Coord<f64>> {
        self.point(c.x, c.y).map(|(x, y)| Coord { x, y })
    }

    /// `distance` source units at (x, y), in target units: a tolerance in one CRS for the other.
    pub fn distance_at(&self, x: f64, y: f64, distance: f64) -> Result<f64> {
        let a = self.point(x, y)?;
        let bx = self.point(x + distance, y)?;
        let by = self.point(x, y + distance)?;
        let d = |b: (f64, f64)| ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        Ok(d(bx).min(d(by)))
    }

    /// Reprojects `mp`, splitting edges until each projected edge is within `max_error` target
    /// units of the true curve (0: vertices only).
    pub fn multipolygon(&self, mp: &MultiPolygon<f64>, max_error: f64) -> Result<MultiPolygon<f64>> {
        if self.identity {
            return Ok(mp.clone());
        }
        let ring = |ls: &LineString<f64>| -> Result<LineString<f64>> {
            let mut out = Vec::with_capacity(ls.0.len());
            let mut prev: Option<(Coord<f64>, Coord<f64>)> = None;
            for &c in &ls.0 {
                let pc = self.coord(c)?;
                match prev {
                    None => out.push(pc),
                    Some((a, pa)) => {
                        if max_error > 0.0 {
                            self.densify(a, pa, c, pc, max_error, 0, &mut out)?;
                        }
                        out.push(pc);
                    }
                }
                prev = Some((c, pc));
            }
            Ok(LineString::new(out))
        };
        let polygons =
            mp.0.iter()
                .map(|p| Ok(Polygon::new(ring(p.exterior())?, p.interiors().iter().map(ring).collect::<Result<_>>()?)))
                .collect::<Result<Vec<_>>>()?;
        Ok(MultiPolygon::new(polygons))
    }

    /// Pushes the points strictly between `a` and `b` (projected `pa`, `pb`) that keep the
    /// projected edge within `max_error` of the curve.
    #[allow(clippy::too_many_arguments)]
    fn densify(
        &self,
        a: Coord<f64>,
        pa: Coord<f64>,
        b: Coord<f64>,
        pb: Coord<f64>,
        max_error: f64,
        depth: u32,
        out: &mut Vec<Coord<f64>>,
    ) -> Result<()> {
        if depth >= MAX_SPLIT_DEPTH || a == b {
            return Ok(());
        }
        let m = Coord { x: (a.x + b.x) / 2.0, y: (a.y + b.y) / 2.0 };
        let pm = self.coord(m)?;
        let chord = Coord { x: (pa.x + pb.x) / 2.0, y: (pa.y + pb.y) / 2.0 };
        if ((pm.x - chord.x).powi(2) + (pm.y - chord.y).powi(2)).sqrt() <= max_error {
            return Ok(());
        }
        self.densify(a, pa, m, pm, max_error, depth + 1, out)?;
        out.push(pm);
        self.densify(m, pm, b, pb, max_error, depth + 1, out)
    }

    /// [`Reprojector::multipolygon`] keeping a valid input valid: densified first, and if that
    /// breaks validity (an inserted point crossing a ring that touched the edge), vertices only.
    /// The second value is false when the result is invalid although the input was valid.
    pub fn multipolygon_valid(&self, mp: &MultiPolygon<f64>, max_error: f64) -> Result<(MultiPolygon<f64>, bool)> {
        let out = self.multipolygon(mp, max_error)?;
        if self.identity || is_valid_multipolygon(&out) || !is_valid_multipolygon(mp) {
            return Ok((out, true));
        }
        let plain = self.multipolygon(mp, 0.0)?;
        if is_valid_multipolygon(&plain) {
            return Ok((plain, true));
        }
        Ok((out, false))
    }
}

/// Tolerance of output reprojection, in metres: far below any pixel, far above float noise.
pub const OUTPUT_TOLERANCE_M: f64 = 0.005;

/// A [`FeatureSink`] writing each feature's geometry in another CRS. Areas and every metric
/// option were computed in the raster's CRS before; only the coordinates change here.
pub struct ReprojectingSink {
    inner: Box<dyn FeatureSink>,
    reprojector: Reprojector,
    /// [`OUTPUT_TOLERANCE_M`] in source units.
    source_tolerance: f64,
    /// Features whose reprojection came out invalid from a valid input (named in the warnings).
    invalid: Vec<String>,
}

impl ReprojectingSink {
    pub fn new(inner: Box<dyn FeatureSink>, reprojector: Reprojector) -> ReprojectingSink {
        let source_tolerance = OUTPUT_TOLERANCE_M / reprojector.source().metres_per_unit();
        ReprojectingSink { inner, reprojector, source_tolerance, invalid: Vec::new() }
    }
}

impl FeatureSink for ReprojectingSink {
    fn write(&mut self, feature: &Feature) -> Result<()> {
        let Some(first) = feature.geometry.0.first().and_then(|p| p.exterior().0.first()).copied() else {
            return self.inner.write(feature);
        };
        let tolerance = self.reprojector.distance_at(first.x, first.y, self.source_tolerance)?;
        let (geometry, valid) = self.reprojector.multipolygon_valid(&feature.geometry, tolerance)?;
        if !valid {
            self.invalid.push(if feature.tile.is_empty() { feature.class.clone() } else { feature.tile.clone() });
        }
        self.inner.write(&Feature { geometry, ..feature.clone() })
    }

    fn finish(self: Box<Self>) -> Result<()> {
        self.inner.finish()
    }

    fn crs_warning(&self) -> Option<&str> {
        self.inner.crs_warning()
    }

    fn warnings(&self) -> Vec<String> {
        let mut w = self.inner.warnings();
        if !self.invalid.is_empty() {
            w.push(format!(
                "{} object(s) became invalid polygons when reprojected to {} (tiles {}); check them with \
                 `ogrinfo -dialect SQLite -sql \"SELECT fid FROM detections WHERE NOT ST_IsValid(geom)\"`",
                self.invalid.len(),
                self.reprojector.target().name,
                self.invalid.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: (f64, f64), b: (f64, f64), tol: f64) -> bool {
        (a.0 - b.0).abs() <= tol && (a.1 - b.1).abs() <= tol
    }

    // Reference values from GDAL 3.6.2 `gdaltransform -s_srs ... -t_srs ... -output_xy`.
    #[test]
    fn matches_gdal_for_utm_web_mercator_and_national_grids() {
        let r = Reprojector::new(&Crs::from_epsg(32616), &Crs::from_epsg(4326)).unwrap();
        let p = r.point(612345.67, 4701234.5).unwrap();
        assert!(close(p, (-85.6336854224837, 42.4553047544943), 1e-9), "{p:?}");
        let r = Reprojector::new(&Crs::from_epsg(32616), &Crs::from_epsg(3857)).unwrap();
        let p = r.point(612345.67, 4701234.5).unwrap();
        assert!(close(p, (-9532698.25598226, 5229427.78099943), 1e-3), "{p:?}");
        let r = Reprojector::new(&Crs::from_epsg(4326), &Crs::from_epsg(27700)).unwrap();
        let p = r.point(-1.5, 52.5).unwrap();
        assert!(close(p, (434039.457286059, 289239.281092673), 0.01), "{p:?}");
        let r = Reprojector::new(&Crs::from_epsg(4326), &Crs::from_epsg(2154)).unwrap();
        let p = r.point(2.35, 48.85).unwrap();
        assert!(close(p, (652301.564830528, 6861302.72589958), 0.01), "{p:?}");
    }

    #[test]
    fn unknown_crs_are_one_line_errors() {
        let e = Reprojector::new(&Crs::from_epsg(32616), &Crs::from_epsg(999_999)).unwrap_err();
        assert!(format!("{e:#}").contains("EPSG:999999 is not in"), "{e:#}");
        let e = parse_crs("EPSG:1").unwrap_err();
        assert!(format!("{e:#}").contains("not in the projection library"), "{e:#}");
        assert!(parse_crs("+proj=utm +zone=16").is_err());
        assert!(parse_crs("nonsense").is_err());
        let e = parse_crs("EPSG:4978").unwrap_err();
        assert!(format!("{e:#}").contains("geocentric"), "{e:#}");
        let c = parse_crs("urn:ogc:def:crs:EPSG::27700").unwrap();
        assert_eq!(c.epsg, Some(27700));
        assert!(c.wkt.unwrap().contains("OSGB"));
        assert_eq!(parse_crs("CRS84").unwrap().epsg, Some(4326));
    }

    #[test]
    fn wkt_crs_without_code_reprojects_like_its_code() {
        let wkt = crs_definitions::EPSG_32616.wkt.replace(",AUTHORITY[\"EPSG\",\"32616\"]]", "]");
        let crs = Crs { epsg: None, wkt: Some(wkt), ..Crs::default() };
        let a = Reprojector::new(&crs, &Crs::from_epsg(4326)).unwrap().point(612345.67, 4701234.5).unwrap();
        let b = Reprojector::new(&Crs::from_epsg(32616), &Crs::from_epsg(4326)).unwrap().point(612345.67, 4701234.5);
        assert!(close(a, b.unwrap(), 1e-9));
    }

    #[test]
    fn long_edges_are_densified_until_the_curve_is_followed() {
        // A 100 km square in UTM: in Web Mercator its edges bow by metres.
        let r = Reprojector::new(&Crs::from_epsg(32616), &Crs::from_epsg(3857)).unwrap();
        let ring = vec![(400000.0, 4600000.0), (500000.0, 4600000.0), (500000.0, 4700000.0), (400000.0, 4700000.0)];
        let sq = Polygon::new(LineString::from(ring), vec![]);
        let mp = MultiPolygon::new(vec![sq]);
        let plain = r.multipolygon(&mp, 0.0).unwrap();
        assert_eq!(plain.0[0].exterior().0.len(), 5);
        let dense = r.multipolygon(&mp, 0.01).unwrap();
        assert!(dense.0[0].exterior().0.len() > 50, "{}", dense.0[0].exterior().0.len());
        // Every densified point lies on the projected true edge: its inverse is on the UTM edge.
        let back = Reprojector::new(&Crs::from_epsg(3857), &Crs::from_epsg(32616)).unwrap();
        for c in &dense.0[0].exterior().0 {
            let (x, y) = back.point(c.x, c.y).unwrap();
            let on_edge = [(x - 400000.0).abs(), (x - 500000.0).abs(), (y - 4600000.0).abs(), (y - 4700000.0).abs()]
                .into_iter()
                .fold(f64::MAX, f64::min);
            assert!(on_edge < 1e-3, "{x} {y}");
        }
        assert!(is_valid_multipolygon(&dense));
    }
}
