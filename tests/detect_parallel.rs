//! `maskrcnn detect` writes the same file whatever `--batch-size`, `--threads` and `--workers`
//! are, with the real model: batching tiles and running them on several threads changes how fast
//! the output comes, never what it holds; a run killed with one setting resumes with another.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{detect_r18_tiny, fixture_scene_tif};

/// The fixture photograph at twice its size (368x308), placed in a 440x380 canvas whose margin
/// is transparent (alpha 0): 42 image tiles of 64 px among tiles with no valid pixel (skipped)
/// and tiles partly valid (masks cut to the image).
fn raster(dir: &Path) -> PathBuf {
    let big = fixture_scene_tif(&dir.join("big.tif"), (500000, 4000000));
    let path = dir.join("scene.tif");
    let status = Command::new("gdalwarp")
        .args(["-q", "-te", "500000", "3999620", "500440", "4000000", "-tr", "1", "1", "-dstalpha"])
        .args(["-co", "TILED=YES", "-co", "BLOCKXSIZE=64", "-co", "BLOCKYSIZE=64"])
        .arg(&big)
        .arg(&path)
        .status()
        .expect("this test needs GDAL's gdalwarp (Debian package gdal-bin)");
    assert!(status.success(), "gdalwarp failed");
    path
}

fn detect(raster: &Path, output: &Path, extra: &[&str]) -> (Vec<u8>, String) {
    let out = detect_r18_tiny(raster, output, extra).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "detect {extra:?}: {err}");
    (std::fs::read(output).unwrap(), err)
}

#[test]
fn batch_size_threads_and_workers_do_not_change_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let raster = raster(dir.path());
    let out = dir.path().join("out.geojson");
    let (reference, err) = detect(&raster, &out, &["--threads", "1", "--batch-size", "1", "--overwrite"]);
    let summary = err.lines().last().unwrap_or_default().to_string();
    assert!(summary.contains("skipped as nodata"), "{err}");
    let features = String::from_utf8_lossy(&reference).matches("\"Feature\"").count();
    assert!(features >= 3, "the model finds objects in the photograph ({features}): {err}");
    for settings in [
        ["--threads", "1", "--batch-size", "3", "--workers", "1"],
        ["--threads", "2", "--batch-size", "1", "--workers", "2"],
        ["--threads", "2", "--batch-size", "3", "--workers", "2"],
        ["--threads", "2", "--batch-size", "4", "--workers", "1"],
        ["--threads", "3", "--batch-size", "2", "--workers", "3"],
    ] {
        let mut args = settings.to_vec();
        args.push("--overwrite");
        let (bytes, err) = detect(&raster, &out, &args);
        assert!(bytes == reference, "{settings:?} writes another file than one tile at a time on one thread");
        assert_eq!(err.lines().last().unwrap_or_default(), summary, "{settings:?}");
    }
}

#[test]
fn a_run_killed_with_batches_on_two_threads_resumes_one_tile_at_a_time_to_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let raster = raster(dir.path());
    let reference = dir.path().join("reference.geojson");
    let (reference, _) = detect(&raster, &reference, &["--threads", "1"]);

    let output = dir.path().join("scene.geojson");
    let journal = dir.path().join("scene.geojson.journal");
    let mut child = detect_r18_tiny(&raster, &output, &["--threads", "2", "--batch-size", "3"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let recorded = std::fs::metadata(journal.join("tiles.jsonl")).map(|m| m.len()).unwrap_or(0);
        if journal.join("checkpoint.json").exists() && recorded > 0 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "detect ended before it could be killed");
        assert!(start.elapsed() < Duration::from_secs(300), "no journal progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!output.exists(), "a killed run leaves no output");

    let (resumed, err) = detect(&raster, &output, &["--resume", "--threads", "1", "--batch-size", "1"]);
    assert!(err.contains("resuming the interrupted run"), "{err}");
    assert!(resumed == reference, "the resumed run writes another file than the uninterrupted one");
    assert!(!journal.exists());
}

#[test]
fn zero_workers_or_batch_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let raster = raster(dir.path());
    for (flag, value) in [("--workers", "0"), ("--batch-size", "0")] {
        let out = detect_r18_tiny(&raster, &dir.path().join("o.geojson"), &[flag, value]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} {value} accepted");
        assert!(err.contains(&format!("{flag} must be at least 1")), "{err}");
        assert!(!dir.path().join("o.geojson").exists() && !dir.path().join("o.geojson.journal").exists());
    }
}
