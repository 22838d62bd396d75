//! Training-chip export on the real SpaceNet Atlanta sample (900x900 uint16, EPSG:32616, 43
//! footprints) and on small synthetic rasters, checked against footprints rasterised on the full
//! grid, and read back through maskrcnn-data's RCNN_Masks and COCO readers.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use geo::{Coord, LineString, MultiPolygon, Polygon};
use maskrcnn_data::Dataset;
use maskrcnn_geo::output::geometry_from_geojson;
use maskrcnn_geo::{
    export_chips, rasterize_polygons, write_features, ChipFormat, ChipImageFormat, Crs, ExportChipsOptions, Feature,
    GeoTiff, GeoTransform, PixelWindow, Samples, WriteOptions,
};
use serde_json::{json, Value};

use common::{spacenet_dir, write_tiff, Dtype, TiffSpec};

const FULL: usize = 900;

/// (footprint index, footprint mask cropped to a chip) for the footprints touching one chip.
type Pieces = Vec<(usize, Vec<u8>)>;

struct Footprints {
    gt: GeoTransform,
    /// Map-coordinate polygons, in file order.
    polygons: Vec<MultiPolygon<f64>>,
    /// Each footprint alone, rasterised on the full 900x900 grid (pixel-centre rule).
    full_masks: Vec<Vec<u8>>,
}

fn spacenet() -> (PathBuf, PathBuf, Footprints) {
    let dir = spacenet_dir();
    let raster = dir.join("sample_geotiff.tif");
    let labels = dir.join("geotiff_labels.geojson");
    let gt = GeoTiff::open(&raster).unwrap().info().geotransform.unwrap();
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&labels).unwrap()).unwrap();
    let polygons: Vec<MultiPolygon<f64>> =
        doc["features"].as_array().unwrap().iter().map(|f| geometry_from_geojson(&f["geometry"]).unwrap()).collect();
    assert_eq!(polygons.len(), 43, "the SpaceNet sample has 43 footprints");
    let full_masks =
        polygons.iter().map(|p| rasterize_polygons(&[(p.clone(), 1u8)], FULL, FULL, &gt, 0).unwrap()).collect();
    (raster, labels, Footprints { gt, polygons, full_masks })
}

fn windows(tile: usize, stride: usize) -> Vec<(usize, usize)> {
    // Written out independently of the library: every `stride`, last chip moved in to the edge.
    let mut starts = Vec::new();
    let mut s = 0;
    while s + tile < FULL {
        starts.push(s);
        s += stride;
    }
    starts.push(FULL - tile);
    starts.dedup();
    starts.iter().flat_map(|&y| starts.iter().map(move |&x| (x, y))).collect()
}

fn crop(full: &[u8], x0: usize, y0: usize, tile: usize) -> Vec<u8> {
    (0..tile).flat_map(|y| full[(y0 + y) * FULL + x0..(y0 + y) * FULL + x0 + tile].iter().copied()).collect()
}

fn iou(a: &[u8], b: &[u8]) -> f64 {
    let inter = a.iter().zip(b).filter(|(&x, &y)| x != 0 && y != 0).count();
    let union = a.iter().zip(b).filter(|(&x, &y)| x != 0 || y != 0).count();
    inter as f64 / union.max(1) as f64
}

/// Footprints with at least one pixel in the chip at (x0, y0): (index, cropped mask).
fn pieces(fp: &Footprints, x0: usize, y0: usize, tile: usize) -> Pieces {
    fp.full_masks
        .iter()
        .enumerate()
        .map(|(i, m)| (i, crop(m, x0, y0, tile)))
        .filter(|(_, c)| c.iter().any(|&v| v != 0))
        .collect()
}

/// The chip's pixel offset in the full raster, from its own georeferencing.
fn chip_offset(chip_gt: &GeoTransform, full: &GeoTransform) -> (usize, usize) {
    let (x, y) = full.map_to_pixel(chip_gt.0[0], chip_gt.0[3]).unwrap();
    assert!((x - x.round()).abs() < 1e-6 && (y - y.round()).abs() < 1e-6, "chip origin off the pixel grid: {x},{y}");
    (x.round() as usize, y.round() as usize)
}

fn read_world_file(path: &Path) -> [f64; 6] {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Vec<f64> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
    [v[0], v[1], v[2], v[3], v[4], v[5]]
}

fn opts(raster: &Path, labels: &Path, out: &Path, format: ChipFormat, tile: u32, stride: u32) -> ExportChipsOptions {
    ExportChipsOptions { tile_size: tile, stride, ..ExportChipsOptions::new(raster, labels, out, format) }
}

fn u8_band(samples: Samples) -> Vec<u8> {
    match samples {
        Samples::U8(v) => v,
        other => panic!("expected 8-bit labels, got {other:?}"),
    }
}

fn chip_stems(dir: &Path, ext: &str) -> Vec<String> {
    let mut stems: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    stems.sort();
    stems
}

