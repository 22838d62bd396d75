mod common;

use geo::{Area, BooleanOps, MultiPolygon, Validation};
use maskrcnn_geo::raster::{GeoTiff, GeoTransform, PixelWindow};
use maskrcnn_geo::vectorize::validity::validate_multipolygon;
use maskrcnn_geo::vectorize::*;
use maskrcnn_geo::MapUnits;

use common::Rng;

fn iou(a: &MultiPolygon<f64>, b: &MultiPolygon<f64>) -> f64 {
    let i = a.intersection(b).unsigned_area();
    let u = a.union(b).unsigned_area();
    i / u
}

#[test]
fn single_pixel_is_unit_square() {
    let mp = trace_mask_pixels(&[1], 1, 1).unwrap();
    assert_eq!(mp.0.len(), 1);
    assert_eq!(mp.unsigned_area(), 1.0);
    assert_eq!(mp.0[0].exterior().0.len(), 5);
    let gt = GeoTransform([100.0, 0.5, 0.0, 200.0, 0.0, -0.5]);
    let m = vectorize_mask(&[0, 0, 0, 1], 2, 2, &gt, &VectorizeOptions::default()).unwrap();
    assert_eq!(m.unsigned_area(), 0.25);
    let b = geo::BoundingRect::bounding_rect(&m).unwrap();
    assert_eq!((b.min().x, b.min().y, b.max().x, b.max().y), (100.5, 199.0, 101.0, 199.5));
    // RFC 7946: exterior rings counter-clockwise in map space.
    assert!(geo::Area::signed_area(&m.0[0]) > 0.0);
}

#[test]
fn donut_has_a_hole_and_diagonal_pixels_are_separate_valid_parts() {
    let donut = [1, 1, 1, 1, 0, 1, 1, 1, 1];
    let mp = trace_mask_pixels(&donut, 3, 3).unwrap();
    assert_eq!(mp.0.len(), 1);
    assert_eq!(mp.0[0].interiors().len(), 1);
    assert_eq!(mp.unsigned_area(), 8.0);
    assert!(mp.is_valid());

    let diag = [1, 0, 0, 1];
    let mp = trace_mask_pixels(&diag, 2, 2).unwrap();
    assert_eq!(mp.0.len(), 2);
    assert!(mp.is_valid(), "{:?}", mp.validation_errors());

    // A ring closed only through a diagonal contact: two 4-connected parts touching at two corners.
    #[rustfmt::skip]
    let ring = [
        1, 1, 1, 0,
        1, 0, 1, 0,
        1, 1, 0, 1,
        0, 0, 1, 1,
    ];
    let mp = trace_mask_pixels(&ring, 4, 4).unwrap();
    assert!(mp.is_valid(), "{:?}", mp.validation_errors());
    validate_multipolygon(&mp).unwrap();
    assert_eq!(mp.0.len(), 2);
    assert_eq!(mp.unsigned_area(), 10.0);
}

