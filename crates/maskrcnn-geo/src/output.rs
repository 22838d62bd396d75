//! Vector outputs that QGIS/ArcGIS open directly: GeoJSON, FlatGeobuf, GeoPackage.
//!
//! Every writer streams features into a temporary file beside the target and renames it into
//! place on [`FeatureSink::finish`], so a crash never leaves a half-written file under the final
//! name. An existing target is refused unless [`WriteOptions::overwrite`] is set.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use geo::{Area, BoundingRect, MultiPolygon};

use maskrcnn_data::process_lock::process_is_running;

use crate::raster::Crs;

/// One detected object in map coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    pub geometry: MultiPolygon<f64>,
    /// Class name (from the options' class list, or the id as text).
    pub class: String,
    pub class_id: i64,
    pub score: f64,
    /// Area in m² whatever the CRS (see [`crate::units`]); map units² for a `Feature::new` made by hand.
    pub area: f64,
    /// Tile(s) the object was detected in, e.g. "r3c5" or "r3c5;r3c6" for a stitched object.
    pub tile: String,
}

impl Feature {
    /// Feature with `area` computed from the geometry.
    pub fn new(
        geometry: MultiPolygon<f64>,
        class: impl Into<String>,
        class_id: i64,
        score: f64,
        tile: impl Into<String>,
    ) -> Feature {
        let area = geometry.unsigned_area();
        Feature { geometry, class: class.into(), class_id, score, area, tile: tile.into() }
    }
}

/// Output format, chosen from the file extension by [`VectorFormat::from_path`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorFormat {
    GeoJson,
    FlatGeobuf,
    GeoPackage,
}

impl VectorFormat {
    pub fn from_path(path: &Path) -> Result<VectorFormat> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "geojson" | "json" => Ok(VectorFormat::GeoJson),
            "fgb" => Ok(VectorFormat::FlatGeobuf),
            "gpkg" => Ok(VectorFormat::GeoPackage),
            _ => bail!("{}: unknown vector format extension {ext:?}; use .geojson, .fgb or .gpkg", path.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Replace an existing file at the target path.
    pub overwrite: bool,
    /// Layer / table name (GeoPackage table, FlatGeobuf name, GeoJSON "name").
    pub layer_name: String,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { overwrite: false, layer_name: "detections".to_string() }
    }
}