fn check_rcnn_export(tile: usize, stride: usize) {
    let (raster, labels, fp) = spacenet();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("chips");
    let started = std::time::Instant::now();
    let summary =
        export_chips(&opts(&raster, &labels, &out, ChipFormat::RcnnMasks, tile as u32, stride as u32)).unwrap();
    println!("export took {:.0} ms", started.elapsed().as_secs_f64() * 1000.0);

    let expected: Vec<((usize, usize), Pieces)> =
        windows(tile, stride).into_iter().map(|(x, y)| ((x, y), pieces(&fp, x, y, tile))).collect();
    let expected_objects: usize = expected.iter().map(|e| e.1.len()).sum();
    let expected_chips = expected.iter().filter(|e| !e.1.is_empty()).count();
    println!(
        "tile {tile} stride {stride}: {} windows, {expected_chips} with buildings, {expected_objects} building pieces; summary {summary:?}",
        expected.len()
    );
    assert_eq!(summary.objects, expected_objects, "objects = building pieces intersecting chips");
    assert_eq!(summary.chips_written, expected_chips);
    assert_eq!(summary.chips_empty_skipped, expected.len() - expected_chips);
    assert_eq!(summary.chips_nodata_skipped, 0);
    assert_eq!(summary.image_format, ChipImageFormat::Tiff, "uint16 imagery stays TIFF");
    assert_eq!(summary.classes.len(), 1);
    assert_eq!((summary.classes[0].value, summary.classes[0].name.as_str()), (1, "object"));
    assert_eq!(summary.classes[0].objects, expected_objects);

    let by_window: HashMap<(usize, usize), &Pieces> = expected.iter().map(|(w, p)| (*w, p)).collect();
    let mut full = GeoTiff::open(&raster).unwrap();
    let stems = chip_stems(&out.join("images"), "tif");
    assert_eq!(stems.len(), expected_chips);
    let mut worst_iou = 1.0f64;
    for stem in &stems {
        let image_path = out.join("images").join(format!("{stem}.tif"));
        let mut chip = GeoTiff::open(&image_path).unwrap();
        let info = chip.info().clone();
        assert_eq!((info.width, info.height, info.bands), (tile as u32, tile as u32, 1));
        assert_eq!(info.crs.as_ref().and_then(|c| c.epsg), Some(32616), "{stem}: chip CRS");
        assert_eq!(info.nodata, Some(0.0), "{stem}: nodata carried over");
        let chip_gt = info.geotransform.unwrap();
        let (x0, y0) = chip_offset(&chip_gt, &fp.gt);
        let world = read_world_file(&image_path.with_extension("tfw"));
        let (cx, cy) = fp.gt.pixel_to_map(x0 as f64 + 0.5, y0 as f64 + 0.5);
        assert!(
            (world[4] - cx).abs() < 1e-6 && (world[5] - cy).abs() < 1e-6 && world[0] == 0.5 && world[3] == -0.5,
            "{stem}: world file {world:?}"
        );
        let aux = std::fs::read_to_string(image_path.with_extension("tif.aux.xml")).unwrap();
        assert!(aux.contains("UTM zone 16N") && aux.contains("32616"), "{stem}: aux.xml {aux}");
        // Pixels are the raster's own, in its own type.
        let window = PixelWindow::new(x0 as u32, y0 as u32, tile as u32, tile as u32);
        assert_eq!(
            chip.read_window_typed(PixelWindow::new(0, 0, tile as u32, tile as u32), &[]).unwrap().data,
            full.read_window_typed(window, &[]).unwrap().data,
            "{stem}: chip pixels differ from the raster window at {x0},{y0}"
        );

        let label_path = out.join("labels/object").join(format!("{stem}.tif"));
        let mut label = GeoTiff::open(&label_path).unwrap();
        assert_eq!(label.info().geotransform, Some(chip_gt), "{stem}: label georeferencing");
        let ids = u8_band(label.read_window_typed(PixelWindow::new(0, 0, tile as u32, tile as u32), &[]).unwrap().data);
        let want = by_window.get(&(x0, y0)).unwrap_or_else(|| panic!("{stem}: chip at {x0},{y0} is not on the grid"));
        let n = *ids.iter().max().unwrap() as usize;
        assert_eq!(n, want.len(), "{stem}: one positive value per building piece");
        let mut matched = vec![false; want.len()];
        for id in 1..=n as u8 {
            let mask: Vec<u8> = ids.iter().map(|&v| (v == id) as u8).collect();
            assert!(mask.iter().any(|&v| v != 0), "{stem}: ids are consecutive, {id} is missing");
            let (best, score) = want
                .iter()
                .enumerate()
                .map(|(k, (_, m))| (k, iou(&mask, m)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            assert!(!matched[best], "{stem}: two instances match footprint {}", want[best].0);
            matched[best] = true;
            worst_iou = worst_iou.min(score);
        }
    }
    println!("worst per-instance IoU of label chips vs full-grid footprints: {worst_iou}");
    assert!(worst_iou >= 0.999, "label chips must line up with the footprints (worst IoU {worst_iou})");

    // map.txt: one line per chip, image then label, backslash paths as Pro writes them.
    let map = std::fs::read_to_string(out.join("map.txt")).unwrap();
    let lines: Vec<&str> = map.lines().collect();
    assert_eq!(lines.len(), stems.len());
    assert_eq!(lines[0], format!("images\\{}.tif labels\\object\\{}.tif", stems[0], stems[0]));

    // .emd: the fields arcgis.learn reads (doc §2).
    let emd: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("esri_model_definition.emd")).unwrap()).unwrap();
    assert_eq!(emd["Classes"], json!([{"Value": 1, "Name": "object", "Color": [230, 25, 75]}]));
    assert_eq!(emd["ImageSpaceUsed"], "MAP_SPACE");
    assert_eq!(emd["IsMultidimensional"], false);
    assert_eq!((emd["ImageHeight"].as_u64(), emd["ImageWidth"].as_u64()), (Some(tile as u64), Some(tile as u64)));
    assert_eq!(emd["InputRastersProps"]["BandNames"], json!(["Band_1"]));
    assert!(emd["InputRastersProps"]["SensorName"].is_string());
    assert_eq!((emd["MinCellSize"].as_f64(), emd["MaxCellSize"].as_f64()), (Some(0.5), Some(0.5)));
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("esri_accumulated_stats.json")).unwrap()).unwrap();
    assert_eq!(stats["MetaDataMode"], "RCNN_Masks");
    assert_eq!(stats["NumBands"], 1);
    assert_eq!(stats["NumFeatures"].as_u64(), Some(expected_objects as u64));
    assert!(stats["FeatureStats"].is_object() && stats["ClassPixelStats"].is_array());

    // Round trip through the training reader.
    let ds = maskrcnn_data::esri::EsriRcnnMasksDataset::open(&out).unwrap();
    assert_eq!(ds.len(), stems.len());
    assert_eq!(ds.class_names(), ["object".to_string()]);
    assert!(ds.report().missing_metadata.is_empty() && ds.report().negative_chips.is_empty(), "{:?}", ds.report());
    assert_eq!(ds.info().image_height, Some(tile));
    let mut total = 0;
    let (mut sum, mut sum_sq, mut count, mut lo, mut hi) = (0f64, 0f64, 0u64, f64::MAX, f64::MIN);
    for i in 0..ds.len() {
        let s = ds.get(i).unwrap();
        assert_eq!((s.image.channels, s.image.height, s.image.width), (1, tile, tile));
        assert!(s.target.labels.iter().all(|&l| l == 1));
        total += s.target.len();
        for &v in &s.image.data {
            if v != 0.0 {
                let v = v as f64;
                (sum, sum_sq, count, lo, hi) = (sum + v, sum_sq + v * v, count + 1, lo.min(v), hi.max(v));
            }
        }
    }
    assert_eq!(total, expected_objects, "maskrcnn-data reads back every instance");
    // AllTilesStats = statistics of the written chips, nodata (0) left out.
    let mean = sum / count as f64;
    let std = (sum_sq / count as f64 - mean * mean).sqrt();
    let band = &ds.info().tile_stats[0];
    assert_eq!((band.min, band.max), (lo, hi));
    assert!((band.mean - mean).abs() < 1e-6 * mean && (band.std - std).abs() < 1e-6 * std, "{band:?} vs {mean} {std}");
}

