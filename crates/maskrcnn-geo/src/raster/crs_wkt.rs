//! WKT1 (as GDAL writes it) for the CRS a GeoKeyDirectory describes, when it names no EPSG code:
//! user-defined geographic CRSs (datum, ellipsoid, prime meridian, angular unit) and projected
//! CRSs (a ProjCoordTrans with its parameters, or a UTM ProjectionGeoKey, and a linear unit).
//!
//! Parameters are read with libgeotiff's fallbacks (different writers store the same parameter
//! under different keys) and named as GDAL's WKT1 names them, so GDAL reads the WKT back as the
//! CRS it reads from the GeoTIFF itself (the `crs_roundtrip` test checks this against GDAL).

use super::geokeys::*;
use super::Crs;

const DEGREE: f64 = 0.017_453_292_519_943_3;

/// EPSG ellipsoids: (code, name, semi-major axis, inverse flattening; 0 for a sphere).
const ELLIPSOIDS: &[(u16, &str, f64, f64)] = &[
    (7001, "Airy 1830", 6377563.396, 299.3249646),
    (7002, "Airy Modified 1849", 6377340.189, 299.3249646),
    (7003, "Australian National Spheroid", 6378160.0, 298.25),
    (7004, "Bessel 1841", 6377397.155, 299.1528128),
    (7008, "Clarke 1866", 6378206.4, 294.978698213898),
    (7011, "Clarke 1880 (IGN)", 6378249.2, 293.466021293627),
    (7012, "Clarke 1880 (RGS)", 6378249.145, 293.465),
    (7015, "Everest 1830 (1937 Adjustment)", 6377276.345, 300.8017),
    (7016, "Everest 1830 (1967 Definition)", 6377298.556, 300.8017),
    (7019, "GRS 1980", 6378137.0, 298.257222101),
    (7020, "Helmert 1906", 6378200.0, 298.3),
    (7022, "International 1924", 6378388.0, 297.0),
    (7024, "Krassowsky 1940", 6378245.0, 298.3),
    (7030, "WGS 84", 6378137.0, 298.257223563),
    (7035, "Sphere", 6371000.0, 0.0),
    (7036, "GRS 1967", 6378160.0, 298.247167427),
    (7043, "WGS 72", 6378135.0, 298.26),
    (7048, "GRS 1980 Authalic Sphere", 6371007.0, 0.0),
    (7050, "GRS 1967 Modified", 6378160.0, 298.25),
    (7059, "Popular Visualisation Sphere", 6378137.0, 0.0),
    (1024, "CGCS2000", 6378137.0, 298.257222101),
];

/// EPSG geodetic datums: (code, WKT1 name as GDAL writes it, ellipsoid code).
const DATUMS: &[(u16, &str, u16)] = &[
    (6326, "WGS_1984", 7030),
    (6322, "WGS_1972", 7043),
    (6269, "North_American_Datum_1983", 7019),
    (6267, "North_American_Datum_1927", 7008),
    (6152, "NAD83_High_Accuracy_Reference_Network", 7019),
    (6140, "NAD83_Canadian_Spatial_Reference_System", 7019),
    (1116, "NAD83_National_Spatial_Reference_System_2011", 7019),
    (6258, "European_Terrestrial_Reference_System_1989", 7019),
    (6230, "European_Datum_1950", 7022),
    (6277, "OSGB_1936", 7001),
    (6283, "Geocentric_Datum_of_Australia_1994", 7019),
    (1168, "Geocentric_Datum_of_Australia_2020", 7019),
    (6167, "New_Zealand_Geodetic_Datum_2000", 7019),
    (6272, "New_Zealand_Geodetic_Datum_1949", 7022),
    (6284, "Pulkovo_1942", 7024),
    (6301, "Tokyo", 7004),
    (6612, "Japanese_Geodetic_Datum_2000", 7019),
    (6275, "Nouvelle_Triangulation_Francaise", 7011),
    (6171, "Reseau_Geodesique_Francais_1993", 7019),
    (6314, "Deutsches_Hauptdreiecksnetz", 7004),
    (6619, "SWEREF99", 7019),
    (6674, "Sistema_de_Referencia_Geocentrico_para_las_AmericaS_2000", 7019),
    (6148, "Hartebeesthoek94", 7030),
    (1043, "China_2000", 1024),
];

/// EPSG geographic CRSs: (code, name, datum code).
const GEOGRAPHIC_CRSS: &[(u16, &str, u16)] = &[
    (4326, "WGS 84", 6326),
    (4322, "WGS 72", 6322),
    (4269, "NAD83", 6269),
    (4267, "NAD27", 6267),
    (4152, "NAD83(HARN)", 6152),
    (4617, "NAD83(CSRS)", 6140),
    (6318, "NAD83(2011)", 1116),
    (4258, "ETRS89", 6258),
    (4230, "ED50", 6230),
    (4277, "OSGB36", 6277),
    (4283, "GDA94", 6283),
    (7844, "GDA2020", 1168),
    (4167, "NZGD2000", 6167),
    (4272, "NZGD49", 6272),
    (4284, "Pulkovo 1942", 6284),
    (4301, "Tokyo", 6301),
    (4612, "JGD2000", 6612),
    (4275, "NTF", 6275),
    (4171, "RGF93", 6171),
    (4314, "DHDN", 6314),
    (4619, "SWEREF99", 6619),
    (4674, "SIRGAS 2000", 6674),
    (4148, "Hartebeesthoek94", 6148),
    (4490, "China Geodetic Coordinate System 2000", 1043),
];

