//! Lengths and areas in metres whatever the CRS.
//!
//! Users give `--simplify` in metres and `--min-area` in m², and read `area` in m², also when the
//! raster is in a geographic CRS (degrees) or a projected one in feet. Each polygon is measured
//! in a local frame around its own centre: for degrees an equirectangular frame scaled by the
//! ellipsoid's radii of curvature at that latitude (within 0.1 % for objects up to ~10 km), for
//! other linear units a plain scale. The frame is affine, so simplifying or regularising in it and
//! mapping back keeps polygons valid.

use geo::{BoundingRect, Coord, MapCoords, MultiPolygon};

use crate::raster::{Crs, GeoTransform};

/// How map units relate to metres.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MapUnits {
    /// Lengths are taken in map units as they are (metres for most projected CRSs; pixels for
    /// rasters without georeferencing).
    #[default]
    Native,
    /// A projected CRS whose unit is `metres_per_unit` metres (0.3048 for the international foot).
    Linear { metres_per_unit: f64 },
    /// Longitude/latitude in degrees on an ellipsoid (semi-major axis in metres; inverse
    /// flattening 0 for a sphere, as for the Moon's IAU CRSs).
    Degrees { semi_major: f64, inverse_flattening: f64 },
}

/// WGS 84's ellipsoid, for geographic CRSs that say no other.
const WGS84: MapUnits = MapUnits::Degrees { semi_major: 6_378_137.0, inverse_flattening: 298.257_223_563 };

impl MapUnits {
    /// The units of `crs`, from its WKT when it has one, else from its EPSG code; `None` (no
    /// georeferencing) is [`MapUnits::Native`], i.e. pixels.
    pub fn of_crs(crs: Option<&Crs>) -> MapUnits {
        let Some(crs) = crs else { return MapUnits::Native };
        if let Some(wkt) = crs.wkt.as_deref() {
            if let Some(units) = units_from_wkt(wkt) {
                return units;
            }
        }
        match (crs.epsg, crs.metres_per_unit) {
            (Some(code), _) if is_geographic_epsg(code) => ellipsoid_of_epsg(code).unwrap_or(WGS84),
            (_, Some(metres)) if metres > 0.0 && metres != 1.0 => MapUnits::Linear { metres_per_unit: metres },
            _ => MapUnits::Native,
        }
    }

    /// True when lengths in map units are not metres and polygons must be measured in a frame.
    pub fn needs_frame(&self) -> bool {
        match *self {
            MapUnits::Native => false,
            MapUnits::Linear { metres_per_unit } => metres_per_unit != 1.0,
            MapUnits::Degrees { .. } => true,
        }
    }

    /// The local metric frame around the centre of `mp`: a transform from frame coordinates
    /// (metres, origin at the centre) to map coordinates. Identity-like for [`MapUnits::Native`].
    pub fn local_frame(&self, mp: &MultiPolygon<f64>) -> GeoTransform {
        let centre = mp.bounding_rect().map(|r| r.center()).unwrap_or(Coord { x: 0.0, y: 0.0 });
        match *self {
            MapUnits::Native => GeoTransform([centre.x, 1.0, 0.0, centre.y, 0.0, 1.0]),
            MapUnits::Linear { metres_per_unit } => {
                GeoTransform([centre.x, 1.0 / metres_per_unit, 0.0, centre.y, 0.0, 1.0 / metres_per_unit])
            }
            MapUnits::Degrees { semi_major, inverse_flattening } => {
                let (per_degree_lon, per_degree_lat) = metres_per_degree(semi_major, inverse_flattening, centre.y);
                GeoTransform([centre.x, 1.0 / per_degree_lon, 0.0, centre.y, 0.0, 1.0 / per_degree_lat])
            }
        }
    }

    /// `mp` (map coordinates) in its local metric frame, with the frame to map back.
    pub fn to_metres(&self, mp: &MultiPolygon<f64>) -> (MultiPolygon<f64>, GeoTransform) {
        let frame = self.local_frame(mp);
        let g = frame.0;
        let local = mp.map_coords(|c| Coord { x: (c.x - g[0]) / g[1], y: (c.y - g[3]) / g[5] });
        (local, frame)
    }

    /// Area of `mp` (map coordinates) in m² (in map units² for [`MapUnits::Native`]).
    pub fn area_m2(&self, mp: &MultiPolygon<f64>) -> f64 {
        use geo::Area;
        if !self.needs_frame() {
            return mp.unsigned_area();
        }
        self.to_metres(mp).0.unsigned_area()
    }
}

