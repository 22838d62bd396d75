mod common;

use std::process::Command;

use geo::{Coord, LineString, MultiPolygon, Polygon};
use maskrcnn_geo::output::*;
use maskrcnn_geo::raster::Crs;

fn square(x: f64, y: f64, s: f64, hole: bool) -> MultiPolygon<f64> {
    let ring = |x0: f64, y0: f64, s: f64, ccw: bool| {
        let mut pts = vec![(x0, y0), (x0 + s, y0), (x0 + s, y0 + s), (x0, y0 + s), (x0, y0)];
        if !ccw {
            pts.reverse();
        }
        LineString::new(pts.into_iter().map(|(x, y)| Coord { x, y }).collect())
    };
    let holes = if hole { vec![ring(x + s / 4.0, y + s / 4.0, s / 2.0, false)] } else { vec![] };
    MultiPolygon::new(vec![Polygon::new(ring(x, y, s, true), holes)])
}

fn sample_features(x0: f64, y0: f64, step: f64) -> Vec<Feature> {
    let mut two_parts = square(x0 + 2.0 * step, y0, step / 2.0, false);
    two_parts.0.extend(square(x0 + 3.0 * step, y0, step / 2.0, false).0);
    vec![
        Feature::new(square(x0, y0, step / 2.0, false), "building", 1, 0.97, "r0c0"),
        Feature::new(square(x0 + step, y0, step / 2.0, true), "building", 1, 0.81, "r0c0;r0c1"),
        Feature::new(two_parts, "solar \"panel\"", 2, 0.5, "r1c1"),
    ]
}

fn ogrinfo() -> Option<&'static str> {
    match Command::new("ogrinfo").arg("--version").output() {
        Ok(o) if o.status.success() => Some("ogrinfo"),
        _ => {
            eprintln!(
                "\n\n!!!!!!!! ogrinfo NOT FOUND: skipping the GDAL cross-check of vector outputs. \
                 Install gdal-bin (apt-get install -y gdal-bin) to run it. !!!!!!!!\n\n"
            );
            None
        }
    }
}

fn ogr_summary(path: &std::path::Path) -> String {
    let out = Command::new("ogrinfo").args(["-ro", "-al", "-so"]).arg(path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ogrinfo failed on {}: {text}", path.display());
    text
}

#[test]
fn all_formats_open_in_gdal_with_crs_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let utm = Crs::from_epsg(32616);
    let wgs = Crs::from_epsg(4326);
    let cases = [
        ("utm", &utm, sample_features(733601.0, 3724700.0, 20.0)),
        ("wgs", &wgs, sample_features(-84.48, 33.63, 0.001)),
    ];
    for (name, crs, feats) in &cases {
        for ext in ["geojson", "fgb", "gpkg"] {
            let path = dir.path().join(format!("{name}.{ext}"));
            write_features(&path, feats, Some(crs), &WriteOptions::default()).unwrap();
            assert!(path.exists());
            // No temp files left behind.
            let leftovers: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
                .collect();
            assert!(leftovers.is_empty());
            // Refuses to overwrite unless asked.
            let err = write_features(&path, feats, Some(crs), &WriteOptions::default()).err().unwrap();
            assert!(format!("{err:#}").contains("already exists"), "{err:#}");
            write_features(&path, &feats[..1], Some(crs), &WriteOptions { overwrite: true, ..Default::default() })
                .unwrap();
            write_features(&path, feats, Some(crs), &WriteOptions { overwrite: true, ..Default::default() }).unwrap();

            if ogrinfo().is_none() {
                continue;
            }
            let info = ogr_summary(&path);
            assert!(info.contains("Feature Count: 3"), "{}: {info}", path.display());
            let code = crs.epsg.unwrap();
            assert!(
                info.contains(&format!("ID[\"EPSG\",{code}]]"))
                    || info.contains(&format!("AUTHORITY[\"EPSG\",\"{code}\"]]")),
                "{}: CRS EPSG:{code} not reported:\n{info}",
                path.display()
            );
            for field in ["class: String", "class_id: Integer", "score: Real", "area: Real", "tile: String"] {
                assert!(info.contains(field), "{}: field {field} missing:\n{info}", path.display());
            }
            // Extent: first square's corner to the last part's corner.
            let full = Command::new("ogrinfo").args(["-ro", "-al"]).arg(&path).output().unwrap();
            let text = String::from_utf8_lossy(&full.stdout);
            assert!(text.contains("solar \"panel\""), "{text}");
            assert!(text.contains("MULTIPOLYGON") || text.contains("POLYGON"), "{text}");
        }
    }
}

