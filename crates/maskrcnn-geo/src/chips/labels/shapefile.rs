//! Shapefile labels: `.shp` geometries with their `.shx` index and `.dbf` attributes (code page
//! from `.cpg` when present), the CRS from the `.prj` WKT.
//!
//! Shapefile polygons are flat lists of rings; by the format's rule outer rings run clockwise and
//! holes counter-clockwise. Each hole goes to the smallest outer ring that contains it (holes do
//! not have to follow their outer ring). A hole inside no outer ring is kept as a polygon of its
//! own, and a shape whose rings all run counter-clockwise (written by a tool that ignored the
//! rule) is read as outer rings, as GDAL does: the labels were meant to be there.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use geo::{Area, BoundingRect, Contains, Coord, LineString, MultiPolygon, Point, Polygon};
use shapefile::dbase::{self, FieldValue};
use shapefile::record::traits::HasXY;
use shapefile::{PolygonRing, Shape};

use super::{check_single_layer, file_stem, wkt, LabelCrs, LabelLayer, LayerBuilder, RawGeometry, RawValue};

/// The file beside `shp` with extension `ext`, in either case (`.dbf` or `.DBF`).
fn sidecar(shp: &Path, ext: &str) -> Option<PathBuf> {
    for e in [ext.to_ascii_lowercase(), ext.to_ascii_uppercase()] {
        let p = shp.with_extension(e);
        if p.is_file() {
            return Some(p);
        }
    }
    let stem = shp.file_stem()?.to_string_lossy().to_ascii_lowercase();
    let dir = shp.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| {
        p.file_stem().is_some_and(|s| s.to_string_lossy().to_ascii_lowercase() == stem)
            && p.extension().is_some_and(|x| x.eq_ignore_ascii_case(ext))
    })
}