#[test]
fn spacenet_rcnn_masks_tile256_stride256() {
    check_rcnn_export(256, 256);
}

#[test]
fn spacenet_rcnn_masks_overlapping_chips() {
    check_rcnn_export(200, 150);
}

#[test]
fn spacenet_coco_polygons_line_up_with_footprints() {
    let (raster, labels, fp) = spacenet();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("coco");
    let tile = 256;
    let summary = export_chips(&opts(&raster, &labels, &out, ChipFormat::Coco, 256, 256)).unwrap();
    let expected: usize = windows(tile, 256).iter().map(|&(x, y)| pieces(&fp, x, y, tile).len()).sum();
    assert_eq!(summary.objects, expected);

    let doc: Value = serde_json::from_str(&std::fs::read_to_string(out.join("annotations.json")).unwrap()).unwrap();
    assert_eq!(doc["categories"], json!([{"id": 1, "name": "object", "supercategory": "object"}]));
    let images = doc["images"].as_array().unwrap();
    let anns = doc["annotations"].as_array().unwrap();
    assert_eq!(images.len(), summary.chips_written);
    assert_eq!(anns.len(), expected);
    assert!(anns.iter().all(|a| a["iscrowd"] == 0 && a["category_id"] == 1));

    // Re-rasterise every polygon with the same pixel-centre rule: exact clipping means the chip
    // mask equals the full-grid footprint inside the chip.
    let mut worst_exact = 1.0f64;
    let mut offsets = HashMap::new();
    for img in images {
        let file = out.join("images").join(img["file_name"].as_str().unwrap());
        let chip_gt = GeoTiff::open(&file).unwrap().info().geotransform.unwrap();
        let (x0, y0) = chip_offset(&chip_gt, &fp.gt);
        assert_eq!(img["window"], json!([x0, y0, tile, tile]));
        offsets.insert(img["id"].as_u64().unwrap(), (x0, y0));
    }
    let mut per_image: HashMap<u64, Vec<&Value>> = HashMap::new();
    for a in anns {
        per_image.entry(a["image_id"].as_u64().unwrap()).or_default().push(a);
    }
    for (image_id, list) in &per_image {
        let (x0, y0) = offsets[image_id];
        let want = pieces(&fp, x0, y0, tile);
        assert_eq!(list.len(), want.len(), "image {image_id}");
        for a in list {
            let rings = a["segmentation"].as_array().expect("SpaceNet footprints have no holes: polygons expected");
            let polys: Vec<Polygon<f64>> = rings
                .iter()
                .map(|r| {
                    let v: Vec<f64> = r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
                    assert!(v.iter().all(|&c| (0.0..=tile as f64).contains(&c)), "polygon leaves the chip: {v:?}");
                    Polygon::new(LineString::new(v.chunks(2).map(|p| Coord { x: p[0], y: p[1] }).collect()), vec![])
                })
                .collect();
            let mask =
                rasterize_polygons(&[(MultiPolygon::new(polys), 1u8)], tile, tile, &GeoTransform::IDENTITY, 0).unwrap();
            let best = want.iter().map(|(_, m)| iou(&mask, m)).fold(0.0, f64::max);
            worst_exact = worst_exact.min(best);
            let b = a["bbox"].as_array().unwrap();
            assert!(b[2].as_f64().unwrap() > 0.0 && b[3].as_f64().unwrap() > 0.0);
        }
    }
    println!("COCO: {} annotations; worst IoU of re-rasterised polygons vs footprints {worst_exact}", anns.len());
    assert!(worst_exact >= 0.99, "COCO polygons must line up with the footprints (worst IoU {worst_exact})");

    // Through maskrcnn-data's COCO reader (pycocotools rasterisation rules, so boundaries shift
    // slightly): masks still match the footprints.
    let ds = maskrcnn_data::coco::CocoDataset::open(&out.join("annotations.json"), &out.join("images"))
        .unwrap()
        .with_gray_to_rgb(false);
    assert_eq!(ds.len(), images.len());
    assert_eq!(ds.report().dropped_degenerate, 0);
    let (mut ious, mut n) = (0.0, 0);
    let mut worst = 1.0f64;
    for i in 0..ds.len() {
        let s = ds.get(i).unwrap();
        let id = ds.image_info(i).unwrap().id;
        let (x0, y0) = offsets[&id];
        let want = pieces(&fp, x0, y0, tile);
        assert_eq!(s.target.len(), want.len());
        for m in &s.target.masks {
            let best = want.iter().map(|(_, w)| iou(m, w)).fold(0.0, f64::max);
            worst = worst.min(best);
            ious += best;
            n += 1;
        }
    }
    println!("maskrcnn-data COCO masks vs footprints: mean IoU {:.4}, worst {worst:.4} over {n}", ious / n as f64);
    assert_eq!(n, expected);
    assert!(ious / n as f64 > 0.9 && worst > 0.5, "mean {} worst {worst}", ious / n as f64);
}

