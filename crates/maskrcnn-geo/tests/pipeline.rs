//! The pipelined driver (reader thread, batched detector on several workers, in-order merging)
//! writes byte for byte what the one-thread driver writes, for every batch size, worker count and
//! shard, with and without a journal, and turns detector errors and panics into errors.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use common::*;
use maskrcnn_geo::*;

const W: u32 = 300;
const H: u32 = 260;

fn options(shard: Shard) -> DetectOptions {
    DetectOptions {
        tile_size: 64,
        overlap: 12,
        class_names: vec!["a".into(), "b".into(), "c".into()],
        min_score: 0.55,
        shard,
        ..Default::default()
    }
}

/// Features as GeoJSON bytes, plus the summary.
fn write_geojson(
    dir: &Path,
    name: &str,
    crs: Option<&Crs>,
    run: impl FnOnce(&mut dyn FnMut(Feature) -> anyhow::Result<()>) -> anyhow::Result<DetectSummary>,
) -> anyhow::Result<(Vec<u8>, DetectSummary)> {
    let path = dir.join(name);
    let mut sink = create_writer(&path, crs, &WriteOptions { overwrite: true, ..Default::default() })?;
    let summary = run(&mut |f| sink.write(&f))?;
    sink.finish()?;
    Ok((std::fs::read(&path)?, summary))
}

fn same_summary(a: &DetectSummary, b: &DetectSummary, what: &str) {
    assert_eq!(a.tiles_processed, b.tiles_processed, "{what}");
    assert_eq!(a.tiles_skipped_nodata, b.tiles_skipped_nodata, "{what}");
    assert_eq!(a.instances_seen, b.instances_seen, "{what}");
    assert_eq!(a.features_emitted, b.features_emitted, "{what}");
    assert_eq!(a.unreadable_tiles, b.unreadable_tiles, "{what}");
    assert_eq!(a.pending, b.pending, "{what}");
}

/// A batch detector that answers each tile as `Truth` does, sleeping a tile-dependent time so
/// workers finish out of order, and recording the batch sizes it was given.
struct SlowTruth {
    truth: Truth,
    batches: Mutex<Vec<usize>>,
    tiles: AtomicUsize,
}

impl SlowTruth {
    fn new() -> SlowTruth {
        SlowTruth { truth: Truth::disc_lattice(W, H), batches: Mutex::new(Vec::new()), tiles: AtomicUsize::new(0) }
    }
    fn detect(&self, tiles: &[TileImage]) -> anyhow::Result<Vec<Vec<TileInstance>>> {
        self.batches.lock().unwrap().push(tiles.len());
        self.tiles.fetch_add(tiles.len(), Ordering::SeqCst);
        std::thread::sleep(Duration::from_micros(300 * (tiles[0].tile.index as u64 * 7 % 5)));
        Ok(tiles.iter().map(|t| self.truth.detect_boxed(t)).collect())
    }
}

