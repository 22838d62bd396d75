//! CRSs through the binary: `export-chips` reprojects labels to the raster's CRS, and `detect`,
//! `vectorize` and `merge --output-crs` write their outputs in another CRS. Every reprojection is
//! checked against GDAL 3.6's (`ogr2ogr -t_srs` of the output in the raster's CRS) and every output's
//! declared CRS against what `ogrinfo` reads. Data are made with GDAL's tools at test time.

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

fn maskrcnn(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_maskrcnn")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// Every vertex of every feature, in file order.
fn vertices(doc: &Value) -> Vec<Vec<(f64, f64)>> {
    fn walk(v: &Value, out: &mut Vec<(f64, f64)>) {
        match v.as_array() {
            Some(a) if a.len() >= 2 && a[0].is_number() => out.push((a[0].as_f64().unwrap(), a[1].as_f64().unwrap())),
            Some(a) => a.iter().for_each(|x| walk(x, out)),
            None => {}
        }
    }
    doc["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let mut out = Vec::new();
            walk(&f["geometry"]["coordinates"], &mut out);
            out
        })
        .collect()
}

/// Largest vertex distance between two outputs with the same features and vertices, features
/// matched by score (a merge of shards writes the seam-joined objects in another order).
fn max_vertex_difference(ours: &Value, gdal: &Value) -> f64 {
    let by_score = |doc: &Value| {
        let scores = doc["features"].as_array().unwrap().iter().map(|f| f["properties"]["score"].as_f64().unwrap());
        let mut v: Vec<(f64, Vec<(f64, f64)>)> = scores.zip(vertices(doc)).collect();
        v.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.len().cmp(&y.1.len())));
        v.into_iter().map(|(_, f)| f).collect::<Vec<_>>()
    };
    let (a, b) = (by_score(ours), by_score(gdal));
    assert_eq!(a.len(), b.len(), "feature counts differ");
    let mut worst = 0.0f64;
    for (fa, fb) in a.iter().zip(&b) {
        assert_eq!(fa.len(), fb.len(), "vertex counts differ");
        for (p, q) in fa.iter().zip(fb) {
            worst = worst.max((p.0 - q.0).hypot(p.1 - q.1));
        }
    }
    worst
}

/// The CRS `ogrinfo` reads from `path`, as its EPSG id (e.g. `ID["EPSG",27700]`).
fn declared_epsg(path: &Path) -> String {
    let out = Command::new("ogrinfo").args(["-so", "-al", s(path)]).output().expect("ogrinfo");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // The outermost CRS's ID is the last one of its WKT2.
    let wkt_end = text.find("Data axis to CRS axis mapping").unwrap_or(text.len());
    text[..wkt_end].rfind("ID[\"EPSG\",").map(|i| text[i..].split(']').next().unwrap().to_string()).unwrap_or(text)
}

/// An instance-id raster (16 objects on a 4x4 grid, a ring with a hole among them) at 0.5 m in
/// `epsg`, with its upper-left corner at (`x0`, `y0`).
fn label_raster(dir: &Path, epsg: u32, x0: f64, y0: f64) -> PathBuf {
    let mut features = Vec::new();
    for i in 0..16 {
        let (cx, cy) = (x0 + 20.0 + 40.0 * (i % 4) as f64, y0 - 20.0 - 40.0 * (i / 4) as f64);
        let outer = format!(
            "[[{a},{b}],[{c},{b}],[{c},{d}],[{e},{d}],[{e},{f}],[{a},{f}],[{a},{b}]]",
            a = cx - 12.0,
            b = cy - 12.0,
            c = cx + 12.0,
            d = cy + 3.0,
            e = cx + 1.5,
            f = cy + 12.0
        );
        // 64 m²: above --min-area, so the hole stays.
        let hole =
            format!("[[{a},{b}],[{a},{c}],[{d},{c}],[{d},{b}],[{a},{b}]]", a = cx - 8.0, b = cy - 8.0, c = cy, d = cx);
        let rings = if i % 5 == 0 { format!("[{outer},{hole}]") } else { format!("[{outer}]") };
        features.push(format!(
            r#"{{"type":"Feature","properties":{{"id":{}}},"geometry":{{"type":"Polygon","coordinates":{rings}}}}}"#,
            i + 1
        ));
    }
    let labels = dir.join(format!("objects_{epsg}.geojson"));
    std::fs::write(
        &labels,
        format!(
            r#"{{"type":"FeatureCollection","crs":{{"type":"name","properties":{{"name":"urn:ogc:def:crs:EPSG::{epsg}"}}}},"features":[{}]}}"#,
            features.join(",")
        ),
    )
    .unwrap();
    let raster = dir.join(format!("ids_{epsg}.tif"));
    let (x1, y1) = (x0 + 160.0, y0 - 160.0);
    gdal(
        "gdal_rasterize",
        &[
            "-q",
            "-a",
            "id",
            "-ot",
            "UInt16",
            "-tr",
            "0.5",
            "0.5",
            "-te",
            &x0.to_string(),
            &y1.to_string(),
            &x1.to_string(),
            &y0.to_string(),
            "-a_srs",
            &format!("EPSG:{epsg}"),
            s(&labels),
            s(&raster),
        ],
    );
    raster
}