/// Footprints as a GeoJSON in EPSG:32616 with a class attribute.
fn write_classed_geojson(path: &Path, fp: &Footprints, class_of: impl Fn(usize) -> Value) {
    let features: Vec<Value> = fp
        .polygons
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"type": "Feature", "properties": {"kind": class_of(i)}, "geometry": maskrcnn_geo::output::geometry_to_geojson(p)}))
        .collect();
    let doc = json!({"type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32616"}}, "features": features});
    std::fs::write(path, doc.to_string()).unwrap();
}

#[test]
fn class_field_text_and_integer_values() {
    let (raster, _, fp) = spacenet();
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("classed.geojson");
    write_classed_geojson(&labels, &fp, |i| if i % 3 == 0 { json!("shed") } else { json!("house") });
    let out = tmp.path().join("text");
    let o = ExportChipsOptions {
        class_field: Some("kind".into()),
        ..opts(&raster, &labels, &out, ChipFormat::RcnnMasks, 256, 256)
    };
    let summary = export_chips(&o).unwrap();
    let names: Vec<(i64, &str, &str)> =
        summary.classes.iter().map(|c| (c.value, c.name.as_str(), c.folder.as_str())).collect();
    assert_eq!(names, vec![(1, "house", "house"), (2, "shed", "shed")], "sorted names, values 1..K");
    assert_eq!(summary.classes.iter().map(|c| c.objects).sum::<usize>(), summary.objects);
    assert!(summary.classes.iter().all(|c| c.objects > 0));
    let emd: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("esri_model_definition.emd")).unwrap()).unwrap();
    assert_eq!(emd["Classes"][1]["Name"], "shed");
    assert!(out.join("labels/house").is_dir() && out.join("labels/shed").is_dir());

    // Each instance read back carries the class of the footprint it covers.
    let ds = maskrcnn_data::esri::EsriRcnnMasksDataset::open(&out).unwrap();
    assert_eq!(ds.class_names(), ["house".to_string(), "shed".to_string()]);
    let mut checked = 0;
    for i in 0..ds.len() {
        let s = ds.get(i).unwrap();
        let stem = ds.chip_stem(i).unwrap();
        let gt = GeoTiff::open(out.join("images").join(format!("{stem}.tif"))).unwrap().info().geotransform.unwrap();
        let (x0, y0) = chip_offset(&gt, &fp.gt);
        let want = pieces(&fp, x0, y0, 256);
        for (m, &label) in s.target.masks.iter().zip(&s.target.labels) {
            let (k, score) = want.iter().map(|(k, w)| (*k, iou(m, w))).max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
            assert!(score > 0.999);
            assert_eq!(label, if k % 3 == 0 { 2 } else { 1 }, "footprint {k}");
            checked += 1;
        }
    }
    assert_eq!(checked, summary.objects);

    // Positive integer values are kept as class values (and folder names).
    let labels = tmp.path().join("coded.geojson");
    write_classed_geojson(&labels, &fp, |i| if i % 2 == 0 { json!(7) } else { json!(3) });
    let out = tmp.path().join("ints");
    let o = ExportChipsOptions {
        class_field: Some("kind".into()),
        ..opts(&raster, &labels, &out, ChipFormat::Coco, 256, 256)
    };
    let summary = export_chips(&o).unwrap();
    assert_eq!(
        summary.classes.iter().map(|c| (c.value, c.name.as_str())).collect::<Vec<_>>(),
        vec![(3, "3"), (7, "7")]
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(out.join("annotations.json")).unwrap()).unwrap();
    assert_eq!(doc["categories"][1], json!({"id": 7, "name": "7", "supercategory": "7"}));
    let ds = maskrcnn_data::coco::CocoDataset::open(&out.join("annotations.json"), &out.join("images")).unwrap();
    assert_eq!(ds.category_ids(), [3, 7]);
}