/// Metres per pixel along columns and along rows at the centre of a `width` x `height` raster
/// with transform `gt` in `crs` (a cell size, or ground sample distance); `None` without a CRS,
/// whose map units cannot be known.
pub fn cell_size_metres(gt: &GeoTransform, crs: Option<&Crs>, width: u32, height: u32) -> Option<(f64, f64)> {
    let units = MapUnits::of_crs(Some(crs?));
    let (cx, cy) = (width as f64 / 2.0, height as f64 / 2.0);
    let corner = |dx: f64, dy: f64| {
        let (x, y) = gt.pixel_to_map(cx + dx, cy + dy);
        Coord { x, y }
    };
    let ring = vec![corner(0.0, 0.0), corner(1.0, 0.0), corner(1.0, 1.0), corner(0.0, 1.0)];
    // The pixel in its own local metric frame: metres at that spot, whatever the CRS's units.
    let (local, _) = units.to_metres(&MultiPolygon(vec![geo::Polygon::new(geo::LineString::from(ring), vec![])]));
    let ring = &local.0.first()?.exterior().0;
    let length = |a: Coord, b: Coord| ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt();
    let (along_row, along_column) = (length(ring[0], ring[1]), length(ring[0], ring[3]));
    let valid = |v: f64| v.is_finite() && v > 0.0;
    (valid(along_row) && valid(along_column)).then_some((along_row, along_column))
}

/// Frame coordinates back to map coordinates.
pub fn from_frame(mp: &MultiPolygon<f64>, frame: &GeoTransform) -> MultiPolygon<f64> {
    mp.map_coords(|c| {
        let (x, y) = frame.pixel_to_map(c.x, c.y);
        Coord { x, y }
    })
}

/// Metres per degree of longitude and of latitude at `latitude` on the given ellipsoid (radii of
/// curvature in the prime vertical and the meridian).
fn metres_per_degree(semi_major: f64, inverse_flattening: f64, latitude: f64) -> (f64, f64) {
    let f = if inverse_flattening > 0.0 { 1.0 / inverse_flattening } else { 0.0 };
    let e2 = f * (2.0 - f);
    let phi = latitude.clamp(-89.999, 89.999).to_radians();
    let w = (1.0 - e2 * phi.sin().powi(2)).sqrt();
    let prime_vertical = semi_major / w;
    let meridian = semi_major * (1.0 - e2) / (w * w * w);
    let rad = std::f64::consts::PI / 180.0;
    (prime_vertical * phi.cos() * rad, meridian * rad)
}

/// Geographic 2D CRSs are numbered 4001–4999 in EPSG (and a few later ones).
fn is_geographic_epsg(code: u32) -> bool {
    (4001..=4999).contains(&code) || [7844, 9000, 6318, 6322, 6668, 6706, 6783, 7683, 8860, 9057].contains(&code)
}

/// Geographic CRSs whose ellipsoid is not WGS 84's (GRS 80 differs by 0.1 mm; these matter).
fn ellipsoid_of_epsg(code: u32) -> Option<MapUnits> {
    let (semi_major, inverse_flattening) = match code {
        4267 => (6_378_206.4, 294.978_698_213_898),    // NAD27 (Clarke 1866)
        4230 => (6_378_388.0, 297.0),                  // ED50 (International 1924)
        4301 | 4314 => (6_377_397.155, 299.152_812_8), // Tokyo, DHDN (Bessel 1841)
        4277 => (6_377_563.396, 299.324_964_6),        // OSGB36 (Airy 1830)
        _ => return None,
    };
    Some(MapUnits::Degrees { semi_major, inverse_flattening })
}

/// Units from a WKT (1 or 2): a geographic CRS's ellipsoid, or a projected CRS's linear unit.
fn units_from_wkt(wkt: &str) -> Option<MapUnits> {
    let text = wkt.trim_start();
    let keyword: String = text.chars().take_while(|c| c.is_ascii_alphabetic()).collect::<String>().to_uppercase();
    let inner = strip_wrapper(text, &keyword);
    match keyword.as_str() {
        "GEOGCS" | "GEOGCRS" | "GEODCRS" | "GEOGRAPHICCRS" => {
            let (a, rf) = ellipsoid(inner).unwrap_or((6_378_137.0, 298.257_223_563));
            Some(MapUnits::Degrees { semi_major: a, inverse_flattening: rf })
        }
        "PROJCS" | "PROJCRS" | "PROJECTEDCRS" => {
            let metres = last_top_level_unit(inner)?;
            Some(if metres == 1.0 { MapUnits::Native } else { MapUnits::Linear { metres_per_unit: metres } })
        }
        "BOUNDCRS" | "COMPD_CS" | "COMPOUNDCRS" => {
            // The horizontal part comes first.
            let start = inner.find(|c: char| c.is_ascii_alphabetic())?;
            units_from_wkt(&inner[start..])
        }
        _ => None,
    }
}

