//! What the detect journal costs: the same run (fake detector, dense objects, GeoJSON output)
//! with and without it, alternating, best of N each.
//!
//!   cargo run --release -p maskrcnn-geo --example journal_overhead -- [SIZE_PX] [REPEATS]
//!
//! The fake detector costs next to nothing, so the relative figure is an upper bound: a real
//! model spends far longer per tile than this run's reading, merging and vectorising.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use anyhow::Result;
use common::{write_tiff, Comp, Dtype, TiffSpec};
use maskrcnn_geo::*;

const PERIOD: i64 = 60;
const RADIUS: i64 = 22;

/// Discs on a lattice in raster coordinates, clipped to the tile: about 70 per 512 px tile, many
/// cut by seams, so the journal carries far more than a typical scene gives it.
fn fake_detector(tile: &TileImage) -> Result<Vec<TileInstance>> {
    let (w, h) = (tile.width as i64, tile.height as i64);
    let (tx, ty) = (tile.tile.window.x as i64, tile.tile.window.y as i64);
    let mut out = Vec::new();
    for cy in (ty - RADIUS).div_euclid(PERIOD)..=(ty + h + RADIUS).div_euclid(PERIOD) {
        for cx in (tx - RADIUS).div_euclid(PERIOD)..=(tx + w + RADIUS).div_euclid(PERIOD) {
            let (ox, oy) = (cx * PERIOD + PERIOD / 2 - tx, cy * PERIOD + PERIOD / 2 - ty);
            let mut mask = vec![0u8; (w * h) as usize];
            let mut pixels = 0;
            for y in (oy - RADIUS).max(0)..(oy + RADIUS + 1).min(h) {
                for x in (ox - RADIUS).max(0)..(ox + RADIUS + 1).min(w) {
                    if (x - ox).pow(2) + (y - oy).pow(2) <= RADIUS * RADIUS {
                        mask[(y * w + x) as usize] = 1;
                        pixels += 1;
                    }
                }
            }
            if pixels > 60 {
                out.push(TileInstance {
                    class_id: 1,
                    score: 0.5 + 0.001 * ((cx * 7 + cy * 3).rem_euclid(400)) as f32,
                    mask: TileMask::whole(w as u32, h as u32, mask),
                });
            }
        }
    }
    Ok(out)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let size: u32 = args.first().map(|s| s.parse()).transpose()?.unwrap_or(4096);
    let repeats: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(3);
    let dir = tempfile::tempdir()?;
    let raster = dir.path().join("scene.tif");
    let mut spec = TiffSpec::new(size, size, 3, Dtype::U8);
    spec.tile = Some((256, 256));
    spec.compression = Comp::Deflate;
    spec.geo = Some((500000.0, 4000000.0, 0.5, 32616));
    write_tiff(&raster, &spec);
    let opts = DetectOptions { class_names: vec!["bg".into(), "disc".into()], ..DetectOptions::default() };
    let write = WriteOptions { overwrite: true, ..WriteOptions::default() };

    // One journaled run into `output`, calling `probe(journal folder)` after each tile.
    let journaled = |output: &std::path::Path, probe: &mut dyn FnMut(&std::path::Path)| -> Result<DetectSummary> {
        let mut tiff = GeoTiff::open(&raster)?;
        let mut sink = create_writer(output, tiff.info().crs.clone().as_ref(), &write)?;
        let jdir = DetectJournal::dir_for(output)?;
        let fp = RunFingerprint::new(&raster, "fake", &opts, Default::default())?;
        let mut journal = DetectJournal::create(&jdir, &fp)?;
        let summary = detect_raster_journaled(
            &mut tiff,
            fake_detector,
            &opts,
            &mut journal,
            |f| sink.write(&f),
            |_| probe(&jdir),
        )?;
        sink.finish()?;
        journal.finish()?;
        Ok(summary)
    };
    let mut best = [f64::INFINITY; 2];
    let mut outputs: [Vec<u8>; 2] = Default::default();
    let mut tiles = 0;
    for _ in 0..repeats {
        for (i, journal) in [false, true].into_iter().enumerate() {
            let output = dir.path().join(format!("out{i}.geojson"));
            let start = Instant::now();
            let summary = if journal {
                journaled(&output, &mut |_| {})?
            } else {
                let mut tiff = GeoTiff::open(&raster)?;
                let mut sink = create_writer(&output, tiff.info().crs.clone().as_ref(), &write)?;
                let summary = detect_raster_streaming(&mut tiff, fake_detector, &opts, |f| sink.write(&f), |_| {})?;
                sink.finish()?;
                summary
            };
            let secs = start.elapsed().as_secs_f64();
            best[i] = best[i].min(secs);
            tiles = summary.tiles_processed;
            eprintln!(
                "{} {secs:.3} s, {} tiles, {} instances, {} features",
                if journal { "journaled" } else { "plain    " },
                summary.tiles_processed,
                summary.instances_seen,
                summary.features_emitted
            );
            outputs[i] = std::fs::read(&output)?;
        }
    }
    // Untimed: the journal's size after every tile.
    let mut largest_journal = 0u64;
    journaled(&dir.path().join("probe.geojson"), &mut |jdir| {
        let bytes: u64 = std::fs::read_dir(jdir)
            .map(|d| d.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0);
        largest_journal = largest_journal.max(bytes);
    })?;
    anyhow::ensure!(outputs[0] == outputs[1], "the journaled run wrote another output");
    let per_tile = |s: f64| 1000.0 * s / tiles as f64;
    println!(
        "{size}x{size} px, {tiles} tiles, best of {repeats}: plain {:.3} s ({:.2} ms/tile), journaled {:.3} s \
         ({:.2} ms/tile): +{:.2} ms/tile ({:+.1}%); journal peak {:.1} MB, output {:.1} MB",
        best[0],
        per_tile(best[0]),
        best[1],
        per_tile(best[1]),
        per_tile(best[1]) - per_tile(best[0]),
        100.0 * (best[1] / best[0] - 1.0),
        largest_journal as f64 / 1e6,
        outputs[0].len() as f64 / 1e6
    );
    Ok(())
}