/// A streaming feature writer.
pub trait FeatureSink {
    fn write(&mut self, feature: &Feature) -> Result<()>;
    /// Complete the file and move it to its final path.
    fn finish(self: Box<Self>) -> Result<()>;
    /// One line for the user when the output cannot say which CRS its coordinates are in (see
    /// [`crs_warning`]); the library prints nothing itself.
    fn crs_warning(&self) -> Option<&str> {
        None
    }
    /// Lines for the user about what was written (e.g. objects whose reprojection went wrong);
    /// asked for before [`FeatureSink::finish`].
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// WKT of the engineering CRS pixel-coordinate outputs declare, so GDAL and QGIS show them as
/// local coordinates rather than take them for WGS 84 (GeoJSON's default). Rows grow downwards.
pub const PIXEL_CRS_WKT: &str = r#"LOCAL_CS["pixel coordinates (y down)",LOCAL_DATUM["raster pixels",32767],UNIT["pixel",1],AXIS["x (column)",EAST],AXIS["y (row)",SOUTH]]"#;

/// The warning a writer of `path` gives for `crs`, if its output cannot state it: a CRS the raster
/// names but that neither an EPSG code nor a WKT describes (e.g. a projection method we do not
/// know). Pixel coordinates (`crs` None) are stated in every format, so they give none.
pub fn crs_warning(path: &Path, crs: Option<&Crs>) -> Option<String> {
    let crs = crs.filter(|c| !c.is_described())?;
    Some(format!(
        "{}: the raster's CRS, {}, cannot be written, so the output states no CRS; assign it afterwards, \
         e.g. `ogr2ogr -a_srs <CRS> fixed{} {}`",
        path.display(),
        crs.describe(),
        path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default(),
        path.display()
    ))
}

/// Open a writer for `path`, format from the extension. `crs` None means pixel coordinates.
pub fn create_writer(path: &Path, crs: Option<&Crs>, opts: &WriteOptions) -> Result<Box<dyn FeatureSink>> {
    Ok(match VectorFormat::from_path(path)? {
        VectorFormat::GeoJson => Box::new(GeoJsonWriter::create(path, crs, opts)?),
        VectorFormat::FlatGeobuf => Box::new(FlatGeobufWriter::create(path, crs, opts)?),
        VectorFormat::GeoPackage => Box::new(GeoPackageWriter::create(path, crs, opts)?),
    })
}

/// [`create_writer`] for features in `source` (the raster's CRS; None: pixel coordinates),
/// written in `output` when given (see [`crate::reproject`]): the file declares `output` and each
/// geometry is reprojected as it is written.
pub fn create_writer_in(
    path: &Path,
    source: Option<&Crs>,
    output: Option<&Crs>,
    opts: &WriteOptions,
) -> Result<Box<dyn FeatureSink>> {
    let Some(target) = output else { return create_writer(path, source, opts) };
    let source = source.ok_or_else(|| {
        anyhow!("{}: --output-crs needs the CRS the features are in, and the raster states none", path.display())
    })?;
    let reprojector = crate::reproject::Reprojector::new(source, target)
        .with_context(|| format!("{}: from {} to {}", path.display(), source.describe(), target.describe()))?;
    let inner = create_writer(path, Some(target), opts)?;
    Ok(Box::new(crate::reproject::ReprojectingSink::new(inner, reprojector)))
}

/// Write all features at once; format from the extension.
pub fn write_features(path: &Path, features: &[Feature], crs: Option<&Crs>, opts: &WriteOptions) -> Result<()> {
    let mut w = create_writer(path, crs, opts)?;
    for f in features {
        w.write(f)?;
    }
    w.finish()
}

/// The temporary sibling a writer of `target` streams into: `.<name>.tmp-<pid>`.
pub fn temp_path_for(target: &Path) -> Result<PathBuf> {
    let name = target.file_name().ok_or_else(|| anyhow!("{} is not a file path", target.display()))?;
    remove_stale_temp_files(target);
    Ok(target.with_file_name(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id())))
}