pub(super) fn read(path: &Path, layer: Option<&str>, class_field: Option<&str>) -> Result<LabelLayer> {
    let shown = path.display();
    if !path.is_file() {
        bail!("{shown}: label Shapefile not found");
    }
    let name = file_stem(path);
    check_single_layer(path, "a Shapefile", &name, layer)?;
    let need = |ext: &str, what: &str| {
        sidecar(path, ext).ok_or_else(|| {
            anyhow!(
                "{shown}: the Shapefile's .{ext} ({what}) is missing; a Shapefile is several files \
                 (.shp, .shx, .dbf, .prj) that must be copied together"
            )
        })
    };
    let shx = need("shx", "shape index")?;
    let dbf = need("dbf", "attribute table")?;
    let crs = match sidecar(path, "prj") {
        None => LabelCrs::Missing("no .prj file beside the .shp".into()),
        Some(prj) => {
            let text = std::fs::read(&prj).with_context(|| format!("cannot read {}", prj.display()))?;
            wkt::crs_from_wkt(&String::from_utf8_lossy(&text))
        }
    };

    let open = |p: &Path| File::open(p).map(BufReader::new).with_context(|| format!("cannot open {}", p.display()));
    let shapes = shapefile::ShapeReader::with_shx(open(path)?, open(&shx)?)
        .map_err(|e| anyhow!("{shown}: not a readable Shapefile: {e}"))?;
    let mut builder = dbase::ReaderBuilder::new();
    // The .cpg names the code page; without one the .dbf header's language driver id applies,
    // where 87 ("ANSI", what GDAL writes by default) means ISO-8859-1, as GDAL reads it.
    let code_page = match sidecar(path, "cpg") {
        Some(cpg) => Some((std::fs::read_to_string(&cpg).unwrap_or_default(), cpg)),
        None => {
            let mut head = [0u8; 30];
            let ldid = std::io::Read::read_exact(&mut open(&dbf)?, &mut head).map(|_| head[29]).unwrap_or(0);
            (ldid == 87).then(|| ("ISO-8859-1".to_string(), dbf.clone()))
        }
    };
    if let Some((label, from)) = code_page {
        match dbase::encoding::DynEncoding::from_name(&label) {
            Some(enc) => builder = builder.with_encoding(enc),
            None => bail!("{}: unknown code page {:?}", from.display(), label.trim()),
        }
    }
    let table = builder.build(open(&dbf)?).map_err(|e| anyhow!("{}: not a readable .dbf: {e}", dbf.display()))?;
    let fields: Vec<String> = table.fields().iter().map(|f| f.name().to_string()).collect();
    let mut out = match LayerBuilder::new(path, String::new(), class_field, Some(&fields)) {
        Ok(b) => b,
        // .dbf field names hold at most 10 characters, so GDAL cuts longer ones when converting.
        Err(e) => match class_field.filter(|f| f.chars().count() > 10) {
            Some(f) => bail!(
                "{e:#} (.dbf field names are cut to 10 characters: {:?}?)",
                f.chars().take(10).collect::<String>()
            ),
            None => return Err(e),
        },
    };
    let mut reader = shapefile::Reader::new(shapes, table);
    for (i, item) in reader.iter_shapes_and_records().enumerate() {
        let (shape, mut record) = item.map_err(|e| anyhow!("{shown}: feature {i}: {e}"))?;
        let geometry = match shape {
            Shape::NullShape => RawGeometry::Missing,
            Shape::Polygon(p) => RawGeometry::Polygons(assemble(p.rings())),
            Shape::PolygonM(p) => RawGeometry::Polygons(assemble(p.rings())),
            Shape::PolygonZ(p) => RawGeometry::Polygons(assemble(p.rings())),
            Shape::Point(_) | Shape::PointM(_) | Shape::PointZ(_) => RawGeometry::NotPolygon("Point".into()),
            Shape::Polyline(_) | Shape::PolylineM(_) | Shape::PolylineZ(_) => {
                RawGeometry::NotPolygon("Polyline (line)".into())
            }
            Shape::Multipoint(_) | Shape::MultipointM(_) | Shape::MultipointZ(_) => {
                RawGeometry::NotPolygon("Multipoint".into())
            }
            Shape::Multipatch(_) => RawGeometry::NotPolygon("Multipatch (3D surface)".into()),
        };
        let field = class_field.and_then(|f| record.remove(f));
        let value = match &field {
            None => RawValue::Null,
            Some(v) => raw_value(v),
        };
        out.push(i, geometry, value)?;
    }
    Ok(out.finish(name, crs))
}

fn raw_value(v: &FieldValue) -> RawValue<'_> {
    match v {
        FieldValue::Character(Some(s)) | FieldValue::Memo(s) => RawValue::Text(s),
        FieldValue::Numeric(Some(v)) | FieldValue::Double(v) | FieldValue::Currency(v) => RawValue::Real(*v),
        FieldValue::Float(Some(v)) => RawValue::Real(*v as f64),
        FieldValue::Integer(v) => RawValue::Int(*v as i64),
        FieldValue::Logical(Some(b)) => RawValue::Bool(*b),
        FieldValue::Character(None)
        | FieldValue::Numeric(None)
        | FieldValue::Float(None)
        | FieldValue::Logical(None) => RawValue::Null,
        FieldValue::Date(_) | FieldValue::DateTime(_) => RawValue::Other("a date".into()),
    }
}

