//! A journaled detect run stopped at any tile (or in the middle of a journal write) and resumed
//! writes the same output as a run that was never stopped.

mod common;

use std::path::Path;

use common::*;
use maskrcnn_geo::*;

const W: u32 = 300;
const H: u32 = 260;

fn options(shard: Shard) -> DetectOptions {
    DetectOptions {
        tile_size: 96,
        overlap: 16,
        class_names: vec!["a".into(), "b".into(), "c".into()],
        min_score: 0.55,
        shard,
        ..Default::default()
    }
}

fn fingerprint(raster: &Path, opts: &DetectOptions) -> RunFingerprint {
    RunFingerprint::new(raster, "test detector v1", opts, [("kept".to_string(), "all".to_string())].into()).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

struct Outcome {
    geojson: Vec<u8>,
    summary: DetectSummary,
    detector_calls: usize,
    resumed_tiles: usize,
}

/// One journaled run into `output` (GeoJSON): a new journal, or `resume` the one beside it.
/// `on_tile(tiles_done, journal folder)` runs after each tile; the detector fails at `fail_at`.
fn run(
    raster: &Path,
    output: &Path,
    opts: &DetectOptions,
    resume: bool,
    fail_at: Option<usize>,
    mut on_tile: impl FnMut(usize, &Path),
) -> anyhow::Result<Outcome> {
    let truth = Truth::disc_lattice(W, H);
    let dir = DetectJournal::dir_for(output)?;
    let fp = fingerprint(raster, opts);
    let mut journal = if resume { DetectJournal::resume(&dir, &fp)? } else { DetectJournal::create(&dir, &fp)? };
    let mut tiff = GeoTiff::open(raster)?;
    let crs = tiff.info().crs.clone();
    let mut sink = create_writer(output, crs.as_ref(), &WriteOptions { overwrite: true, ..Default::default() })?;
    let mut calls = 0;
    let summary = detect_raster_journaled(
        &mut tiff,
        |img: &TileImage| {
            if Some(img.tile.index) == fail_at {
                anyhow::bail!("stopped at tile {}", img.tile.index);
            }
            calls += 1;
            Ok(truth.detect_boxed(img))
        },
        opts,
        &mut journal,
        |f| sink.write(&f),
        |p| on_tile(p.tiles_done, &dir),
    )?;
    sink.finish()?;
    let resumed_tiles = journal.resumed_tiles();
    journal.finish()?;
    assert!(!dir.exists(), "a finished run removes its journal");
    Ok(Outcome { geojson: std::fs::read(output)?, summary, detector_calls: calls, resumed_tiles })
}

fn same_summary(a: &DetectSummary, b: &DetectSummary) {
    assert_eq!(a.tiles_processed, b.tiles_processed);
    assert_eq!(a.tiles_skipped_nodata, b.tiles_skipped_nodata);
    assert_eq!(a.instances_seen, b.instances_seen);
    assert_eq!(a.features_emitted, b.features_emitted);
    assert_eq!(a.unreadable_tiles, b.unreadable_tiles);
    assert_eq!(a.pending, b.pending);
}

#[test]
fn resuming_after_a_stop_at_any_tile_writes_the_uninterrupted_output() {
    let tmp = tempfile::tempdir().unwrap();
    let raster = raster_with_a_bad_chunk(tmp.path(), W, H);
    let opts = options(Shard::WHOLE);

    // The plain run, without a journal, is the reference.
    let mut tiff = GeoTiff::open(&raster).unwrap();
    let truth = Truth::disc_lattice(W, H);
    let plain_out = tmp.path().join("plain.geojson");
    let mut sink = create_writer(&plain_out, tiff.info().crs.clone().as_ref(), &WriteOptions::default()).unwrap();
    let plain =
        detect_raster_streaming(&mut tiff, |img| Ok(truth.detect_boxed(img)), &opts, |f| sink.write(&f), |_| {})
            .unwrap();
    sink.finish().unwrap();
    let plain_bytes = std::fs::read(&plain_out).unwrap();
    let grid = TileGrid::new(W, H, 96, 16).unwrap();
    let total = grid.len();
    assert_eq!(total, 16);
    assert!(!plain.unreadable_tiles.is_empty(), "the damaged chunk makes tiles unreadable");
    assert!(plain.features_emitted > 20 && plain.tiles_processed > 8, "{plain:?}");

    // The journaled run, copying its journal after every tile: each copy is the journal as a
    // kill at that instant leaves it (written data survives a kill; buffered data does not).
    let snaps = tmp.path().join("snaps");
    let output = tmp.path().join("out.geojson");
    let journal = DetectJournal::dir_for(&output).unwrap();
    let first =
        run(&raster, &output, &opts, false, None, |done, dir| copy_dir(dir, &snaps.join(done.to_string()))).unwrap();
    assert_eq!(first.geojson, plain_bytes, "journaling does not change the output");
    same_summary(&first.summary, &plain);
    assert_eq!(first.detector_calls, plain.tiles_processed);

    // Before the first tile: a journal with a header only.
    let dir0 = snaps.join("0");
    let fp = fingerprint(&raster, &opts);
    drop(DetectJournal::create(&journal, &fp).unwrap());
    copy_dir(&journal, &dir0);
    DetectJournal::discard(&journal).unwrap();

    for k in 0..=total {
        for torn in [false, true] {
            copy_dir(&snaps.join(k.to_string()), &journal);
            if torn {
                // Killed in mid-write: half a tile record, half a feature, half a checkpoint.
                let append = |name: &str, bytes: &[u8]| {
                    use std::io::Write;
                    let mut f = std::fs::OpenOptions::new().append(true).open(journal.join(name)).unwrap();
                    f.write_all(bytes).unwrap();
                };
                append("tiles.jsonl", br#"{"tile":99,"outcome":{"detected":[{"class_id":1,"sco"#);
                append("features.jsonl", br#"{"type":"Feature","properties":{"class":"#);
                std::fs::write(journal.join("checkpoint.json.tmp"), br#"{"next_row":3,"features_by"#).unwrap();
            }
            let again = run(&raster, &output, &opts, true, None, |_, _| {})
                .unwrap_or_else(|e| panic!("resume after {k} tiles (torn {torn}): {e:#}"));
            assert_eq!(again.geojson, plain_bytes, "resume after {k} tiles (torn {torn}) gives other output");
            same_summary(&again.summary, &plain);
            // Every tile the journal recorded is taken from it, not run again.
            assert_eq!(again.resumed_tiles, k, "after {k} tiles");
            assert!(again.detector_calls <= plain.tiles_processed, "after {k} tiles");
            if k == total {
                assert_eq!(again.detector_calls, 0);
            }
        }
    }
}

#[test]
fn a_run_stopped_by_an_error_resumes_and_a_resumed_run_can_stop_again() {
    let tmp = tempfile::tempdir().unwrap();
    let raster = raster_with_a_bad_chunk(tmp.path(), W, H);
    let opts = options(Shard::WHOLE);
    let reference = run(&raster, &tmp.path().join("ref.geojson"), &opts, false, None, |_, _| {}).unwrap();

    let output = tmp.path().join("out.geojson");
    let journal = DetectJournal::dir_for(&output).unwrap();
    // The detector fails at tile 7 (a row's last), then the resumed run at tile 13 (mid-row): the journal
    // is left behind each time, with no output.
    let err = run(&raster, &output, &opts, false, Some(7), |_, _| {}).err().unwrap();
    assert!(format!("{err:#}").contains("stopped at tile 7"), "{err:#}");
    assert!(DetectJournal::exists(&journal) && !output.exists());
    let err = run(&raster, &output, &opts, true, Some(13), |_, _| {}).err().unwrap();
    assert!(format!("{err:#}").contains("stopped at tile 13"), "{err:#}");
    let last = run(&raster, &output, &opts, true, None, |_, _| {}).unwrap();
    assert_eq!(last.geojson, reference.geojson);
    same_summary(&last.summary, &reference.summary);
    assert_eq!(last.resumed_tiles, 13);
}

#[test]
fn a_shard_resumes_to_the_same_features_and_pending_instances() {
    let tmp = tempfile::tempdir().unwrap();
    let raster = raster_with_a_bad_chunk(tmp.path(), W, H);
    let opts = options(Shard::new(1, 2).unwrap());
    let snaps = tmp.path().join("snaps");
    let output = tmp.path().join("shard.geojson");
    let first =
        run(&raster, &output, &opts, false, None, |done, dir| copy_dir(dir, &snaps.join(done.to_string()))).unwrap();
    assert!(!first.summary.pending.is_empty(), "objects cross the shard seam");
    let journal = DetectJournal::dir_for(&output).unwrap();
    for k in [1, 3, 4, 5, 8] {
        copy_dir(&snaps.join(k.to_string()), &journal);
        let again = run(&raster, &output, &opts, true, None, |_, _| {}).unwrap();
        assert_eq!(again.geojson, first.geojson, "after {k} tiles");
        same_summary(&again.summary, &first.summary);
    }
}

#[test]
fn a_journal_of_another_run_is_refused_naming_what_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let raster = raster_with_a_bad_chunk(tmp.path(), W, H);
    let opts = options(Shard::WHOLE);
    let output = tmp.path().join("out.geojson");
    let journal = DetectJournal::dir_for(&output).unwrap();
    assert_eq!(journal, tmp.path().join("out.geojson.journal"));
    drop(DetectJournal::create(&journal, &fingerprint(&raster, &opts)).unwrap());
    assert!(DetectJournal::create(&journal, &fingerprint(&raster, &opts)).is_err(), "never overwritten silently");

    let other = DetectOptions { tile_size: 128, ..opts.clone() };
    let err = DetectJournal::resume(&journal, &fingerprint(&raster, &other)).err().unwrap().to_string();
    assert!(err.contains("out.geojson.journal") && err.contains("tile_size: 96 in the journal, 128 now"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let model = RunFingerprint { model: "another model".into(), ..fingerprint(&raster, &opts) };
    let err = DetectJournal::resume(&journal, &model).err().unwrap().to_string();
    assert!(err.contains("model: \"test detector v1\" in the journal, \"another model\" now"), "{err}");

    // A rewritten raster (same path, new contents) is another run too.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let bytes = std::fs::read(&raster).unwrap();
    std::fs::write(&raster, &bytes).unwrap();
    let err = DetectJournal::resume(&journal, &fingerprint(&raster, &opts)).err().unwrap().to_string();
    assert!(err.contains("raster.modified_ns"), "{err}");

    // A folder that only has the name is never deleted.
    DetectJournal::discard(&journal).unwrap();
    std::fs::create_dir(&journal).unwrap();
    std::fs::write(journal.join("notes.txt"), "mine").unwrap();
    let err = DetectJournal::discard(&journal).err().unwrap().to_string();
    assert!(err.contains("notes.txt"), "{err}");
    assert!(journal.join("notes.txt").exists());
}

#[test]
fn a_damaged_checkpoint_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let raster = raster_with_a_bad_chunk(tmp.path(), W, H);
    let opts = options(Shard::WHOLE);
    let output = tmp.path().join("out.geojson");
    let journal = DetectJournal::dir_for(&output).unwrap();
    let _ = run(&raster, &output, &opts, false, Some(9), |_, _| {}).err().unwrap();
    let cp = journal.join("checkpoint.json");
    let text = std::fs::read_to_string(&cp).unwrap();
    // An instance moved far outside its tile.
    let bad = text.replacen("\"x0\":", "\"x0\":4000000000,\"was\":", 1);
    assert_ne!(bad, text);
    std::fs::write(&cp, bad).unwrap();
    let err = run(&raster, &output, &opts, true, None, |_, _| {}).err().unwrap();
    assert!(format!("{err:#}").contains("damaged journal"), "{err:#}");
}