#[test]
fn geopackage_labels_give_the_same_chips_as_geojson() {
    let (raster, labels, fp) = spacenet();
    let tmp = tempfile::tempdir().unwrap();
    let gpkg = tmp.path().join("labels.gpkg");
    let features: Vec<Feature> = fp.polygons.iter().map(|p| Feature::new(p.clone(), "building", 1, 1.0, "")).collect();
    write_features(&gpkg, &features, Some(&Crs::from_epsg(32616)), &WriteOptions::default()).unwrap();
    let from_json =
        export_chips(&opts(&raster, &labels, &tmp.path().join("a"), ChipFormat::RcnnMasks, 256, 256)).unwrap();
    let o = ExportChipsOptions {
        class_field: Some("class".into()),
        ..opts(&raster, &gpkg, &tmp.path().join("b"), ChipFormat::RcnnMasks, 256, 256)
    };
    let from_gpkg = export_chips(&o).unwrap();
    assert_eq!(from_gpkg.classes[0].name, "building");
    assert_eq!((from_gpkg.objects, from_gpkg.chips_written), (from_json.objects, from_json.chips_written));
    for stem in chip_stems(&tmp.path().join("a/images"), "tif") {
        let a = std::fs::read(tmp.path().join(format!("a/labels/object/{stem}.tif"))).unwrap();
        let b = std::fs::read(tmp.path().join(format!("b/labels/building/{stem}.tif"))).unwrap();
        assert!(a == b, "label chip {stem} differs between GeoJSON and GeoPackage input");
    }
}

#[test]
fn gdal_written_geopackage_with_text_classes() {
    let (raster, labels, _) = spacenet();
    let gpkg =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chips/spacenet_footprints_multipolygon.gpkg");
    let layer = maskrcnn_geo::read_label_polygons(&gpkg, Some("kind")).unwrap();
    assert_eq!(layer.crs, maskrcnn_geo::chips::LabelCrs::Epsg(32616));
    assert_eq!(layer.features.len(), 43);
    // Same polygons, in the same order, as the GeoJSON GDAL converted.
    let from_json = maskrcnn_geo::read_label_polygons(&labels, Some("osm_id")).unwrap();
    for ((a, kind), (b, osm_id)) in layer.features.iter().zip(&from_json.features) {
        assert_eq!(a, b);
        let Some(maskrcnn_geo::chips::ClassKey::Int(id)) = osm_id else { panic!("osm_id is an integer") };
        let parity = if id % 2 == 0 { "even" } else { "odd" };
        assert_eq!(kind, &Some(maskrcnn_geo::chips::ClassKey::Text(parity.into())));
    }

    let tmp = tempfile::tempdir().unwrap();
    let reference =
        export_chips(&opts(&raster, &labels, &tmp.path().join("json"), ChipFormat::Coco, 256, 256)).unwrap();
    let o = ExportChipsOptions {
        class_field: Some("kind".into()),
        ..opts(&raster, &gpkg, &tmp.path().join("gpkg"), ChipFormat::Coco, 256, 256)
    };
    let summary = export_chips(&o).unwrap();
    assert_eq!((summary.objects, summary.chips_written), (reference.objects, reference.chips_written));
    let names: Vec<&str> = summary.classes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["even", "odd"]);
    assert!(summary.classes.iter().all(|c| c.objects > 0));
    let read = |dir: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join(dir).join("annotations.json")).unwrap()).unwrap()
    };
    let (a, b) = (read("json"), read("gpkg"));
    let segs = |d: &Value| -> Vec<Value> {
        d["annotations"].as_array().unwrap().iter().map(|x| x["segmentation"].clone()).collect()
    };
    assert_eq!(segs(&a), segs(&b), "identical polygons from GeoJSON and GeoPackage");
}

