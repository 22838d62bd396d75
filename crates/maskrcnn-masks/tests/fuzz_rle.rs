//! Fuzzing the COCO segmentation readers: compressed and uncompressed RLE and polygons, from
//! JSON text through `Segmentation::to_rle` to masks, boxes, merges, IoUs and boundaries.
//! Short in CI; `MASKRCNN_FUZZ_CASES=100000 cargo test --release -p maskrcnn-masks --test fuzz_rle`
//! for a long run (see `fuzz_common`).

mod fuzz_common;

use fuzz_common::{json, mutate_bytes, Rng};
use maskrcnn_masks::{bbox_iou, mask_boundary, mask_iou, Rle, Segmentation};
use serde_json::{json as j, Value};

/// Masks up to this many pixels are decoded and checked pixel by pixel; bigger declared sizes
/// only go through the run-length operations (which is what must stay bounded).
const DECODE_LIMIT: usize = 1 << 16;

fn random_mask(rng: &mut Rng, h: usize, w: usize) -> Vec<u8> {
    let density = 1 + rng.below(4);
    (0..h * w).map(|_| u8::from(rng.below(5) < density)).collect()
}

/// Valid documents `{"h", "w", "segmentation"}` of every form.
fn seeds() -> Vec<Value> {
    let mut rng = Rng::new(7);
    let (h, w) = (6, 5);
    let mask = random_mask(&mut rng, h, w);
    let rle = Rle::from_mask(&mask, h, w);
    vec![
        j!({"h": h, "w": w, "segmentation": Segmentation::from_rle(&rle)}),
        j!({"h": h, "w": w, "segmentation": {"size": [h, w], "counts": rle.counts}}),
        j!({"h": h, "w": w, "segmentation": [[0.5, 0.5, 4.5, 0.5, 4.5, 5.5, 0.5, 5.5]]}),
        j!({"h": h, "w": w, "segmentation": [[1.0, 1.0, 3.0, 1.2, 2.0, 4.0], [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.2]]}),
        j!({"h": h, "w": w, "segmentation": [[-2.0, -3.0, 9.0, 1.0, 4.0, 12.0, -1.0, 4.0]]}),
        j!({"h": 40, "w": 30, "segmentation": {"size": [40, 30], "counts": "PQ3=j0O3N1O100O2M4L"}}),
        j!({"h": 1, "w": 1, "segmentation": {"size": [1, 1], "counts": [0, 1]}}),
    ]
}

/// Every operation a reader of this segmentation may run; properties that must hold for a
/// mask that decoded are asserted (a violation is reported like a panic).
fn exercise(text: &[u8]) {
    let Ok(doc) = serde_json::from_slice::<Value>(text) else { return };
    let (Some(h), Some(w)) = (doc["h"].as_u64(), doc["w"].as_u64()) else { return };
    let (h, w) = (h as usize, w as usize);
    let Ok(seg) = serde_json::from_value::<Segmentation>(doc["segmentation"].clone()) else { return };
    let Ok(rle) = seg.to_rle(h, w) else { return };
    assert_eq!((rle.height, rle.width), (h, w));
    let area = rle.area();
    assert!(area <= h as u64 * w as u64, "area {area} of a {h}x{w} mask");
    let bbox = rle.to_bbox();
    assert!(bbox.iter().all(|v| v.is_finite()));
    // Compressed form round-trips.
    let again = Rle::from_coco_string(&rle.to_coco_string(), h, w).expect("our own string decodes");
    assert_eq!(again, rle);
    let merged = Rle::merge(&[rle.clone(), again], false);
    let iou = mask_iou(std::slice::from_ref(&rle), std::slice::from_ref(&rle), &[false]);
    // pycocotools' lockstep walk (`rleMerge`, `rleIou`) stops early when both masks reach a
    // zero-length run at once, so these hold only for RLEs without interior zero runs; the
    // quirk is kept, as evaluation must match pycocotools.
    if !rle.counts.iter().skip(1).any(|&c| c == 0) {
        assert_eq!(merged.area(), area, "union with itself");
        assert!(iou[0][0] == 1.0 || (area == 0 && iou[0][0] == 0.0), "self IoU {}", iou[0][0]);
    }
    let _ = bbox_iou(&[bbox], &[bbox], &[true]);
    if h * w <= DECODE_LIMIT {
        let mask = rle.to_mask();
        assert_eq!(mask.iter().map(|&v| v as u64).sum::<u64>(), area, "decoded pixels vs area");
        assert_eq!(Rle::from_mask(&mask, h, w).area(), area);
        let band = mask_boundary(&mask, h, w, 0.02);
        assert!(band.iter().zip(&mask).all(|(&b, &m)| b <= m), "boundary outside the mask");
    }
}

