//! The output policy of every command, through the binary: an existing output is refused without
//! `--overwrite` and replaced with it; an output that is one of the inputs is refused even with it.
//! A refused run exits non-zero with one `error:` line and leaves every file as it was.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::fixture;

fn maskrcnn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_maskrcnn"))
}

fn run(args: &[&std::ffi::OsStr]) -> Output {
    maskrcnn().args(args).output().unwrap()
}

fn os<P: AsRef<Path> + ?Sized>(p: &P) -> &std::ffi::OsStr {
    p.as_ref().as_os_str()
}

/// The run failed with exactly one `error:` line containing `must_contain`.
fn assert_refused(output: &Output, must_contain: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "should fail: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(must_contain), "{stderr} should contain {must_contain:?}");
}

fn assert_ok(output: &Output) {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn exists_message(path: &Path) -> String {
    format!("error: {}: exists; pass --overwrite to replace it", path.display())
}

fn input_message(path: &Path, which: &str) -> String {
    format!("error: {} is also an input ({which}); choose another output", path.display())
}

/// A folder holding a copy of the tiny model's test image.
fn image_folder(dir: &Path) -> (PathBuf, PathBuf) {
    let images = dir.join("images");
    std::fs::create_dir(&images).unwrap();
    let image = images.join("image.png");
    std::fs::copy(fixture("parity/r18_tiny/image.png"), &image).unwrap();
    (images, image)
}

#[test]
fn predict_refuses_an_existing_output_and_replaces_it_with_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let (images, _) = image_folder(dir.path());
    let out = dir.path().join("results.json");
    std::fs::write(&out, b"keep me").unwrap();
    let model = fixture("parity/r18_tiny");
    let args = ["predict".as_ref(), "--model".as_ref(), os(&model), "--input".as_ref(), os(&images)];
    let refused = run(&[&args[..], &["--output".as_ref(), os(&out)]].concat());
    assert_refused(&refused, &exists_message(&out));
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");

    // Overlays already in --overlay-dir under the names this run would write are outputs too.
    let overlays = dir.path().join("overlays");
    std::fs::create_dir(&overlays).unwrap();
    std::fs::write(overlays.join("image.png"), b"old overlay").unwrap();
    let fresh = dir.path().join("fresh.json");
    let refused =
        run(&[&args[..], &["--output".as_ref(), os(&fresh), "--overlay-dir".as_ref(), os(&overlays)]].concat());
    assert_refused(&refused, &exists_message(&overlays.join("image.png")));
    assert!(!fresh.exists(), "nothing written");

    let replaced = run(&[
        &args[..],
        &["--output".as_ref(), os(&out), "--overlay-dir".as_ref(), os(&overlays), "--overwrite".as_ref()],
    ]
    .concat());
    assert_ok(&replaced);
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert!(results.as_array().is_some_and(|a| !a.is_empty()), "{results}");
    image::open(overlays.join("image.png")).expect("the overlay was replaced by a PNG");
}

#[test]
fn predict_never_writes_onto_its_inputs_even_with_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let (images, image) = image_folder(dir.path());
    let original = std::fs::read(&image).unwrap();
    let model = fixture("parity/r18_tiny");
    let base = ["predict".as_ref(), "--model".as_ref(), os(&model), "--overwrite".as_ref()];

    // --output onto an input image, given directly, through its folder, or through a symlink.
    let refused = run(&[&base[..], &["--input".as_ref(), os(&image), "--output".as_ref(), os(&image)]].concat());
    assert_refused(&refused, &input_message(&image, "--input"));
    let refused = run(&[&base[..], &["--input".as_ref(), os(&images), "--output".as_ref(), os(&image)]].concat());
    assert_refused(&refused, &input_message(&image, "--input"));
    #[cfg(unix)]
    {
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&image, &link).unwrap();
        let refused = run(&[&base[..], &["--input".as_ref(), os(&images), "--output".as_ref(), os(&link)]].concat());
        assert_refused(&refused, &input_message(&link, "--input"));
    }

    // --output onto the --image-ids-from annotation file.
    let ids = dir.path().join("instances.json");
    let ids_text = br#"{"images": [{"id": 7, "file_name": "image.png"}]}"#;
    std::fs::write(&ids, ids_text).unwrap();
    let refused = run(&[
        &base[..],
        &["--input".as_ref(), os(&images), "--image-ids-from".as_ref(), os(&ids), "--output".as_ref(), os(&ids)],
    ]
    .concat());
    assert_refused(&refused, &input_message(&ids, "--image-ids-from"));
    assert_eq!(std::fs::read(&ids).unwrap(), ids_text);

    // --overlay-dir equal to, or inside, the input folder: source PNGs must never be replaced.
    let out = dir.path().join("results.json");
    for overlays in [images.clone(), images.join("."), images.join("overlays")] {
        let refused = run(&[
            &base[..],
            &["--input".as_ref(), os(&images), "--output".as_ref(), os(&out), "--overlay-dir".as_ref(), os(&overlays)],
        ]
        .concat());
        assert_refused(&refused, &input_message(&overlays, "--input folder"));
    }
    // A single input file whose overlay would land on it.
    let refused = run(&[
        &base[..],
        &["--input".as_ref(), os(&image), "--output".as_ref(), os(&out), "--overlay-dir".as_ref(), os(&images)],
    ]
    .concat());
    assert_refused(&refused, &input_message(&image, "--input"));

    // Two images of one stem would write one overlay file.
    let twins = dir.path().join("twins");
    std::fs::create_dir(&twins).unwrap();
    std::fs::copy(&image, twins.join("a.png")).unwrap();
    image::open(&image).unwrap().to_rgb8().save_with_format(twins.join("a.jpg"), image::ImageFormat::Jpeg).unwrap();
    let overlays = dir.path().join("overlays");
    let refused = run(&[
        &base[..],
        &["--input".as_ref(), os(&twins), "--output".as_ref(), os(&out), "--overlay-dir".as_ref(), os(&overlays)],
    ]
    .concat());
    assert_refused(&refused, "would be written by both the overlay of a.jpg and the overlay of a.png");
    assert!(!overlays.exists());

    assert!(!out.exists(), "nothing written");
    assert!(!images.join("overlays").exists(), "no overlay folder created");
    assert_eq!(std::fs::read(&image).unwrap(), original, "the input image is untouched");
}