#[test]
fn every_batch_size_and_worker_count_writes_the_one_thread_output() {
    let tmp = tempfile::tempdir().unwrap();
    let raster = raster_with_a_bad_chunk(tmp.path(), W, H);
    for shard in [Shard::WHOLE, Shard { index: 1, count: 3 }] {
        let opts = options(shard);
        let mut tiff = GeoTiff::open(&raster).unwrap();
        let crs = tiff.info().crs.clone();
        let truth = Truth::disc_lattice(W, H);
        let (reference, plain) = write_geojson(tmp.path(), "plain.geojson", crs.as_ref(), |out| {
            detect_raster_streaming(&mut tiff, |img| Ok(truth.detect_boxed(img)), &opts, out, |_| {})
        })
        .unwrap();
        assert!(!plain.unreadable_tiles.is_empty(), "the damaged chunk makes tiles unreadable");
        let found = plain.features_emitted + plain.pending.len();
        assert!(found > 5 && plain.tiles_processed >= 6, "{found} objects, {} tiles", plain.tiles_processed);
        for batch_size in [1, 2, 3, 5, 64] {
            for workers in [1, 2, 3] {
                let what = format!("shard {shard:?}, batch {batch_size}, {workers} workers");
                let detector = SlowTruth::new();
                let mut tiff = GeoTiff::open(&raster).unwrap();
                let mut last = 0;
                let (bytes, summary) = write_geojson(tmp.path(), "piped.geojson", crs.as_ref(), |out| {
                    detect_raster_pipelined(
                        &mut tiff,
                        &|t: &[TileImage]| detector.detect(t),
                        &opts,
                        PipelineOptions { batch_size, workers },
                        None,
                        out,
                        |p| {
                            assert_eq!(p.tiles_done, last + 1, "{what}: progress tile by tile");
                            last = p.tiles_done;
                        },
                    )
                })
                .unwrap();
                assert!(bytes == reference, "{what}: other output");
                same_summary(&summary, &plain, &what);
                assert_eq!(detector.tiles.load(Ordering::SeqCst), plain.tiles_processed, "{what}");
                let batches = detector.batches.lock().unwrap();
                assert!(batches.iter().all(|&b| b >= 1 && b <= batch_size), "{what}: {batches:?}");
                if batch_size > 1 && workers == 1 {
                    assert!(batches.iter().any(|&b| b > 1), "{what}: tiles are batched ({batches:?})");
                }
            }
        }
    }
}

#[test]
fn a_pipelined_journaled_run_stopped_part_way_resumes_to_the_same_output_with_other_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let raster = raster_with_a_bad_chunk(tmp.path(), W, H);
    let opts = options(Shard::WHOLE);
    let fp = RunFingerprint::new(&raster, "test detector v1", &opts, Default::default()).unwrap();
    let crs = GeoTiff::open(&raster).unwrap().info().crs.clone();
    let truth = Truth::disc_lattice(W, H);
    let mut tiff = GeoTiff::open(&raster).unwrap();
    let (reference, plain) = write_geojson(tmp.path(), "plain.geojson", crs.as_ref(), |out| {
        detect_raster_streaming(&mut tiff, |img| Ok(truth.detect_boxed(img)), &opts, out, |_| {})
    })
    .unwrap();
    let grid = TileGrid::new(W, H, 64, 12).unwrap();
    let total = grid.len();
    assert_eq!(total, 30);

    let output = tmp.path().join("out.geojson");
    let dir = DetectJournal::dir_for(&output).unwrap();
    for (stop_at, first, second) in [
        (17, PipelineOptions { batch_size: 3, workers: 2 }, PipelineOptions { batch_size: 1, workers: 1 }),
        (26, PipelineOptions { batch_size: 1, workers: 1 }, PipelineOptions { batch_size: 4, workers: 3 }),
        (11, PipelineOptions { batch_size: 5, workers: 3 }, PipelineOptions { batch_size: 2, workers: 2 }),
    ] {
        let _ = DetectJournal::discard(&dir);
        // The first run's detector fails at `stop_at`: everything merged before it is journaled.
        let mut journal = DetectJournal::create(&dir, &fp).unwrap();
        let mut tiff = GeoTiff::open(&raster).unwrap();
        let failing = |tiles: &[TileImage]| -> anyhow::Result<Vec<Vec<TileInstance>>> {
            if tiles.iter().any(|t| t.tile.index == stop_at) {
                anyhow::bail!("stopped");
            }
            Ok(tiles.iter().map(|t| truth.detect_boxed(t)).collect())
        };
        let err = write_geojson(tmp.path(), "out.geojson", crs.as_ref(), |out| {
            detect_raster_pipelined(&mut tiff, &failing, &opts, first, Some(&mut journal), out, |_| {})
        })
        .map(|(_, s)| s)
        .expect_err(&format!("stop at {stop_at} with {first:?}"));
        let name = grid.tile(stop_at as u32 / grid.cols(), stop_at as u32 % grid.cols()).name();
        assert!(format!("{err:#}").contains(&name), "{err:#}");
        drop(journal);

        let mut journal = DetectJournal::resume(&dir, &fp).unwrap();
        let mut tiff = GeoTiff::open(&raster).unwrap();
        let detector = SlowTruth::new();
        let (bytes, summary) = write_geojson(tmp.path(), "out.geojson", crs.as_ref(), |out| {
            detect_raster_pipelined(
                &mut tiff,
                &|t: &[TileImage]| detector.detect(t),
                &opts,
                second,
                Some(&mut journal),
                out,
                |_| {},
            )
        })
        .unwrap();
        let resumed = journal.resumed_tiles();
        journal.finish().unwrap();
        let what = format!("stopped at {stop_at} with {first:?}, resumed with {second:?}");
        assert!(bytes == reference, "{what}: other output");
        same_summary(&summary, &plain, &what);
        assert!(resumed > 0 && resumed <= stop_at, "{what}: {resumed} tiles resumed");
        assert!(detector.tiles.load(Ordering::SeqCst) <= total - resumed, "{what}: journaled tiles are not run again");
    }
}

