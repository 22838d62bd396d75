//! Label files in every vector format chip export reads: one GeoJSON converted by GDAL's
//! `ogr2ogr` into Shapefile, FlatGeobuf and a two-layer GeoPackage must give the same features
//! (geometry, class, order) as the GeoJSON reader, and the same chips; plus the errors a user
//! meets with these formats (missing sidecar files, several layers, wrong layer names).

use std::path::{Path, PathBuf};
use std::process::Command;

use geo::{CoordsIter, MultiPolygon};
use maskrcnn_geo::chips::{read_labels, ClassKey, LabelCrs, LabelLayer};
use serde_json::{json, Value};

fn ogr2ogr(args: &[&str]) {
    let out = Command::new("ogr2ogr").args(args).output().expect("ogr2ogr (GDAL's gdal-bin) must be installed");
    assert!(out.status.success(), "ogr2ogr {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ring(pts: &[(f64, f64)]) -> Value {
    let mut v: Vec<Value> = pts.iter().map(|&(x, y)| json!([x, y])).collect();
    v.push(v[0].clone());
    Value::Array(v)
}

fn square(x: f64, y: f64, w: f64, ccw: bool) -> Value {
    let pts = [(x, y), (x + w, y), (x + w, y + w), (x, y + w)];
    if ccw {
        ring(&pts)
    } else {
        ring(&pts.iter().rev().copied().collect::<Vec<_>>())
    }
}

/// Labels in EPSG:32616 with what a label file holds: holes, multipolygons (one part with a
/// hole), a clockwise exterior (not RFC 7946, written by some tools), text, integer and
/// non-ASCII classes, and a field name longer than a .dbf allows.
fn write_source(path: &Path) {
    let (x0, y0) = (733_600.5, 3_725_000.25);
    let features = vec![
        (
            json!({"type": "Polygon", "coordinates": [square(x0, y0, 40.0, true), square(x0 + 10.0, y0 + 10.0, 5.0, false)]}),
            "tank",
            3,
        ),
        (
            json!({"type": "MultiPolygon", "coordinates": [
                [square(x0 + 100.0, y0, 30.0, true)],
                [square(x0 + 200.0, y0, 50.0, true), square(x0 + 210.0, y0 + 10.0, 10.0, false), square(x0 + 230.0, y0 + 30.0, 10.0, false)],
            ]}),
            "ship",
            5,
        ),
        (json!({"type": "Polygon", "coordinates": [square(x0 + 0.125, y0 + 100.0, 33.3, false)]}), "Gebäude", 3),
        (
            json!({"type": "Polygon", "coordinates": [[[x0, y0 + 200.0], [x0 + 60.0, y0 + 200.0], [x0 + 30.0, y0 + 260.0], [x0, y0 + 200.0]]]}),
            "tank",
            7,
        ),
    ];
    let features: Vec<Value> = features
        .into_iter()
        .map(|(g, kind, n)| {
            json!({"type": "Feature", "properties": {"kind": kind, "n": n, "long_class_name": kind}, "geometry": g})
        })
        .collect();
    let doc = json!({
        "type": "FeatureCollection",
        "name": "labels",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32616"}},
        "features": features,
    });
    std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
}

/// A line layer, the second table of the GeoPackage.
fn write_roads(path: &Path) {
    let doc = json!({
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32616"}},
        "features": [{"type": "Feature", "properties": {"kind": "road"},
            "geometry": {"type": "LineString", "coordinates": [[733600.0, 3725000.0], [733700.0, 3725100.0]]}}],
    });
    std::fs::write(path, doc.to_string()).unwrap();
}

struct Files {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    geojson: PathBuf,
    shp: PathBuf,
    fgb: PathBuf,
    fgb_indexed: PathBuf,
    gpkg: PathBuf,
}

fn convert_all() -> Files {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let geojson = dir.join("labels.geojson");
    write_source(&geojson);
    let roads = dir.join("roads.geojson");
    write_roads(&roads);
    let shp = dir.join("labels.shp");
    ogr2ogr(&["-f", "ESRI Shapefile", s(&shp), s(&geojson)]);
    // Without the spatial index GDAL keeps the file order; with it (the default) features are
    // sorted along a Hilbert curve.
    let fgb = dir.join("labels.fgb");
    ogr2ogr(&["-f", "FlatGeobuf", "-lco", "SPATIAL_INDEX=NO", s(&fgb), s(&geojson)]);
    let fgb_indexed = dir.join("indexed.fgb");
    ogr2ogr(&["-f", "FlatGeobuf", s(&fgb_indexed), s(&geojson)]);
    let gpkg = dir.join("two_layers.gpkg");
    ogr2ogr(&["-f", "GPKG", s(&gpkg), s(&geojson), "-nln", "buildings"]);
    ogr2ogr(&["-f", "GPKG", "-update", s(&gpkg), s(&roads), "-nln", "roads"]);
    Files { _tmp: tmp, dir, geojson, shp, fgb, fgb_indexed, gpkg }
}

fn coords(g: &MultiPolygon<f64>) -> Vec<(f64, f64)> {
    g.coords_iter().map(|c| (c.x, c.y)).collect()
}

/// Same features in the same order: ring structure, every vertex within 1e-9, same class.
fn assert_same_features(a: &LabelLayer, b: &LabelLayer) {
    let (pa, pb) = (a.path.display(), b.path.display());
    assert_eq!(a.features.len(), b.features.len(), "feature count of {pa} vs {pb}");
    for (i, ((ga, ca), (gb, cb))) in a.features.iter().zip(&b.features).enumerate() {
        assert_eq!(ca, cb, "class of feature {i}: {pa} vs {pb}");
        assert_eq!(ga.0.len(), gb.0.len(), "polygon count of feature {i}: {pa} vs {pb}");
        for (p, q) in ga.0.iter().zip(&gb.0) {
            assert_eq!(p.interiors().len(), q.interiors().len(), "holes of feature {i}: {pa} vs {pb}");
        }
        let (xa, xb) = (coords(ga), coords(gb));
        assert_eq!(xa.len(), xb.len(), "vertex count of feature {i}: {pa} vs {pb}");
        for (u, v) in xa.iter().zip(&xb) {
            assert!(
                (u.0 - v.0).abs() <= 1e-9 && (u.1 - v.1).abs() <= 1e-9,
                "feature {i}: {u:?} vs {v:?} ({pa} vs {pb})"
            );
        }
    }
}

fn error(path: &Path, layer: Option<&str>, class_field: Option<&str>) -> String {
    let e = format!("{:#}", read_labels(path, layer, class_field).expect_err("reading should fail"));
    println!("error: {e}");
    assert!(!e.contains('\n'), "one-line error: {e}");
    e
}

#[test]
fn every_format_reads_the_same_features_as_geojson() {
    let f = convert_all();
    for field in ["kind", "n"] {
        let reference = read_labels(&f.geojson, None, Some(field)).unwrap();
        assert_eq!(reference.features.len(), 4);
        assert_eq!(reference.crs, LabelCrs::Epsg(32616));
        let shp = read_labels(&f.shp, None, Some(field)).unwrap();
        let fgb = read_labels(&f.fgb, None, Some(field)).unwrap();
        let gpkg = read_labels(&f.gpkg, Some("buildings"), Some(field)).unwrap();
        for layer in [&shp, &fgb, &gpkg] {
            // GDAL writes ESRI WKT without an EPSG code into the .prj; FlatGeobuf and GeoPackage keep the code.
            assert_eq!(layer.crs, LabelCrs::Epsg(32616), "{}", layer.path.display());
            assert_same_features(&reference, layer);
        }
        assert_eq!((shp.layer.as_str(), fgb.layer.as_str(), gpkg.layer.as_str()), ("labels", "labels", "buildings"));

        // The indexed FlatGeobuf holds the same features in another order.
        let indexed = read_labels(&f.fgb_indexed, None, Some(field)).unwrap();
        let key = |l: &LabelLayer| {
            let mut v: Vec<String> = l.features.iter().map(|(g, c)| format!("{c:?} {:?}", coords(g))).collect();
            v.sort();
            v
        };
        assert_eq!(key(&indexed), key(&reference));
    }
    let reference = read_labels(&f.geojson, None, Some("kind")).unwrap();
    // The shapes that make ring assembly interesting came through: a hole, a two-part
    // multipolygon whose second part has two holes, exteriors counter-clockwise.
    let (g0, g1) = (&reference.features[0].0, &reference.features[1].0);
    assert_eq!((g0.0.len(), g0.0[0].interiors().len()), (1, 1));
    assert_eq!((g1.0.len(), g1.0[1].interiors().len()), (2, 2));
    assert_eq!(reference.features[2].1, Some(ClassKey::Text("Gebäude".into())));
    use geo::Winding;
    assert!(reference.features.iter().all(|(g, _)| g.0.iter().all(|p| p.exterior().is_ccw())));
    // No class field: every feature is the one class.
    let shp = read_labels(&f.shp, None, None).unwrap();
    assert!(shp.features.iter().all(|(_, c)| c.is_none()));
    assert_eq!(shp.features.len(), 4);
    let _ = &f.dir;
}

#[test]
fn shapefile_errors_name_the_missing_file() {
    let f = convert_all();
    let copy = |name: &str, skip: &str| -> PathBuf {
        let dir = f.dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for ext in ["shp", "shx", "dbf", "prj", "cpg"] {
            if ext != skip && f.shp.with_extension(ext).exists() {
                std::fs::copy(f.shp.with_extension(ext), dir.join(format!("labels.{ext}"))).unwrap();
            }
        }
        dir.join("labels.shp")
    };
    let e = error(&copy("no_dbf", "dbf"), None, Some("kind"));
    assert!(e.contains("labels.shp") && e.contains(".dbf") && e.contains("missing"), "{e}");
    let e = error(&copy("no_shx", "shx"), None, Some("kind"));
    assert!(e.contains("labels.shp") && e.contains(".shx") && e.contains("missing"), "{e}");
    // No .prj: read, but the CRS is undeclared (the export then refuses it, like an undefined GeoPackage CRS).
    let layer = read_labels(&copy("no_prj", "prj"), None, Some("kind")).unwrap();
    assert!(matches!(&layer.crs, LabelCrs::Missing(why) if why.contains(".prj")), "{:?}", layer.crs);

    // Upper-case sidecars, as old DOS-era tools write them.
    let dir = f.dir.join("upper");
    std::fs::create_dir_all(&dir).unwrap();
    for ext in ["shp", "shx", "dbf", "prj"] {
        std::fs::copy(f.shp.with_extension(ext), dir.join(format!("LABELS.{}", ext.to_uppercase()))).unwrap();
    }
    let upper = read_labels(&dir.join("LABELS.SHP"), None, Some("kind")).unwrap();
    assert_same_features(&read_labels(&f.geojson, None, Some("kind")).unwrap(), &upper);

    // Class field errors list the .dbf fields; a long name hints at the 10-character limit.
    let e = error(&f.shp, None, Some("ClassValue"));
    assert!(e.contains("\"ClassValue\"") && e.contains("not found") && e.contains("kind"), "{e}");
    let e = error(&f.shp, None, Some("long_class_name"));
    assert!(e.contains("10 characters") && e.contains("long_class"), "{e}");
    assert_eq!(read_labels(&f.shp, None, Some("long_class")).unwrap().features.len(), 4);

    // A layer name must be the Shapefile's own.
    let e = error(&f.shp, Some("buildings"), Some("kind"));
    assert!(e.contains("\"buildings\"") && e.contains("\"labels\""), "{e}");
    read_labels(&f.shp, Some("labels"), Some("kind")).unwrap();

    // The folder ogr2ogr writes is not itself a label file.
    let e = error(&f.dir.join("upper"), None, None);
    assert!(e.contains("folder") && e.contains("LABELS.SHP"), "{e}");
}

#[test]
fn geopackage_layers_are_chosen_by_name() {
    let f = convert_all();
    let e = error(&f.gpkg, None, Some("kind"));
    assert!(e.contains("two_layers.gpkg") && e.contains("\"buildings\"") && e.contains("\"roads\""), "{e}");
    assert!(e.contains("--label-layer"), "{e}");
    let e = error(&f.gpkg, Some("houses"), Some("kind"));
    assert!(e.contains("\"houses\"") && e.contains("\"buildings\"") && e.contains("\"roads\""), "{e}");
    // SQLite table names ignore case, so GDAL would open this layer too.
    assert_eq!(read_labels(&f.gpkg, Some("BUILDINGS"), Some("kind")).unwrap().layer, "buildings");
    // The line layer is found, and refused for what it holds.
    let e = error(&f.gpkg, Some("roads"), Some("kind"));
    assert!(e.contains("feature 0 of layer roads") && e.contains("LineString"), "{e}");
    // A one-layer GeoPackage needs no name (today's behaviour).
    let one = f.dir.join("one.gpkg");
    ogr2ogr(&["-f", "GPKG", s(&one), s(&f.geojson), "-nln", "buildings"]);
    assert_eq!(read_labels(&one, None, Some("kind")).unwrap().features.len(), 4);
    let e = error(&one, None, Some("ClassValue"));
    assert!(e.contains("\"ClassValue\"") && e.contains("kind") && !e.contains("\"geom\""), "{e}");
}

#[test]
fn unusable_geometries_are_refused_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let crs = json!({"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32616"}});
    let polygon = json!({"type": "Polygon", "coordinates": [square(733_600.0, 3_725_000.0, 10.0, true)]});
    let write = |name: &str, geometries: Vec<Value>| -> PathBuf {
        let features: Vec<Value> = geometries
            .into_iter()
            .map(|g| json!({"type": "Feature", "properties": {"kind": "a"}, "geometry": g}))
            .collect();
        let p = tmp.path().join(name);
        std::fs::write(&p, json!({"type": "FeatureCollection", "crs": crs, "features": features}).to_string()).unwrap();
        p
    };
    // Points: a point Shapefile, and a FlatGeobuf of mixed types (per-feature geometry types).
    let points = write("points.geojson", vec![json!({"type": "Point", "coordinates": [733_600.0, 3_725_000.0]})]);
    let shp = tmp.path().join("points.shp");
    ogr2ogr(&["-f", "ESRI Shapefile", s(&shp), s(&points)]);
    let e = error(&shp, None, Some("kind"));
    assert!(e.contains("points.shp") && e.contains("feature 0 is a Point") && e.contains("Polygon"), "{e}");
    let mixed = write(
        "mixed.geojson",
        vec![
            polygon.clone(),
            json!({"type": "LineString", "coordinates": [[733_600.0, 3_725_000.0], [733_610.0, 3_725_010.0]]}),
        ],
    );
    let fgb = tmp.path().join("mixed.fgb");
    ogr2ogr(&["-f", "FlatGeobuf", "-lco", "SPATIAL_INDEX=NO", s(&fgb), s(&mixed)]);
    let e = error(&fgb, None, Some("kind"));
    assert!(e.contains("mixed.fgb") && e.contains("feature 1 is a LineString"), "{e}");
    let e = error(&mixed, None, Some("kind"));
    assert!(e.contains("feature 1 is a LineString"), "{e}");
    // No geometry: a null shape in the Shapefile (GDAL's FlatGeobuf writer drops such features).
    let nulls = write("nulls.geojson", vec![polygon.clone(), Value::Null]);
    let shp = tmp.path().join("nulls.shp");
    ogr2ogr(&["-f", "ESRI Shapefile", s(&shp), s(&nulls)]);
    let e = error(&shp, None, Some("kind"));
    assert!(e.contains("feature 1 has no geometry"), "{e}");
    assert!(error(&nulls, None, Some("kind")).contains("feature 1 has no geometry"));
    // FlatGeobuf's header CRS, and a layer name check like the other single-layer formats.
    let ok = write("ok.geojson", vec![polygon]);
    let fgb = tmp.path().join("ok.fgb");
    ogr2ogr(&["-f", "FlatGeobuf", s(&fgb), s(&ok)]);
    assert_eq!(read_labels(&fgb, None, Some("kind")).unwrap().crs, LabelCrs::Epsg(32616));
    let e = error(&fgb, Some("other"), Some("kind"));
    assert!(e.contains("\"other\"") && e.contains("\"ok\""), "{e}");
    let e = error(&fgb, None, Some("missing"));
    assert!(e.contains("\"missing\"") && e.contains("kind"), "{e}");
}
