//! Every output in the CRS its raster states, as GDAL reads it: rasters made with `gdal_create
//! -a_srs X`, read by us, written to GeoJSON, FlatGeobuf and GeoPackage, and each output's CRS
//! compared with the raster's (`gdalsrsinfo -o proj4`, which normalises away names and axis
//! order). Also pixel-coordinate outputs, ground control points, and `.aux.xml`/`.prj` sidecars.

use std::path::{Path, PathBuf};
use std::process::Command;

use geo::{Coord, LineString, MultiPolygon, Polygon};
use maskrcnn_geo::output::{create_writer, crs_warning, write_features, Feature, WriteOptions, PIXEL_CRS_WKT};
use maskrcnn_geo::raster::{Crs, GeoTiff, GeoTransform};

fn tool(name: &str, args: &[&str]) -> String {
    let out = Command::new(name).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {name} ({e}): these tests need GDAL's tools; install gdal-bin (apt-get install gdal-bin)")
    });
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{name} {args:?} failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

fn proj4(path: &Path) -> String {
    tool("gdalsrsinfo", &["-o", "proj4", path.to_str().unwrap()]).trim().to_string()
}

fn square(x: f64, y: f64, s: f64) -> Vec<Feature> {
    let ring = LineString::new(
        [(x, y), (x + s, y), (x + s, y + s), (x, y + s), (x, y)].into_iter().map(|(x, y)| Coord { x, y }).collect(),
    );
    vec![Feature::new(MultiPolygon::new(vec![Polygon::new(ring, vec![])]), "building", 1, 0.9, "r0c0")]
}

/// A 16x16 raster in `srs` covering (ulx, uly)..(lrx, lry).
fn raster(dir: &Path, name: &str, srs: Option<&str>, ullr: Option<[f64; 4]>) -> PathBuf {
    let path = dir.join(format!("{name}.tif"));
    let mut args: Vec<String> =
        ["-q", "-of", "GTiff", "-outsize", "16", "16", "-bands", "1"].map(String::from).to_vec();
    if let Some(srs) = srs {
        args.extend(["-a_srs".into(), srs.into()]);
    }
    if let Some(b) = ullr {
        args.push("-a_ullr".into());
        args.extend(b.iter().map(|v| v.to_string()));
    }
    args.push(path.to_str().unwrap().into());
    tool("gdal_create", &args.iter().map(String::as_str).collect::<Vec<_>>());
    path
}

