//! `detect` shards only when asked: scheduler variables alone do not split the run, and a shard
//! never writes under a vector-format name.

use std::process::Command;

fn detect(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_maskrcnn"));
    cmd.arg("detect").args(args).env_remove("JOB_COMPLETION_INDEX").env_remove("SLURM_ARRAY_TASK_ID");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn scheduler_variables_alone_do_not_shard() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("scene.gpkg");
    let common = ["--model", "no-such-model.pth", "--raster", "no-such.tif", "--output", output.to_str().unwrap()];
    // Without shard flags the environment is ignored: the run gets as far as the missing model.
    let (ok, err) = detect(&common, &[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_COUNT", "4")]);
    assert!(!ok);
    assert!(err.contains("no-such-model.pth") && !err.contains("shard"), "{err}");
    assert!(!output.exists());

    // --shards N reads the index from the environment, and says so when there is none.
    let (ok, err) = detect(&[&common[..], &["--shards", "4"]].concat(), &[]);
    assert!(!ok && err.contains("--shards 4") && err.contains("SLURM_ARRAY_TASK_ID"), "{err}");

    // A shard file is not a vector file.
    let (ok, err) = detect(&[&common[..], &["--shard", "1/4"]].concat(), &[]);
    assert!(!ok && err.contains("shard file") && err.contains(".jsonl"), "{err}");
    let (ok, err) = detect(
        &[&common[..], &["--shard", "auto"]].concat(),
        &[("JOB_COMPLETION_INDEX", "2"), ("SLURM_ARRAY_TASK_COUNT", "4")],
    );
    assert!(!ok && err.contains("shard file"), "{err}");
    assert!(!output.exists());
}

/// A raster whose geotransform has a zero pixel size is refused before any tile is read,
/// instead of giving zero-area polygons and exit 0. The raster comes from GDAL's `gdal_create`.
#[test]
fn a_degenerate_geotransform_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let raster = dir.path().join("degenerate.tif");
    let made = Command::new("gdal_create")
        .args(["-of", "GTiff", "-outsize", "64", "64", "-bands", "3", "-ot", "Byte", "-burn", "100"])
        .args(["-a_srs", "EPSG:32616", "-a_ullr", "500000", "4000000", "500000", "4000000"])
        .arg(&raster)
        .status()
        .expect("this test needs GDAL's gdal_create (Debian package gdal-bin; .ci/run installs it)");
    assert!(made.success(), "gdal_create failed");
    let output = dir.path().join("out.gpkg");
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/parity/r18_tiny");
    let args = [
        "--model",
        model.to_str().unwrap(),
        "--raster",
        raster.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ];
    let (ok, err) = detect(&args, &[]);
    assert!(!ok);
    assert!(err.contains("degenerate geotransform") && err.contains("degenerate.tif"), "{err}");
    assert!(!output.exists());
}