/// EPSG prime meridians: (code, name, longitude from Greenwich in degrees).
const PRIME_MERIDIANS: &[(u16, &str, f64)] = &[
    (8901, "Greenwich", 0.0),
    (8902, "Lisbon", -9.13190611111111),
    (8903, "Paris", 2.33722916666667),
    (8904, "Bogota", -74.0809166666667),
    (8905, "Madrid", -3.68793888888889),
    (8906, "Rome", 12.4523333333333),
    (8907, "Bern", 7.43958333333333),
    (8908, "Jakarta", 106.807719444444),
    (8909, "Ferro", -17.6666666666667),
    (8910, "Brussels", 4.36797222222222),
    (8911, "Stockholm", 18.0582777777778),
    (8912, "Athens", 23.7163375),
    (8913, "Oslo", 10.7229166666667),
];

/// EPSG angular units: (code, name, radians per unit).
const ANGULAR_UNITS: &[(u16, &str, f64)] = &[
    (9101, "radian", 1.0),
    (9102, "degree", DEGREE),
    (9103, "arc-minute", DEGREE / 60.0),
    (9104, "arc-second", DEGREE / 3600.0),
    (9105, "grad", 0.015_707_963_267_949),
    (9106, "gon", 0.015_707_963_267_949),
    (9122, "degree", DEGREE),
];

/// EPSG linear units: (code, name, metres per unit).
const LINEAR_UNITS: &[(u16, &str, f64)] = &[
    (9001, "metre", 1.0),
    (9002, "foot", 0.3048),
    (9003, "US survey foot", 0.304_800_609_601_219_2),
    (9005, "Clarke's foot", 0.3047972654),
    (9014, "fathom", 1.8288),
    (9030, "nautical mile", 1852.0),
    (9031, "German legal metre", 1.0000135965),
    (9036, "kilometre", 1000.0),
    (9037, "Clarke's yard", 0.9143917962),
    (9038, "Clarke's chain", 20.1166195164),
    (9039, "Clarke's link", 0.201166195164),
    (9040, "British yard (Sears 1922)", 0.914398414616029),
    (9042, "British chain (Sears 1922)", 20.1167651215526),
    (9080, "Indian foot", 0.304799510248147),
    (9093, "Statute mile", 1609.344),
    (9096, "yard", 0.9144),
    (9097, "chain", 20.1168),
    (9098, "link", 0.201168),
];

/// The CRS a GeoKeyDirectory states, or None when it states none. An EPSG code is taken as is;
/// anything else is described by the WKT the producer left in a citation, or one built from
/// the keys; when neither is possible the citation is kept with the reason in `unresolved`.
pub fn crs_from_geokeys(keys: &GeoKeys) -> Option<Crs> {
    let model = keys.short(GT_MODEL_TYPE);
    let citations: Vec<&str> =
        [GT_CITATION, PCS_CITATION, GEOG_CITATION].iter().filter_map(|&k| keys.string(k)).collect();
    let citation = citations.first().map(|s| s.to_string());
    let cited_wkt = citations.iter().find_map(|c| match c.find("ESRI PE String = ") {
        Some(pos) => Some(c[pos + "ESRI PE String = ".len()..].to_string()),
        None => looks_like_wkt(c).then(|| c.to_string()),
    });
    let has_projection_keys = keys.short(PROJECTION).is_some() || keys.short(PROJ_COORD_TRANS).is_some();
    let projected = match model {
        Some(1) => true,
        Some(2) => false,
        Some(3) => return Some(unresolved(citation, "geocentric model type (GTModelType 3) is not supported".into())),
        // A missing or user-defined model type: whatever else the keys say decides.
        _ => keys.short(PROJECTED_CS_TYPE).is_some() || has_projection_keys || cited_wkt.is_some(),
    };
    if let Some(wkt) = cited_wkt {
        // ArcGIS also cites the WKT of EPSG CRSs; their code stays the code.
        let code = if projected { keys.code(PROJECTED_CS_TYPE) } else { keys.code(GEOGRAPHIC_TYPE) };
        let epsg = code.map(u32::from).or_else(|| top_level_epsg(&wkt));
        return Some(Crs { epsg, wkt: Some(wkt), citation, unresolved: None, metres_per_unit: None });
    }
    if projected {
        if let Some(code) = keys.code(PROJECTED_CS_TYPE) {
            // Lengths in metres need the unit of an EPSG CRS too (State Plane CRSs are in feet).
            let metres_per_unit =
                keys.short(PROJ_LINEAR_UNITS).and_then(|_| linear_unit(keys).ok()).map(|(_, size, _)| size);
            return Some(Crs { epsg: Some(code.into()), wkt: None, citation, unresolved: None, metres_per_unit });
        }
        if keys.short(PROJECTED_CS_TYPE).is_none() && !has_projection_keys {
            // Taking the GCS would label projected coordinates as degrees.
            return Some(unresolved(citation, "projected model type, but no projected CRS or projection keys".into()));
        }
        return Some(match projcs(keys) {
            Ok(wkt) => Crs { epsg: None, wkt: Some(wkt), citation, unresolved: None, metres_per_unit: None },
            Err(why) => unresolved(citation, why),
        });
    }
    geographic_crs(keys, citation)
}

fn geographic_crs(keys: &GeoKeys, citation: Option<String>) -> Option<Crs> {
    if let Some(code) = keys.code(GEOGRAPHIC_TYPE) {
        return Some(Crs { epsg: Some(code.into()), wkt: None, citation, unresolved: None, metres_per_unit: None });
    }
    let stated = [GEOGRAPHIC_TYPE, GEOG_GEODETIC_DATUM, GEOG_ELLIPSOID, GEOG_SEMI_MAJOR_AXIS]
        .iter()
        .any(|&k| keys.short(k).is_some() || keys.double(k).is_some());
    if !stated {
        return citation.map(|c| unresolved(Some(c), "the GeoKeys name no datum or ellipsoid".into()));
    }
    Some(match geogcs(keys, true) {
        Ok(wkt) => Crs { epsg: None, wkt: Some(wkt), citation, unresolved: None, metres_per_unit: None },
        Err(why) => unresolved(citation, why),
    })
}