/// `vectorize` in the raster's CRS, then `--output-crs`: the second agrees with GDAL's reprojection
/// of the first, declares its CRS, and keeps the metric options' meaning (areas in m² unchanged).
fn vectorize_agrees_with_gdal(raster_epsg: u32, x0: f64, y0: f64, target: u32, tolerance: f64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let raster = label_raster(dir.path(), raster_epsg, x0, y0);
    let native = dir.path().join("native.geojson");
    let metric = ["--simplify", "0.6", "--min-area", "30"];
    let (ok, err) = maskrcnn(&[&["vectorize", "--labels", s(&raster), "--output", s(&native)][..], &metric].concat());
    assert!(ok, "{err}");
    let ours = dir.path().join(format!("ours_{target}.geojson"));
    let crs = format!("EPSG:{target}");
    let args =
        [&["vectorize", "--labels", s(&raster), "--output", s(&ours), "--output-crs", &crs][..], &metric].concat();
    let (ok, err) = maskrcnn(&args);
    assert!(ok, "{err}");
    let theirs = dir.path().join(format!("gdal_{target}.geojson"));
    gdal("ogr2ogr", &["-t_srs", &crs, "-lco", "COORDINATE_PRECISION=15", s(&theirs), s(&native)]);
    let (ours_doc, native_doc) = (read_json(&ours), read_json(&native));
    assert_eq!(ours_doc["features"].as_array().unwrap().len(), 16);
    let diff = max_vertex_difference(&ours_doc, &read_json(&theirs));
    assert!(diff <= tolerance, "EPSG:{raster_epsg} -> {crs}: vertices {diff} from GDAL's");
    // Areas, --simplify and --min-area were applied in metres in the raster's CRS.
    for (a, b) in ours_doc["features"].as_array().unwrap().iter().zip(native_doc["features"].as_array().unwrap()) {
        assert_eq!(a["properties"]["area"], b["properties"]["area"]);
    }
    // GeoPackage and FlatGeobuf say which CRS they are in.
    for ext in ["gpkg", "fgb"] {
        let out = dir.path().join(format!("ours.{ext}"));
        let (ok, err) = maskrcnn(&["vectorize", "--labels", s(&raster), "--output", s(&out), "--output-crs", &crs]);
        assert!(ok, "{err}");
        assert_eq!(declared_epsg(&out), format!("ID[\"EPSG\",{target}"), "{}", out.display());
    }
    if target != 4326 {
        let geojson_crs = &ours_doc["crs"]["properties"]["name"];
        assert_eq!(geojson_crs, &Value::from(format!("urn:ogc:def:crs:EPSG::{target}")));
    }
    diff
}

#[test]
fn vectorize_output_crs_agrees_with_gdal() {
    // UTM 16N to Web Mercator (metres, 1 mm) and to ETRS89 / Lambert-93 and OSGB 1936 / British
    // National Grid from rasters in their UTM zones (1 cm; the latter through a Helmert shift).
    let d = vectorize_agrees_with_gdal(32616, 612_000.0, 4_701_000.0, 3857, 0.001);
    eprintln!("EPSG:32616 -> EPSG:3857: {d:.2e} m from GDAL");
    let d = vectorize_agrees_with_gdal(32631, 452_000.0, 5_411_000.0, 2154, 0.01);
    eprintln!("EPSG:32631 -> EPSG:2154: {d:.2e} m from GDAL");
    let d = vectorize_agrees_with_gdal(32630, 601_000.0, 5_818_000.0, 27700, 0.01);
    eprintln!("EPSG:32630 -> EPSG:27700: {d:.2e} m from GDAL");
}