/// An 8-bit RGB GeoTIFF (test pattern pixels), 10 m pixels at (500000, 4000000) in EPSG:32633.
fn synthetic_rgb(path: &Path, width: u32, height: u32) -> GeoTransform {
    let mut spec = TiffSpec::new(width, height, 3, Dtype::U8);
    spec.geo = Some((500000.0, 4000000.0, 10.0, 32633));
    write_tiff(path, &spec);
    GeoTransform([500000.0, 10.0, 0.0, 4000000.0, 0.0, -10.0])
}

fn square(gt: &GeoTransform, x: f64, y: f64, w: f64, h: f64) -> MultiPolygon<f64> {
    let c = |px: f64, py: f64| {
        let (mx, my) = gt.pixel_to_map(px, py);
        Coord { x: mx, y: my }
    };
    MultiPolygon::new(vec![Polygon::new(
        LineString::new(vec![c(x, y), c(x + w, y), c(x + w, y + h), c(x, y + h), c(x, y)]),
        vec![],
    )])
}

fn write_geojson(path: &Path, polys: &[MultiPolygon<f64>], crs: Option<&str>) {
    let features: Vec<Value> = polys
        .iter()
        .map(|p| json!({"type": "Feature", "properties": {}, "geometry": maskrcnn_geo::output::geometry_to_geojson(p)}))
        .collect();
    let mut doc = json!({"type": "FeatureCollection", "features": features});
    if let Some(name) = crs {
        doc["crs"] = json!({"type": "name", "properties": {"name": name}});
    }
    std::fs::write(path, doc.to_string()).unwrap();
}

#[test]
fn rgb_8bit_chips_are_png_with_world_files_and_exact_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let raster = tmp.path().join("rgb.tif");
    let gt = synthetic_rgb(&raster, 300, 200);
    let labels = tmp.path().join("labels.geojson");
    // Two touching squares (must stay two instances), one square across the chip seam at x=128,
    // and one with a hole (COCO must fall back to RLE).
    let mut holed = square(&gt, 20.0, 70.0, 40.0, 40.0);
    holed.0[0].interiors_push(square(&gt, 30.0, 80.0, 20.0, 20.0).0[0].exterior().clone());
    let polys = vec![
        square(&gt, 10.0, 10.0, 20.0, 20.0),
        square(&gt, 30.0, 10.0, 20.0, 20.0),
        square(&gt, 118.0, 50.0, 20.0, 10.0),
        holed,
    ];
    write_geojson(&labels, &polys, Some("EPSG:32633"));

    let out = tmp.path().join("rcnn");
    let o = ExportChipsOptions { keep_empty: true, ..opts(&raster, &labels, &out, ChipFormat::RcnnMasks, 128, 128) };
    let summary = export_chips(&o).unwrap();
    // Columns 0, 128, 172; rows 0, 72.
    assert_eq!(summary.image_format, ChipImageFormat::Png);
    assert_eq!((summary.chips_written, summary.chips_empty_skipped), (6, 0));
    let map = std::fs::read_to_string(out.join("map.txt")).unwrap();
    assert!(map.starts_with("images\\000000000.png labels\\object\\000000000.png\n"), "{map}");

    // Chip 0 is at (0, 0): squares 1 and 2 touch at x = 30 and keep separate ids; the seam
    // square is cut at x = 128.
    let img = maskrcnn_data::image_io::read_image(&out.join("images/000000000.png")).unwrap();
    assert_eq!((img.channels, img.height, img.width), (3, 128, 128));
    assert_eq!(img.get(2, 5, 7), common::pattern(2, 7, 5, Dtype::U8) as f32);
    let world = read_world_file(&out.join("images/000000000.pgw"));
    assert_eq!(world, [10.0, 0.0, 0.0, -10.0, 500005.0, 3999995.0]);
    let ids = maskrcnn_data::image_io::read_label_raster(&out.join("labels/object/000000000.png")).unwrap().data;
    let at = |x: usize, y: usize| ids[y * 128 + x];
    let (a, b, c) = (at(15, 15), at(35, 15), at(125, 55));
    assert!(a != 0 && b != 0 && c != 0 && a != b && b != c && a != c);
    assert_eq!(ids.iter().filter(|&&v| v == a).count(), 400);
    assert_eq!(ids.iter().filter(|&&v| v == c).count(), 100, "10 of the 20 columns are in this chip");
    assert_eq!(at(40, 90), 0, "the hole stays background");
    assert_eq!(ids.iter().filter(|&&v| v == at(25, 75)).count(), 1600 - 400);
    // Chip 1 at (128, 0) has the other half of the seam square; the chip at (172, 72) is empty
    // but kept, with all-zero labels.
    let ids1 = maskrcnn_data::image_io::read_label_raster(&out.join("labels/object/000000001.png")).unwrap().data;
    assert_eq!(ids1.iter().filter(|&&v| v != 0).count(), 100);
    let ds = maskrcnn_data::esri::EsriRcnnMasksDataset::open(&out).unwrap();
    let counts: Vec<usize> = (0..ds.len()).map(|i| ds.get(i).unwrap().target.len()).collect();
    assert_eq!(counts, vec![4, 1, 0, 1, 0, 0], "chip rows start at y = 0 and 72");

    let out = tmp.path().join("coco");
    export_chips(&opts(&raster, &labels, &out, ChipFormat::Coco, 128, 128)).unwrap();
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(out.join("annotations.json")).unwrap()).unwrap();
    let first: Vec<&Value> = doc["annotations"].as_array().unwrap().iter().filter(|a| a["image_id"] == 1).collect();
    assert_eq!(first.len(), 4);
    assert_eq!((&first[0]["bbox"], &first[0]["area"]), (&json!([10.0, 10.0, 20.0, 20.0]), &json!(400.0)));
    let seam = first.iter().find(|a| a["bbox"][0] == 118.0).unwrap();
    assert_eq!(seam["bbox"], json!([118.0, 50.0, 10.0, 10.0]), "clipped exactly at the chip edge");
    assert_eq!(seam["area"], 100.0);
    let holed = first.iter().find(|a| a["segmentation"].is_object()).expect("the holed square is RLE");
    assert_eq!(holed["area"], 1200.0);
    let ds = maskrcnn_data::coco::CocoDataset::open(&out.join("annotations.json"), &out.join("images")).unwrap();
    let s = ds.get(0).unwrap();
    let hole_mask = s.target.masks.iter().find(|m| m.iter().filter(|&&v| v != 0).count() == 1200).unwrap();
    assert_eq!(hole_mask[90 * 128 + 40], 0);
    assert_eq!(hole_mask[75 * 128 + 25], 1);
}