/// Removes temporaries of `target` left by runs that were killed (their process is gone), so a
/// killed `detect` leaves nothing behind once the next run starts. Errors are ignored: cleaning up
/// must never stop a run.
fn remove_stale_temp_files(target: &Path) {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else { return };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)).and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !process_is_running(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Temporary sibling file that is deleted unless committed.
struct TempTarget {
    target: PathBuf,
    tmp: PathBuf,
    overwrite: bool,
    committed: bool,
}

impl TempTarget {
    fn new(target: &Path, overwrite: bool) -> Result<TempTarget> {
        if target.exists() && !overwrite {
            bail!("{} already exists; refusing to overwrite (set overwrite to replace it)", target.display());
        }
        let tmp = temp_path_for(target)?;
        Ok(TempTarget { target: target.to_path_buf(), tmp, overwrite, committed: false })
    }

    fn commit(&mut self) -> Result<()> {
        if self.target.exists() && !self.overwrite {
            bail!("{} appeared while writing; refusing to overwrite", self.target.display());
        }
        std::fs::rename(&self.tmp, &self.target)
            .with_context(|| format!("cannot move {} to {}", self.tmp.display(), self.target.display()))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for TempTarget {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

// ---------------------------------------------------------------- GeoJSON

/// GeoJSON writer: RFC 7946 (no `crs` member, lon/lat) for EPSG:4326; otherwise native
/// coordinates with a GeoJSON 2008 `crs` member, which GDAL/QGIS honour: its name is
/// `urn:ogc:def:crs:EPSG::<code>` for EPSG CRSs, the WKT for user-defined ones (GDAL reads the
/// name with `SetFromUserInput`), and [`PIXEL_CRS_WKT`] for pixel coordinates.
pub struct GeoJsonWriter {
    out: BufWriter<File>,
    target: TempTarget,
    count: usize,
    warning: Option<String>,
}

/// The `crs` member's name for `crs` (None: GeoJSON's default, WGS 84, is right).
fn geojson_crs_name(crs: Option<&Crs>) -> Option<String> {
    match crs {
        None => Some(PIXEL_CRS_WKT.to_string()),
        Some(c) if c.is_wgs84() => None,
        Some(Crs { epsg: Some(code), .. }) => Some(format!("urn:ogc:def:crs:EPSG::{code}")),
        Some(Crs { wkt: Some(wkt), .. }) => Some(wkt.clone()),
        // Undescribed: say so as a local CRS rather than let readers assume WGS 84.
        Some(c) => Some(format!("LOCAL_CS[\"{}\",UNIT[\"unknown\",1]]", c.describe().replace('"', "'"))),
    }
}

impl GeoJsonWriter {
    pub fn create(path: &Path, crs: Option<&Crs>, opts: &WriteOptions) -> Result<GeoJsonWriter> {
        let target = TempTarget::new(path, opts.overwrite)?;
        let file = File::create(&target.tmp).with_context(|| format!("cannot create {}", target.tmp.display()))?;
        let mut out = BufWriter::new(file);
        let mut head = serde_json::Map::new();
        head.insert("type".into(), "FeatureCollection".into());
        head.insert("name".into(), opts.layer_name.clone().into());
        if let Some(name) = geojson_crs_name(crs) {
            head.insert("crs".into(), serde_json::json!({"type": "name", "properties": {"name": name}}));
        }
        let head = serde_json::Value::Object(head).to_string();
        // Splice the feature array into the header object so features can be streamed.
        writeln!(out, "{},\"features\":[", &head[..head.len() - 1])?;
        Ok(GeoJsonWriter { out, target, count: 0, warning: crs_warning(path, crs) })
    }
}

/// GeoJSON geometry object for a MultiPolygon (a single part is written as a Polygon).
pub fn geometry_to_geojson(mp: &MultiPolygon<f64>) -> serde_json::Value {
    let ring = |ls: &geo::LineString<f64>| -> Vec<[f64; 2]> { ls.0.iter().map(|c| [c.x, c.y]).collect() };
    let poly = |p: &geo::Polygon<f64>| -> Vec<Vec<[f64; 2]>> {
        std::iter::once(p.exterior()).chain(p.interiors()).map(ring).collect()
    };
    if mp.0.len() == 1 {
        serde_json::json!({"type": "Polygon", "coordinates": poly(&mp.0[0])})
    } else {
        serde_json::json!({"type": "MultiPolygon", "coordinates": mp.0.iter().map(poly).collect::<Vec<_>>()})
    }
}

/// Parse a GeoJSON Polygon/MultiPolygon geometry object.
pub fn geometry_from_geojson(g: &serde_json::Value) -> Result<MultiPolygon<f64>> {
    let ring = |r: &serde_json::Value| -> Result<geo::LineString<f64>> {
        r.as_array()
            .ok_or_else(|| anyhow!("ring is not an array"))?
            .iter()
            .map(|p| {
                Ok(geo::Coord {
                    x: p.get(0).and_then(|v| v.as_f64()).ok_or_else(|| anyhow!("bad coordinate {p}"))?,
                    y: p.get(1).and_then(|v| v.as_f64()).ok_or_else(|| anyhow!("bad coordinate {p}"))?,
                })
            })
            .collect()
    };
    let poly = |p: &serde_json::Value| -> Result<geo::Polygon<f64>> {
        let rings: Vec<_> =
            p.as_array().ok_or_else(|| anyhow!("polygon is not an array"))?.iter().map(ring).collect::<Result<_>>()?;
        let mut it = rings.into_iter();
        let ext = it.next().ok_or_else(|| anyhow!("polygon without rings"))?;
        Ok(geo::Polygon::new(ext, it.collect()))
    };
    let coords = &g["coordinates"];
    match g["type"].as_str() {
        Some("Polygon") => Ok(MultiPolygon::new(vec![poly(coords)?])),
        Some("MultiPolygon") => Ok(MultiPolygon::new(
            coords.as_array().ok_or_else(|| anyhow!("bad MultiPolygon"))?.iter().map(poly).collect::<Result<_>>()?,
        )),
        other => bail!("unsupported geometry type {other:?} (expected Polygon or MultiPolygon)"),
    }
}

impl FeatureSink for GeoJsonWriter {
    fn write(&mut self, f: &Feature) -> Result<()> {
        let obj = serde_json::json!({
            "type": "Feature",
            "properties": {"class": f.class, "class_id": f.class_id, "score": f.score, "area": f.area, "tile": f.tile},
            "geometry": geometry_to_geojson(&f.geometry),
        });
        if self.count > 0 {
            self.out.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut self.out, &obj)?;
        self.count += 1;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.out.write_all(b"\n]}\n")?;
        self.out.flush()?;
        self.target.commit()
    }

    fn crs_warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }
}

// ---------------------------------------------------------------- WKB / GeoPackage

fn wkb_multipolygon(mp: &MultiPolygon<f64>, out: &mut Vec<u8>) {
    out.push(1);
    out.extend(6u32.to_le_bytes());
    out.extend((mp.0.len() as u32).to_le_bytes());
    for p in &mp.0 {
        out.push(1);
        out.extend(3u32.to_le_bytes());
        out.extend((1 + p.interiors().len() as u32).to_le_bytes());
        for ring in std::iter::once(p.exterior()).chain(p.interiors()) {
            out.extend((ring.0.len() as u32).to_le_bytes());
            for c in &ring.0 {
                out.extend(c.x.to_le_bytes());
                out.extend(c.y.to_le_bytes());
            }
        }
    }
}

/// GeoPackage geometry blob: "GP" header with an XY envelope, then little-endian WKB.
pub fn gpkg_geometry_blob(mp: &MultiPolygon<f64>, srs_id: i32) -> Vec<u8> {
    let mut out = vec![b'G', b'P', 0];
    match mp.bounding_rect() {
        Some(r) => {
            out.push(0b0000_0011); // little endian, envelope [minx, maxx, miny, maxy]
            out.extend(srs_id.to_le_bytes());
            for v in [r.min().x, r.max().x, r.min().y, r.max().y] {
                out.extend(v.to_le_bytes());
            }
        }
        None => {
            out.push(0b0001_0001); // little endian, no envelope, empty geometry
            out.extend(srs_id.to_le_bytes());
        }
    }
    wkb_multipolygon(mp, &mut out);
    out
}

const WGS84_WKT: &str = r#"GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]]"#;

/// WKT1 for the CRSs we can describe without a projection database: WGS 84 and the WGS 84 UTM
/// zones (EPSG 32601-32660, 32701-32760), which cover most orthophoto deliveries. Readers that
/// know EPSG codes (GDAL, QGIS) use organization + code anyway.
pub fn wkt_for_epsg(code: u32) -> Option<String> {
    if code == 4326 {
        return Some(WGS84_WKT.to_string());
    }
    let (zone, south) = match code {
        32601..=32660 => (code - 32600, false),
        32701..=32760 => (code - 32700, true),
        _ => return None,
    };
    let geogcs = WGS84_WKT.replace(",AXIS[\"Latitude\",NORTH],AXIS[\"Longitude\",EAST]", "");
    Some(format!(
        "PROJCS[\"WGS 84 / UTM zone {zone}{hemi}\",{geogcs},PROJECTION[\"Transverse_Mercator\"],\
PARAMETER[\"latitude_of_origin\",0],PARAMETER[\"central_meridian\",{cm}],PARAMETER[\"scale_factor\",0.9996],\
PARAMETER[\"false_easting\",500000],PARAMETER[\"false_northing\",{fnorth}],UNIT[\"metre\",1,AUTHORITY[\"EPSG\",\"9001\"]],\
AXIS[\"Easting\",EAST],AXIS[\"Northing\",NORTH],AUTHORITY[\"EPSG\",\"{code}\"]]",
        hemi = if south { "S" } else { "N" },
        cm = zone as i32 * 6 - 183,
        fnorth = if south { 10000000 } else { 0 },
    ))
}

/// GeoPackage 1.2 writer (no spatial index: GDAL/QGIS read it fine and can add one with
/// `ogrinfo -sql "SELECT CreateSpatialIndex(...)"`).
pub struct GeoPackageWriter {
    conn: Option<rusqlite::Connection>,
    target: TempTarget,
    table: String,
    srs_id: i32,
    extent: Option<(f64, f64, f64, f64)>,
    warning: Option<String>,
}

/// srs_id of the row GeoPackage outputs give a CRS without an EPSG code (outside EPSG's range,
/// as GDAL does).
const USER_DEFINED_SRS_ID: i32 = 100000;

impl GeoPackageWriter {
    pub fn create(path: &Path, crs: Option<&Crs>, opts: &WriteOptions) -> Result<GeoPackageWriter> {
        let target = TempTarget::new(path, opts.overwrite)?;
        let _ = std::fs::remove_file(&target.tmp);
        let conn = rusqlite::Connection::open(&target.tmp)
            .with_context(|| format!("cannot create GeoPackage {}", target.tmp.display()))?;
        let table = opts.layer_name.clone();
        if table.is_empty() || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("layer name {table:?} must be non-empty ASCII letters, digits or '_'");
        }
        conn.execute_batch(
            "PRAGMA application_id = 1196444487; PRAGMA user_version = 10200;
            CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT NOT NULL, srs_id INTEGER NOT NULL PRIMARY KEY,
              organization TEXT NOT NULL, organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL,
              description TEXT);
            CREATE TABLE gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL,
              identifier TEXT UNIQUE, description TEXT DEFAULT '',
              last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
              min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER,
              CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id));
            CREATE TABLE gpkg_geometry_columns (table_name TEXT NOT NULL, column_name TEXT NOT NULL,
              geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL,
              CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
              CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
              CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id));",
        )?;
        conn.execute(
            "INSERT INTO gpkg_spatial_ref_sys VALUES ('Undefined cartesian SRS', -1, 'NONE', -1, 'undefined', 'undefined cartesian coordinate reference system'),
              ('Undefined geographic SRS', 0, 'NONE', 0, 'undefined', 'undefined geographic coordinate reference system'),
              ('WGS 84 geodetic', 4326, 'EPSG', 4326, ?1, 'longitude/latitude coordinates in decimal degrees on the WGS 84 spheroid')",
            [WGS84_WKT],
        )?;
        let srs_id = match crs {
            // Pixel coordinates: the "undefined cartesian" row GeoPackage defines for them.
            None => -1,
            Some(c) => match (c.epsg, &c.wkt) {
                (Some(4326), _) => 4326,
                (Some(code), wkt) => {
                    // Readers go by organisation and code; the WKT is what the file stated, or ours.
                    let def = wkt.clone().or_else(|| wkt_for_epsg(code)).unwrap_or_else(|| "undefined".into());
                    let name = c.citation.clone().unwrap_or_else(|| format!("EPSG:{code}"));
                    conn.execute(
                        "INSERT INTO gpkg_spatial_ref_sys VALUES (?1, ?2, 'EPSG', ?2, ?3, NULL)",
                        rusqlite::params![name, code as i64, def],
                    )?;
                    code as i32
                }
                (None, wkt) => {
                    // User-defined: the WKT is the only description. Without one the row still
                    // records what the raster said, and readers see an undefined CRS.
                    let name = wkt.as_deref().and_then(crate::raster::wkt_name).unwrap_or("user-defined");
                    let def = wkt.clone().unwrap_or_else(|| "undefined".into());
                    conn.execute(
                        "INSERT INTO gpkg_spatial_ref_sys VALUES (?1, ?2, 'NONE', ?2, ?3, ?4)",
                        rusqlite::params![name, USER_DEFINED_SRS_ID, def, c.describe()],
                    )?;
                    USER_DEFINED_SRS_ID
                }
            },
        };
        conn.execute(
            &format!(
                "CREATE TABLE \"{table}\" (fid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, geom MULTIPOLYGON,
                  class TEXT, class_id INTEGER, score REAL, area REAL, tile TEXT)"
            ),
            [],
        )?;
        conn.execute(
            "INSERT INTO gpkg_contents (table_name, data_type, identifier, srs_id) VALUES (?1, 'features', ?1, ?2)",
            rusqlite::params![table, srs_id],
        )?;
        conn.execute(
            "INSERT INTO gpkg_geometry_columns VALUES (?1, 'geom', 'MULTIPOLYGON', ?2, 0, 0)",
            rusqlite::params![table, srs_id],
        )?;
        conn.execute_batch("BEGIN")?;
        Ok(GeoPackageWriter { conn: Some(conn), target, table, srs_id, extent: None, warning: crs_warning(path, crs) })
    }
}