#[test]
fn fuzz_segmentations() {
    let seeds = seeds();
    let texts: Vec<Vec<u8>> = seeds.iter().map(|s| serde_json::to_vec(s).unwrap()).collect();
    let others: Vec<&[u8]> = texts.iter().map(|t| t.as_slice()).collect();
    let tokens: &[&[u8]] = &[b"\"counts\"", b"\"size\"", b"[", b"]", b",", b"4294967295", b"-1", b"1e300", b"\"o\""];
    fuzz_common::run(
        "segmentations",
        fuzz_common::cases(40_000),
        |rng, _| {
            let i = rng.below(seeds.len());
            if rng.chance(2) {
                serde_json::to_vec(&json::mutate(rng, &seeds[i])).unwrap()
            } else {
                mutate_bytes(rng, &texts[i], &others, tokens)
            }
        },
        exercise,
    );
}

/// Compressed strings of random characters from the RLE alphabet and just outside it, at
/// random sizes: `from_coco_string` must refuse what does not cover the mask.
#[test]
fn fuzz_compressed_strings() {
    fuzz_common::run(
        "compressed_strings",
        fuzz_common::cases(40_000),
        |rng, _| {
            let (h, w) = (rng.below(9), rng.below(9));
            let n = rng.below(24);
            let s: String = (0..n).map(|_| (47 + rng.below(66)) as u8 as char).collect();
            serde_json::to_vec(&j!({"h": h, "w": w, "segmentation": {"size": [h, w], "counts": s}})).unwrap()
        },
        exercise,
    );
}

// ---- regressions: inputs the fuzzer found ----

/// A polygon vertex far outside the image made the 5x-upsampled boundary walk push one point
/// per step: 1e8 gave 5e8 steps and 16 GB before anything was cut to the image. The walk now
/// visits only the columns inside the image.
#[test]
fn far_away_polygon_vertices_are_bounded() {
    for far in [1e8, -1e8, 4e8, 1e12, 1e300, -1e300] {
        let polygon = vec![vec![0.5, 0.5, far, 2.5, 3.5, 4.5]];
        let start = std::time::Instant::now();
        let (result, peak) = fuzz_common::peak_during(|| Segmentation::Polygons(polygon.clone()).to_rle(6, 5));
        match result {
            Ok(rle) => {
                assert_eq!(rle.counts.iter().map(|&c| c as u64).sum::<u64>(), 30, "{far}");
            }
            Err(e) => assert!(e.to_string().contains("out of range"), "{far}: {e}"),
        }
        let _ = Rle::from_polygons(&polygon, 6, 5);
        assert!(start.elapsed().as_secs_f64() < 0.5, "{far}: {:?}", start.elapsed());
        assert!(peak < 256 << 20, "{far}: peak {peak} bytes");
    }
}

/// The bounded walk gives exactly the masks of the plain one wherever both can run: polygons
/// partly outside the image on every side.
#[test]
fn bounded_polygon_walk_matches_the_reference_shapes() {
    let mut rng = Rng::new(11);
    for _ in 0..2000 {
        let (h, w) = (1 + rng.below(12), 1 + rng.below(12));
        let k = 3 + rng.below(5);
        let polygon: Vec<f64> =
            (0..2 * k).map(|_| (rng.below(4000) as f64 / 100.0) - 14.0 + rng.below(2) as f64 * 0.5).collect();
        let got = Rle::from_polygons(std::slice::from_ref(&polygon), h, w);
        let want = reference_polygon_mask(&polygon, h, w);
        assert_eq!(got.to_mask(), want, "{polygon:?} at {h}x{w}");
    }
}