fn unresolved(citation: Option<String>, why: String) -> Crs {
    Crs { epsg: None, wkt: None, citation, unresolved: Some(why), metres_per_unit: None }
}

/// True for text that starts like a WKT1 or WKT2 CRS.
pub fn looks_like_wkt(s: &str) -> bool {
    let s = s.trim_start();
    ["PROJCS[", "GEOGCS[", "PROJCRS[", "GEOGCRS[", "COMPD_CS[", "BOUNDCRS[", "GEODCRS[", "LOCAL_CS[", "ENGCRS["]
        .iter()
        .any(|p| s.starts_with(p))
}

/// The EPSG code of the CRS a WKT describes as a whole (its outermost `AUTHORITY["EPSG",..]` or
/// `ID["EPSG",..]`), not of a component such as its datum or unit.
pub fn top_level_epsg(wkt: &str) -> Option<u32> {
    let mut depth = 0usize;
    let mut in_string = false;
    let bytes = wkt.as_bytes();
    let mut found = None;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => in_string = !in_string,
            b'[' | b'(' if !in_string => depth += 1,
            b']' | b')' if !in_string => depth = depth.saturating_sub(1),
            _ if !in_string && depth == 1 => {
                for prefix in ["AUTHORITY[", "ID["] {
                    if wkt[i..].starts_with(prefix) && (i == 0 || matches!(bytes[i - 1], b',' | b' ' | b'\n')) {
                        let rest = wkt[i + prefix.len()..].trim_start();
                        if let Some(rest) = rest.strip_prefix("\"EPSG\"") {
                            let code: String = rest
                                .trim_start_matches([',', ' ', '"'])
                                .chars()
                                .take_while(|c| c.is_ascii_digit())
                                .collect();
                            found = code.parse().ok();
                        }
                    }
                }
            }
            _ => {}
        }
    }
    found
}

/// Values of GDAL's structured citations, e.g. `GCS Name = x|Datum = y|Ellipsoid = z|Primem = w`.
fn citation_field<'a>(citation: Option<&'a str>, field: &str) -> Option<&'a str> {
    citation?
        .split('|')
        .find_map(|part| part.trim().strip_prefix(field).map(|v| v.trim_start().trim_start_matches('=').trim()))
        .filter(|v| !v.is_empty())
}

fn quoted(name: &str) -> String {
    name.replace('"', "'")
}

/// Shortest decimal that reads back as the same double (what GDAL prints, too).
fn num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else {
        format!("{v}")
    }
}

/// The geographic CRS's angular unit: (name, radians per unit).
fn angular_unit(keys: &GeoKeys) -> Result<(String, f64), String> {
    match keys.short(GEOG_ANGULAR_UNITS) {
        None | Some(0) => Ok(("degree".into(), DEGREE)),
        Some(USER_DEFINED) => {
            let size = keys
                .double(GEOG_ANGULAR_UNIT_SIZE)
                .filter(|s| *s > 0.0)
                .ok_or("user-defined angular unit without GeogAngularUnitSizeGeoKey")?;
            let name = citation_field(keys.string(GEOG_CITATION), "AUnits").unwrap_or("unknown");
            Ok((name.to_string(), size))
        }
        Some(code) => ANGULAR_UNITS
            .iter()
            .find(|u| u.0 == code)
            .map(|u| (u.1.to_string(), u.2))
            .ok_or_else(|| format!("angular unit EPSG:{code} is not in our table")),
    }
}

/// Converts an angle in degrees (GeoTIFF's projection parameters) to the GEOGCS unit, in which
/// WKT1 states angular parameters.
fn in_unit(degrees: f64, unit_radians: f64) -> f64 {
    if (unit_radians - DEGREE).abs() < 1e-15 {
        degrees
    } else {
        degrees * DEGREE / unit_radians
    }
}

fn ellipsoid_wkt(keys: &GeoKeys, datum_ellipsoid: Option<u16>) -> Result<String, String> {
    let code = keys.code(GEOG_ELLIPSOID).or(datum_ellipsoid);
    if let Some((c, name, a, rf)) = code.and_then(|c| ELLIPSOIDS.iter().find(|e| e.0 == c)) {
        return Ok(format!("SPHEROID[\"{name}\",{},{},AUTHORITY[\"EPSG\",\"{c}\"]]", num(*a), num(*rf)));
    }
    let a = keys.double(GEOG_SEMI_MAJOR_AXIS).filter(|a| *a > 0.0).ok_or_else(|| match code {
        Some(c) => format!("ellipsoid EPSG:{c} is not in our table and the GeoKeys give no semi-major axis"),
        None => "no ellipsoid: neither GeogEllipsoidGeoKey nor GeogSemiMajorAxisGeoKey".to_string(),
    })?;
    let rf = match (keys.double(GEOG_INV_FLATTENING), keys.double(GEOG_SEMI_MINOR_AXIS)) {
        (Some(rf), _) => rf,
        (None, Some(b)) if b > 0.0 && b < a => a / (a - b),
        (None, Some(b)) if b == a => 0.0,
        (None, Some(b)) => return Err(format!("semi-minor axis {b} is not in (0, {a}]")),
        (None, None) => 0.0,
    };
    let name = citation_field(keys.string(GEOG_CITATION), "Ellipsoid").unwrap_or("unknown");
    let authority = code.map(|c| format!(",AUTHORITY[\"EPSG\",\"{c}\"]")).unwrap_or_default();
    Ok(format!("SPHEROID[\"{}\",{},{}{authority}]", quoted(name), num(a), num(rf)))
}