impl FeatureSink for GeoPackageWriter {
    fn write(&mut self, f: &Feature) -> Result<()> {
        let conn = self.conn.as_ref().expect("connection open until finish");
        let blob = gpkg_geometry_blob(&f.geometry, self.srs_id);
        conn.prepare_cached(&format!(
            "INSERT INTO \"{}\" (geom, class, class_id, score, area, tile) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            self.table
        ))?
        .execute(rusqlite::params![blob, f.class, f.class_id, f.score, f.area, f.tile])?;
        if let Some(r) = f.geometry.bounding_rect() {
            let e = self.extent.get_or_insert((f64::MAX, f64::MAX, f64::MIN, f64::MIN));
            *e = (e.0.min(r.min().x), e.1.min(r.min().y), e.2.max(r.max().x), e.3.max(r.max().y));
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        let conn = self.conn.take().expect("finish called once");
        if let Some(e) = self.extent {
            conn.execute(
                "UPDATE gpkg_contents SET min_x = ?1, min_y = ?2, max_x = ?3, max_y = ?4 WHERE table_name = ?5",
                rusqlite::params![e.0, e.1, e.2, e.3, self.table],
            )?;
        }
        conn.execute_batch("COMMIT")?;
        conn.close().map_err(|(_, e)| e).context("closing GeoPackage")?;
        self.target.commit()
    }

    fn crs_warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }
}

