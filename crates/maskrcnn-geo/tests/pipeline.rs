//! The pipelined driver (reader thread, batched detector on several workers, in-order merging)
//! writes byte for byte what the one-thread driver writes, for every batch size, worker count and
//! shard, with and without a journal, and turns detector errors and panics into errors.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use common::*;
use maskrcnn_geo::*;

const W: u32 = 300;
const H: u32 = 260;

/// Discs of varying size on a lattice, as an instance-id raster; the fake detector returns each
/// object's mask clipped to the tile with a tile-dependent score, so seams and the best-member
/// rule both matter.
struct Truth {
    labels: Vec<u32>,
}

impl Truth {
    fn new() -> Truth {
        let mut labels = vec![0; (W * H) as usize];
        let mut id = 1;
        for cy in (20..H).step_by(37) {
            for cx in (15..W).step_by(41) {
                let r = 8.0 + ((cx * 7 + cy * 3) % 13) as f64;
                for y in cy.saturating_sub(30)..(cy + 30).min(H) {
                    for x in cx.saturating_sub(30)..(cx + 30).min(W) {
                        let (dx, dy) = (x as f64 + 0.5 - cx as f64, y as f64 + 0.5 - cy as f64);
                        if (dx * dx + dy * dy).sqrt() < r {
                            labels[(y * W + x) as usize] = id;
                        }
                    }
                }
                id += 1;
            }
        }
        Truth { labels }
    }

    fn detect(&self, img: &TileImage) -> Vec<TileInstance> {
        let w = img.tile.window;
        let mut ids: Vec<u32> = Vec::new();
        for y in w.y..w.bottom() {
            for x in w.x..w.right() {
                let v = self.labels[(y * W + x) as usize];
                if v != 0 && !ids.contains(&v) {
                    ids.push(v);
                }
            }
        }
        ids.sort();
        ids.into_iter()
            .map(|id| {
                let mut mask = vec![0u8; (w.width * w.height) as usize];
                for y in 0..w.height {
                    for x in 0..w.width {
                        mask[(y * w.width + x) as usize] =
                            (self.labels[((w.y + y) * W + w.x + x) as usize] == id) as u8;
                    }
                }
                let score = 0.5 + 0.01 * ((id * 7 + img.tile.index as u32 * 3) % 40) as f32;
                TileInstance { class_id: id % 3, score, mask: boxed_mask(&mask, w.width, w.height) }
            })
            .collect()
    }
}

/// A tiled Deflate GeoTIFF with one chunk destroyed, so some tiles are unreadable: outcomes the
/// reader decides itself, between tiles the workers run.
fn raster(dir: &Path) -> PathBuf {
    let path = dir.join("scene.tif");
    let mut spec = TiffSpec::new(W, H, 3, Dtype::U8);
    spec.tile = Some((64, 64));
    spec.compression = Comp::Deflate;
    spec.geo = Some((500000.0, 4000000.0, 0.5, 32616));
    write_tiff(&path, &spec);
    let mut bytes = std::fs::read(&path).unwrap();
    let offsets = strip_offsets(&bytes);
    let at = offsets[W.div_ceil(64) as usize + 2] as usize;
    bytes[at..at + 16].fill(0xff);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// TileOffsets (tag 324) of a little-endian classic TIFF's first IFD.
fn strip_offsets(b: &[u8]) -> Vec<u32> {
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let ifd = u32_at(4) as usize;
    for e in 0..u16_at(ifd) as usize {
        let entry = ifd + 2 + 12 * e;
        if u16_at(entry) == 324 {
            let count = u32_at(entry + 4) as usize;
            let data = if count == 1 { entry + 8 } else { u32_at(entry + 8) as usize };
            return (0..count).map(|i| u32_at(data + 4 * i)).collect();
        }
    }
    panic!("no TileOffsets");
}

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
        SlowTruth { truth: Truth::new(), batches: Mutex::new(Vec::new()), tiles: AtomicUsize::new(0) }
    }
    fn detect(&self, tiles: &[TileImage]) -> anyhow::Result<Vec<Vec<TileInstance>>> {
        self.batches.lock().unwrap().push(tiles.len());
        self.tiles.fetch_add(tiles.len(), Ordering::SeqCst);
        std::thread::sleep(Duration::from_micros(300 * (tiles[0].tile.index as u64 * 7 % 5)));
        Ok(tiles.iter().map(|t| self.truth.detect(t)).collect())
    }
}

#[test]
fn every_batch_size_and_worker_count_writes_the_one_thread_output() {
    let tmp = tempfile::tempdir().unwrap();
    let raster = raster(tmp.path());
    for shard in [Shard::WHOLE, Shard { index: 1, count: 3 }] {
        let opts = options(shard);
        let mut tiff = GeoTiff::open(&raster).unwrap();
        let crs = tiff.info().crs.clone();
        let truth = Truth::new();
        let (reference, plain) = write_geojson(tmp.path(), "plain.geojson", crs.as_ref(), |out| {
            detect_raster_streaming(&mut tiff, |img| Ok(truth.detect(img)), &opts, out, |_| {})
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
    let raster = raster(tmp.path());
    let opts = options(Shard::WHOLE);
    let fp = RunFingerprint::new(&raster, "test detector v1", &opts, Default::default()).unwrap();
    let crs = GeoTiff::open(&raster).unwrap().info().crs.clone();
    let truth = Truth::new();
    let mut tiff = GeoTiff::open(&raster).unwrap();
    let (reference, plain) = write_geojson(tmp.path(), "plain.geojson", crs.as_ref(), |out| {
        detect_raster_streaming(&mut tiff, |img| Ok(truth.detect(img)), &opts, out, |_| {})
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
            Ok(tiles.iter().map(|t| truth.detect(t)).collect())
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
    let raster = raster(tmp.path());
    let opts = options(Shard::WHOLE);
    let truth = Truth::new();
    let run = |detector: &dyn BatchDetector, pipeline: PipelineOptions| {
        let mut tiff = GeoTiff::open(&raster).unwrap();
        detect_raster_pipelined(&mut tiff, detector, &opts, pipeline, None, |_| Ok(()), |_| {})
    };
    let two = PipelineOptions { batch_size: 2, workers: 2 };

    let panics = |tiles: &[TileImage]| -> anyhow::Result<Vec<Vec<TileInstance>>> {
        if tiles.iter().any(|t| t.tile.index == 20) {
            panic!("out of cheese");
        }
        Ok(tiles.iter().map(|t| truth.detect(t)).collect())
    };
    let err = format!("{:#}", run(&panics, two).unwrap_err());
    assert!(err.contains("panicked: out of cheese") && err.contains("r3c"), "{err}");

    let short = |tiles: &[TileImage]| -> anyhow::Result<Vec<Vec<TileInstance>>> {
        Ok(tiles.iter().skip(1).map(|t| truth.detect(t)).collect())
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
        run(&per_tile(|t: &TileImage| Ok(truth.detect(t))), PipelineOptions { batch_size: 0, workers: 1 }).unwrap_err()
    );
    assert!(err.contains("at least 1"), "{err}");

    // per_tile adapts the one-tile shape and gives the same features.
    let ok = run(&per_tile(|t: &TileImage| Ok(truth.detect(t))), two).unwrap();
    assert!(ok.features_emitted > 5, "{ok:?}");
}
