//! `maskrcnn detect` killed mid-run resumes with `--resume` and writes the same GeoJSON, byte for
//! byte, as a run that was never interrupted; a leftover journal is never ignored silently.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{detect_r18_tiny, fixture_scene_tif};

/// A GeoTIFF of the fixture photograph at twice its size (368x308): 42 tiles of 64 px.
fn raster(dir: &Path) -> PathBuf {
    fixture_scene_tif(&dir.join("scene.tif"), (500000, 4000000))
}

fn detect(raster: &Path, output: &Path, extra: &[&str]) -> (bool, String) {
    let out = detect_r18_tiny(raster, output, extra).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Until `journal` holds a finished tile row and a recorded tile after it.
fn wait_for_progress(child: &mut std::process::Child, journal: &Path) {
    let start = Instant::now();
    loop {
        let recorded = std::fs::metadata(journal.join("tiles.jsonl")).map(|m| m.len()).unwrap_or(0);
        if journal.join("checkpoint.json").exists() && recorded > 0 {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "detect ended before it could be killed");
        assert!(start.elapsed() < Duration::from_secs(300), "no journal progress");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_detect_resumes_to_the_uninterrupted_output() {
    let dir = tempfile::tempdir().unwrap();
    let raster = raster(dir.path());

    let reference = dir.path().join("reference.geojson");
    let (ok, err) = detect(&raster, &reference, &[]);
    assert!(ok, "{err}");
    assert!(err.contains("42 tiles"), "{err}");
    assert!(!dir.path().join("reference.geojson.journal").exists(), "a finished run leaves no journal");
    let reference = std::fs::read(&reference).unwrap();

    // Killed (SIGKILL: no clean-up runs) once a tile row is checkpointed and later tiles recorded.
    let output = dir.path().join("scene.geojson");
    let journal = dir.path().join("scene.geojson.journal");
    let mut child = detect_r18_tiny(&raster, &output, &[]).stderr(Stdio::null()).spawn().unwrap();
    wait_for_progress(&mut child, &journal);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!output.exists(), "a killed run leaves no output");
    assert!(journal.join("header.json").exists());

    // The journal is not ignored: without --resume the run refuses, naming both ways on.
    let (ok, err) = detect(&raster, &output, &[]);
    assert!(!ok && err.contains("scene.geojson.journal") && err.contains("--resume") && err.contains("--overwrite"));
    assert_eq!(err.trim().lines().filter(|l| !l.starts_with("warning:")).count(), 1, "{err}");
    // Other polygon options are another run: refused, saying what differs.
    let (ok, err) = detect(&raster, &output, &["--resume", "--simplify", "0.5"]);
    let differs = "vectorize.simplify_tolerance: 0.0 in the journal, 0.5 now";
    assert!(!ok && err.contains(differs) && err.contains("without --resume"), "{err}");
    assert_eq!(err.trim().lines().filter(|l| !l.starts_with("warning:")).count(), 1, "{err}");
    assert!(journal.join("header.json").exists(), "a refused resume keeps the journal");

    let (ok, err) = detect(&raster, &output, &["--resume"]);
    assert!(ok, "{err}");
    assert!(err.contains("resuming") && err.contains("42 tiles"), "{err}");
    assert!(std::fs::read(&output).unwrap() == reference, "the resumed output differs from the uninterrupted one");
    assert!(!journal.exists(), "a finished run removes its journal");

    // --overwrite without --resume discards a journal and starts over.
    let again = dir.path().join("again.geojson");
    let mut child = detect_r18_tiny(&raster, &again, &[]).stderr(Stdio::null()).spawn().unwrap();
    wait_for_progress(&mut child, &dir.path().join("again.geojson.journal"));
    child.kill().unwrap();
    child.wait().unwrap();
    let (ok, err) = detect(&raster, &again, &["--overwrite"]);
    assert!(ok && err.contains("discarding"), "{err}");
    assert!(std::fs::read(&again).unwrap() == reference);

    // A run refused before its first tile leaves no journal to trip over.
    let wrong = dir.path().join("wrong.geojson");
    let (ok, err) = detect(&raster, &wrong, &["--bands", "1,2"]);
    assert!(!ok && err.contains("the model takes 3"), "{err}");
    assert!(!dir.path().join("wrong.geojson.journal").exists());

    // --resume without a journal simply runs (so one command line serves the first try and retries).
    let fresh = dir.path().join("fresh.geojson");
    let (ok, err) = detect(&raster, &fresh, &["--resume"]);
    assert!(ok && err.contains("no journal"), "{err}");
    assert!(std::fs::read(&fresh).unwrap() == reference);
}