// ---------------------------------------------------------------- FlatGeobuf

struct GeozeroMultiPolygon<'a>(&'a MultiPolygon<f64>);

impl geozero::GeozeroGeometry for GeozeroMultiPolygon<'_> {
    fn process_geom<P: geozero::GeomProcessor>(&self, p: &mut P) -> geozero::error::Result<()> {
        let mp = self.0;
        p.multipolygon_begin(mp.0.len(), 0)?;
        for (i, poly) in mp.0.iter().enumerate() {
            p.polygon_begin(false, 1 + poly.interiors().len(), i)?;
            for (j, ring) in std::iter::once(poly.exterior()).chain(poly.interiors()).enumerate() {
                p.linestring_begin(false, ring.0.len(), j)?;
                for (k, c) in ring.0.iter().enumerate() {
                    p.xy(c.x, c.y, k)?;
                }
                p.linestring_end(false, j)?;
            }
            p.polygon_end(false, i)?;
        }
        p.multipolygon_end(0)
    }
}

/// FlatGeobuf writer (with the packed Hilbert R-tree index). The crate buffers features in an
/// anonymous temporary file until [`FeatureSink::finish`], as the index precedes the features.
pub struct FlatGeobufWriter {
    fgb: Option<flatgeobuf::FgbWriter<'static>>,
    target: TempTarget,
    warning: Option<String>,
}