/// GEOGCS of the keys; `axes` adds GDAL's lat/long AXIS for a standalone geographic CRS.
fn geogcs(keys: &GeoKeys, axes: bool) -> Result<String, String> {
    let citation = keys.string(GEOG_CITATION);
    let (unit_name, unit) = angular_unit(keys)?;
    let gcs_code = keys.code(GEOGRAPHIC_TYPE);
    let known_gcs = gcs_code.and_then(|c| GEOGRAPHIC_CRSS.iter().find(|g| g.0 == c));
    let datum_code = known_gcs.map(|g| g.2).or_else(|| keys.code(GEOG_GEODETIC_DATUM));
    let known_datum = datum_code.and_then(|c| DATUMS.iter().find(|d| d.0 == c));
    let spheroid = ellipsoid_wkt(keys, known_datum.map(|d| d.2))?;
    let datum_name = match known_datum {
        Some(d) => d.1.to_string(),
        None => citation_field(citation, "Datum").unwrap_or("unknown").to_string(),
    };
    let towgs84 = match keys.doubles(GEOG_TOWGS84) {
        Some(v) if v.len() == 3 || v.len() == 7 => {
            format!(
                ",TOWGS84[{}]",
                v.iter().chain(&[0.0; 4][..7 - v.len()]).map(|x| num(*x)).collect::<Vec<_>>().join(",")
            )
        }
        _ => String::new(),
    };
    let datum_authority = datum_code.map(|c| format!(",AUTHORITY[\"EPSG\",\"{c}\"]")).unwrap_or_default();
    let (pm_name, pm_degrees, pm_code) = match keys.code(GEOG_PRIME_MERIDIAN) {
        Some(c) => {
            let pm = PRIME_MERIDIANS
                .iter()
                .find(|p| p.0 == c)
                .ok_or(format!("prime meridian EPSG:{c} is not in our table"))?;
            (pm.1.to_string(), pm.2, Some(c))
        }
        None => {
            // GeogPrimeMeridianLongGeoKey is in the geographic CRS's angular unit.
            let long = keys.double(GEOG_PRIME_MERIDIAN_LONG).unwrap_or(0.0);
            let degrees = long * unit / DEGREE;
            let name = citation_field(citation, "Primem").unwrap_or(if long == 0.0 { "Greenwich" } else { "unknown" });
            (name.to_string(), degrees, (long == 0.0 && name == "Greenwich").then_some(8901))
        }
    };
    let pm_authority = pm_code.map(|c| format!(",AUTHORITY[\"EPSG\",\"{c}\"]")).unwrap_or_default();
    let name = match (known_gcs, gcs_code) {
        (Some(g), _) => g.1.to_string(),
        _ => citation_field(citation, "GCS Name")
            .or_else(|| citation.filter(|c| !c.contains('=')))
            .unwrap_or("unknown")
            .to_string(),
    };
    let unit_authority = ANGULAR_UNITS
        .iter()
        .find(|u| u.1 == unit_name && (u.2 - unit).abs() < 1e-15)
        .map(|u| format!(",AUTHORITY[\"EPSG\",\"{}\"]", if u.0 == 9102 { 9122 } else { u.0 }))
        .unwrap_or_default();
    let gcs_authority = gcs_code.map(|c| format!(",AUTHORITY[\"EPSG\",\"{c}\"]")).unwrap_or_default();
    let axes = if axes { ",AXIS[\"Latitude\",NORTH],AXIS[\"Longitude\",EAST]" } else { "" };
    Ok(format!(
        "GEOGCS[\"{}\",DATUM[\"{}\",{spheroid}{towgs84}{datum_authority}],PRIMEM[\"{}\",{}{pm_authority}],\
         UNIT[\"{}\",{}{unit_authority}]{axes}{gcs_authority}]",
        quoted(&name),
        quoted(&datum_name),
        quoted(&pm_name),
        num(in_unit(pm_degrees, unit)),
        quoted(&unit_name),
        num(unit),
    ))
}

fn linear_unit(keys: &GeoKeys) -> Result<(String, f64, Option<u16>), String> {
    match keys.short(PROJ_LINEAR_UNITS) {
        None | Some(0) => Ok(("metre".into(), 1.0, Some(9001))),
        Some(USER_DEFINED) => {
            let size = keys
                .double(PROJ_LINEAR_UNIT_SIZE)
                .filter(|s| *s > 0.0)
                .ok_or("user-defined linear unit without ProjLinearUnitSizeGeoKey")?;
            let name = citation_field(keys.string(PCS_CITATION), "LUnits").unwrap_or("unknown");
            Ok((name.to_string(), size, None))
        }
        Some(code) => LINEAR_UNITS
            .iter()
            .find(|u| u.0 == code)
            .map(|u| (u.1.to_string(), u.2, Some(code)))
            .ok_or_else(|| format!("linear unit EPSG:{code} is not in our table")),
    }
}