#[test]
fn geojson_crs_member_and_rfc7946() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.geojson");
    write_features(
        &p,
        &sample_features(733601.0, 3724700.0, 20.0),
        Some(&Crs::from_epsg(32616)),
        &WriteOptions::default(),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    assert_eq!(v["crs"]["properties"]["name"], "urn:ogc:def:crs:EPSG::32616");
    assert_eq!(v["features"].as_array().unwrap().len(), 3);
    assert_eq!(v["features"][1]["properties"]["area"], 100.0 - 25.0);
    assert_eq!(v["features"][2]["geometry"]["type"], "MultiPolygon");
    let back = geometry_from_geojson(&v["features"][1]["geometry"]).unwrap();
    assert_eq!(back.0[0].interiors().len(), 1);

    let p = dir.path().join("b.geojson");
    write_features(&p, &sample_features(-84.48, 33.63, 0.001), Some(&Crs::from_epsg(4326)), &WriteOptions::default())
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    assert!(v.get("crs").is_none(), "RFC 7946 output has no crs member");
    // Exterior rings counter-clockwise (right-hand rule).
    let ring = v["features"][0]["geometry"]["coordinates"][0].as_array().unwrap();
    let pts: Vec<(f64, f64)> = ring.iter().map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap())).collect();
    let area2: f64 = pts.windows(2).map(|w| w[0].0 * w[1].1 - w[1].0 * w[0].1).sum();
    assert!(area2 > 0.0);
}

#[test]
fn unknown_extension_and_bad_layer_name_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = write_features(&dir.path().join("x.shp"), &[], None, &WriteOptions::default()).err().unwrap();
    assert!(format!("{err:#}").contains("use .geojson, .fgb or .gpkg"));
    let opts = WriteOptions { layer_name: "bad name;".into(), ..Default::default() };
    assert!(write_features(&dir.path().join("x.gpkg"), &[], None, &opts).is_err());
    assert!(!dir.path().join("x.gpkg").exists());
}

#[test]
fn gpkg_without_crs_uses_undefined_cartesian() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("px.gpkg");
    write_features(&p, &sample_features(0.0, 0.0, 10.0), None, &WriteOptions::default()).unwrap();
    let conn = rusqlite::Connection::open(&p).unwrap();
    let srs: i64 = conn.query_row("SELECT srs_id FROM gpkg_geometry_columns", [], |r| r.get(0)).unwrap();
    assert_eq!(srs, -1);
    let n: i64 = conn.query_row("SELECT count(*) FROM detections", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 3);
    let (minx, maxx): (f64, f64) =
        conn.query_row("SELECT min_x, max_x FROM gpkg_contents", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((minx, maxx), (0.0, 35.0));
}

/// A killed run's temporary (`.<name>.tmp-<pid>` of a process that is gone) is removed when the
/// next writer of the same output starts; a live process's is kept.
#[test]
fn stale_temporaries_of_killed_runs_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("scene.geojson");
    let stale = dir.path().join(format!(".scene.geojson.tmp-{}", u32::MAX));
    let live = dir.path().join(".scene.geojson.tmp-1");
    std::fs::write(&stale, b"half").unwrap();
    std::fs::write(&live, b"half").unwrap();
    let tmp = maskrcnn_geo::output::temp_path_for(&target).unwrap();
    assert!(tmp.file_name().unwrap().to_str().unwrap().ends_with(&std::process::id().to_string()));
    assert!(!stale.exists(), "the dead process's temporary is gone");
    if cfg!(target_os = "linux") {
        assert!(live.exists(), "process 1 is alive: its temporary stays");
    }
}