impl FlatGeobufWriter {
    pub fn create(path: &Path, crs: Option<&Crs>, opts: &WriteOptions) -> Result<FlatGeobufWriter> {
        use flatgeobuf::{ColumnType, FgbCrs, FgbWriter, FgbWriterOptions, GeometryType};
        let target = TempTarget::new(path, opts.overwrite)?;
        // The crate copies the name and CRS strings into its header at creation, so they need
        // not outlive this call.
        let fgb_crs = match crs {
            Some(Crs { epsg: Some(code), wkt, .. }) => {
                FgbCrs { org: Some("EPSG"), code: *code as i32, wkt: wkt.as_deref(), ..Default::default() }
            }
            Some(Crs { wkt: Some(wkt), .. }) => {
                FgbCrs { wkt: Some(wkt), name: crate::raster::wkt_name(wkt), ..Default::default() }
            }
            Some(_) => FgbCrs::default(),
            None => FgbCrs { wkt: Some(PIXEL_CRS_WKT), ..Default::default() },
        };
        let mut fgb = FgbWriter::create_with_options(
            &opts.layer_name,
            GeometryType::MultiPolygon,
            FgbWriterOptions { write_index: true, crs: fgb_crs, ..Default::default() },
        )
        .map_err(|e| anyhow!("cannot start FlatGeobuf {}: {e}", path.display()))?;
        fgb.add_column("class", ColumnType::String, |_, _| {});
        fgb.add_column("class_id", ColumnType::Long, |_, _| {});
        fgb.add_column("score", ColumnType::Double, |_, _| {});
        fgb.add_column("area", ColumnType::Double, |_, _| {});
        fgb.add_column("tile", ColumnType::String, |_, _| {});
        Ok(FlatGeobufWriter { fgb: Some(fgb), target, warning: crs_warning(path, crs) })
    }
}