#[test]
fn vectorize_wgs84_output_is_rfc7946() {
    let dir = tempfile::tempdir().unwrap();
    let raster = label_raster(dir.path(), 32616, 612_000.0, 4_701_000.0);
    let native = dir.path().join("native.geojson");
    assert!(maskrcnn(&["vectorize", "--labels", s(&raster), "--output", s(&native)]).0);
    let ours = dir.path().join("ours.geojson");
    let (ok, err) = maskrcnn(&["vectorize", "--labels", s(&raster), "--output", s(&ours), "--output-crs", "EPSG:4326"]);
    assert!(ok, "{err}");
    let doc = read_json(&ours);
    assert!(doc.get("crs").is_none(), "RFC 7946 GeoJSON has no crs member");
    let first = vertices(&doc)[0][0];
    assert!((-86.0..-85.0).contains(&first.0) && (42.0..43.0).contains(&first.1), "lon/lat order: {first:?}");
    let theirs = dir.path().join("gdal.geojson");
    gdal("ogr2ogr", &["-t_srs", "EPSG:4326", "-lco", "COORDINATE_PRECISION=15", s(&theirs), s(&native)]);
    let diff = max_vertex_difference(&doc, &read_json(&theirs));
    // 1e-9 degrees is about 0.1 mm.
    assert!(diff < 1e-9, "{diff} degrees from GDAL");
    eprintln!("EPSG:32616 -> EPSG:4326: {diff:.2e} degrees from GDAL");
    // Valid polygons, as GDAL's GEOS sees them.
    let out = Command::new("ogrinfo")
        .args([
            "-q",
            "-dialect",
            "SQLite",
            "-sql",
            "SELECT COUNT(*) AS bad FROM detections WHERE NOT ST_IsValid(geometry)",
        ])
        .arg(&ours)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bad (Integer) = 0"), "{text}");
}

#[test]
fn unknown_output_crs_is_a_one_line_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let raster = label_raster(dir.path(), 32616, 612_000.0, 4_701_000.0);
    let out = dir.path().join("out.gpkg");
    for (crs, says) in [
        ("EPSG:999999", "EPSG:999999 is not in the projection library's EPSG table"),
        ("EPSG:4978", "geocentric"),
        ("+proj=utm +zone=16", "PROJ strings cannot be declared"),
        ("Mars", "not an EPSG code"),
    ] {
        let (ok, err) = maskrcnn(&["vectorize", "--labels", s(&raster), "--output", s(&out), "--output-crs", crs]);
        assert!(!ok && err.contains(says), "{crs}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!out.exists());
    }
}

/// A GeoTIFF of the fixture photograph in UTM 16N, 368x308 at 1 m: 42 tiles of 64 px.
fn scene(dir: &Path) -> PathBuf {
    fixture_scene_tif(&dir.join("scene.tif"), (612000, 4701000))
}