/// The text between `KEYWORD[` and its matching `]`.
fn strip_wrapper<'a>(text: &'a str, keyword: &str) -> &'a str {
    let Some(open) = text[keyword.len()..].find(['[', '(']).map(|i| i + keyword.len() + 1) else { return "" };
    let mut depth = 1;
    for (i, c) in text[open..].char_indices() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[open..open + i];
                }
            }
            _ => {}
        }
    }
    &text[open..]
}

/// Top-level `NAME[...]` items of a WKT node's contents, with their keyword.
fn children(inner: &str) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    let (mut depth, mut start, mut in_string) = (0, 0, false);
    for (i, c) in inner.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '[' | '(' if !in_string => depth += 1,
            ']' | ')' if !in_string => depth -= 1,
            ',' if !in_string && depth == 0 => {
                out.push(inner[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(inner[start..].trim());
    out.into_iter()
        .filter_map(|item| {
            let keyword: String = item.chars().take_while(|c| c.is_ascii_alphabetic() || *c == '_').collect();
            (!keyword.is_empty() && item.len() > keyword.len()).then(|| (keyword.to_uppercase(), item))
        })
        .collect()
}

fn numbers(item: &str, keyword_len: usize) -> Vec<f64> {
    let inner = strip_wrapper(item, &item[..keyword_len]);
    inner.split(',').filter_map(|s| s.trim().parse::<f64>().ok()).collect()
}

/// (semi-major axis in metres, inverse flattening) of the first SPHEROID/ELLIPSOID anywhere.
fn ellipsoid(text: &str) -> Option<(f64, f64)> {
    for (keyword, item) in children(text) {
        if keyword == "SPHEROID" || keyword == "ELLIPSOID" {
            let n = numbers(item, keyword.len());
            let (a, rf) = (*n.first()?, n.get(1).copied().unwrap_or(0.0));
            // WKT2 may give the axis in another unit (LENGTHUNIT inside the ellipsoid).
            let unit = children(strip_wrapper(item, &keyword))
                .into_iter()
                .find(|(k, _)| k == "LENGTHUNIT" || k == "UNIT")
                .and_then(|(k, u)| numbers(u, k.len()).first().copied())
                .unwrap_or(1.0);
            return Some((a * unit, rf));
        }
        if let Some(found) = ellipsoid(strip_wrapper(item, &keyword)) {
            return Some(found);
        }
    }
    None
}

/// Metres per unit of a projected CRS: its own top-level UNIT (WKT1) or the coordinate system's
/// LENGTHUNIT (WKT2, inside CS/AXIS), not the ones of its base geographic CRS.
fn last_top_level_unit(inner: &str) -> Option<f64> {
    let mut found = None;
    for (keyword, item) in children(inner) {
        match keyword.as_str() {
            "UNIT" | "LENGTHUNIT" => found = numbers(item, keyword.len()).first().copied(),
            "AXIS" => {
                let axis_unit = children(strip_wrapper(item, &keyword))
                    .into_iter()
                    .find(|(k, _)| k == "LENGTHUNIT" || k == "UNIT")
                    .and_then(|(k, u)| numbers(u, k.len()).first().copied());
                if axis_unit.is_some() {
                    found = axis_unit;
                }
            }
            _ => {}
        }
    }
    found.or(Some(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{polygon, Area};

    const NAD83_ALBERS: &str = r#"PROJCS["USA_Contiguous_Albers_Equal_Area_Conic",GEOGCS["NAD83",DATUM["North_American_Datum_1983",SPHEROID["GRS 1980",6378137,298.257222101]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],PROJECTION["Albers_Conic_Equal_Area"],PARAMETER["latitude_of_center",37.5],UNIT["metre",1]]"#;
    const NY_FEET: &str = r#"PROJCS["NAD83 / New York Long Island (ftUS)",GEOGCS["NAD83",DATUM["North_American_Datum_1983",SPHEROID["GRS 1980",6378137,298.257222101]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],PROJECTION["Lambert_Conformal_Conic_2SP"],UNIT["US survey foot",0.304800609601219]]"#;
    const MOON: &str = r#"GEOGCRS["Moon (2015) - Sphere / Ocentric",DATUM["Moon (2015) - Sphere",ELLIPSOID["Moon (2015) - Sphere",1737400,0,LENGTHUNIT["metre",1]]],PRIMEM["Reference Meridian",0,ANGLEUNIT["degree",0.0174532925199433]],CS[ellipsoidal,2],AXIS["latitude",north,ORDER[1],ANGLEUNIT["degree",0.0174532925199433]]]"#;
    const WKT2_FEET: &str = r#"PROJCRS["x",BASEGEOGCRS["NAD83",DATUM["NAD83",ELLIPSOID["GRS 1980",6378137,298.257222101,LENGTHUNIT["metre",1]]]],CONVERSION["c",METHOD["Lambert Conic Conformal (2SP)"]],CS[Cartesian,2],AXIS["easting (X)",east,ORDER[1],LENGTHUNIT["US survey foot",0.304800609601219]],AXIS["northing (Y)",north,ORDER[2],LENGTHUNIT["US survey foot",0.304800609601219]]]"#;

    fn crs(wkt: &str) -> Crs {
        Crs::from_wkt(wkt)
    }

    #[test]
    fn units_come_from_the_wkt_or_the_epsg_code() {
        assert_eq!(MapUnits::of_crs(None), MapUnits::Native);
        assert_eq!(MapUnits::of_crs(Some(&Crs::from_epsg(32616))), MapUnits::Native);
        let ny_state_plane = Crs { metres_per_unit: Some(0.3048006096012192), ..Crs::from_epsg(2263) };
        assert_eq!(MapUnits::of_crs(Some(&ny_state_plane)), MapUnits::Linear { metres_per_unit: 0.3048006096012192 });
        assert_eq!(MapUnits::of_crs(Some(&Crs::from_epsg(4326))), WGS84);
        assert_eq!(MapUnits::of_crs(Some(&crs(NAD83_ALBERS))), MapUnits::Native);
        assert_eq!(MapUnits::of_crs(Some(&crs(NY_FEET))), MapUnits::Linear { metres_per_unit: 0.304800609601219 });
        assert_eq!(MapUnits::of_crs(Some(&crs(WKT2_FEET))), MapUnits::Linear { metres_per_unit: 0.304800609601219 });
        assert_eq!(
            MapUnits::of_crs(Some(&crs(MOON))),
            MapUnits::Degrees { semi_major: 1_737_400.0, inverse_flattening: 0.0 }
        );
    }

    #[test]
    fn a_degree_square_at_the_equator_and_at_60_degrees() {
        // One arc-second squares: ~30.9 m at the equator; at 60° N the east-west side halves.
        let s = 1.0 / 3600.0;
        let at = |lat: f64| {
            MultiPolygon::new(vec![
                polygon![(x: 10.0, y: lat), (x: 10.0 + s, y: lat), (x: 10.0 + s, y: lat + s), (x: 10.0, y: lat + s)],
            ])
        };
        let equator = WGS84.area_m2(&at(0.0));
        assert!((equator - 30.715 * 30.922).abs() / equator < 2e-3, "{equator}");
        let sixty = WGS84.area_m2(&at(60.0));
        // cos 60° = 0.5, times the larger radii of curvature at 60° (1.0101 on WGS 84).
        assert!((sixty / equator - 0.50505).abs() < 2e-4, "{}", sixty / equator);
        // A foot CRS: 100 ft × 100 ft = 929.03 m².
        let square = MultiPolygon::new(vec![
            polygon![(x: 0.0, y: 0.0), (x: 100.0, y: 0.0), (x: 100.0, y: 100.0), (x: 0.0, y: 100.0)],
        ]);
        let feet = MapUnits::Linear { metres_per_unit: 0.3048 };
        assert!((feet.area_m2(&square) - 929.0304).abs() < 1e-6);
        assert_eq!(MapUnits::Native.area_m2(&square), square.unsigned_area());
    }

    #[test]
    fn the_frame_maps_back_exactly_enough() {
        let s = 1.0 / 3600.0;
        let mp =
            MultiPolygon::new(vec![polygon![(x: -84.4, y: 33.7), (x: -84.4 + s, y: 33.7), (x: -84.4, y: 33.7 + s)]]);
        let (local, frame) = WGS84.to_metres(&mp);
        let back = from_frame(&local, &frame);
        for (a, b) in mp.0[0].exterior().0.iter().zip(&back.0[0].exterior().0) {
            assert!((a.x - b.x).abs() < 1e-12 && (a.y - b.y).abs() < 1e-12);
        }
    }
}