/// The CRSs of the issue, then one user-defined CRS per projection method GDAL writes as GeoKeys.
const CRSS: &[(&str, &str)] = &[
    ("esri102003_albers", "ESRI:102003"),
    ("moon", "IAU_2015:30100"),
    ("mollweide", "ESRI:54009"),
    ("user_tm", "+proj=tmerc +lat_0=10 +lon_0=-5 +k=0.9995 +x_0=200000 +y_0=100000 +ellps=intl +units=m +no_defs"),
    ("utm16n", "EPSG:32616"),
    ("merc1sp", "+proj=merc +lon_0=10 +k=0.99 +x_0=100 +y_0=200 +datum=WGS84"),
    ("merc2sp", "+proj=merc +lon_0=10 +lat_ts=30 +x_0=100 +y_0=200 +ellps=GRS80"),
    ("lcc1sp", "+proj=lcc +lat_1=45 +lat_0=45 +lon_0=3 +k_0=0.9995 +x_0=700000 +y_0=600000 +ellps=GRS80"),
    (
        "lcc2sp",
        "+proj=lcc +lat_1=44 +lat_2=49 +lat_0=46.5 +lon_0=3 +x_0=700000 +y_0=6600000 +ellps=GRS80 +towgs84=0,0,0",
    ),
    ("laea", "+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80"),
    ("polar_stereo_b", "+proj=stere +lat_0=90 +lat_ts=70 +lon_0=-45 +x_0=0 +y_0=0 +datum=WGS84"),
    ("polar_stereo_a", "+proj=stere +lat_0=-90 +k=0.994 +lon_0=0 +x_0=2000000 +y_0=2000000 +datum=WGS84"),
    ("oblique_stereo", "+proj=sterea +lat_0=52.15 +lon_0=5.38 +k=0.9999079 +x_0=155000 +y_0=463000 +ellps=bessel"),
    ("equirectangular", "+proj=eqc +lat_ts=20 +lat_0=0 +lon_0=10 +x_0=0 +y_0=0 +datum=WGS84"),
    ("sinusoidal", "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181"),
    ("cea", "+proj=cea +lat_ts=30 +lon_0=0 +x_0=0 +y_0=0 +datum=WGS84"),
    ("aeqd", "+proj=aeqd +lat_0=40 +lon_0=-100 +x_0=0 +y_0=0 +datum=WGS84"),
    (
        "hotine_a",
        "+proj=omerc +lat_0=4 +lonc=102.25 +alpha=323.0257905 +k=0.99984 +x_0=804671 +y_0=0 +no_uoff \
         +gamma=323.1301023611111 +ellps=evrst69",
    ),
    (
        "hotine_b",
        "+proj=omerc +lat_0=4 +lonc=115 +alpha=53.31582047 +gamma=53.13010236 +k=0.99984 +x_0=590476.87 \
         +y_0=442857.65 +ellps=evrst69",
    ),
    (
        "cassini_links",
        "+proj=cass +lat_0=10.44166666666667 +lon_0=-61.33333333333334 +x_0=86501.46392052001 +y_0=65379.0134283 \
         +a=6378293.645208759 +b=6356617.987679838 +to_meter=0.201166195164",
    ),
    ("polyconic", "+proj=poly +lat_0=0 +lon_0=-54 +x_0=5000000 +y_0=10000000 +ellps=aust_SA"),
    ("orthographic", "+proj=ortho +lat_0=40 +lon_0=-100 +x_0=0 +y_0=0 +datum=WGS84"),
    ("robinson", "+proj=robin +lon_0=0 +x_0=0 +y_0=0 +datum=WGS84"),
    ("miller", "+proj=mill +lat_0=0 +lon_0=0 +x_0=0 +y_0=0 +R_A +datum=WGS84"),
    ("nzmg", "+proj=nzmg +lat_0=-41 +lon_0=173 +x_0=2510000 +y_0=6023150 +ellps=intl"),
    ("vandergrinten", "+proj=vandg +lon_0=0 +x_0=0 +y_0=0 +R_A +datum=WGS84"),
    ("gnomonic", "+proj=gnom +lat_0=90 +lon_0=0 +x_0=0 +y_0=0 +datum=WGS84"),
    ("equidistant_conic", "+proj=eqdc +lat_0=0 +lon_0=0 +lat_1=20 +lat_2=60 +x_0=0 +y_0=0 +datum=WGS84"),
    (
        "tm_us_feet_nad83",
        "+proj=tmerc +lat_0=31 +lon_0=-81 +k=0.9999 +x_0=200000.0001016 +y_0=0 +datum=NAD83 +units=us-ft",
    ),
    ("tm_feet_nad27", "+proj=tmerc +lat_0=31 +lon_0=-81 +k=0.9999 +x_0=200000 +y_0=0 +datum=NAD27 +units=ft"),
    ("utm31_intl", "+proj=utm +zone=31 +ellps=intl +units=m"),
    ("utm33s_paris", "+proj=utm +zone=33 +south +datum=WGS84 +units=m +pm=paris"),
    ("geographic_ferro", "+proj=longlat +ellps=bessel +pm=ferro"),
    ("gda2020", "EPSG:7844"),
    // Angles in grads: GeoTIFF keeps projection parameters in degrees, WKT1 in the GEOGCS unit.
    (
        "lcc_grads",
        "PROJCS[\"lcc grads\",GEOGCS[\"g\",DATUM[\"d\",SPHEROID[\"Clarke 1880 (IGN)\",6378249.2,293.466021293627]],\
         PRIMEM[\"Greenwich\",0],UNIT[\"grad\",0.015707963267949]],PROJECTION[\"Lambert_Conformal_Conic_1SP\"],\
         PARAMETER[\"latitude_of_origin\",52],PARAMETER[\"central_meridian\",0],PARAMETER[\"scale_factor\",0.99987742],\
         PARAMETER[\"false_easting\",600000],PARAMETER[\"false_northing\",2200000],UNIT[\"metre\",1]]",
    ),
];