fn detect(raster: &Path, output: &Path, extra: &[&str]) -> (bool, String) {
    let out = detect_r18_tiny(raster, output, &[&["--min-area", "4"], extra].concat()).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn detect_and_merge_write_in_the_output_crs() {
    let dir = tempfile::tempdir().unwrap();
    let raster = scene(dir.path());
    let native = dir.path().join("native.geojson");
    let (ok, err) = detect(&raster, &native, &[]);
    assert!(ok, "{err}");
    let native_doc = read_json(&native);
    assert!(!native_doc["features"].as_array().unwrap().is_empty(), "the fixture model finds objects: {err}");

    let wgs84 = dir.path().join("wgs84.geojson");
    let (ok, err) = detect(&raster, &wgs84, &["--output-crs", "EPSG:4326"]);
    assert!(ok, "{err}");
    let doc = read_json(&wgs84);
    assert!(doc.get("crs").is_none());
    let theirs = dir.path().join("gdal.geojson");
    gdal("ogr2ogr", &["-t_srs", "EPSG:4326", "-lco", "COORDINATE_PRECISION=15", s(&theirs), s(&native)]);
    let diff = max_vertex_difference(&doc, &read_json(&theirs));
    assert!(diff < 1e-9, "{diff} degrees from GDAL");
    for (a, b) in doc["features"].as_array().unwrap().iter().zip(native_doc["features"].as_array().unwrap()) {
        assert_eq!(a["properties"]["area"], b["properties"]["area"], "areas stay in m²");
    }

    // Shards stay in the raster's CRS; the merged file takes --output-crs.
    let (ok, err) = detect(&raster, &dir.path().join("s.jsonl"), &["--shard", "0/2", "--output-crs", "EPSG:3857"]);
    assert!(!ok && err.contains("pass it to `maskrcnn merge`"), "{err}");
    let shards: Vec<PathBuf> = (0..2).map(|k| dir.path().join(format!("shard-{k}.jsonl"))).collect();
    for (k, shard) in shards.iter().enumerate() {
        let (ok, err) = detect(&raster, shard, &["--shard", &format!("{k}/2")]);
        assert!(ok, "{err}");
    }
    let merged = dir.path().join("merged.gpkg");
    let (ok, err) = maskrcnn(&[
        "merge",
        "--inputs",
        s(&shards[0]),
        s(&shards[1]),
        "--output",
        s(&merged),
        "--output-crs",
        "EPSG:3857",
    ]);
    assert!(ok, "{err}");
    assert_eq!(declared_epsg(&merged), "ID[\"EPSG\",3857");
    let merged_json = dir.path().join("merged.geojson");
    gdal("ogr2ogr", &["-lco", "COORDINATE_PRECISION=15", s(&merged_json), s(&merged)]);
    let theirs = dir.path().join("gdal3857.geojson");
    gdal("ogr2ogr", &["-t_srs", "EPSG:3857", "-lco", "COORDINATE_PRECISION=15", s(&theirs), s(&native)]);
    let diff = max_vertex_difference(&read_json(&merged_json), &read_json(&theirs));
    assert!(diff < 0.001, "{diff} m from GDAL");
}

/// Labels drawn in the raster's CRS, then reprojected by GDAL to WGS 84 (GeoJSON, GeoPackage) and
/// Web Mercator (Shapefile): chips from each are those from the originals.
#[test]
fn export_chips_reprojects_labels_to_the_raster_crs() {
    let dir = tempfile::tempdir().unwrap();
    let raster = scene(dir.path());
    let mut features = Vec::new();
    for i in 0..12 {
        let (x, y) = (612_010.3 + 29.0 * (i % 6) as f64 * 2.0, 4_700_990.2 - 70.0 * (i / 6) as f64 * 2.0);
        features.push(format!(
            r#"{{"type":"Feature","properties":{{"kind":"{}"}},"geometry":{{"type":"Polygon","coordinates":[[[{x},{y}],[{},{y}],[{},{}],[{x},{}],[{x},{y}]]]}}}}"#,
            if i % 2 == 0 { "roof" } else { "tank" },
            x + 31.7,
            x + 31.7,
            y - 27.9,
            y - 27.9,
        ));
    }
    let utm = dir.path().join("labels_utm.geojson");
    std::fs::write(
        &utm,
        format!(
            r#"{{"type":"FeatureCollection","crs":{{"type":"name","properties":{{"name":"urn:ogc:def:crs:EPSG::32616"}}}},"features":[{}]}}"#,
            features.join(",")
        ),
    )
    .unwrap();
    let wgs84 = dir.path().join("labels_4326.geojson");
    gdal("ogr2ogr", &["-t_srs", "EPSG:4326", "-lco", "COORDINATE_PRECISION=15", s(&wgs84), s(&utm)]);
    let gpkg = dir.path().join("labels_4326.gpkg");
    gdal("ogr2ogr", &["-t_srs", "EPSG:4326", s(&gpkg), s(&utm)]);
    let shp = dir.path().join("labels_3857.shp");
    gdal("ogr2ogr", &["-t_srs", "EPSG:3857", s(&shp), s(&utm)]);

    let export = |labels: &Path, name: &str| -> Value {
        let out = dir.path().join(name);
        let (ok, err) = maskrcnn(&[
            "export-chips",
            "--raster",
            s(&raster),
            "--labels",
            s(labels),
            "--class-field",
            "kind",
            "--output",
            s(&out),
            "--tile-size",
            "128",
            "--format",
            "coco",
        ]);
        assert!(ok, "{name}: {err}");
        read_json(&out.join("annotations.json"))
    };
    let reference = export(&utm, "chips_utm");
    let annotations = |doc: &Value| doc["annotations"].as_array().unwrap().clone();
    assert!(annotations(&reference).len() >= 12);
    for (labels, name) in [(&wgs84, "chips_4326"), (&gpkg, "chips_gpkg"), (&shp, "chips_3857")] {
        let doc = export(labels, name);
        assert_eq!(doc["images"], reference["images"], "{name}");
        let (a, b) = (annotations(&doc), annotations(&reference));
        assert_eq!(a.len(), b.len(), "{name}");
        let mut worst = 0.0f64;
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x["category_id"], y["category_id"]);
            let (px, py) = (x["segmentation"][0].as_array().unwrap(), y["segmentation"][0].as_array().unwrap());
            assert_eq!(px.len(), py.len(), "{name}: vertex count");
            for (u, v) in px.iter().zip(py) {
                worst = worst.max((u.as_f64().unwrap() - v.as_f64().unwrap()).abs());
            }
        }
        // Chip pixels are 1 m: a millionth of a pixel is GDAL's round trip.
        assert!(worst < 1e-4, "{name}: {worst} px from the labels drawn in the raster's CRS");
        eprintln!("{name}: {worst:.2e} px");
    }

    // Labels whose CRS is not stated against a raster that has one are still refused.
    let bare = dir.path().join("bare.shp");
    gdal("ogr2ogr", &[s(&bare), s(&utm)]);
    std::fs::remove_file(dir.path().join("bare.prj")).unwrap();
    let out = dir.path().join("chips_bare");
    let (ok, err) = maskrcnn(&[
        "export-chips",
        "--raster",
        s(&raster),
        "--labels",
        s(&bare),
        "--output",
        s(&out),
        "--format",
        "coco",
    ]);
    assert!(!ok && err.contains("undeclared CRS"), "{err}");
    assert!(!out.exists());
}
