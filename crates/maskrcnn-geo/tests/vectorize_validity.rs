//! Adversarial and property tests: every vectorised polygon must be valid by OGC/GEOS rules
//! (`maskrcnn_geo::vectorize::validity`), with GDAL polygonize's semantics (object pixels
//! 4-connected, background 8-connected), and the exact outline must cover exactly the mask's pixels.

use geo::{Area, MultiPolygon, Polygon};
use maskrcnn_geo::raster::GeoTransform;
use maskrcnn_geo::vectorize::validity::{validate_multipolygon, validate_polygon};
use maskrcnn_geo::vectorize::*;

mod common;
use common::Rng;

/// Parse a picture: rows of '#' (object) and '.' (background).
fn picture(rows: &[&str]) -> (Vec<u8>, usize, usize) {
    let h = rows.len();
    let w = rows[0].len();
    let mask = rows.iter().flat_map(|r| r.bytes().map(|b| (b == b'#') as u8)).collect();
    (mask, w, h)
}

fn identity() -> GeoTransform {
    GeoTransform([0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
}

/// A north-up transform (y flipped) with an offset, as real rasters have.
fn north_up() -> GeoTransform {
    GeoTransform([500000.0, 0.5, 0.0, 4000000.0, 0.0, -0.5])
}

/// Everything wrong with the vectorisation of one mask; empty when all is well.
fn problems(mask: &[u8], w: usize, h: usize) -> Vec<String> {
    let mut out = Vec::new();
    let count = mask.iter().filter(|&&m| m != 0).count();
    let mp = trace_mask_pixels(mask, w, h).unwrap();
    for (i, p) in mp.0.iter().enumerate() {
        if let Err(e) = validate_polygon(p) {
            out.push(format!("trace polygon {i}: {e}"));
        }
    }
    if let Err(e) = validate_multipolygon(&mp) {
        out.push(format!("trace multipolygon: {e}"));
    }
    if mp.unsigned_area() != count as f64 {
        out.push(format!("area {} != {count} pixels", mp.unsigned_area()));
    }
    let back = rasterize_polygons(&[(mp, 1u8)], w, h, &identity(), 0).unwrap();
    let back_mask: Vec<u8> = mask.iter().map(|&m| (m != 0) as u8).collect();
    if back != back_mask {
        out.push("rasterised outline differs from the mask".into());
    }
    let gt = north_up();
    let m = vectorize_mask(mask, w, h, &gt, &VectorizeOptions::default()).unwrap();
    if let Err(e) = validate_multipolygon(&m) {
        out.push(format!("vectorize_mask: {e}"));
    }
    if (m.unsigned_area() - count as f64 * gt.pixel_area()).abs() > 1e-6 {
        out.push(format!("vectorize_mask area {} != {count} pixels", m.unsigned_area() / gt.pixel_area()));
    }
    out
}

fn assert_ok(mask: &[u8], w: usize, h: usize) -> MultiPolygon<f64> {
    let p = problems(mask, w, h);
    assert!(p.is_empty(), "{p:#?}");
    trace_mask_pixels(mask, w, h).unwrap()
}

/// (area of the shell ring, number of holes) per polygon, sorted.
fn shape(mp: &MultiPolygon<f64>) -> Vec<(f64, usize)> {
    let mut v: Vec<(f64, usize)> =
        mp.0.iter()
            .map(|p| (Polygon::new(p.exterior().clone(), vec![]).unsigned_area(), p.interiors().len()))
            .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

#[test]
fn corner_touching_holes_around_a_centre_pixel() {
    // 5x5 block, the four pixels around the centre cleared: the centre pixel touches the rest only
    // at corners, so it is its own polygon and the four background pixels form one plus-shaped
    // hole (background is 8-connected). The old tracer made four holes touching in a cycle.
    let (mask, w, h) = picture(&[
        ".......", //
        ".#####.", ".##.##.", ".#.#.#.", ".##.##.", ".#####.", ".......",
    ]);
    let mp = assert_ok(&mask, w, h);
    assert_eq!(shape(&mp), vec![(1.0, 0), (25.0, 1)]);
    let big = mp.0.iter().find(|p| p.interiors().len() == 1).unwrap();
    assert_eq!(Polygon::new(big.interiors()[0].clone(), vec![]).unsigned_area(), 5.0);
}

#[test]
fn parts_touching_at_a_corner_are_separate() {
    let (mask, w, h) = picture(&["#.", ".#"]);
    assert_eq!(shape(&assert_ok(&mask, w, h)), vec![(1.0, 0), (1.0, 0)]);
    let (mask, w, h) = picture(&[".#", "#."]);
    assert_eq!(shape(&assert_ok(&mask, w, h)), vec![(1.0, 0), (1.0, 0)]);
    // Two blocks meeting at one corner.
    let (mask, w, h) = picture(&["##..", "##..", "..##", "..##"]);
    assert_eq!(shape(&assert_ok(&mask, w, h)), vec![(4.0, 0), (4.0, 0)]);
    // A diagonal line of pixels: all separate.
    let (mask, w, h) = picture(&["#...", ".#..", "..#.", "...#"]);
    assert_eq!(assert_ok(&mask, w, h).0.len(), 4);
}

#[test]
fn one_pixel_bridges() {
    // A 4-connected one-pixel bridge joins two blocks.
    let (mask, w, h) = picture(&["##.##", "#####", "##.##"]);
    assert_eq!(shape(&assert_ok(&mask, w, h)), vec![(13.0, 0)]);
    // A one-pixel bridge between two holes.
    let (mask, w, h) = picture(&["#####", "#.#.#", "#####"]);
    assert_eq!(shape(&assert_ok(&mask, w, h)), vec![(15.0, 2)]);
    // A diagonal "bridge" does not join.
    let (mask, w, h) = picture(&["##..", "##..", "..##", "..##", "..##"]);
    assert_eq!(assert_ok(&mask, w, h).0.len(), 2);
}

#[test]
fn nested_holes_and_islands_become_separate_polygons() {
    let (mask, w, h) = picture(&[
        "#########",
        "#.......#",
        "#.#####.#",
        "#.#...#.#",
        "#.#.#.#.#",
        "#.#...#.#",
        "#.#####.#",
        "#.......#",
        "#########",
    ]);
    let mp = assert_ok(&mask, w, h);
    assert_eq!(shape(&mp), vec![(1.0, 0), (25.0, 1), (81.0, 1)]);
    // An island touching its hole's border at a corner stays separate.
    let (mask, w, h) = picture(&["#####", "#...#", "#.#.#", "#..##", "#####"]);
    let mp = assert_ok(&mask, w, h);
    assert_eq!(shape(&mp), vec![(1.0, 0), (25.0, 1)]);
    let (mask, w, h) = picture(&["######", "#....#", "#.#..#", "#..#.#", "#....#", "######"]);
    let mp = assert_ok(&mask, w, h);
    assert_eq!(shape(&mp), vec![(1.0, 0), (1.0, 0), (36.0, 1)]);
}

#[test]
fn holes_touching_the_shell_or_each_other_at_a_corner() {
    // Hole touching the outside at a corner: the shell's boundary pinches there.
    let (mask, w, h) = picture(&["###.", "#.#.", "##.#", "..##"]);
    let mp = assert_ok(&mask, w, h);
    assert_eq!(shape(&mp), vec![(3.0, 0), (8.0, 1)]);
    // Two holes touching at a corner inside a block.
    let (mask, w, h) = picture(&["####", "#.##", "##.#", "####"]);
    let mp = assert_ok(&mask, w, h);
    assert_eq!(shape(&mp), vec![(16.0, 2)]);
    // A hole touching the shell at a corner from inside.
    let (mask, w, h) = picture(&["....", ".###", ".#.#", ".###", "#..."]);
    assert_ok(&mask, w, h);
    // A diagonal chain of holes touching each other: one hole ring per pixel, one part.
    let (mask, w, h) = picture(&["#####", "#.###", "##.##", "###.#", "#####"]);
    let mp = assert_ok(&mask, w, h);
    assert_eq!(shape(&mp), vec![(25.0, 3)]);
    let (mask, w, h) = picture(&["#####", "##.##", "#.#.#", "##.##", "#####"]);
    let mp = assert_ok(&mask, w, h);
    assert_eq!(shape(&mp), vec![(1.0, 0), (25.0, 1)]);
}

#[test]
fn checkerboards() {
    for n in [2usize, 3, 5, 8, 13] {
        for phase in 0..2 {
            let mask: Vec<u8> = (0..n * n).map(|i| ((i % n + i / n + phase) % 2) as u8).collect();
            let mp = assert_ok(&mask, n, n);
            assert_eq!(mp.0.len(), mask.iter().filter(|&&m| m == 1).count());
            // Framed checkerboard: the frame is one polygon whose holes touch each other.
            let m = n + 2;
            let framed: Vec<u8> = (0..m * m)
                .map(|i| {
                    let (x, y) = (i % m, i / m);
                    if x == 0 || y == 0 || x == m - 1 || y == m - 1 {
                        1
                    } else {
                        mask[(y - 1) * n + x - 1]
                    }
                })
                .collect();
            assert_ok(&framed, m, m);
        }
    }
}

fn random_mask(rng: &mut Rng, w: usize, h: usize, density: u64) -> Vec<u8> {
    (0..w * h).map(|_| (rng.below(100) < density) as u8).collect()
}

#[test]
fn random_masks_are_valid_and_exact() {
    let mut rng = Rng(0x2545f4914f6cdd1d);
    let mut failures = Vec::new();
    let mut n = 0;
    for density in [10u64, 30, 45, 50, 55, 70, 90] {
        for _ in 0..100 {
            let mask = random_mask(&mut rng, 12, 12, density);
            n += 1;
            let p = problems(&mask, 12, 12);
            if !p.is_empty() {
                failures.push((density, p));
            }
        }
    }
    for _ in 0..200 {
        let (w, h) = (1 + rng.below(20) as usize, 1 + rng.below(20) as usize);
        let density = rng.below(101);
        let mask = random_mask(&mut rng, w, h, density);
        n += 1;
        let p = problems(&mask, w, h);
        if !p.is_empty() {
            failures.push((0, p));
        }
    }
    assert!(failures.is_empty(), "{} of {n} random masks fail; first: {:#?}", failures.len(), failures.first());
}

/// Label raster of blobs: grow random seeds so objects have holes, bridges and corner contacts.
fn random_labels(rng: &mut Rng, w: usize, h: usize, n_values: u64) -> Vec<u16> {
    let mut labels: Vec<u16> =
        (0..w * h).map(|_| if rng.below(3) == 0 { rng.below(n_values + 1) as u16 } else { 0 }).collect();
    for _ in 0..2 {
        for i in 0..w * h {
            if labels[i] == 0 && rng.below(2) == 0 {
                let (x, y) = (i % w, i / w);
                let j = match rng.below(4) {
                    0 if x > 0 => i - 1,
                    1 if x + 1 < w => i + 1,
                    2 if y > 0 => i - w,
                    3 if y + 1 < h => i + w,
                    _ => i,
                };
                labels[i] = labels[j];
            }
        }
    }
    labels
}

#[test]
fn random_label_rasters_are_valid_and_exact() {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let gt = north_up();
    let mut failures = Vec::new();
    for case in 0..300 {
        let (w, h) = (1 + rng.below(24) as usize, 1 + rng.below(24) as usize);
        let n_values = 1 + rng.below(6);
        let labels = random_labels(&mut rng, w, h, n_values);
        let out = vectorize_label_raster(&labels, w, h, 0u16, &gt, &VectorizeOptions::default()).unwrap();
        let mut burn = Vec::new();
        for f in &out {
            if let Err(e) = validate_multipolygon(&f.geometry) {
                failures.push(format!("case {case} value {}: {e}", f.value));
            }
            let area = f.geometry.unsigned_area() / gt.pixel_area();
            if (area - f.pixel_count as f64).abs() > 1e-6 {
                failures.push(format!("case {case} value {}: area {area} != {} px", f.value, f.pixel_count));
            }
            burn.push((f.geometry.clone(), f.value));
        }
        let back = rasterize_polygons(&burn, w, h, &gt, 0u16).unwrap();
        if back != labels {
            failures.push(format!("case {case}: rasterised features differ from the labels"));
        }
    }
    assert!(failures.is_empty(), "{} failures: {:#?}", failures.len(), &failures[..failures.len().min(5)]);
}

#[test]
fn simplified_and_regularised_output_stays_valid() {
    let mut rng = Rng(0xd1b54a32d192ed03);
    let gt = north_up();
    let mut failures = Vec::new();
    let mut n = 0;
    for case in 0..400 {
        let (w, h) = (4 + rng.below(20) as usize, 4 + rng.below(20) as usize);
        let density = [20u64, 45, 55, 80][case % 4];
        let mut mask = random_mask(&mut rng, w, h, density);
        if case % 2 == 1 {
            // Blobbier: majority filter once.
            let m0 = mask.clone();
            for y in 0..h {
                for x in 0..w {
                    let mut s = 0;
                    for (dx, dy) in [(-1i64, 0i64), (1, 0), (0, -1), (0, 1), (0, 0)] {
                        let (xx, yy) = (x as i64 + dx, y as i64 + dy);
                        if xx >= 0 && yy >= 0 && (xx as usize) < w && (yy as usize) < h {
                            s += m0[yy as usize * w + xx as usize] as i32;
                        }
                    }
                    mask[y * w + x] = (s >= 3) as u8;
                }
            }
        }
        for px in [0.3, 0.5, 1.0, 2.0, 4.0] {
            for regularize in [false, true] {
                n += 1;
                let opts = VectorizeOptions { regularize_right_angles: regularize, ..Default::default() }
                    .with_simplify_pixels(&gt, px);
                let mp = vectorize_mask(&mask, w, h, &gt, &opts).unwrap();
                if let Err(e) = validate_multipolygon(&mp) {
                    failures.push(format!("case {case} tol {px} px regularize {regularize}: {e}"));
                }
            }
        }
        // Label rasters go through the same post-processing.
        let labels = random_labels(&mut rng, w, h, 4);
        let opts = VectorizeOptions::default().with_simplify_pixels(&gt, 1.0);
        for f in vectorize_label_raster(&labels, w, h, 0u16, &gt, &opts).unwrap() {
            n += 1;
            if let Err(e) = validate_multipolygon(&f.geometry) {
                failures.push(format!("case {case} label {}: {e}", f.value));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} simplified outputs invalid: {:#?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

#[test]
fn min_area_keeps_output_valid() {
    let mut rng = Rng(0x1234567);
    let gt = identity();
    for case in 0..200 {
        let mask = random_mask(&mut rng, 12, 12, [30u64, 50, 70][case % 3]);
        for min_area in [1.0, 2.0, 5.0] {
            let opts = VectorizeOptions { min_area, ..Default::default() };
            let mp = vectorize_mask(&mask, 12, 12, &gt, &opts).unwrap();
            if let Err(e) = validate_multipolygon(&mp) {
                panic!("case {case} min_area {min_area}: {e}");
            }
        }
    }
}

fn wkt(mp: &MultiPolygon<f64>) -> String {
    if mp.0.is_empty() {
        return "MULTIPOLYGON EMPTY".into();
    }
    let ring = |r: &geo::LineString<f64>| {
        let pts: Vec<String> = r.0.iter().map(|c| format!("{:?} {:?}", c.x, c.y)).collect();
        format!("({})", pts.join(","))
    };
    let polys: Vec<String> =
        mp.0.iter()
            .map(|p| {
                let rings: Vec<String> = std::iter::once(p.exterior()).chain(p.interiors()).map(ring).collect();
                format!("({})", rings.join(","))
            })
            .collect();
    format!("MULTIPOLYGON({})", polys.join(","))
}

/// Cross-check of the validity checker against GEOS: writes `<our verdict>\t<WKT>` lines for
/// `tools/bench/vectorize/geos_crosscheck.py`. Run with
/// `WKT_OUT=/tmp/v.tsv cargo test --release -p maskrcnn-geo --test vectorize_validity -- --ignored`.
#[test]
#[ignore]
fn dump_wkt_for_geos() {
    use std::io::Write;
    let path = std::env::var("WKT_OUT").unwrap_or_else(|_| "/tmp/vectorize_wkt.tsv".into());
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut rng = Rng(0x5eed);
    let gt = north_up();
    for case in 0..600 {
        let (w, h) = (2 + rng.below(14) as usize, 2 + rng.below(14) as usize);
        let density = [20u64, 45, 55, 80][case % 4];
        let mask = random_mask(&mut rng, w, h, density);
        let px = [0.0, 0.5, 1.0, 2.0][case % 4];
        let opts = VectorizeOptions { regularize_right_angles: case % 8 >= 4, ..Default::default() }
            .with_simplify_pixels(&gt, px);
        let mp = vectorize_mask(&mask, w, h, &gt, &opts).unwrap();
        let mut geoms = vec![mp.clone()];
        geoms.extend(mp.0.iter().map(|p| MultiPolygon::new(vec![p.clone()])));
        // Jittered copies of the exact pixel outlines: a mix of valid and invalid geometries with
        // many degenerate contacts (vertices on grid points and half points).
        let exact = trace_mask_pixels(&mask, w, h).unwrap();
        for _ in 0..3 {
            let mut j = exact.clone();
            let n_polys = j.0.len();
            if n_polys == 0 {
                break;
            }
            for _ in 0..1 + rng.below(3) {
                let pi = rng.below(n_polys as u64) as usize;
                let (mut ext, mut ints) = j.0[pi].clone().into_inner();
                let ring = if ints.is_empty() || rng.below(2) == 0 { &mut ext } else { &mut ints[0] };
                let n = ring.0.len() - 1;
                let k = rng.below(n as u64) as usize;
                let d = [-1.0, -0.5, 0.5, 1.0][rng.below(4) as usize];
                if rng.below(4) == 0 {
                    // Move the whole ring (holes outside/nested, parts inside other parts).
                    let (dx, dy) = (rng.below(7) as f64 - 3.0, rng.below(7) as f64 - 3.0);
                    for c in ring.0.iter_mut() {
                        c.x += dx;
                        c.y += dy;
                    }
                } else if rng.below(2) == 0 {
                    ring.0[k].x += d;
                } else {
                    ring.0[k].y += d;
                }
                ring.0[n] = ring.0[0];
                j.0[pi] = Polygon::new(ext, ints);
            }
            geoms.push(j.clone());
            geoms.extend(j.0.iter().map(|p| MultiPolygon::new(vec![p.clone()])));
        }
        for g in geoms {
            let verdict = match validate_multipolygon(&g) {
                Ok(()) => "valid".to_string(),
                Err(e) => e.reason.message().to_string(),
            };
            writeln!(f, "{verdict}\t{}", wkt(&g)).unwrap();
        }
    }
}

/// Invalid outputs per category, printed rather than asserted (for comparing implementations):
/// `cargo test --release -p maskrcnn-geo --test vectorize_validity count_invalid -- --ignored --nocapture`.
#[test]
#[ignore]
fn count_invalid_outputs() {
    let pictures: Vec<Vec<&str>> = vec![
        vec![".......", ".#####.", ".##.##.", ".#.#.#.", ".##.##.", ".#####.", "......."],
        vec!["#.", ".#"],
        vec!["##..", "##..", "..##", "..##"],
        vec!["##.##", "#####", "##.##"],
        vec!["#####", "#.#.#", "#####"],
        vec![
            "#########",
            "#.......#",
            "#.#####.#",
            "#.#...#.#",
            "#.#.#.#.#",
            "#.#...#.#",
            "#.#####.#",
            "#.......#",
            "#########",
        ],
        vec!["#####", "#...#", "#.#.#", "#..##", "#####"],
        vec!["######", "#....#", "#.#..#", "#..#.#", "#....#", "######"],
        vec!["###.", "#.#.", "##.#", "..##"],
        vec!["####", "#.##", "##.#", "####"],
        vec!["#####", "#.###", "##.##", "###.#", "#####"],
        vec!["#####", "##.##", "#.#.#", "##.##", "#####"],
    ];
    let bad = pictures.iter().filter(|p| !problems(&picture(p).0, p[0].len(), p.len()).is_empty()).count();
    println!("pictures: {bad} of {} invalid", pictures.len());
    let (mut bad, mut n) = (0, 0);
    for k in [2usize, 3, 5, 8, 13] {
        for phase in 0..2 {
            let m = k + 2;
            let framed: Vec<u8> = (0..m * m)
                .map(|i| {
                    let (x, y) = (i % m, i / m);
                    (x == 0 || y == 0 || x == m - 1 || y == m - 1 || (x + y + phase) % 2 == 1) as u8
                })
                .collect();
            n += 1;
            bad += !problems(&framed, m, m).is_empty() as usize;
        }
    }
    println!("framed checkerboards: {bad} of {n} invalid");
    let mut rng = Rng(0x2545f4914f6cdd1d);
    for density in [10u64, 30, 45, 50, 55, 70, 90] {
        let bad = (0..100).filter(|_| !problems(&random_mask(&mut rng, 12, 12, density), 12, 12).is_empty()).count();
        println!("random 12x12 masks, density {density}%: {bad} of 100 invalid");
    }
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let gt = north_up();
    let (mut bad, mut n, mut bad_rasters) = (0, 0, 0);
    for _ in 0..300 {
        let (w, h) = (1 + rng.below(24) as usize, 1 + rng.below(24) as usize);
        let n_values = 1 + rng.below(6);
        let labels = random_labels(&mut rng, w, h, n_values);
        let out = vectorize_label_raster(&labels, w, h, 0u16, &gt, &VectorizeOptions::default()).unwrap();
        let b = out.iter().filter(|f| validate_multipolygon(&f.geometry).is_err()).count();
        bad += b;
        bad_rasters += (b > 0) as usize;
        n += out.len();
    }
    println!("label rasters: {bad} of {n} features invalid, in {bad_rasters} of 300 rasters");
}

#[test]
fn simplification_keeps_touching_rings_touching() {
    // A disc with a square hole and a diagonal chain of one-pixel holes from it to the outside:
    // every hole touches the next at a corner and the last touches the shell. Simplifying must not
    // pull those corners apart (rings would cross or overlap) nor give up on the whole polygon.
    let (size, c, r) = (60usize, 30.0, 25.0);
    let mut mask: Vec<u8> = (0..size * size)
        .map(|i| ((((i % size) as f64 + 0.5 - c).powi(2) + ((i / size) as f64 + 0.5 - c).powi(2)).sqrt() < r) as u8)
        .collect();
    for y in 26..34 {
        for x in 26..34 {
            mask[y * size + x] = 0;
        }
    }
    let mut chain = 0;
    for k in 0.. {
        let (x, y) = (34 + k, 34 + k);
        if mask[y * size + x] == 0 || mask[(y + 1) * size + x + 1] == 0 {
            break;
        }
        mask[y * size + x] = 0;
        chain += 1;
    }
    // Last chain pixel diagonal to the outside: make that corner a saddle.
    let (x, y) = (34 + chain, 34 + chain);
    mask[y * size + x] = 0;
    chain += 1;
    let gt = north_up();
    let exact = vectorize_mask(&mask, size, size, &gt, &VectorizeOptions::default()).unwrap();
    let simple =
        vectorize_mask(&mask, size, size, &gt, &VectorizeOptions::default().with_simplify_pixels(&gt, 1.0)).unwrap();
    validate_multipolygon(&exact).unwrap();
    validate_multipolygon(&simple).unwrap();
    assert_eq!(exact.0.len(), 1);
    assert_eq!(simple.0.len(), 1);
    let holes = exact.0[0].interiors().len();
    assert!(holes >= chain, "one ring per hole pixel of the chain, plus the square: {holes} holes, chain {chain}");
    assert_eq!(simple.0[0].interiors().len(), holes);
    let (ne, ns) = (exact.0[0].exterior().0.len(), simple.0[0].exterior().0.len());
    assert!(ns * 2 < ne, "shell not simplified: {ns} vs {ne} vertices");
    // The shell still touches the chain at a shared vertex, and the holes each other.
    let touches = |p: &Polygon<f64>| {
        let key = |c: &geo::Coord<f64>| (c.x.to_bits(), c.y.to_bits());
        let shell: std::collections::HashSet<(u64, u64)> = p.exterior().0.iter().map(key).collect();
        let shell_touches = p.interiors().iter().filter(|h| h.0.iter().any(|c| shell.contains(&key(c)))).count();
        let mut seen = std::collections::HashMap::new();
        for h in p.interiors() {
            for c in &h.0[1..] {
                *seen.entry(key(c)).or_insert(0) += 1;
            }
        }
        (shell_touches, seen.values().filter(|&&n| n > 1).count())
    };
    let t = touches(&exact.0[0]);
    assert!(t.0 >= 1 && t.1 >= chain - 1, "{t:?}");
    assert_eq!(touches(&simple.0[0]), t);
}
