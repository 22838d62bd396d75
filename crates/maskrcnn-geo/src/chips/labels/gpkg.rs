//! GeoPackage labels: one feature table (chosen by name when the file has several), geometries
//! as GeoPackage binary (WKB), the CRS from `gpkg_spatial_ref_sys`.

use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context, Result};
use geo::{Coord, LineString, MultiPolygon, Polygon};
use rusqlite::{types::ValueRef, Connection, OpenFlags};

use super::{wkt, LabelCrs, LabelLayer, LayerBuilder, RawGeometry, RawValue};

pub(super) fn read(path: &Path, layer: Option<&str>, class_field: Option<&str>) -> Result<LabelLayer> {
    ensure!(path.is_file(), "{}: label GeoPackage not found", path.display());
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open GeoPackage {}", path.display()))?;
    let gp = |e: rusqlite::Error| anyhow!("{}: not a readable GeoPackage: {e}", path.display());
    let mut stmt = conn
        .prepare(
            "SELECT c.table_name, g.column_name, g.srs_id FROM gpkg_contents c \
             JOIN gpkg_geometry_columns g ON g.table_name = c.table_name WHERE c.data_type = 'features' \
             ORDER BY c.table_name",
        )
        .map_err(gp)?;
    let tables: Vec<(String, String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(gp)?
        .collect::<rusqlite::Result<_>>()
        .map_err(gp)?;
    let names: Vec<&str> = tables.iter().map(|t| t.0.as_str()).collect();
    let (table, geom_col, srs_id) = match (tables.as_slice(), layer) {
        ([], _) => bail!("{}: the GeoPackage has no feature table", path.display()),
        ([one], None) => one.clone(),
        (many, None) => bail!(
            "{}: the GeoPackage has {} feature layers {names:?}; choose one with --label-layer NAME",
            path.display(),
            many.len(),
        ),
        (all, Some(wanted)) => {
            // SQLite table names are case-insensitive, so a name differing only in case is the same table.
            let found = all.iter().find(|t| t.0 == wanted).or_else(|| {
                let mut ci = all.iter().filter(|t| t.0.eq_ignore_ascii_case(wanted));
                ci.next().filter(|_| ci.next().is_none())
            });
            match found {
                Some(t) => t.clone(),
                None => bail!(
                    "{}: no feature layer named {wanted:?}; the GeoPackage's feature layers are {names:?}",
                    path.display()
                ),
            }
        }
    };
    let crs = read_crs(&conn, srs_id);
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let columns: Vec<String> = conn
        .prepare(&format!("PRAGMA table_info({})", quote(&table)))
        .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(1))?.collect())
        .map_err(gp)?;
    let fields: Vec<String> = columns.into_iter().filter(|c| *c != geom_col).collect();
    let where_ = if tables.len() > 1 { format!(" of layer {table}") } else { String::new() };
    let mut out = LayerBuilder::new(path, where_, class_field, Some(&fields))?;
    let class_sql = class_field.map(quote).unwrap_or_else(|| "NULL".into());
    let sql = format!("SELECT {}, {} FROM {}", quote(&geom_col), class_sql, quote(&table));
    let mut stmt = conn.prepare(&sql).map_err(gp)?;
    let mut rows = stmt.query([]).map_err(gp)?;
    let mut i = 0usize;
    while let Some(row) = rows.next().map_err(gp)? {
        let geometry = match row.get_ref(0).map_err(gp)? {
            ValueRef::Blob(b) => {
                parse_gpkg_geometry(b).with_context(|| format!("{}: feature {i} of layer {table}", path.display()))?
            }
            ValueRef::Null => RawGeometry::Missing,
            _ => bail!("{}: feature {i} of layer {table}: geometry is not a blob", path.display()),
        };
        let text;
        let value = match row.get_ref(1).map_err(gp)? {
            ValueRef::Null => RawValue::Null,
            ValueRef::Integer(v) => RawValue::Int(v),
            ValueRef::Real(v) => RawValue::Real(v),
            ValueRef::Text(t) => {
                text = String::from_utf8_lossy(t).into_owned();
                RawValue::Text(&text)
            }
            ValueRef::Blob(_) => RawValue::Other("a blob".into()),
        };
        out.push(i, geometry, value)?;
        i += 1;
    }
    Ok(out.finish(table, crs))
}

fn read_crs(conn: &Connection, srs_id: i64) -> LabelCrs {
    if srs_id == 0 || srs_id == -1 {
        return LabelCrs::Undefined;
    }
    let row: Option<(String, i64, Option<String>)> = conn
        .query_row(
            "SELECT organization, organization_coordsys_id, definition FROM gpkg_spatial_ref_sys WHERE srs_id = ?1",
            [srs_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2).ok())),
        )
        .ok();
    match row {
        Some((org, code, _)) if org.eq_ignore_ascii_case("EPSG") && code > 0 => LabelCrs::Epsg(code as u32),
        // Another authority (ESRI:102100, a user-defined entry): the WKT may still be a known EPSG CRS.
        Some((org, code, Some(def))) => match wkt::crs_from_wkt(&def) {
            LabelCrs::Epsg(c) => LabelCrs::Epsg(c),
            _ => LabelCrs::Unrecognised(format!("{org}:{code}")),
        },
        Some((org, code, None)) => LabelCrs::Unrecognised(format!("{org}:{code}")),
        None => LabelCrs::Unrecognised(format!("srs_id {srs_id} missing from gpkg_spatial_ref_sys")),
    }
}

/// GeoPackage binary geometry: "GP" header (+ envelope), then WKB Polygon/MultiPolygon.
fn parse_gpkg_geometry(blob: &[u8]) -> Result<RawGeometry> {
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
        return Ok(RawGeometry::Polygons(MultiPolygon::new(vec![])));
    }
    let body = blob.get(8 + envelope_len..).ok_or_else(|| anyhow!("truncated GeoPackage geometry header"))?;
    let mut wkb = Wkb { bytes: body, pos: 0, little: true };
    wkb.geometry()
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
    fn geometry(&mut self) -> Result<RawGeometry> {
        let (kind, dims) = self.header()?;
        match kind {
            3 => Ok(RawGeometry::Polygons(MultiPolygon::new(vec![self.polygon_body(dims)?]))),
            6 => {
                let n = self.u32()? as usize;
                let mut polys = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    let (k, d) = self.header()?;
                    ensure!(k == 3, "MultiPolygon member of WKB type {k}");
                    polys.push(self.polygon_body(d)?);
                }
                Ok(RawGeometry::Polygons(MultiPolygon::new(polys)))
            }
            other => Ok(RawGeometry::NotPolygon(
                match other {
                    1 => "Point",
                    2 => "LineString",
                    4 => "MultiPoint",
                    5 => "MultiLineString",
                    7 => "GeometryCollection",
                    _ => "geometry of an unknown WKB type",
                }
                .to_string(),
            )),
        }
    }
}