/// One WKT1 parameter: an angle (degrees in the GeoKeys) or a plain value.
#[derive(Clone, Copy)]
enum Param {
    Angle(&'static str, f64),
    Plain(&'static str, f64),
}

/// The WKT1 projection name and parameters of a GeoTIFF coordinate transformation, with the
/// parameter values read as libgeotiff reads them (its `GTIFFetchProjParms` fallbacks).
fn projection(keys: &GeoKeys, coord_trans: u16) -> Result<(&'static str, Vec<Param>), String> {
    use Param::{Angle, Plain};
    let nat_long = [PROJ_NAT_ORIGIN_LONG, PROJ_FALSE_ORIGIN_LONG, PROJ_CENTER_LONG];
    let nat_lat = [PROJ_NAT_ORIGIN_LAT, PROJ_FALSE_ORIGIN_LAT, PROJ_CENTER_LAT];
    let long = keys.first_double(&nat_long).unwrap_or(0.0);
    let lat = keys.first_double(&nat_lat).unwrap_or(0.0);
    let scale = keys.first_double(&[PROJ_SCALE_AT_NAT_ORIGIN, PROJ_SCALE_AT_CENTER]).unwrap_or(1.0);
    let sp1 = keys.double(PROJ_STD_PARALLEL1);
    let sp2 = keys.double(PROJ_STD_PARALLEL2).unwrap_or(0.0);
    // In the projected CRS's linear unit, as WKT1 states them.
    let fe = keys.first_double(&[PROJ_FALSE_EASTING, PROJ_CENTER_EASTING, PROJ_FALSE_ORIGIN_EASTING]).unwrap_or(0.0);
    let fn_ =
        keys.first_double(&[PROJ_FALSE_NORTHING, PROJ_CENTER_NORTHING, PROJ_FALSE_ORIGIN_NORTHING]).unwrap_or(0.0);
    let false_origin = [Plain("false_easting", fe), Plain("false_northing", fn_)];
    let origin_scaled = |name: &'static str| {
        let mut p =
            vec![Angle("latitude_of_origin", lat), Angle("central_meridian", long), Plain("scale_factor", scale)];
        p.extend(false_origin);
        (name, p)
    };
    let origin = |name: &'static str, lat_name: &'static str, long_name: &'static str| {
        let mut p = vec![Angle(lat_name, lat), Angle(long_name, long)];
        p.extend(false_origin);
        (name, p)
    };
    Ok(match coord_trans {
        1 => origin_scaled("Transverse_Mercator"),
        27 => origin_scaled("Transverse_Mercator_South_Orientated"),
        7 => match sp1 {
            // libgeotiff: a standard parallel makes it Mercator (variant B), unless a scale is given too.
            Some(sp1) if keys.double(PROJ_SCALE_AT_NAT_ORIGIN).is_none() => {
                let mut p = vec![Angle("standard_parallel_1", sp1), Angle("central_meridian", long)];
                p.extend(false_origin);
                ("Mercator_2SP", p)
            }
            _ => origin_scaled("Mercator_1SP"),
        },
        9 => origin_scaled("Lambert_Conformal_Conic_1SP"),
        8 => {
            let mut p = vec![
                Angle("standard_parallel_1", sp1.unwrap_or(0.0)),
                Angle("standard_parallel_2", sp2),
                Angle("latitude_of_origin", lat),
                Angle("central_meridian", long),
            ];
            p.extend(false_origin);
            ("Lambert_Conformal_Conic_2SP", p)
        }
        11 | 13 => {
            let mut p = vec![
                Angle("standard_parallel_1", sp1.unwrap_or(0.0)),
                Angle("standard_parallel_2", sp2),
                Angle("latitude_of_center", lat),
                Angle("longitude_of_center", long),
            ];
            p.extend(false_origin);
            (if coord_trans == 11 { "Albers_Conic_Equal_Area" } else { "Equidistant_Conic" }, p)
        }
        10 => origin("Lambert_Azimuthal_Equal_Area", "latitude_of_center", "longitude_of_center"),
        12 => origin("Azimuthal_Equidistant", "latitude_of_center", "longitude_of_center"),
        20 => origin("Miller_Cylindrical", "latitude_of_center", "longitude_of_center"),
        19 => origin("Gnomonic", "latitude_of_origin", "central_meridian"),
        21 => origin("Orthographic", "latitude_of_origin", "central_meridian"),
        18 => origin("Cassini_Soldner", "latitude_of_origin", "central_meridian"),
        22 => origin("Polyconic", "latitude_of_origin", "central_meridian"),
        26 => origin("New_Zealand_Map_Grid", "latitude_of_origin", "central_meridian"),
        14 => {
            let scale = keys.double(PROJ_SCALE_AT_NAT_ORIGIN).unwrap_or(1.0);
            let mut p =
                vec![Angle("latitude_of_origin", lat), Angle("central_meridian", long), Plain("scale_factor", scale)];
            p.extend(false_origin);
            ("Stereographic", p)
        }
        16 => origin_scaled("Oblique_Stereographic"),
        15 => {
            let pole_long = keys
                .first_double(&[
                    PROJ_STRAIGHT_VERT_POLE_LONG,
                    PROJ_NAT_ORIGIN_LONG,
                    PROJ_FALSE_ORIGIN_LONG,
                    PROJ_CENTER_LONG,
                ])
                .unwrap_or(0.0);
            let mut p = vec![
                Angle("latitude_of_origin", lat),
                Angle("central_meridian", pole_long),
                Plain("scale_factor", scale),
            ];
            p.extend(false_origin);
            ("Polar_Stereographic", p)
        }
        17 => {
            let mut p = vec![
                Angle("latitude_of_origin", lat),
                Angle("central_meridian", long),
                Angle("standard_parallel_1", sp1.unwrap_or(0.0)),
            ];
            p.extend(false_origin);
            ("Equirectangular", p)
        }
        23 | 24 => {
            let mut p = vec![Angle("longitude_of_center", long)];
            p.extend(false_origin);
            (if coord_trans == 23 { "Robinson" } else { "Sinusoidal" }, p)
        }
        25 => {
            let mut p = vec![Angle("central_meridian", long)];
            p.extend(false_origin);
            ("VanDerGrinten", p)
        }
        28 => {
            let mut p = vec![Angle("standard_parallel_1", sp1.unwrap_or(0.0)), Angle("central_meridian", long)];
            p.extend(false_origin);
            ("Cylindrical_Equal_Area", p)
        }
        3 | 9815 => {
            let azimuth = keys.double(PROJ_AZIMUTH_ANGLE).unwrap_or(0.0);
            let grid_angle = keys.double(PROJ_RECTIFIED_GRID_ANGLE).unwrap_or(90.0);
            let mut p = vec![
                Angle("latitude_of_center", lat),
                Angle("longitude_of_center", long),
                Angle("azimuth", azimuth),
                Angle("rectified_grid_angle", grid_angle),
                Plain("scale_factor", scale),
            ];
            p.extend(false_origin);
            (if coord_trans == 3 { "Hotine_Oblique_Mercator" } else { "Hotine_Oblique_Mercator_Azimuth_Center" }, p)
        }
        other => {
            return Err(format!(
                "projection method ProjCoordTransGeoKey {other} ({}) is not supported",
                coord_trans_name(other)
            ))
        }
    })
}

