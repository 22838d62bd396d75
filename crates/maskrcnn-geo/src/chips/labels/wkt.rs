//! CRS WKT (a Shapefile's `.prj`, a FlatGeobuf or GeoPackage definition) to an EPSG code.
//!
//! An `AUTHORITY["EPSG",..]` (WKT1) or `ID["EPSG",..]` (WKT2) on the outermost CRS is taken as
//! is. ESRI-style WKT, which ArcGIS, QGIS and GDAL write into `.prj` files, carries no code, so
//! the common label CRSs are recognised from their definition instead: geographic WGS 84, NAD83
//! and ETRS89, UTM zones on those datums, and Web Mercator. Matching is by datum and projection
//! parameters, not by name, because the same CRS is spelt differently by each writer. Anything
//! else stays unrecognised and the CRS check tells the user how to declare an EPSG code.

use super::LabelCrs;

/// One `KEYWORD[...]` node.
#[derive(Debug)]
struct Node {
    keyword: String,
    items: Vec<Item>,
}

#[derive(Debug)]
enum Item {
    Text(String),
    Number(f64),
    /// A bare word (WKT2 enumerations such as `north`); nothing identifies a CRS by them.
    Word,
    Node(Node),
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }
    fn word(&mut self) -> String {
        let start = self.pos;
        while self.pos < self.s.len() && (self.s[self.pos].is_ascii_alphanumeric() || self.s[self.pos] == b'_') {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
    }
    fn node(&mut self, depth: usize) -> Option<Node> {
        if depth > 64 {
            return None;
        }
        self.skip_ws();
        let keyword = self.word();
        self.skip_ws();
        let close = match self.s.get(self.pos)? {
            b'[' => b']',
            b'(' => b')',
            _ => return None,
        };
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            match *self.s.get(self.pos)? {
                b'"' => {
                    // Doubled quotes escape a quote inside WKT strings.
                    let mut text = Vec::new();
                    self.pos += 1;
                    loop {
                        let c = *self.s.get(self.pos)?;
                        self.pos += 1;
                        if c == b'"' {
                            if self.s.get(self.pos) == Some(&b'"') {
                                self.pos += 1;
                            } else {
                                break;
                            }
                        }
                        text.push(c);
                    }
                    items.push(Item::Text(String::from_utf8_lossy(&text).into_owned()));
                }
                c if c == b'-' || c == b'+' || c == b'.' || c.is_ascii_digit() => {
                    let start = self.pos;
                    while self.pos < self.s.len()
                        && matches!(self.s[self.pos], b'0'..=b'9' | b'.' | b'-' | b'+' | b'e' | b'E')
                    {
                        self.pos += 1;
                    }
                    let text = std::str::from_utf8(&self.s[start..self.pos]).ok()?;
                    items.push(Item::Number(text.parse().ok()?));
                }
                c if c.is_ascii_alphabetic() => {
                    let save = self.pos;
                    self.word();
                    self.skip_ws();
                    if matches!(self.s.get(self.pos), Some(b'[' | b'(')) {
                        self.pos = save;
                        items.push(Item::Node(self.node(depth + 1)?));
                    } else {
                        items.push(Item::Word);
                    }
                }
                _ => return None,
            }
            self.skip_ws();
            match *self.s.get(self.pos)? {
                b',' => self.pos += 1,
                c if c == close => {
                    self.pos += 1;
                    return Some(Node { keyword: keyword.to_ascii_uppercase(), items });
                }
                _ => return None,
            }
        }
    }
}