#[test]
fn raster_smaller_than_a_chip_is_padded() {
    let tmp = tempfile::tempdir().unwrap();
    let raster = tmp.path().join("small.tif");
    let gt = synthetic_rgb(&raster, 100, 60);
    let labels = tmp.path().join("labels.geojson");
    write_geojson(&labels, &[square(&gt, 90.0, 50.0, 30.0, 30.0)], Some("urn:ogc:def:crs:EPSG::32633"));
    let out = tmp.path().join("out");
    let summary = export_chips(&opts(&raster, &labels, &out, ChipFormat::RcnnMasks, 128, 64)).unwrap();
    assert_eq!((summary.chips_written, summary.objects), (1, 1));
    let img = maskrcnn_data::image_io::read_image(&out.join("images/000000000.png")).unwrap();
    assert_eq!((img.height, img.width), (128, 128));
    assert_eq!(img.get(0, 70, 110), 0.0, "padding");
    let ids = maskrcnn_data::image_io::read_label_raster(&out.join("labels/object/000000000.png")).unwrap().data;
    assert_eq!(ids.iter().filter(|&&v| v != 0).count(), 100, "only the part over real pixels is labelled");
}

#[test]
fn nodata_chips_are_never_written() {
    let tmp = tempfile::tempdir().unwrap();
    let raster = tmp.path().join("blank.tif");
    let mut spec = TiffSpec::new(256, 128, 1, Dtype::U16);
    (spec.geo, spec.nodata, spec.constant) = (Some((500000.0, 4000000.0, 10.0, 32633)), Some("0"), Some(0.0));
    write_tiff(&raster, &spec);
    let gt = GeoTransform([500000.0, 10.0, 0.0, 4000000.0, 0.0, -10.0]);
    let labels = tmp.path().join("labels.geojson");
    write_geojson(&labels, &[square(&gt, 10.0, 10.0, 20.0, 20.0)], Some("EPSG:32633"));
    let o = ExportChipsOptions {
        keep_empty: true,
        ..opts(&raster, &labels, &tmp.path().join("out"), ChipFormat::RcnnMasks, 128, 128)
    };
    let e = error_of(&o);
    assert!(e.contains("no chips written") && e.contains("2 are entirely nodata"), "{e}");
}

fn error_of(o: &ExportChipsOptions) -> String {
    let e = format!("{:#}", export_chips(o).expect_err("export should fail"));
    println!("error: {e}");
    e
}

