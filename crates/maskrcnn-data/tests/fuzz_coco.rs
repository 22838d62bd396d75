//! Fuzzing the COCO instances reader: `CocoDataset::from_json_str` and every target it builds,
//! from a small valid file with polygon, uncompressed-RLE, compressed-RLE, crowd and box-only
//! annotations. Mutations are byte edits of the text and structured edits of the JSON (hostile
//! numbers, removed or duplicated members, retyped values). Short in CI;
//! `MASKRCNN_FUZZ_CASES=100000 cargo test --release -p maskrcnn-data --test fuzz_coco` for a
//! long run.

#[path = "../../maskrcnn-masks/tests/fuzz_common/mod.rs"]
mod fuzz_common;

use std::path::Path;

use fuzz_common::{json, mutate_bytes};
use maskrcnn_data::coco::{images_per_label, instances_per_label, CocoDataset};
use maskrcnn_data::{Dataset, MAX_SAMPLE_MASK_BYTES};
use maskrcnn_masks::{Rle, Segmentation};
use serde_json::{json as j, Value};

/// Targets up to this many mask bytes are built in the fuzz run; bigger ones (legitimate for a
/// large declared image, up to the reader's own budget) would only make the run slow.
const FUZZ_TARGET_BYTES: usize = 1 << 24;

fn seed() -> Value {
    let (h, w) = (8usize, 10usize);
    let mask: Vec<u8> = (0..h * w).map(|i| u8::from(i % 7 < 3)).collect();
    let rle = Rle::from_mask(&mask, h, w);
    j!({
        "images": [
            {"id": 1, "file_name": "a.png", "height": h, "width": w},
            {"id": 7, "file_name": "b.png", "height": 4, "width": 3}
        ],
        "categories": [{"id": 3, "name": "cat"}, {"id": 1, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 1, 4, 4], "iscrowd": 0,
             "segmentation": [[1.0, 1.0, 5.0, 1.0, 5.0, 5.0, 1.0, 5.0]]},
            {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 1,
             "segmentation": {"size": [h, w], "counts": rle.counts}},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 8],
             "segmentation": Segmentation::from_rle(&rle)},
            {"id": 4, "image_id": 7, "category_id": 3, "bbox": [0.5, 0.5, 2, 2]},
            {"image_id": 7, "category_id": 1, "segmentation": [[0, 0, 3, 0, 3, 4], [1, 1, 2, 1, 2, 2]]}
        ]
    })
}

fn read(text: &[u8]) {
    let Ok(text) = std::str::from_utf8(text) else { return };
    let Ok(ds) = CocoDataset::from_json_str(text, Path::new("/nonexistent")) else { return };
    let _ = (instances_per_label(&ds), images_per_label(&ds), ds.report());
    for i in 0..ds.len() {
        let info = ds.image_info(i).expect("listed image");
        let annotations = ds.annotation_ids(i).len();
        let bytes = info.height.saturating_mul(info.width).saturating_mul(annotations);
        if bytes > FUZZ_TARGET_BYTES && bytes <= MAX_SAMPLE_MASK_BYTES {
            continue;
        }
        if let Ok(target) = ds.target(i) {
            assert_eq!(target.len(), annotations);
            for (mask, label) in target.masks.iter().zip(&target.labels) {
                assert_eq!(mask.len(), info.height * info.width);
                assert!(*label >= 1 && *label as usize <= ds.class_names().len(), "label {label}");
            }
            for b in &target.boxes {
                assert!(b.iter().all(|v| v.is_finite()) && b[0] < b[2] && b[1] < b[3], "clipped box {b:?}");
            }
        }
        // No images exist: reading one must be an error naming it, not a panic.
        assert!(ds.get(i).is_err());
    }
}

#[test]
fn fuzz_coco_json() {
    let seed = seed();
    let text = serde_json::to_vec(&seed).unwrap();
    read(&text);
    assert_eq!(CocoDataset::from_json_str(std::str::from_utf8(&text).unwrap(), Path::new(".")).unwrap().len(), 2);
    let tokens: &[&[u8]] = &[
        b"\"segmentation\"",
        b"\"counts\"",
        b"\"size\"",
        b"\"bbox\"",
        b"-1",
        b"1e999",
        b"18446744073709551616",
        b"null",
    ];
    fuzz_common::run(
        "coco_json",
        fuzz_common::cases(15_000),
        |rng, _| {
            if rng.below(3) != 0 {
                serde_json::to_vec(&json::mutate(rng, &seed)).unwrap()
            } else {
                mutate_bytes(rng, &text, &[], tokens)
            }
        },
        read,
    );
}

// ---- regressions ----

/// A COCO file declaring a 100000x100000 image built a 10 GB mask per annotation (abort); the
/// sample's masks are now checked against the budget before any is allocated.
#[test]
fn huge_declared_image_size_is_an_error() {
    let mut doc = seed();
    doc["images"][0]["height"] = j!(100_000);
    doc["images"][0]["width"] = j!(100_000);
    // The RLE annotations are at the small size (an error of their own); keep the polygon.
    doc["annotations"] = j!([doc["annotations"][0].clone()]);
    let ds = CocoDataset::from_json_str(&doc.to_string(), Path::new(".")).unwrap();
    let (result, peak) = fuzz_common::peak_during(|| ds.target(0));
    let err = format!("{:#}", result.expect_err("10 GB of masks"));
    assert!(err.contains("100000x100000") && err.contains("GiB"), "{err}");
    assert!(peak < 256 << 20, "peak {peak} bytes");
}

/// A polygon vertex at 1e8 made the rasteriser walk 5e8 points (16 GB, abort); far coordinates
/// are now refused by name, and those within range are walked only inside the image.
#[test]
fn far_polygon_vertices_are_bounded() {
    for (far, refused) in [(1e8, false), (-3e8, false), (1e9, true), (1e300, true)] {
        let mut doc = seed();
        doc["annotations"][0]["segmentation"] = j!([[1.0, 1.0, far, 1.0, 5.0, 5.0]]);
        let ds = CocoDataset::from_json_str(&doc.to_string(), Path::new(".")).unwrap();
        let start = std::time::Instant::now();
        match ds.target(0) {
            Ok(t) => assert!(!refused && t.len() == 3, "{far}"),
            Err(e) => assert!(refused && format!("{e:#}").contains("out of range"), "{far}: {e:#}"),
        }
        assert!(start.elapsed().as_secs_f64() < 1.0, "{far}: {:?}", start.elapsed());
    }
}