#[test]
fn detector_errors_panics_and_wrong_answers_are_errors_naming_the_tile() {
    let tmp = tempfile::tempdir().unwrap();
    let raster = raster_with_a_bad_chunk(tmp.path(), W, H);
    let opts = options(Shard::WHOLE);
    let truth = Truth::disc_lattice(W, H);
    let run = |detector: &dyn BatchDetector, pipeline: PipelineOptions| {
        let mut tiff = GeoTiff::open(&raster).unwrap();
        detect_raster_pipelined(&mut tiff, detector, &opts, pipeline, None, |_| Ok(()), |_| {})
    };
    let two = PipelineOptions { batch_size: 2, workers: 2 };

    let panics = |tiles: &[TileImage]| -> anyhow::Result<Vec<Vec<TileInstance>>> {
        if tiles.iter().any(|t| t.tile.index == 20) {
            panic!("out of cheese");
        }
        Ok(tiles.iter().map(|t| truth.detect_boxed(t)).collect())
    };
    let err = format!("{:#}", run(&panics, two).unwrap_err());
    assert!(err.contains("panicked: out of cheese") && err.contains("r3c"), "{err}");

    let short = |tiles: &[TileImage]| -> anyhow::Result<Vec<Vec<TileInstance>>> {
        Ok(tiles.iter().skip(1).map(|t| truth.detect_boxed(t)).collect())
    };
    let err = format!("{:#}", run(&short, two).unwrap_err());
    assert!(err.contains("returned 1 results for 2 tiles"), "{err}");

    let bad_mask = |tiles: &[TileImage]| -> anyhow::Result<Vec<Vec<TileInstance>>> {
        Ok(tiles
            .iter()
            .map(|_| {
                vec![TileInstance {
                    class_id: 1,
                    score: 0.9,
                    mask: TileMask { x0: 0, y0: 0, width: 4, height: 4, data: vec![1; 10] },
                }]
            })
            .collect())
    };
    let err = format!("{:#}", run(&bad_mask, PipelineOptions::default()).unwrap_err());
    assert!(err.contains("mask of 10 values for its 4x4 box for tile r0c0"), "{err}");

    let err = format!(
        "{:#}",
        run(&per_tile(|t: &TileImage| Ok(truth.detect_boxed(t))), PipelineOptions { batch_size: 0, workers: 1 })
            .unwrap_err()
    );
    assert!(err.contains("at least 1"), "{err}");

    // per_tile adapts the one-tile shape and gives the same features.
    let ok = run(&per_tile(|t: &TileImage| Ok(truth.detect_boxed(t))), two).unwrap();
    assert!(ok.features_emitted > 5, "{ok:?}");
}