#[test]
fn evaluate_refuses_existing_outputs_and_its_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let annotations = dir.path().join("gt.json");
    let predictions = dir.path().join("results.json");
    std::fs::copy(fixture("eval/synthetic_gt.json"), &annotations).unwrap();
    std::fs::copy(fixture("eval/synthetic_results.json"), &predictions).unwrap();
    let gt_before = std::fs::read(&annotations).unwrap();
    let base =
        ["evaluate".as_ref(), "--predictions".as_ref(), os(&predictions), "--annotations".as_ref(), os(&annotations)];
    let metrics = dir.path().join("metrics.json");
    let report = dir.path().join("report.html");
    std::fs::write(&metrics, b"old metrics").unwrap();
    std::fs::write(&report, b"old report").unwrap();

    let refused = run(&[&base[..], &["--output".as_ref(), os(&metrics)]].concat());
    assert_refused(&refused, &exists_message(&metrics));
    let refused = run(&[&base[..], &["--report".as_ref(), os(&report)]].concat());
    assert_refused(&refused, &exists_message(&report));
    assert_eq!(std::fs::read(&metrics).unwrap(), b"old metrics");
    assert_eq!(std::fs::read(&report).unwrap(), b"old report");

    // Onto an input: refused even with --overwrite, and the input is untouched.
    for (target, which) in [(&annotations, "--annotations"), (&predictions, "--predictions")] {
        let refused = run(&[&base[..], &["--overwrite".as_ref(), "--output".as_ref(), os(target)]].concat());
        assert_refused(&refused, &input_message(target, which));
        let refused = run(&[&base[..], &["--overwrite".as_ref(), "--report".as_ref(), os(target)]].concat());
        assert_refused(&refused, &input_message(target, which));
    }
    let relative = dir.path().join("sub").join("..").join("gt.json");
    let refused = run(&[&base[..], &["--overwrite".as_ref(), "--output".as_ref(), os(&relative)]].concat());
    assert_refused(&refused, "is also an input (--annotations)");
    assert_eq!(std::fs::read(&annotations).unwrap(), gt_before);

    // --output and --report naming one file.
    let same = dir.path().join("same.out");
    let refused = run(&[&base[..], &["--output".as_ref(), os(&same), "--report".as_ref(), os(&same)]].concat());
    assert_refused(&refused, "would be written by both --output and --report");
    assert!(!same.exists());

    let replaced = run(&[
        &base[..],
        &["--overwrite".as_ref(), "--output".as_ref(), os(&metrics), "--report".as_ref(), os(&report)],
    ]
    .concat());
    assert_ok(&replaced);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&metrics).unwrap()).unwrap();
    assert!(json["segm"]["AP"].is_number(), "{json}");
    assert!(std::fs::read_to_string(&report).unwrap().contains("<table"));
}

