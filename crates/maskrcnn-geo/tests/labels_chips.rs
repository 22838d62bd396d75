//! Chip export from the SpaceNet sample's labels converted by `ogr2ogr` into Shapefile,
//! FlatGeobuf and a two-layer GeoPackage: the same chips must come out as from the GeoJSON.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use maskrcnn_geo::{export_chips, ChipFormat, ExportChipsOptions, ExportSummary};

fn ogr2ogr(args: &[&str]) {
    let out = Command::new("ogr2ogr").args(args).output().expect("ogr2ogr (GDAL's gdal-bin) must be installed");
    assert!(out.status.success(), "ogr2ogr {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The SpaceNet raster and labels, or None (with a message) when the shared data is absent.
fn spacenet() -> Option<(PathBuf, PathBuf)> {
    let dir = common::shared_data_dir().map(|d| d.join("spacenet-atlanta-sample"));
    match dir {
        Some(d) if d.join("sample_geotiff.tif").exists() => {
            Some((d.join("sample_geotiff.tif"), d.join("geotiff_labels.geojson")))
        }
        _ => {
            println!("SKIPPED: ../shared/data/spacenet-atlanta-sample is absent");
            None
        }
    }
}

fn export(raster: &Path, labels: &Path, layer: Option<&str>, out: &Path, format: ChipFormat) -> ExportSummary {
    let o = ExportChipsOptions {
        label_layer: layer.map(str::to_string),
        class_field: Some("building".into()),
        ..ExportChipsOptions::new(raster, labels, out, format)
    };
    export_chips(&o).unwrap_or_else(|e| panic!("export from {}: {e:#}", labels.display()))
}

/// Every file of an export, by relative path, with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn shapefile_flatgeobuf_and_geopackage_labels_give_the_same_chips() {
    let Some((raster, geojson)) = spacenet() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let shp = t.join("footprints.shp");
    ogr2ogr(&["-f", "ESRI Shapefile", s(&shp), s(&geojson)]);
    let fgb = t.join("footprints.fgb");
    // Instance values follow label order, and GDAL's spatial index would sort the features.
    ogr2ogr(&["-f", "FlatGeobuf", "-lco", "SPATIAL_INDEX=NO", s(&fgb), s(&geojson)]);
    let gpkg = t.join("two_layers.gpkg");
    ogr2ogr(&["-f", "GPKG", s(&gpkg), s(&geojson), "-nln", "footprints"]);
    ogr2ogr(&["-f", "GPKG", "-update", s(&gpkg), s(&geojson), "-nln", "other", "-where", "osm_id < 0"]);

    for format in [ChipFormat::RcnnMasks, ChipFormat::Coco] {
        let reference = export(&raster, &geojson, None, &t.join(format!("{format}_json")), format);
        assert!(reference.objects > 40 && reference.chips_written > 1, "{reference:?}");
        let expected = files(&t.join(format!("{format}_json")));
        for (labels, layer, name) in [(&shp, None, "shp"), (&fgb, None, "fgb"), (&gpkg, Some("footprints"), "gpkg")] {
            let out = t.join(format!("{format}_{name}"));
            let summary = export(&raster, labels, layer, &out, format);
            assert_eq!(summary, reference, "{format} summary from {name}");
            let got = files(&out);
            assert_eq!(
                got.iter().map(|f| &f.0).collect::<Vec<_>>(),
                expected.iter().map(|f| &f.0).collect::<Vec<_>>(),
                "{format} files from {name}"
            );
            for ((path, a), (_, b)) in got.iter().zip(&expected) {
                if path == "annotations.json" {
                    // The COCO "info" names the label file; everything else must be equal.
                    let read = |bytes: &[u8]| -> serde_json::Value {
                        let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
                        v["info"]["description"] = serde_json::Value::Null;
                        v
                    };
                    assert_eq!(read(a), read(b), "{format}: annotations from GeoJSON and {name} labels");
                    continue;
                }
                assert!(a == b, "{format}: {path} differs between GeoJSON and {name} labels");
            }
        }
    }
}

#[test]
fn shapefile_without_prj_is_refused_with_a_fix() {
    let Some((raster, geojson)) = spacenet() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let shp = tmp.path().join("footprints.shp");
    ogr2ogr(&["-f", "ESRI Shapefile", s(&shp), s(&geojson)]);
    std::fs::remove_file(shp.with_extension("prj")).unwrap();
    let o = ExportChipsOptions::new(&raster, &shp, tmp.path().join("out"), ChipFormat::RcnnMasks);
    let e = format!("{:#}", export_chips(&o).expect_err("no .prj"));
    println!("error: {e}");
    assert!(e.contains("footprints.shp") && e.contains(".prj") && e.contains("EPSG:32616"), "{e}");
    assert!(e.contains("ogr2ogr -a_srs EPSG:") && e.contains("-t_srs EPSG:32616"), "{e}");
    assert!(!tmp.path().join("out").exists());

    // A GeoPackage with several layers needs the layer named, through the export options too.
    let gpkg = tmp.path().join("two.gpkg");
    ogr2ogr(&["-f", "GPKG", s(&gpkg), s(&geojson), "-nln", "a"]);
    ogr2ogr(&["-f", "GPKG", "-update", s(&gpkg), s(&geojson), "-nln", "b"]);
    let o = ExportChipsOptions::new(&raster, &gpkg, tmp.path().join("out"), ChipFormat::RcnnMasks);
    let e = format!("{:#}", export_chips(&o).expect_err("two layers"));
    assert!(e.contains("[\"a\", \"b\"]"), "{e}");
    let o = ExportChipsOptions { label_layer: Some("b".into()), ..o };
    assert!(export_chips(&o).unwrap().objects > 40);
}
