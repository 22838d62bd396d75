#![allow(dead_code)]
use std::path::{Path, PathBuf};

use maskrcnn_eval::CocoMetrics;
use serde_json::Value;

pub const TOLERANCE: f64 = 1e-4;

/// The repository root: the first ancestor of this crate holding `Cargo.lock`.
pub fn repo_root() -> PathBuf {
    let mut dir = Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    loop {
        if dir.join("Cargo.lock").exists() {
            return dir;
        }
        if !dir.pop() {
            panic!("no Cargo.lock above {}", env!("CARGO_MANIFEST_DIR"));
        }
    }
}

pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("fixtures/eval").join(name)
}

/// `../shared/data` beside the repository; fails loudly when it is missing.
pub fn shared_data() -> PathBuf {
    let dir = repo_root().join("../shared/data");
    assert!(
        dir.is_dir(),
        "shared test data not found at {} (expected the `shared/` checkout beside the repository); \
         this test compares against pycocotools on real COCO annotations and cannot run without it",
        dir.display()
    );
    dir
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Compares the 12 stats and per-class AP/AP50/AP75 with a pycocotools record
/// `{"stats": [...], "per_class": {"<cat id>": {"AP": x|null, ...}}}`.
pub fn assert_matches_reference(metrics: &CocoMetrics, expected: &Value, label: &str) -> usize {
    let mut compared = 0;
    let mut largest_difference = 0.0f64;
    let stats = expected["stats"].as_array().expect("stats array");
    for (value, (name, reference)) in
        metrics.stats_in_coco_order().iter().zip(maskrcnn_eval::STAT_NAMES.iter().zip(stats))
    {
        let reference = reference.as_f64().unwrap();
        largest_difference = largest_difference.max((value - reference).abs());
        assert!((value - reference).abs() <= TOLERANCE, "{label} {name}: rust {value} vs pycocotools {reference}");
        compared += 1;
    }
    let per_class = expected["per_class"].as_object().expect("per_class object");
    assert_eq!(per_class.len(), metrics.per_class.len(), "{label}: number of classes");
    for class in &metrics.per_class {
        let reference = &per_class[&class.category_id.to_string()];
        for (name, value) in [("AP", class.ap), ("AP50", class.ap50), ("AP75", class.ap75)] {
            match (value, reference[name].as_f64()) {
                (None, None) => {}
                (Some(v), Some(r)) => {
                    largest_difference = largest_difference.max((v - r).abs());
                    assert!(
                        (v - r).abs() <= TOLERANCE,
                        "{label} class {} {name}: rust {v} vs pycocotools {r}",
                        class.category_id
                    )
                }
                (v, r) => panic!("{label} class {} {name}: rust {v:?} vs pycocotools {r:?}", class.category_id),
            }
            compared += 1;
        }
    }
    eprintln!("{label}: {compared} numbers, largest |rust - pycocotools| = {largest_difference:.3e}");
    compared
}
