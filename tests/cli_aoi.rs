//! `detect --aoi` through the binary: only the tiles the area of interest touches are read, objects
//! are cut at its boundary, an AOI in another CRS is reprojected, and an AOI outside the raster or
//! without polygons is a one-line error that writes nothing. Data are made with GDAL at test time.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use common::{detect_r18_tiny, fixture_scene_tif};

fn gdal(tool: &str, args: &[&str]) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|_| panic!("this test needs GDAL's {tool} (Debian package gdal-bin; .ci/run installs it)"));
    assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The fixture photograph in UTM 16N at 1 m, 368x308 pixels from (612000, 4701000): 42 tiles of
/// 64 px with 8 px of overlap, tile columns starting at x = 0, 56, 112, 168, ...
fn scene(dir: &Path) -> PathBuf {
    fixture_scene_tif(&dir.join("scene.tif"), (612000, 4701000))
}

fn detect(raster: &Path, output: &Path, extra: &[&str]) -> (bool, String) {
    let out = detect_r18_tiny(raster, output, extra).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn polygons_file(dir: &Path, name: &str, geometry: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            r#"{{"type":"FeatureCollection","crs":{{"type":"name","properties":{{"name":"urn:ogc:def:crs:EPSG::32616"}}}},"features":[{{"type":"Feature","properties":{{}},"geometry":{geometry}}}]}}"#
        ),
    )
    .unwrap();
    path
}

fn features(path: &Path) -> Vec<Value> {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["features"].as_array().unwrap().clone()
}

fn xs(feature: &Value) -> Vec<f64> {
    fn walk(v: &Value, out: &mut Vec<f64>) {
        match v.as_array() {
            Some(a) if a.len() >= 2 && a[0].is_number() => out.push(a[0].as_f64().unwrap()),
            Some(a) => a.iter().for_each(|x| walk(x, out)),
            None => {}
        }
    }
    let mut out = Vec::new();
    walk(&feature["geometry"]["coordinates"], &mut out);
    out
}

#[test]
fn detect_reads_only_the_tiles_the_aoi_touches_and_cuts_objects_at_its_edge() {
    let dir = tempfile::tempdir().unwrap();
    let raster = scene(dir.path());
    let reference = dir.path().join("all.geojson");
    let (ok, err) = detect(&raster, &reference, &[]);
    assert!(ok, "{err}");
    assert!(err.contains("42 tiles (0 skipped"), "{err}");

    // The raster's left 150 m, drawn in UTM and handed over in WGS 84 (GeoJSON) and Web Mercator
    // (GeoPackage): tile columns 0..=2 touch it, so 18 of the 42 tiles are read.
    let utm = polygons_file(
        dir.path(),
        "aoi_utm.geojson",
        r#"{"type":"Polygon","coordinates":[[[611900,4701100],[612150,4701100],[612150,4700600],[611900,4700600],[611900,4701100]]]}"#,
    );
    let wgs84 = dir.path().join("aoi_4326.geojson");
    gdal("ogr2ogr", &["-t_srs", "EPSG:4326", "-lco", "COORDINATE_PRECISION=15", s(&wgs84), s(&utm)]);
    let mercator = dir.path().join("aoi_3857.gpkg");
    gdal("ogr2ogr", &["-t_srs", "EPSG:3857", s(&mercator), s(&utm)]);

    let clipped = dir.path().join("aoi.geojson");
    let (ok, err) = detect(&raster, &clipped, &["--aoi", s(&wgs84)]);
    assert!(ok, "{err}");
    assert!(err.contains("18 tiles (24 skipped"), "{err}");
    let inside = features(&clipped);
    assert!(!inside.is_empty(), "objects inside the AOI: {err}");
    for f in &inside {
        let max_x = xs(f).into_iter().fold(f64::MIN, f64::max);
        assert!(max_x <= 612150.0 + 1e-6, "an object reaches x = {max_x}, beyond the AOI's 612150");
    }
    // Objects well inside the AOI are those of the whole-raster run, untouched.
    let far_inside = |f: &&Value| xs(f).into_iter().all(|x| x < 612100.0);
    let all = features(&reference);
    let geometries = |v: &[Value]| {
        let mut g: Vec<String> = v.iter().filter(far_inside).map(|f| f["geometry"].to_string()).collect();
        g.sort();
        g
    };
    let expected = geometries(&all);
    assert!(!expected.is_empty());
    assert_eq!(geometries(&inside), expected);
    // Objects of the whole run crossing x = 150 m come out cut there.
    let crossing = all
        .iter()
        .filter(|f| {
            let x = xs(f);
            x.iter().any(|&v| v < 612140.0) && x.iter().any(|&v| v > 612160.0)
        })
        .count();
    if crossing > 0 {
        assert!(inside.iter().any(|f| xs(f).contains(&612150.0)), "no object cut at the AOI boundary");
    }

    // The same AOI in Web Mercator, in a GeoPackage: the same result.
    let from_gpkg = dir.path().join("aoi_gpkg.geojson");
    let (ok, err) = detect(&raster, &from_gpkg, &["--aoi", s(&mercator)]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read(&from_gpkg).unwrap(), std::fs::read(&clipped).unwrap());
}

#[test]
fn a_bad_aoi_is_a_one_line_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let raster = scene(dir.path());
    let out = dir.path().join("out.geojson");
    let outside = polygons_file(
        dir.path(),
        "far.geojson",
        r#"{"type":"Polygon","coordinates":[[[622000,4701000],[622100,4701000],[622100,4700900],[622000,4701000]]]}"#,
    );
    let line = polygons_file(
        dir.path(),
        "line.geojson",
        r#"{"type":"LineString","coordinates":[[612000,4701000],[612100,4700900]]}"#,
    );
    let missing = dir.path().join("missing.gpkg");
    for (aoi, says) in [
        (&outside, "does not overlap raster"),
        (&line, "is a LineString; only Polygon or MultiPolygon"),
        (&missing, "missing.gpkg"),
    ] {
        let (ok, err) = detect(&raster, &out, &["--aoi", s(aoi)]);
        assert!(!ok && err.contains(says) && err.contains("--aoi"), "{}: {err}", aoi.display());
        assert_eq!(err.trim().lines().filter(|l| !l.starts_with("warning:")).count(), 1, "{err}");
        assert!(!out.exists(), "nothing written");
        assert!(!dir.path().join("out.geojson.journal").exists(), "no journal left");
    }
}