fn coord_trans_name(ct: u16) -> &'static str {
    match ct {
        2 => "Transverse Mercator, modified Alaska",
        4 => "Oblique Mercator, Laborde",
        5 => "Oblique Mercator, Rosenmund",
        6 => "Oblique Mercator, spherical",
        USER_DEFINED => "user-defined",
        _ => "unknown",
    }
}

/// PROJCS of the keys (ProjectedCSTypeGeoKey is user-defined here).
fn projcs(keys: &GeoKeys) -> Result<String, String> {
    let gcs = geogcs(keys, false)?;
    let (_, unit_radians) = angular_unit(keys)?;
    let (unit_name, unit_size, unit_code) = linear_unit(keys)?;
    let (method, params, default_name) = match keys.short(PROJECTION) {
        Some(code @ (16001..=16060 | 16101..=16160)) => {
            // EPSG's UTM conversions; their parameters are fixed, so no database is needed.
            let (zone, north) = if code <= 16060 { (code - 16000, true) } else { (code - 16100, false) };
            let metres = |m: f64| m / unit_size;
            let params = vec![
                Param::Angle("latitude_of_origin", 0.0),
                Param::Angle("central_meridian", f64::from(zone) * 6.0 - 183.0),
                Param::Plain("scale_factor", 0.9996),
                Param::Plain("false_easting", metres(500000.0)),
                Param::Plain("false_northing", metres(if north { 0.0 } else { 10_000_000.0 })),
            ];
            let name = format!("UTM Zone {zone}, {} Hemisphere", if north { "Northern" } else { "Southern" });
            ("Transverse_Mercator", params, name)
        }
        None | Some(0) | Some(USER_DEFINED) => {
            let ct = keys.short(PROJ_COORD_TRANS).ok_or("user-defined projection without ProjCoordTransGeoKey")?;
            let (method, params) = projection(keys, ct)?;
            (method, params, "unknown".to_string())
        }
        Some(code) => {
            return Err(format!(
                "ProjectionGeoKey {code} names an EPSG conversion that is not in our table (only UTM zones are)"
            ))
        }
    };
    let name = keys
        .string(GT_CITATION)
        .map(|c| citation_field(Some(c), "PCS Name").unwrap_or(c))
        .filter(|c| !c.contains('=') && *c != "unknown")
        .or_else(|| citation_field(keys.string(PCS_CITATION), "PCS Name"))
        .map(str::to_string)
        .unwrap_or(default_name);
    let params: String = params
        .iter()
        .map(|p| match p {
            Param::Angle(n, v) => format!(",PARAMETER[\"{n}\",{}]", num(in_unit(*v, unit_radians))),
            Param::Plain(n, v) => format!(",PARAMETER[\"{n}\",{}]", num(*v)),
        })
        .collect();
    let unit_authority = unit_code.map(|c| format!(",AUTHORITY[\"EPSG\",\"{c}\"]")).unwrap_or_default();
    Ok(format!(
        "PROJCS[\"{}\",{gcs},PROJECTION[\"{method}\"]{params},UNIT[\"{}\",{}{unit_authority}],\
         AXIS[\"Easting\",EAST],AXIS[\"Northing\",NORTH]]",
        quoted(&name),
        quoted(&unit_name),
        num(unit_size),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys GDAL 3.6 writes for `-a_srs ESRI:102003` (USA Contiguous Albers on NAD83).
    fn albers_keys() -> GeoKeys {
        GeoKeys::default()
            .with_short(GT_MODEL_TYPE, 1)
            .with_string(GT_CITATION, "USA_Contiguous_Albers_Equal_Area_Conic")
            .with_short(GEOGRAPHIC_TYPE, 4269)
            .with_string(GEOG_CITATION, "NAD83")
            .with_short(GEOG_ANGULAR_UNITS, 9102)
            .with_double(GEOG_SEMI_MAJOR_AXIS, 6378137.0)
            .with_double(GEOG_INV_FLATTENING, 298.257222101)
            .with_short(PROJECTED_CS_TYPE, USER_DEFINED)
            .with_short(PROJECTION, USER_DEFINED)
            .with_short(PROJ_COORD_TRANS, 11)
            .with_short(PROJ_LINEAR_UNITS, 9001)
            .with_double(PROJ_STD_PARALLEL1, 29.5)
            .with_double(PROJ_STD_PARALLEL2, 45.5)
            .with_double(PROJ_NAT_ORIGIN_LONG, -96.0)
            .with_double(PROJ_NAT_ORIGIN_LAT, 37.5)
            .with_double(PROJ_FALSE_EASTING, 0.0)
            .with_double(PROJ_FALSE_NORTHING, 0.0)
    }

    #[test]
    fn user_defined_albers_on_nad83() {
        let crs = crs_from_geokeys(&albers_keys()).unwrap();
        assert_eq!(crs.epsg, None);
        assert_eq!(
            crs.wkt.as_deref(),
            Some(
                "PROJCS[\"USA_Contiguous_Albers_Equal_Area_Conic\",GEOGCS[\"NAD83\",DATUM[\"North_American_Datum_1983\",\
                 SPHEROID[\"GRS 1980\",6378137,298.257222101,AUTHORITY[\"EPSG\",\"7019\"]],AUTHORITY[\"EPSG\",\"6269\"]],\
                 PRIMEM[\"Greenwich\",0,AUTHORITY[\"EPSG\",\"8901\"]],UNIT[\"degree\",0.0174532925199433,\
                 AUTHORITY[\"EPSG\",\"9122\"]],AUTHORITY[\"EPSG\",\"4269\"]],PROJECTION[\"Albers_Conic_Equal_Area\"],\
                 PARAMETER[\"standard_parallel_1\",29.5],PARAMETER[\"standard_parallel_2\",45.5],\
                 PARAMETER[\"latitude_of_center\",37.5],PARAMETER[\"longitude_of_center\",-96],\
                 PARAMETER[\"false_easting\",0],PARAMETER[\"false_northing\",0],UNIT[\"metre\",1,\
                 AUTHORITY[\"EPSG\",\"9001\"]],AXIS[\"Easting\",EAST],AXIS[\"Northing\",NORTH]]"
            )
        );
        assert_eq!(crs.describe(), "USA_Contiguous_Albers_Equal_Area_Conic (user-defined WKT)");
    }

    #[test]
    fn lunar_sphere_from_semi_axes() {
        let keys = GeoKeys::default()
            .with_short(GT_MODEL_TYPE, 2)
            .with_short(GEOGRAPHIC_TYPE, USER_DEFINED)
            .with_string(
                GEOG_CITATION,
                "GCS Name = Moon (2015) - Sphere / Ocentric|Datum = Moon (2015) - Sphere|Ellipsoid = Moon (2015) - Sphere|Primem = Reference Meridian|",
            )
            .with_short(GEOG_GEODETIC_DATUM, USER_DEFINED)
            .with_short(GEOG_ANGULAR_UNITS, 9102)
            .with_short(GEOG_ELLIPSOID, USER_DEFINED)
            .with_double(GEOG_SEMI_MAJOR_AXIS, 1737400.0)
            .with_double(GEOG_SEMI_MINOR_AXIS, 1737400.0)
            .with_double(GEOG_PRIME_MERIDIAN_LONG, 0.0);
        let wkt = crs_from_geokeys(&keys).unwrap().wkt.unwrap();
        assert_eq!(
            wkt,
            "GEOGCS[\"Moon (2015) - Sphere / Ocentric\",DATUM[\"Moon (2015) - Sphere\",SPHEROID[\"Moon (2015) - Sphere\",\
             1737400,0]],PRIMEM[\"Reference Meridian\",0],UNIT[\"degree\",0.0174532925199433,\
             AUTHORITY[\"EPSG\",\"9122\"]],AXIS[\"Latitude\",NORTH],AXIS[\"Longitude\",EAST]]"
        );
    }

    #[test]
    fn flattening_from_semi_minor_axis_and_towgs84() {
        let keys = GeoKeys::default()
            .with_short(GT_MODEL_TYPE, 2)
            .with_short(GEOGRAPHIC_TYPE, USER_DEFINED)
            .with_double(GEOG_SEMI_MAJOR_AXIS, 6378206.4)
            .with_double(GEOG_SEMI_MINOR_AXIS, 6356583.8)
            .with_doubles(GEOG_TOWGS84, &[-8.0, 160.0, 176.0]);
        let wkt = crs_from_geokeys(&keys).unwrap().wkt.unwrap();
        assert!(wkt.contains("SPHEROID[\"unknown\",6378206.4,294.97869821"), "{wkt}");
        assert!(wkt.contains("TOWGS84[-8,160,176,0,0,0,0]"), "{wkt}");
    }

    #[test]
    fn utm_projection_code_in_us_feet_on_a_user_defined_gcs() {
        let keys = GeoKeys::default()
            .with_short(GT_MODEL_TYPE, 1)
            .with_short(GEOGRAPHIC_TYPE, USER_DEFINED)
            .with_short(GEOG_ELLIPSOID, 7022)
            .with_short(PROJECTED_CS_TYPE, USER_DEFINED)
            .with_short(PROJECTION, 16131)
            .with_short(PROJ_LINEAR_UNITS, 9003);
        let crs = crs_from_geokeys(&keys).unwrap();
        let wkt = crs.wkt.clone().unwrap();
        assert_eq!(crs.describe(), "UTM Zone 31, Southern Hemisphere (user-defined WKT)");
        assert!(wkt.starts_with("PROJCS[\"UTM Zone 31, Southern Hemisphere\","), "{wkt}");
        assert!(wkt.contains("SPHEROID[\"International 1924\",6378388,297,AUTHORITY[\"EPSG\",\"7022\"]]"), "{wkt}");
        assert!(wkt.contains("PARAMETER[\"central_meridian\",3]"), "{wkt}");
        assert!(wkt.contains("PARAMETER[\"false_easting\",1640416.66"), "{wkt}");
        assert!(wkt.contains("PARAMETER[\"false_northing\",32808333.33"), "{wkt}");
        assert!(wkt.contains("UNIT[\"US survey foot\",0.3048006096012192,AUTHORITY[\"EPSG\",\"9003\"]]"), "{wkt}");
    }

    #[test]
    fn lambert_2sp_reads_false_origin_keys_and_angles_follow_grads() {
        let keys = GeoKeys::default()
            .with_short(GT_MODEL_TYPE, 1)
            .with_short(GEOGRAPHIC_TYPE, 4326)
            .with_short(PROJECTED_CS_TYPE, USER_DEFINED)
            .with_short(PROJ_COORD_TRANS, 8)
            .with_double(PROJ_STD_PARALLEL1, 44.0)
            .with_double(PROJ_STD_PARALLEL2, 49.0)
            .with_double(PROJ_FALSE_ORIGIN_LONG, 3.0)
            .with_double(PROJ_FALSE_ORIGIN_LAT, 46.5)
            .with_double(PROJ_FALSE_ORIGIN_EASTING, 700000.0)
            .with_double(PROJ_FALSE_ORIGIN_NORTHING, 6600000.0);
        let crs = crs_from_geokeys(&keys).unwrap();
        assert_eq!(crs.describe(), "user-defined Lambert_Conformal_Conic_2SP on WGS 84 (WKT)");
        let wkt = crs.wkt.unwrap();
        assert!(wkt.contains(
            "PROJECTION[\"Lambert_Conformal_Conic_2SP\"],PARAMETER[\"standard_parallel_1\",44],\
             PARAMETER[\"standard_parallel_2\",49],PARAMETER[\"latitude_of_origin\",46.5],\
             PARAMETER[\"central_meridian\",3],PARAMETER[\"false_easting\",700000],PARAMETER[\"false_northing\",6600000]"
        ));
        // GeoTIFF gives angles in degrees; WKT1 wants them in the GEOGCS unit.
        let grads = keys.clone().with_short(GEOG_ANGULAR_UNITS, 9105);
        let wkt = crs_from_geokeys(&grads).unwrap().wkt.unwrap();
        assert!(wkt.contains("PARAMETER[\"latitude_of_origin\",51.6666666666"), "{wkt}");
    }

    #[test]
    fn every_listed_method_builds_and_unknown_ones_say_why() {
        for ct in [1, 3, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 9815] {
            let keys = albers_keys().with_short(PROJ_COORD_TRANS, ct);
            let crs = crs_from_geokeys(&keys).unwrap();
            assert!(crs.wkt.as_deref().is_some_and(|w| w.starts_with("PROJCS[")), "CT {ct}: {crs:?}");
        }
        let crs = crs_from_geokeys(&albers_keys().with_short(PROJ_COORD_TRANS, 4)).unwrap();
        assert_eq!(crs.wkt, None);
        assert!(crs.unresolved.as_deref().unwrap().contains("ProjCoordTransGeoKey 4 (Oblique Mercator, Laborde)"));
        assert!(crs.describe().contains("no WKT could be built"), "{}", crs.describe());
        let crs = crs_from_geokeys(&albers_keys().with_short(PROJECTION, 10406)).unwrap();
        assert!(crs.unresolved.unwrap().contains("ProjectionGeoKey 10406"));
    }

    #[test]
    fn esri_pe_string_is_used_as_is_and_not_mistaken_for_its_gcs() {
        // Mollweide as GDAL writes it: user-defined model type, WGS 84 GCS code, WKT in the citation.
        let pe = "PROJCS[\"World_Mollweide\",GEOGCS[\"GCS_WGS_1984\",DATUM[\"D_WGS_1984\",SPHEROID[\"WGS_1984\",6378137.0,298.257223563]],PRIMEM[\"Greenwich\",0.0],UNIT[\"Degree\",0.0174532925199433]],PROJECTION[\"Mollweide\"],PARAMETER[\"False_Easting\",0.0],PARAMETER[\"False_Northing\",0.0],PARAMETER[\"Central_Meridian\",0.0],UNIT[\"Meter\",1.0]]";
        let keys = GeoKeys::default()
            .with_short(GT_MODEL_TYPE, USER_DEFINED)
            .with_string(GT_CITATION, "World_Mollweide")
            .with_short(GEOGRAPHIC_TYPE, 4326)
            .with_string(PCS_CITATION, &format!("ESRI PE String = {pe}"));
        let crs = crs_from_geokeys(&keys).unwrap();
        assert_eq!(crs.epsg, None);
        assert_eq!(crs.wkt.as_deref(), Some(pe));
        let coded = keys.with_short(GT_MODEL_TYPE, 1).with_short(PROJECTED_CS_TYPE, 32616);
        assert_eq!(crs_from_geokeys(&coded).unwrap().epsg, Some(32616));
    }

    #[test]
    fn epsg_codes_stay_codes() {
        let utm = GeoKeys::default().with_short(GT_MODEL_TYPE, 1).with_short(PROJECTED_CS_TYPE, 32616);
        assert_eq!(crs_from_geokeys(&utm).unwrap(), Crs::from_epsg(32616));
        let wgs = GeoKeys::default().with_short(GT_MODEL_TYPE, 2).with_short(GEOGRAPHIC_TYPE, 4326);
        assert_eq!(crs_from_geokeys(&wgs).unwrap(), Crs::from_epsg(4326));
        assert_eq!(crs_from_geokeys(&GeoKeys::default().with_short(GT_RASTER_TYPE, 1)), None);
    }

    #[test]
    fn top_level_authority_only() {
        let utm = "PROJCS[\"x\",GEOGCS[\"WGS 84\",AUTHORITY[\"EPSG\",\"4326\"]],UNIT[\"metre\",1,AUTHORITY[\"EPSG\",\"9001\"]],AUTHORITY[\"EPSG\",\"32616\"]]";
        assert_eq!(top_level_epsg(utm), Some(32616));
        assert_eq!(top_level_epsg("PROJCS[\"x\",GEOGCS[\"WGS 84\",AUTHORITY[\"EPSG\",\"4326\"]]]"), None);
        assert_eq!(
            top_level_epsg("PROJCRS[\"x\",BASEGEOGCRS[\"y\",ID[\"EPSG\",4326]],ID[\"EPSG\",32616]]"),
            Some(32616)
        );
    }
}