#[test]
fn bad_inputs_give_clear_errors() {
    let (raster, labels, fp) = spacenet();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");

    // UTM coordinates declared as Web Mercator: reprojected, they land far from the raster.
    let wrong = tmp.path().join("mercator.geojson");
    write_geojson(&wrong, &fp.polygons, Some("EPSG:3857"));
    let e = error_of(&opts(&raster, &wrong, &out, ChipFormat::RcnnMasks, 256, 256));
    assert!(e.contains("mercator.geojson") && e.contains("overlaps") && e.contains("EPSG:32616"), "{e}");

    // GeoJSON with no crs member is RFC 7946 lon/lat: projected coordinates in it cannot be reprojected.
    let rfc = tmp.path().join("rfc7946.geojson");
    write_geojson(&rfc, &fp.polygons, None);
    let e = error_of(&opts(&raster, &rfc, &out, ChipFormat::RcnnMasks, 256, 256));
    assert!(e.contains("rfc7946.geojson") && e.contains("EPSG:4326") && e.contains("cannot be reprojected"), "{e}");

    // Class field that does not exist.
    let o = ExportChipsOptions {
        class_field: Some("ClassValue".into()),
        ..opts(&raster, &labels, &out, ChipFormat::Coco, 256, 256)
    };
    let e = error_of(&o);
    assert!(e.contains("\"ClassValue\"") && e.contains("not found") && e.contains("building"), "{e}");

    // Empty collection.
    let empty = tmp.path().join("empty.geojson");
    std::fs::write(
        &empty,
        r#"{"type":"FeatureCollection","crs":{"type":"name","properties":{"name":"EPSG:32616"}},"features":[]}"#,
    )
    .unwrap();
    let e = error_of(&opts(&raster, &empty, &out, ChipFormat::RcnnMasks, 256, 256));
    assert!(e.contains("empty.geojson") && e.contains("no features"), "{e}");

    // Points are not training polygons.
    let points = tmp.path().join("points.geojson");
    std::fs::write(&points, r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[733700,3725000]}}]}"#).unwrap();
    let e = error_of(&opts(&raster, &points, &out, ChipFormat::RcnnMasks, 256, 256));
    assert!(e.contains("feature 0") && e.contains("Point"), "{e}");

    // Right CRS declared, wrong place: nothing overlaps.
    let far = tmp.path().join("far.geojson");
    let moved: Vec<MultiPolygon<f64>> =
        fp.polygons.iter().map(|p| geo::MapCoords::map_coords(p, |c| Coord { x: c.x + 100_000.0, y: c.y })).collect();
    write_geojson(&far, &moved, Some("EPSG:32616"));
    let e = error_of(&opts(&raster, &far, &out, ChipFormat::RcnnMasks, 256, 256));
    assert!(e.contains("none of the 43 label polygons") && e.contains("overlaps"), "{e}");

    // Band out of range, missing raster, unknown label format.
    let o = ExportChipsOptions { bands: vec![2], ..opts(&raster, &labels, &out, ChipFormat::RcnnMasks, 256, 256) };
    assert!(error_of(&o).contains("band 2"));
    let e = error_of(&opts(&tmp.path().join("nope.tif"), &labels, &out, ChipFormat::RcnnMasks, 256, 256));
    assert!(e.contains("nope.tif"), "{e}");
    let e = error_of(&opts(&raster, &tmp.path().join("labels.kml"), &out, ChipFormat::RcnnMasks, 256, 256));
    assert!(e.contains("labels.kml") && e.contains(".gpkg"), "{e}");
    assert!(!out.exists(), "failed exports must not leave an output folder");

    // Existing output: refused without overwrite; with it, only the export's own files go.
    std::fs::create_dir_all(out.join("images")).unwrap();
    std::fs::write(out.join("images/stale.tif"), b"old").unwrap();
    std::fs::write(out.join("notes.txt"), b"mine").unwrap();
    let e = error_of(&opts(&raster, &labels, &out, ChipFormat::RcnnMasks, 256, 256));
    assert!(e.contains("already exists") && e.contains(&out.display().to_string()), "{e}");
    let o = ExportChipsOptions { overwrite: true, ..opts(&raster, &labels, &out, ChipFormat::RcnnMasks, 256, 256) };
    export_chips(&o).unwrap();
    assert!(!out.join("images/stale.tif").exists() && out.join("notes.txt").exists());
}

fn gdalinfo_json(path: &Path) -> Option<Value> {
    match std::process::Command::new("gdalinfo").arg("-json").arg(path).output() {
        Ok(o) if o.status.success() => Some(serde_json::from_slice(&o.stdout).unwrap()),
        Ok(o) => panic!("gdalinfo failed on {}: {}", path.display(), String::from_utf8_lossy(&o.stderr)),
        Err(_) => {
            eprintln!(
                "\n\n!!!!!!!! gdalinfo NOT FOUND: skipping the GDAL cross-check of chip georeferencing. !!!!!!!!\n"
            );
            None
        }
    }
}

#[test]
fn gdal_places_tiff_and_png_chips() {
    let (raster, labels, fp) = spacenet();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tif");
    export_chips(&opts(&raster, &labels, &out, ChipFormat::RcnnMasks, 256, 256)).unwrap();
    for rel in ["images/000000005.tif", "labels/object/000000005.tif"] {
        let Some(info) = gdalinfo_json(&out.join(rel)) else { return };
        let chip_gt = GeoTiff::open(out.join(rel)).unwrap().info().geotransform.unwrap();
        let (x0, y0) = chip_offset(&chip_gt, &fp.gt);
        let (mx, my) = fp.gt.pixel_to_map(x0 as f64, y0 as f64);
        assert_eq!(info["geoTransform"], json!([mx, 0.5, 0.0, my, 0.0, -0.5]), "{rel}");
        assert_eq!(info["stac"]["proj:epsg"], 32616, "{rel}");
    }

    let raster = tmp.path().join("rgb.tif");
    let gt = synthetic_rgb(&raster, 300, 200);
    let labels = tmp.path().join("labels.geojson");
    write_geojson(&labels, &[square(&gt, 130.0, 10.0, 20.0, 20.0)], Some("EPSG:32633"));
    let out = tmp.path().join("png");
    export_chips(&opts(&raster, &labels, &out, ChipFormat::Coco, 128, 128)).unwrap();
    let Some(info) = gdalinfo_json(&out.join("images/000000000.png")) else { return };
    assert_eq!(info["driverShortName"], "PNG");
    assert_eq!(
        info["geoTransform"],
        json!([501280.0, 10.0, 0.0, 4000000.0, 0.0, -10.0]),
        "the chip at column 128, placed by its .pgw"
    );
    assert_eq!(info["stac"]["proj:epsg"], 32633, "CRS from the .aux.xml");
}