impl FeatureSink for FlatGeobufWriter {
    fn write(&mut self, f: &Feature) -> Result<()> {
        use geozero::{ColumnValue, PropertyProcessor};
        let fgb = self.fgb.as_mut().expect("writer open until finish");
        let mut prop_err = None;
        fgb.add_feature_geom(GeozeroMultiPolygon(&f.geometry), |feat| {
            let props = [
                ("class", ColumnValue::String(&f.class)),
                ("class_id", ColumnValue::Long(f.class_id)),
                ("score", ColumnValue::Double(f.score)),
                ("area", ColumnValue::Double(f.area)),
                ("tile", ColumnValue::String(&f.tile)),
            ];
            for (i, (name, v)) in props.iter().enumerate() {
                if let Err(e) = feat.property(i, name, v) {
                    prop_err = Some(e.to_string());
                }
            }
        })
        .map_err(|e| anyhow!("FlatGeobuf feature: {e}"))?;
        if let Some(e) = prop_err {
            bail!("FlatGeobuf property: {e}");
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        let fgb = self.fgb.take().expect("finish called once");
        let file =
            File::create(&self.target.tmp).with_context(|| format!("cannot create {}", self.target.tmp.display()))?;
        let mut out = BufWriter::new(file);
        fgb.write(&mut out).map_err(|e| anyhow!("writing FlatGeobuf: {e}"))?;
        out.flush()?;
        drop(out);
        self.target.commit()
    }

    fn crs_warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }
}