/// `rleFrPoly` as pycocotools writes it (every upsampled point kept), for comparison.
fn reference_polygon_mask(xy: &[f64], h: usize, w: usize) -> Vec<u8> {
    let scale = 5.0;
    let k = xy.len() / 2;
    let mut x: Vec<i64> = (0..k).map(|j| (scale * xy[j * 2] + 0.5) as i64).collect();
    let mut y: Vec<i64> = (0..k).map(|j| (scale * xy[j * 2 + 1] + 0.5) as i64).collect();
    x.push(x[0]);
    y.push(y[0]);
    let (mut u, mut v) = (Vec::new(), Vec::new());
    for j in 0..k {
        let (mut xs, mut xe, mut ys, mut ye) = (x[j], x[j + 1], y[j], y[j + 1]);
        let dx = (xe - xs).abs();
        let dy = (ys - ye).abs();
        let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
        if flip {
            std::mem::swap(&mut xs, &mut xe);
            std::mem::swap(&mut ys, &mut ye);
        }
        let s = if dx >= dy { (ye - ys) as f64 / dx as f64 } else { (xe - xs) as f64 / dy as f64 };
        if dx >= dy {
            for d in 0..=dx {
                let t = if flip { dx - d } else { d };
                u.push(t + xs);
                v.push((ys as f64 + s * t as f64 + 0.5) as i64);
            }
        } else {
            for d in 0..=dy {
                let t = if flip { dy - d } else { d };
                v.push(t + ys);
                u.push((xs as f64 + s * t as f64 + 0.5) as i64);
            }
        }
    }
    let mut positions: Vec<u32> = Vec::new();
    for j in 1..u.len() {
        if u[j] == u[j - 1] {
            continue;
        }
        let xd = (if u[j] < u[j - 1] { u[j] } else { u[j] - 1 }) as f64;
        let xd = (xd + 0.5) / scale - 0.5;
        if xd.floor() != xd || xd < 0.0 || xd > w as f64 - 1.0 {
            continue;
        }
        let yd = ((v[j].min(v[j - 1]) as f64 + 0.5) / scale - 0.5).clamp(0.0, h as f64).ceil();
        positions.push((xd as i64 * h as i64 + yd as i64) as u32);
    }
    // Crossings toggle the mask; an even number at one position cancels.
    positions.sort_unstable();
    let mut mask = vec![0u8; h * w];
    let mut inside = false;
    let mut next = 0;
    for p in 0..h * w {
        while next < positions.len() && positions[next] as usize == p {
            inside = !inside;
            next += 1;
        }
        if inside {
            mask[(p % h) * w + p / h] = 1;
        }
    }
    mask
}

/// Declared sizes whose pixel count does not fit RLE's 32-bit counts are refused instead of
/// wrapping (a 65536x65536 "empty" mask would otherwise hold one run of 0 pixels).
#[test]
fn sizes_beyond_32_bit_counts_are_errors() {
    let seg = Segmentation::Polygons(vec![vec![0.0, 0.0, 1.0, 0.0, 1.0, 1.0]]);
    let err = seg.to_rle(65536, 65536).unwrap_err().to_string();
    assert!(err.contains("65536x65536"), "{err}");
    let seg = Segmentation::UncompressedRle { size: [usize::MAX, 2], counts: vec![0] };
    assert!(seg.to_rle(usize::MAX, 2).is_err());
}

/// Found by `fuzz_segmentations`: an RLE of size [4294967295, 0] covers its zero pixels, and the
/// boundary band then sized a prefix-sum buffer by the 4-billion-pixel side (34 GB, abort).
#[test]
fn zero_sized_masks_have_no_boundary() {
    let seg = Segmentation::UncompressedRle { size: [u32::MAX as usize, 0], counts: vec![0] };
    let rle = seg.to_rle(u32::MAX as usize, 0).expect("an empty mask covers its zero pixels");
    assert!(rle.to_mask().is_empty());
    assert!(mask_boundary(&[], u32::MAX as usize, 0, 0.02).is_empty());
    assert!(mask_boundary(&[], 0, usize::MAX, 0.02).is_empty());
    assert!(maskrcnn_masks::boundary_dilation_pixels(usize::MAX, usize::MAX, 0.02) > 1 << 50);
}