impl Node {
    fn children<'a>(&'a self, keyword: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.items.iter().filter_map(move |i| match i {
            Item::Node(n) if n.keyword == keyword => Some(n),
            _ => None,
        })
    }
    fn child(&self, keywords: &[&str]) -> Option<&Node> {
        keywords.iter().find_map(|k| {
            self.items.iter().find_map(|i| match i {
                Item::Node(n) if n.keyword == *k => Some(n),
                _ => None,
            })
        })
    }
    fn name(&self) -> &str {
        match self.items.first() {
            Some(Item::Text(s)) => s,
            _ => "",
        }
    }
    fn number(&self, index: usize) -> Option<f64> {
        match self.items.get(index)? {
            Item::Number(v) => Some(*v),
            Item::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
    /// `AUTHORITY["EPSG","32616"]` or `ID["EPSG",32616]` directly on this node.
    fn epsg(&self) -> Option<u32> {
        let id = self.child(&["AUTHORITY", "ID"])?;
        if !id.name().eq_ignore_ascii_case("EPSG") {
            return None;
        }
        let code = id.number(1)?;
        (code > 0.0 && code.fract() == 0.0 && code < u32::MAX as f64).then_some(code as u32)
    }
}

/// Lower-case letters and digits only, so "D_WGS_1984", "WGS 84" and "WGS_1984" compare alike.
fn squash(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Datum {
    Wgs84,
    Nad83,
    Etrs89,
}

/// The datum of a geographic CRS node, from its name confirmed by the ellipsoid.
fn datum_of(geog: &Node) -> Option<Datum> {
    let datum = geog.child(&["DATUM", "GEODETICDATUM", "TRF"])?;
    let name = squash(datum.name());
    let name = name.strip_prefix('d').filter(|_| datum.name().starts_with("D_")).unwrap_or(&name);
    let ellipsoid = datum.child(&["SPHEROID", "ELLIPSOID"])?;
    let (a, rf) = (ellipsoid.number(1)?, ellipsoid.number(2)?);
    let wgs84_ellipsoid = (a - 6_378_137.0).abs() < 1e-3 && (rf - 298.257_223_563).abs() < 1e-8;
    let grs80 = (a - 6_378_137.0).abs() < 1e-3 && (rf - 298.257_222_101).abs() < 1e-8;
    let datum = match name {
        "wgs1984" | "wgs84" | "worldgeodeticsystem1984" | "worldgeodeticsystem1984ensemble" if wgs84_ellipsoid => {
            Datum::Wgs84
        }
        "northamerican1983" | "northamericandatum1983" | "nad83" if grs80 => Datum::Nad83,
        "etrs1989"
        | "europeanterrestrialreferencesystem1989"
        | "europeanterrestrialreferencesystem1989ensemble"
        | "etrs89"
            if grs80 =>
        {
            Datum::Etrs89
        }
        _ => return None,
    };
    // A non-Greenwich prime meridian or non-degree angles would be a different CRS.
    let greenwich = geog.child(&["PRIMEM", "PRIMEMERIDIAN"]).and_then(|p| p.number(1)).is_none_or(|v| v == 0.0);
    greenwich.then_some(datum)
}

fn geographic_code(d: Datum) -> u32 {
    match d {
        Datum::Wgs84 => 4326,
        Datum::Nad83 => 4269,
        Datum::Etrs89 => 4258,
    }
}

/// Projection parameters by squashed name ("falseeasting", "centralmeridian", ...).
fn parameter(proj: &Node, names: &[&str]) -> Option<f64> {
    // WKT1 keeps PARAMETERs on the PROJCS; WKT2 nests them in CONVERSION.
    let holder = proj.child(&["CONVERSION"]).unwrap_or(proj);
    holder.children("PARAMETER").find(|p| names.contains(&squash(p.name()).as_str())).and_then(|p| p.number(1))
}

fn projected_code(proj: &Node) -> Option<u32> {
    let geog = proj.child(&["GEOGCS", "BASEGEOGCRS", "BASEGEODCRS"])?;
    let datum = datum_of(geog)?;
    let method = proj
        .child(&["PROJECTION"])
        .or_else(|| proj.child(&["CONVERSION"]).and_then(|c| c.child(&["METHOD"])))
        .map(|m| squash(m.name()))?;
    // Linear unit: metres (WKT1 UNIT on the PROJCS; WKT2 puts it on each axis or a LENGTHUNIT).
    let unit = proj.child(&["UNIT", "LENGTHUNIT"]).and_then(|u| u.number(1)).unwrap_or(1.0);
    if (unit - 1.0).abs() > 1e-12 {
        return None;
    }
    let p = |names: &[&str]| parameter(proj, names);
    let close = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() < 1e-9);
    let false_easting = p(&["falseeasting"]);
    let false_northing = p(&["falsenorthing"]);
    match method.as_str() {
        "transversemercator" => {
            let scale = p(&["scalefactor", "scalefactoratnaturalorigin"]);
            let lat0 = p(&["latitudeoforigin", "latitudeofnaturalorigin"]).unwrap_or(0.0);
            let cm = p(&["centralmeridian", "longitudeofnaturalorigin", "longitudeoforigin"])?;
            if !(close(scale, 0.9996) && close(false_easting, 500_000.0) && lat0 == 0.0) {
                return None;
            }
            let zone = (cm + 183.0) / 6.0;
            if zone.fract() != 0.0 || !(1.0..=60.0).contains(&zone) {
                return None;
            }
            let zone = zone as u32;
            let north = close(false_northing, 0.0);
            let south = close(false_northing, 10_000_000.0);
            match datum {
                Datum::Wgs84 if north => Some(32600 + zone),
                Datum::Wgs84 if south => Some(32700 + zone),
                Datum::Nad83 if north && (1..=23).contains(&zone) => Some(26900 + zone),
                Datum::Etrs89 if north && (28..=38).contains(&zone) => Some(25800 + zone),
                _ => None,
            }
        }
        // Web Mercator: ESRI's auxiliary sphere form, or the EPSG method name.
        "mercatorauxiliarysphere" | "popularvisualisationpseudomercator" if datum == Datum::Wgs84 => {
            let aux = p(&["auxiliaryspheretype"]).unwrap_or(0.0);
            let origin_zero = [false_easting, false_northing, p(&["centralmeridian", "longitudeofnaturalorigin"])]
                .iter()
                .all(|v| v.unwrap_or(0.0) == 0.0);
            (aux == 0.0 && origin_zero).then_some(3857)
        }
        _ => None,
    }
}

/// The EPSG code a CRS WKT stands for, or `Unrecognised` with the CRS's name.
pub(super) fn crs_from_wkt(text: &str) -> LabelCrs {
    let text = text.trim().trim_start_matches('\u{feff}');
    let Some(root) = (Parser { s: text.as_bytes(), pos: 0 }).node(0) else {
        let shown: String = text.chars().take(60).collect();
        return LabelCrs::Unrecognised(format!("unreadable WKT {shown:?}"));
    };
    if let Some(code) = root.epsg() {
        return LabelCrs::Epsg(code);
    }
    let code = match root.keyword.as_str() {
        "GEOGCS" | "GEOGCRS" | "GEODCRS" | "GEOGRAPHICCRS" => datum_of(&root).map(geographic_code),
        "PROJCS" | "PROJCRS" | "PROJECTEDCRS" => projected_code(&root),
        _ => None,
    };
    match code {
        Some(c) => LabelCrs::Epsg(c),
        None => LabelCrs::Unrecognised(format!("{} (WKT without an EPSG code)", root.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esri_prj_files_map_to_epsg_codes() {
        // What GDAL 3.6 writes into .prj for EPSG:32616, 4326 and 3857.
        let utm = r#"PROJCS["WGS_1984_UTM_Zone_16N",GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],PARAMETER["False_Easting",500000.0],PARAMETER["False_Northing",0.0],PARAMETER["Central_Meridian",-87.0],PARAMETER["Scale_Factor",0.9996],PARAMETER["Latitude_Of_Origin",0.0],UNIT["Meter",1.0]]"#;
        assert_eq!(crs_from_wkt(utm), LabelCrs::Epsg(32616));
        let south = utm
            .replace("16N", "33S")
            .replace("-87.0", "15.0")
            .replace(r#"False_Northing",0.0"#, r#"False_Northing",10000000.0"#);
        assert_eq!(crs_from_wkt(&south), LabelCrs::Epsg(32733));
        let geo = r#"GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]]"#;
        assert_eq!(crs_from_wkt(geo), LabelCrs::Epsg(4326));
        let merc = r#"PROJCS["WGS_1984_Web_Mercator_Auxiliary_Sphere",GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],PROJECTION["Mercator_Auxiliary_Sphere"],PARAMETER["False_Easting",0.0],PARAMETER["False_Northing",0.0],PARAMETER["Central_Meridian",0.0],PARAMETER["Standard_Parallel_1",0.0],PARAMETER["Auxiliary_Sphere_Type",0.0],UNIT["Meter",1.0]]"#;
        assert_eq!(crs_from_wkt(merc), LabelCrs::Epsg(3857));
        let nad83 = r#"PROJCS["NAD_1983_UTM_Zone_10N",GEOGCS["GCS_North_American_1983",DATUM["D_North_American_1983",SPHEROID["GRS_1980",6378137.0,298.257222101]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],PARAMETER["False_Easting",500000.0],PARAMETER["False_Northing",0.0],PARAMETER["Central_Meridian",-123.0],PARAMETER["Scale_Factor",0.9996],PARAMETER["Latitude_Of_Origin",0.0],UNIT["Meter",1.0]]"#;
        assert_eq!(crs_from_wkt(nad83), LabelCrs::Epsg(26910));
        // Same UTM numbers in US feet are not EPSG:32616.
        let feet = utm.replace(r#"UNIT["Meter",1.0]"#, r#"UNIT["Foot_US",0.3048006096012192]"#);
        assert!(matches!(crs_from_wkt(&feet), LabelCrs::Unrecognised(s) if s.contains("WGS_1984_UTM_Zone_16N")));
        // A Lambert projection is not guessed at.
        let lcc = utm.replace("Transverse_Mercator", "Lambert_Conformal_Conic");
        assert!(matches!(crs_from_wkt(&lcc), LabelCrs::Unrecognised(_)));
    }

    #[test]
    fn authority_codes_win() {
        let ogc = r#"PROJCS["WGS 84 / UTM zone 16N",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433],AUTHORITY["EPSG","4326"]],PROJECTION["Transverse_Mercator"],PARAMETER["latitude_of_origin",0],PARAMETER["central_meridian",-87],PARAMETER["scale_factor",0.9996],PARAMETER["false_easting",500000],PARAMETER["false_northing",0],UNIT["metre",1],AUTHORITY["EPSG","32616"]]"#;
        assert_eq!(crs_from_wkt(ogc), LabelCrs::Epsg(32616));
        let wkt2 = r#"PROJCRS["NAD83 / UTM zone 10N",BASEGEOGCRS["NAD83",DATUM["North American Datum 1983",ELLIPSOID["GRS 1980",6378137,298.257222101]]],CONVERSION["UTM zone 10N",METHOD["Transverse Mercator"]],CS[Cartesian,2],AXIS["easting",east],ID["EPSG",26910]]"#;
        assert_eq!(crs_from_wkt(wkt2), LabelCrs::Epsg(26910));
        assert!(matches!(crs_from_wkt("not wkt"), LabelCrs::Unrecognised(s) if s.contains("unreadable")));
        assert!(matches!(crs_from_wkt("PROJCS[\"x\""), LabelCrs::Unrecognised(_)));
    }
}