#[test]
fn show_results_refuses_an_existing_output_and_its_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let images = data.join("images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::copy(fixture("parity/r18_tiny/image.png"), images.join("image.png")).unwrap();
    let (w, h) = image::image_dimensions(images.join("image.png")).unwrap();
    let instances = serde_json::json!({
        "images": [{"id": 1, "file_name": "image.png", "height": h, "width": w}],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "tie"}, {"id": 3, "name": "scissors"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [2, 2, 10, 10],
            "area": 100, "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]]}],
    });
    std::fs::write(data.join("instances.json"), serde_json::to_vec(&instances).unwrap()).unwrap();
    let model = fixture("parity/r18_tiny");
    let base = ["show-results".as_ref(), "--model".as_ref(), os(&model), "--data".as_ref(), os(&data)];
    let grid = dir.path().join("grid.png");
    std::fs::write(&grid, b"old grid").unwrap();

    let refused = run(&[&base[..], &["--output".as_ref(), os(&grid)]].concat());
    assert_refused(&refused, &exists_message(&grid));
    assert_eq!(std::fs::read(&grid).unwrap(), b"old grid");
    let image = images.join("image.png");
    let refused = run(&[&base[..], &["--overwrite".as_ref(), "--output".as_ref(), os(&image)]].concat());
    assert_refused(&refused, &input_message(&image, "--data image"));
    let json = data.join("instances.json");
    let refused = run(&[&base[..], &["--overwrite".as_ref(), "--output".as_ref(), os(&json)]].concat());
    assert_refused(&refused, &input_message(&json, "--data"));

    let replaced =
        run(&[&base[..], &["--overwrite".as_ref(), "--rows".as_ref(), "1".as_ref(), "--output".as_ref(), os(&grid)]]
            .concat());
    assert_ok(&replaced);
    image::open(&grid).expect("the grid was replaced by a PNG");
}

#[test]
fn package_refuses_existing_files_and_the_models_own() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("package");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("tiny.emd"), b"old emd").unwrap();
    let model = fixture("parity/r18_tiny");
    let base = ["package".as_ref(), "--model".as_ref(), os(&model), "--name".as_ref(), "tiny".as_ref()];

    let refused = run(&[&base[..], &["--output".as_ref(), os(&out)]].concat());
    assert_refused(&refused, &exists_message(&out.join("tiny.emd")));
    assert_eq!(std::fs::read(out.join("tiny.emd")).unwrap(), b"old emd");
    assert!(!out.join("tiny.pth").exists() && !out.join("tiny.dlpk").exists(), "nothing written");

    let replaced = run(&[&base[..], &["--output".as_ref(), os(&out), "--overwrite".as_ref()]].concat());
    assert_ok(&replaced);
    let emd: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("tiny.emd")).unwrap()).unwrap();
    assert!(emd.is_object());
    let pth = out.join("tiny.pth");
    let pth_bytes = std::fs::read(&pth).unwrap();

    // Packaging that .pth again under its own name would replace the model being read.
    let refused = run(&[
        "package".as_ref(),
        "--model".as_ref(),
        os(&pth),
        "--name".as_ref(),
        "tiny".as_ref(),
        "--output".as_ref(),
        os(&out),
        "--overwrite".as_ref(),
    ]);
    assert_refused(&refused, &input_message(&pth, "--model"));
    assert_eq!(std::fs::read(&pth).unwrap(), pth_bytes);
}

#[test]
fn merge_and_vectorize_follow_the_same_policy() {
    let dir = tempfile::tempdir().unwrap();
    let shard = dir.path().join("shard-0.jsonl");
    std::fs::write(&shard, b"not really a shard").unwrap();
    let refused = run(&[
        "merge".as_ref(),
        "--inputs".as_ref(),
        os(&shard),
        "--output".as_ref(),
        os(&shard),
        "--overwrite".as_ref(),
    ]);
    assert_refused(&refused, &input_message(&shard, "--inputs"));
    assert_eq!(std::fs::read(&shard).unwrap(), b"not really a shard");

    let existing = dir.path().join("out.geojson");
    std::fs::write(&existing, b"{}").unwrap();
    let refused = run(&["merge".as_ref(), "--inputs".as_ref(), os(&shard), "--output".as_ref(), os(&existing)]);
    assert_refused(&refused, &exists_message(&existing));
    let refused = run(&["vectorize".as_ref(), "--labels".as_ref(), os(&shard), "--output".as_ref(), os(&existing)]);
    assert_refused(&refused, &exists_message(&existing));
    let refused = run(&[
        "vectorize".as_ref(),
        "--labels".as_ref(),
        os(&shard),
        "--output".as_ref(),
        os(&shard),
        "--overwrite".as_ref(),
    ]);
    assert_refused(&refused, &input_message(&shard, "--labels"));
    assert_eq!(std::fs::read(&existing).unwrap(), b"{}");
}