/// Polygons from a shape's rings (see the module docs for the rules).
fn assemble<P: HasXY>(rings: &[PolygonRing<P>]) -> MultiPolygon<f64> {
    let line = |pts: &[P]| LineString::new(pts.iter().map(|p| Coord { x: p.x(), y: p.y() }).collect());
    let mut outers: Vec<Polygon<f64>> = Vec::new();
    let mut holes: Vec<LineString<f64>> = Vec::new();
    for ring in rings {
        match ring {
            PolygonRing::Outer(pts) => outers.push(Polygon::new(line(pts), vec![])),
            PolygonRing::Inner(pts) => holes.push(line(pts)),
        }
    }
    if outers.is_empty() {
        return MultiPolygon::new(holes.into_iter().map(|h| Polygon::new(h, vec![])).collect());
    }
    let areas: Vec<f64> = outers.iter().map(|p| p.unsigned_area()).collect();
    let boxes: Vec<_> = outers.iter().map(|p| p.bounding_rect()).collect();
    let mut holes_of: Vec<Vec<LineString<f64>>> = vec![Vec::new(); outers.len()];
    let mut orphans = Vec::new();
    for hole in holes {
        let inside = |k: usize| {
            let (Some(b), Some(h)) = (boxes[k], hole.bounding_rect()) else { return false };
            b.min().x <= h.min().x
                && b.min().y <= h.min().y
                && b.max().x >= h.max().x
                && b.max().y >= h.max().y
                // A hole may touch its outer ring at a vertex, so one vertex strictly inside decides.
                && hole.0.iter().any(|c| outers[k].contains(&Point::from(*c)))
        };
        let best = (0..outers.len()).filter(|&k| inside(k)).min_by(|&a, &b| areas[a].total_cmp(&areas[b]));
        match best {
            Some(k) => holes_of[k].push(hole),
            None => orphans.push(Polygon::new(hole, vec![])),
        }
    }
    let mut polygons: Vec<Polygon<f64>> =
        outers.into_iter().zip(holes_of).map(|(p, hs)| Polygon::new(p.into_inner().0, hs)).collect();
    polygons.extend(orphans);
    MultiPolygon::new(polygons)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shapefile::Point as P;

    /// A closed square ring, clockwise (a Shapefile outer ring) or counter-clockwise (a hole).
    fn sq(x: f64, y: f64, w: f64, clockwise: bool) -> Vec<P> {
        let mut pts = vec![P::new(x, y), P::new(x + w, y), P::new(x + w, y + w), P::new(x, y + w)];
        if clockwise {
            pts.reverse();
        }
        pts.push(pts[0]);
        pts
    }

    #[test]
    fn holes_go_to_the_outer_ring_that_contains_them() {
        // Holes listed first and out of order; the small hole sits in the second outer ring,
        // inside the first one's bounding box too (a ring around the second).
        let rings = vec![
            PolygonRing::Inner(sq(52.0, 52.0, 2.0, false)),
            PolygonRing::Inner(sq(10.0, 10.0, 5.0, false)),
            PolygonRing::Outer(sq(0.0, 0.0, 100.0, true)),
            PolygonRing::Inner(sq(40.0, 40.0, 20.0, false)),
            PolygonRing::Outer(sq(45.0, 45.0, 10.0, true)),
        ];
        let mp = assemble(&rings);
        assert_eq!(mp.0.len(), 2);
        assert_eq!(mp.0[0].interiors().len(), 2, "the big square holds the 5 m and 20 m holes");
        assert_eq!(mp.0[1].interiors().len(), 1, "the island inside the 20 m hole holds the 2 m hole");
        assert_eq!(mp.0[1].interiors()[0].0[0], Coord { x: 52.0, y: 52.0 });
    }

    #[test]
    fn orphan_holes_and_all_counter_clockwise_rings_stay_polygons() {
        let orphan =
            assemble(&[PolygonRing::Outer(sq(0.0, 0.0, 10.0, true)), PolygonRing::Inner(sq(20.0, 0.0, 5.0, false))]);
        assert_eq!(orphan.0.len(), 2);
        assert!(orphan.0.iter().all(|p| p.interiors().is_empty()));
        let ccw =
            assemble(&[PolygonRing::Inner(sq(0.0, 0.0, 10.0, false)), PolygonRing::Inner(sq(20.0, 0.0, 5.0, false))]);
        assert_eq!(ccw.0.len(), 2);
        assert_eq!(ccw.unsigned_area(), 125.0);
    }
}