#[test]
fn random_masks_roundtrip_exactly_and_are_valid() {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let gt = GeoTransform([0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    for case in 0..300 {
        let (w, h) = (1 + (rng.next() % 17) as usize, 1 + (rng.next() % 13) as usize);
        let density = rng.next() % 100;
        let mask: Vec<u8> = (0..w * h).map(|_| (rng.next() % 100 < density) as u8).collect();
        let mp = trace_mask_pixels(&mask, w, h).unwrap();
        let count = mask.iter().filter(|&&m| m != 0).count();
        assert_eq!(mp.unsigned_area(), count as f64, "case {case}");
        assert!(mp.is_valid(), "case {case} {mask:?}: {:?}", mp.validation_errors());
        validate_multipolygon(&mp).unwrap_or_else(|e| panic!("case {case} {mask:?}: {e}"));
        let back = rasterize_polygons(&[(mp, 1u8)], w, h, &gt, 0).unwrap();
        assert_eq!(back, mask, "case {case}");
    }
}

fn rasterized_disc(size: usize, r: f64) -> Vec<u8> {
    let c = size as f64 / 2.0;
    (0..size * size)
        .map(|i| {
            let (x, y) = ((i % size) as f64 + 0.5, (i / size) as f64 + 0.5);
            (((x - c).powi(2) + (y - c).powi(2)).sqrt() < r) as u8
        })
        .collect()
}

#[test]
fn simplification_removes_staircase_but_keeps_shape() {
    let gt = GeoTransform([1000.0, 0.5, 0.0, 2000.0, 0.0, -0.5]);
    let disc = rasterized_disc(60, 25.0);
    let exact = vectorize_mask(&disc, 60, 60, &gt, &VectorizeOptions::default()).unwrap();
    let simple =
        vectorize_mask(&disc, 60, 60, &gt, &VectorizeOptions::default().with_simplify_pixels(&gt, 1.0)).unwrap();
    let n_exact = exact.0[0].exterior().0.len();
    let n_simple = simple.0[0].exterior().0.len();
    println!("disc: {n_exact} vertices exact, {n_simple} simplified");
    assert!(n_simple * 2 < n_exact, "{n_simple} vs {n_exact} vertices");
    assert!(simple.is_valid());
    let score = iou(&exact, &simple);
    assert!(score > 0.98, "IoU {score}");
    let true_area = std::f64::consts::PI * (25.0f64 * 0.5).powi(2);
    assert!((simple.unsigned_area() - true_area).abs() / true_area < 0.02);

    // min_area drops small parts and fills small holes.
    let mut mask = disc.clone();
    mask[0] = 1; // a 1-pixel speck (0.25 m²)
    mask[30 * 60 + 30] = 0; // a 1-pixel hole
    let opts = VectorizeOptions { min_area: 1.0, ..Default::default() };
    let mp = vectorize_mask(&mask, 60, 60, &gt, &opts).unwrap();
    assert_eq!(mp.0.len(), 1);
    assert_eq!(mp.0[0].interiors().len(), 0);
}

#[test]
fn right_angle_regularisation_of_a_rotated_rectangle() {
    let size = 80;
    let gt = GeoTransform([0.0, 1.0, 0.0, 0.0, 0.0, -1.0]);
    let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
    let corners = [(-25.0, -10.0), (25.0, -10.0), (25.0, 10.0), (-25.0, 10.0)];
    let rect: Vec<geo::Coord<f64>> = corners
        .iter()
        .chain(std::iter::once(&corners[0]))
        .map(|&(x, y)| geo::Coord { x: 40.0 + x * c - y * s, y: -40.0 + x * s + y * c })
        .collect();
    let truth = MultiPolygon::new(vec![geo::Polygon::new(geo::LineString::new(rect), vec![])]);
    let mask = rasterize_polygons(&[(truth.clone(), 1u8)], size, size, &gt, 0).unwrap();
    let opts = VectorizeOptions { simplify_tolerance: 1.0, regularize_right_angles: true, ..Default::default() };
    let mp = vectorize_mask(&mask, size, size, &gt, &opts).unwrap();
    assert_eq!(mp.0.len(), 1);
    let ext = &mp.0[0].exterior().0;
    assert_eq!(ext.len(), 5, "{ext:?}");
    for i in 0..4 {
        let (a, b, d) = (ext[i], ext[i + 1], ext[(i + 2) % 4]);
        let (v1, v2) = ((b.x - a.x, b.y - a.y), (d.x - b.x, d.y - b.y));
        let cos = (v1.0 * v2.0 + v1.1 * v2.1) / ((v1.0.hypot(v1.1)) * (v2.0.hypot(v2.1)));
        assert!(cos.abs() < 1e-9, "corner {i} not square: cos {cos}");
    }
    let score = iou(&mp, &truth);
    assert!(score > 0.97, "IoU with the true rectangle {score}");
}

#[test]
fn label_raster_gives_one_feature_per_value() {
    #[rustfmt::skip]
    let labels: Vec<u16> = vec![
        0, 7, 7, 0, 3,
        0, 7, 0, 0, 3,
        9, 0, 0, 3, 3,
        9, 9, 0, 0, 0,
    ];
    let gt = GeoTransform([10.0, 2.0, 0.0, 50.0, 0.0, -2.0]);
    let out = vectorize_label_raster(&labels, 5, 4, 0u16, &gt, &VectorizeOptions::default()).unwrap();
    let summary: Vec<(u16, usize, f64)> =
        out.iter().map(|f| (f.value, f.pixel_count, f.geometry.unsigned_area())).collect();
    assert_eq!(summary, vec![(3, 4, 16.0), (7, 3, 12.0), (9, 3, 12.0)]);
    for f in &out {
        assert!(f.geometry.is_valid());
    }
    let bad = vectorize_label_raster(&labels, 4, 4, 0u16, &gt, &VectorizeOptions::default());
    assert!(format!("{:#}", bad.err().unwrap()).contains("4x4"));
}

/// Rasterise the 43 SpaceNet footprints on the raster grid and vectorise them back.
///
/// Two thresholds, for two different questions:
/// * Against the rasterised mask (same grid), the exact outline must be IoU = 1 and the
///   0.5 px-simplified outline ≥ 0.98 for every building: this is the vectoriser's own error.
/// * Against the original (sub-pixel) footprints the grid itself costs about
///   0.25 px × perimeter of area (each boundary pixel is in or out by its centre), so IoU ≥ 0.98
///   is only reachable when area / perimeter ≥ ~12 px (≈ 25 m × 25 m at 0.5 m). We require
///   IoU ≥ 1 - 0.5 × perimeter_px / area_px (twice the expected loss) for every building and
///   ≥ 0.98 for those that are big enough.
#[test]
fn spacenet_footprints_rasterise_and_vectorise_back() {
    let dir = common::spacenet_dir();
    let r = GeoTiff::open(dir.join("sample_geotiff.tif")).unwrap();
    let info = r.info().clone();
    let gt = info.geotransform.unwrap();
    let text = std::fs::read_to_string(dir.join("geotiff_labels.geojson")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["crs"]["properties"]["name"], "urn:ogc:def:crs:EPSG::32616", "labels must be in the raster CRS");
    let mut truths = Vec::new();
    for f in json["features"].as_array().unwrap() {
        let rings: Vec<geo::LineString<f64>> = f["geometry"]["coordinates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ring| {
                ring.as_array()
                    .unwrap()
                    .iter()
                    .map(|p| geo::Coord { x: p[0].as_f64().unwrap(), y: p[1].as_f64().unwrap() })
                    .collect()
            })
            .collect();
        let mut it = rings.into_iter();
        truths.push(MultiPolygon::new(vec![geo::Polygon::new(it.next().unwrap(), it.collect())]));
    }
    assert_eq!(truths.len(), 43);
    let (w, h) = (info.width as usize, info.height as usize);
    let burn: Vec<(MultiPolygon<f64>, u32)> = truths.iter().cloned().zip(1u32..).collect();
    let labels = rasterize_polygons(&burn, w, h, &gt, 0u32).unwrap();
    let exact = vectorize_label_raster(&labels, w, h, 0, &gt, &VectorizeOptions::default()).unwrap();
    let simplified =
        vectorize_label_raster(&labels, w, h, 0, &gt, &VectorizeOptions::default().with_simplify_pixels(&gt, 0.5))
            .unwrap();
    assert_eq!(exact.len(), 43, "every footprint must survive rasterisation");
    let px_area = gt.pixel_area();
    let mut worst_simplified = 1.0f64;
    let mut big_enough = 0;
    for (e, s) in exact.iter().zip(&simplified) {
        assert_eq!(e.value, s.value);
        let truth = &truths[e.value as usize - 1];
        // Exact outline reproduces the burnt pixels: area = pixel count.
        assert!((e.geometry.unsigned_area() - e.pixel_count as f64 * px_area).abs() < 1e-6);
        assert!(e.geometry.is_valid() && s.geometry.is_valid());
        validate_multipolygon(&e.geometry).unwrap();
        validate_multipolygon(&s.geometry).unwrap();
        let iou_simpl = iou(&e.geometry, &s.geometry);
        worst_simplified = worst_simplified.min(iou_simpl);
        assert!(iou_simpl >= 0.98, "building {}: simplified vs exact IoU {iou_simpl}", e.value);
        let area_px = truth.unsigned_area() / px_area;
        let perim_px: f64 =
            truth.0[0].exterior().0.windows(2).map(|p| (p[1].x - p[0].x).hypot(p[1].y - p[0].y)).sum::<f64>()
                / gt.pixel_size();
        let iou_truth = iou(&s.geometry, truth);
        let bound = 1.0 - 0.5 * perim_px / area_px;
        assert!(iou_truth >= bound, "building {}: IoU {iou_truth} < {bound} ({area_px:.0} px)", e.value);
        if area_px / perim_px >= 12.0 {
            big_enough += 1;
            assert!(iou_truth >= 0.98, "building {} ({area_px:.0} px): IoU {iou_truth}", e.value);
        }
        println!(
            "building {:2}: {:6.0} px, IoU vs truth {:.4}, simplified vs exact {:.4}",
            e.value, area_px, iou_truth, iou_simpl
        );
    }
    println!("worst simplified-vs-exact IoU {worst_simplified:.4}; {big_enough} buildings big enough for the 0.98 bar");

    // Same round trip on a 4x finer grid (0.125 m): the grid loss drops 4x, so buildings with
    // area/perimeter >= 4 native px (most of them) must now reach IoU >= 0.98 against
    // the original polygon, and all must stay within twice the expected grid loss. This checks
    // that nothing but the grid limits the accuracy.
    let k = 4.0;
    let fine = GeoTransform([gt.0[0], gt.0[1] / k, 0.0, gt.0[3], 0.0, gt.0[5] / k]);
    let (fw, fh) = (w * 4, h * 4);
    let burn: Vec<(MultiPolygon<f64>, u16)> = truths.iter().cloned().zip(1u16..).collect();
    let labels = rasterize_polygons(&burn, fw, fh, &fine, 0u16).unwrap();
    let fine_polys = vectorize_label_raster(
        &labels,
        fw,
        fh,
        0,
        &fine,
        &VectorizeOptions::default().with_simplify_pixels(&fine, 0.5),
    )
    .unwrap();
    assert_eq!(fine_polys.len(), 43);
    let mut worst = (1.0f64, 0u16);
    let mut n_big = 0;
    for f in &fine_polys {
        let truth = &truths[f.value as usize - 1];
        let score = iou(&f.geometry, truth);
        let area_px = truth.unsigned_area() / fine.pixel_area();
        let perim_px: f64 =
            truth.0[0].exterior().0.windows(2).map(|p| (p[1].x - p[0].x).hypot(p[1].y - p[0].y)).sum::<f64>()
                / fine.pixel_size();
        assert!(score >= 1.0 - 0.5 * perim_px / area_px, "4x grid: building {} IoU {score}", f.value);
        // Expected grid loss is 0.25 * perimeter / area; 16 px leaves margin for its spread.
        if area_px / perim_px >= 16.0 {
            n_big += 1;
            assert!(score >= 0.98, "4x grid: building {} ({area_px:.0} px) IoU {score}", f.value);
            if score < worst.0 {
                worst = (score, f.value);
            }
        }
    }
    println!(
        "4x grid: {n_big} of 43 buildings big enough; their worst IoU vs truth {:.4} (building {})",
        worst.0, worst.1
    );
    assert!(n_big >= 30, "only {n_big} buildings reached the size for the 0.98 bar");
    let _ = PixelWindow::new(0, 0, 1, 1);
}

/// `--min-area` and `--simplify` are metres in a geographic CRS too: a 10×10-pixel building of
/// 0.5 m pixels in EPSG:4326 near Atlanta is 25 m², kept by `min_area` 20 and dropped by 30, and a
/// 1 m tolerance removes the staircase of a diagonal edge while the result stays valid.
#[test]
fn metric_options_in_a_geographic_crs() {
    let units = MapUnits::of_crs(Some(&maskrcnn_geo::Crs::from_epsg(4326)));
    let lat: f64 = 33.75;
    let (deg_lon, deg_lat) = (0.5 / (111_320.0 * lat.to_radians().cos()), 0.5 / 110_900.0);
    let gt = GeoTransform([-84.39, deg_lon, 0.0, lat, 0.0, -deg_lat]);
    let mut mask = vec![0u8; 20 * 20];
    for y in 5..15 {
        for x in 5..15 {
            mask[y * 20 + x] = 1;
        }
    }
    let opts = |min_area: f64| VectorizeOptions { min_area, units, ..Default::default() };
    let kept = vectorize_mask(&mask, 20, 20, &gt, &opts(20.0)).unwrap();
    assert_eq!(kept.0.len(), 1);
    let area = units.area_m2(&kept);
    assert!((area - 25.0).abs() < 0.1, "{area} m²");
    assert!(vectorize_mask(&mask, 20, 20, &gt, &opts(30.0)).unwrap().0.is_empty());
    // In degrees the same numbers would keep everything (areas ~1e-9 deg²) and not simplify.
    let native = VectorizeOptions { min_area: 30.0, ..Default::default() };
    assert!(vectorize_mask(&mask, 20, 20, &gt, &native).unwrap().0.is_empty());

    // A right triangle of pixels: its hypotenuse is a 1-pixel staircase (0.5 m steps).
    let mut tri = vec![0u8; 40 * 40];
    for y in 0..40 {
        for x in 0..=y {
            tri[y * 40 + x] = 1;
        }
    }
    let exact = vectorize_mask(&tri, 40, 40, &gt, &VectorizeOptions { units, ..Default::default() }).unwrap();
    let simplified =
        vectorize_mask(&tri, 40, 40, &gt, &VectorizeOptions { simplify_tolerance: 1.0, units, ..Default::default() })
            .unwrap();
    let vertices = |m: &MultiPolygon<f64>| m.0[0].exterior().0.len();
    assert!(vertices(&exact) > 80, "{}", vertices(&exact));
    assert!(vertices(&simplified) <= 6, "{}", vertices(&simplified));
    validate_multipolygon(&simplified).unwrap();
    let (a, b) = (units.area_m2(&exact), units.area_m2(&simplified));
    assert!((a - b).abs() / a < 0.05, "{a} vs {b}");
}