#[test]
fn gdal_reads_each_output_in_the_rasters_crs() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut verified = Vec::new();
    for &(name, srs) in CRSS {
        let geographic = srs.contains("longlat") || srs.starts_with("IAU") || srs == "EPSG:7844";
        let (ullr, size) =
            if geographic { ([10.0, 20.0, 10.16, 19.84], 0.02) } else { ([1000.0, 2000.0, 1160.0, 1840.0], 20.0) };
        let tif = raster(dir.path(), name, Some(srs), Some(ullr));
        let want = proj4(&tif);
        let info = GeoTiff::open(&tif).unwrap().info().clone();
        let crs = info.crs.clone().unwrap_or_else(|| panic!("{name}: no CRS read from {}", tif.display()));
        if !crs.is_described() {
            failures.push(format!("{name} ({srs}): not described: {}", crs.describe()));
            continue;
        }
        for ext in ["geojson", "fgb", "gpkg"] {
            let out = dir.path().join(format!("{name}.{ext}"));
            let sink = create_writer(&out, Some(&crs), &WriteOptions::default()).unwrap();
            assert_eq!(sink.crs_warning(), None, "{name}.{ext}");
            drop(sink);
            write_features(&out, &square(ullr[0] + size, ullr[3] + size, size), Some(&crs), &WriteOptions::default())
                .unwrap();
            let got = proj4(&out);
            if got != want {
                failures
                    .push(format!("{name}.{ext} ({srs}, ours {}):\n  raster {want}\n  output {got}", crs.describe()));
            }
        }
        verified.push(format!("{name}: {} -> {want}", crs.describe()));
    }
    eprintln!("verified:\n  {}", verified.join("\n  "));
    assert!(
        failures.is_empty(),
        "GDAL reads a different CRS from {} output(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn an_outputs_point_reprojects_as_the_rasters_does() {
    // A stricter check than comparing PROJ strings for one case: the same point through GDAL's
    // reprojection from the raster's CRS and from the GeoPackage's.
    let dir = tempfile::tempdir().unwrap();
    let tif = raster(dir.path(), "albers", Some("ESRI:102003"), Some([1000.0, 2000.0, 1160.0, 1840.0]));
    let crs = GeoTiff::open(&tif).unwrap().info().crs.clone().unwrap();
    let gpkg = dir.path().join("albers.gpkg");
    write_features(&gpkg, &square(500000.0, 300000.0, 10.0), Some(&crs), &WriteOptions::default()).unwrap();
    let wgs = dir.path().join("wgs.geojson");
    tool("ogr2ogr", &["-t_srs", "EPSG:4326", wgs.to_str().unwrap(), gpkg.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&wgs).unwrap()).unwrap();
    // The first position, whether ogr2ogr wrote a Polygon or a MultiPolygon.
    let mut p = &v["features"][0]["geometry"]["coordinates"];
    while p[0].is_array() {
        p = &p[0];
    }
    let (lon, lat) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
    // The raster's CRS as GDAL reads it from the file.
    let raster_wkt = tool("gdalsrsinfo", &["-o", "wkt1", "--single-line", tif.to_str().unwrap()]);
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("echo 500000 300000 | gdaltransform -output_xy -s_srs '{}' -t_srs EPSG:4326", raster_wkt.trim()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let xy: Vec<f64> = text.split_whitespace().map(|t| t.parse().unwrap()).collect();
    assert!((xy[0] - lon).abs() < 1e-9 && (xy[1] - lat).abs() < 1e-9, "{xy:?} vs ({lon}, {lat})");
    assert!((-100.0..-80.0).contains(&lon) && (35.0..45.0).contains(&lat), "({lon}, {lat}) is not in the US");
}

fn ogr_srs(path: &Path) -> String {
    tool("ogrinfo", &["-ro", "-so", "-al", path.to_str().unwrap()])
}

#[test]
fn pixel_coordinate_outputs_are_not_taken_for_wgs84() {
    let dir = tempfile::tempdir().unwrap();
    // No georeferencing at all, and a CRS without a geotransform: both are pixel space.
    for (name, srs) in [("plain", None), ("crs_only", Some("EPSG:32616"))] {
        let tif = raster(dir.path(), name, srs, None);
        let info = GeoTiff::open(&tif).unwrap().info().clone();
        assert_eq!(info.geotransform, None, "{name}");
        assert_eq!(info.crs, None, "{name}: pixel coordinates must not be labelled with a CRS");
        for ext in ["geojson", "fgb", "gpkg"] {
            let out = dir.path().join(format!("{name}.{ext}"));
            write_features(&out, &square(2.0, 3.0, 4.0), info.crs.as_ref(), &WriteOptions::default()).unwrap();
            let text = ogr_srs(&out);
            if ext == "gpkg" {
                // srs_id -1: GeoPackage's "undefined cartesian", an engineering CRS to GDAL.
                assert!(text.contains("ENGCRS[\"Undefined Cartesian SRS\""), "{name}.{ext}:\n{text}");
            } else {
                assert!(text.contains("ENGCRS[\"pixel coordinates (y down)\""), "{name}.{ext}:\n{text}");
                assert!(text.contains("LENGTHUNIT[\"pixel\",1]") && text.contains("south"), "{name}.{ext}:\n{text}");
            }
            assert!(!text.contains("WGS 84"), "{name}.{ext}:\n{text}");
        }
    }
    assert!(PIXEL_CRS_WKT.starts_with("LOCAL_CS["));
}

/// A 100x80 raster with GCPs as `gdal_translate -gcp` writes them (ModelTiepoints, no scale).
fn gcp_raster(dir: &Path, name: &str, gcps: &[(f64, f64, f64, f64)]) -> PathBuf {
    gcp_raster_with(dir, name, gcps, &[])
}

fn gcp_raster_with(dir: &Path, name: &str, gcps: &[(f64, f64, f64, f64)], extra: &[&str]) -> PathBuf {
    let base = dir.join("base.tif");
    if !base.exists() {
        tool("gdal_create", &["-q", "-of", "GTiff", "-outsize", "100", "80", "-bands", "1", base.to_str().unwrap()]);
    }
    let out = dir.join(format!("{name}.tif"));
    let mut args: Vec<String> = vec!["-q".into(), "-a_srs".into(), "EPSG:32616".into()];
    args.extend(extra.iter().map(|a| a.to_string()));
    for g in gcps {
        args.push("-gcp".into());
        args.extend([g.0, g.1, g.2, g.3].iter().map(|v| v.to_string()));
    }
    args.extend([base.to_str().unwrap().to_string(), out.to_str().unwrap().to_string()]);
    tool("gdal_translate", &args.iter().map(String::as_str).collect::<Vec<_>>());
    out
}

#[test]
fn affine_gcps_are_fitted_and_others_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A rotated, sheared 2 m grid.
    let truth = GeoTransform([733601.0, 2.0, 0.3, 3725139.0, 0.4, -2.0]);
    let pts = [(0.0, 0.0), (100.0, 0.0), (0.0, 80.0), (100.0, 80.0), (37.0, 55.0)];
    let gcps: Vec<_> = pts
        .iter()
        .map(|&(c, r)| {
            let (x, y) = truth.pixel_to_map(c, r);
            (c, r, x, y)
        })
        .collect();
    let tif = gcp_raster(dir.path(), "affine", &gcps);
    assert!(tool("gdalinfo", &[tif.to_str().unwrap()]).contains("GCP Projection"), "not a GCP raster");
    let info = GeoTiff::open(&tif).unwrap().info().clone();
    let gt = info.geotransform.expect("affine GCPs give a geotransform");
    for (a, b) in gt.0.iter().zip(truth.0) {
        assert!((a - b).abs() < 1e-6, "fitted {:?}, truth {:?}", gt.0, truth.0);
    }
    assert_eq!(info.crs.as_ref().and_then(|c| c.epsg), Some(32616));
    // PixelIsPoint: GDAL stores the GCPs half a pixel off and reads them back where they were.
    let point = gcp_raster_with(dir.path(), "point", &gcps, &["-mo", "AREA_OR_POINT=Point"]);
    assert!(tool("gdalinfo", &[point.to_str().unwrap()]).contains("AREA_OR_POINT=Point"));
    let point_gt = GeoTiff::open(&point).unwrap().info().geotransform.unwrap();
    for (a, b) in point_gt.0.iter().zip(truth.0) {
        assert!((a - b).abs() < 1e-6, "PixelIsPoint: fitted {:?}, truth {:?}", point_gt.0, truth.0);
    }
    // GDAL's own affine warp of the file lands on the same grid: its corner is our corner.
    let warped = dir.path().join("warped.tif");
    tool("gdalwarp", &["-q", "-order", "1", tif.to_str().unwrap(), warped.to_str().unwrap()]);
    let warped_info = GeoTiff::open(&warped).unwrap().info().clone();
    let (minx, _, _, maxy) = info.map_bounds();
    let (wminx, _, _, wmaxy) = warped_info.map_bounds();
    assert!((minx - wminx).abs() < 2.0 && (maxy - wmaxy).abs() < 2.0, "ours {minx},{maxy}; gdalwarp {wminx},{wmaxy}");

    // Move one point 6 pixels: no affine transform fits, so the file is refused with the fix.
    let mut bent = gcps.clone();
    bent[3].2 += 12.0;
    let tif = gcp_raster(dir.path(), "bent", &bent);
    let err = format!("{:#}", GeoTiff::open(&tif).err().expect("non-affine GCPs are refused"));
    assert!(err.contains("bent.tif") && err.contains("not affine"), "{err}");
    assert!(err.contains("gdalwarp -order 1") && err.contains("gdalwarp -tps"), "{err}");
    assert!(err.contains("pixels"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");

    let tif = gcp_raster(dir.path(), "two", &gcps[..2]);
    let err = format!("{:#}", GeoTiff::open(&tif).err().expect("two GCPs are refused"));
    assert!(err.contains("two.tif") && err.contains("at least 3"), "{err}");
}

#[test]
fn sidecars_state_the_crs_as_gdal_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    // .aux.xml takes precedence over the GeoKeys, as in GDAL.
    let tif = raster(dir.path(), "pam", Some("EPSG:32616"), Some([1000.0, 2000.0, 1160.0, 1840.0]));
    let wkt = tool("gdalsrsinfo", &["-o", "wkt1", "--single-line", "EPSG:32617"]);
    let escaped = wkt.trim().replace('&', "&amp;").replace('"', "&quot;");
    std::fs::write(
        dir.path().join("pam.tif.aux.xml"),
        format!("<PAMDataset>\n  <SRS dataAxisToSRSAxisMapping=\"1,2\">{escaped}</SRS>\n</PAMDataset>\n"),
    )
    .unwrap();
    let crs = GeoTiff::open(&tif).unwrap().info().crs.clone().unwrap();
    assert_eq!(crs.epsg, Some(32617), "{crs:?}");
    assert_eq!(proj4(&tif), "+proj=utm +zone=17 +datum=WGS84 +units=m +no_defs");

    // A .prj beside a raster without a CRS (Esri WKT, which GDAL reads as such).
    let tif = raster(dir.path(), "noprj", None, Some([1000.0, 2000.0, 1160.0, 1840.0]));
    let esri = tool("gdalsrsinfo", &["-o", "wkt_esri", "--single-line", "ESRI:102003"]);
    let prj = dir.path().join("noprj.prj");
    std::fs::write(&prj, esri.trim()).unwrap();
    let crs = GeoTiff::open(&tif).unwrap().info().crs.clone().unwrap();
    assert!(crs.is_described() && crs.epsg.is_none(), "{crs:?}");
    let gpkg = dir.path().join("noprj.gpkg");
    write_features(&gpkg, &square(1010.0, 1850.0, 10.0), Some(&crs), &WriteOptions::default()).unwrap();
    assert_eq!(proj4(&gpkg), proj4(&prj));

    std::fs::write(&prj, "not a crs").unwrap();
    let err = format!("{:#}", GeoTiff::open(&tif).err().unwrap());
    assert!(err.contains("noprj.prj") && err.contains("not a WKT"), "{err}");
}

#[test]
fn a_crs_that_cannot_be_described_is_warned_about_and_not_taken_for_wgs84() {
    let dir = tempfile::tempdir().unwrap();
    let crs = Crs {
        citation: Some("Laborde Grid".into()),
        unresolved: Some(
            "projection method ProjCoordTransGeoKey 4 (Oblique Mercator, Laborde) is not supported".into(),
        ),
        ..Crs::default()
    };
    for ext in ["geojson", "fgb", "gpkg"] {
        let out = dir.path().join(format!("laborde.{ext}"));
        let mut sink = create_writer(&out, Some(&crs), &WriteOptions::default()).unwrap();
        let warning = sink.crs_warning().map(str::to_string).expect("a warning");
        assert_eq!(Some(warning.clone()), crs_warning(&out, Some(&crs)));
        assert!(warning.contains("Laborde Grid") && warning.contains("ogr2ogr -a_srs"), "{warning}");
        assert!(!warning.contains('\n') && !warning.contains("  "), "{warning}");
        for f in square(0.0, 0.0, 1.0) {
            sink.write(&f).unwrap();
        }
        sink.finish().unwrap();
        let text = ogr_srs(&out);
        assert!(!text.contains("WGS 84"), "{ext}:\n{text}");
    }
    assert_eq!(crs_warning(Path::new("x.gpkg"), None), None);
    assert_eq!(crs_warning(Path::new("x.gpkg"), Some(&Crs::from_epsg(32616))), None);
}

#[test]
fn shard_headers_without_the_new_field_still_load() {
    // `Crs` is stored in shard headers written before `unresolved` existed.
    let old = r#"{"epsg":null,"wkt":"PROJCS[\"x\"]","citation":"x"}"#;
    let crs: Crs = serde_json::from_str(old).unwrap();
    assert_eq!(crs.unresolved, None);
    assert_eq!(crs.wkt.as_deref(), Some("PROJCS[\"x\"]"));
}

/// `--min-area`/`--simplify` are metres: the units come with the CRS read from the raster, for
/// an EPSG code in US feet (from ProjLinearUnitsGeoKey), a WKT-described CRS, degrees, the Moon.
#[test]
fn map_units_of_the_rasters_crs() {
    use maskrcnn_geo::MapUnits;
    let dir = tempfile::tempdir().unwrap();
    let units = |name: &str, srs: &str, ullr: [f64; 4]| {
        let path = raster(dir.path(), name, Some(srs), Some(ullr));
        MapUnits::of_crs(GeoTiff::open(&path).unwrap().info().crs.as_ref())
    };
    let us_foot = 0.3048006096012192;
    match units("ny_ftus", "EPSG:2263", [980000.0, 200000.0, 980016.0, 199984.0]) {
        MapUnits::Linear { metres_per_unit } => assert!((metres_per_unit - us_foot).abs() < 1e-12),
        other => panic!("EPSG:2263 is in US feet, got {other:?}"),
    }
    assert_eq!(units("utm", "EPSG:32616", [700000.0, 3700016.0, 700016.0, 3700000.0]), MapUnits::Native);
    assert!(matches!(units("wgs84", "EPSG:4326", [-84.4, 33.8, -84.3, 33.7]), MapUnits::Degrees { .. }));
    assert_eq!(
        units("moon", "IAU_2015:30100", [10.0, 5.0, 10.1, 4.9]),
        MapUnits::Degrees { semi_major: 1_737_400.0, inverse_flattening: 0.0 }
    );
    match units(
        "albers_ft",
        "+proj=aea +lat_1=29.5 +lat_2=45.5 +lat_0=37.5 +lon_0=-96 +datum=NAD83 +units=us-ft",
        [0.0, 16.0, 16.0, 0.0],
    ) {
        MapUnits::Linear { metres_per_unit } => assert!((metres_per_unit - us_foot).abs() < 1e-9),
        other => panic!("a user-defined CRS in US feet, got {other:?}"),
    }
}
