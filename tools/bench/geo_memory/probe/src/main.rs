//! Memory of the non-model parts of `maskrcnn detect`, to tell which one grows with the raster.
//!
//!   geo-memory-probe read     RASTER CACHE_BYTES           every tile window read, nothing else
//!   geo-memory-probe pipeline RASTER OUT.gpkg CACHE_BYTES  read + fake detector + merge + write
//!
//! The fake detector returns discs (radius 50 px) on a 150 px lattice in raster coordinates,
//! clipped to each tile: dense objects, a large share of them cut by seams, so the merger and the
//! writer carry far more than the tiny test model gives them. Peak RSS comes from VmHWM.

use std::path::Path;

use anyhow::{bail, Context, Result};
use maskrcnn_geo::{
    create_writer, detect_raster_streaming, DetectOptions, GeoTiff, TileGrid, TileImage, TileInstance, TileMask, WriteOptions,
};

const DISC_PERIOD: i64 = 150;
const DISC_RADIUS: i64 = 50;

fn status_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn report(stage: &str) {
    eprintln!("{stage}: VmRSS {:.1} MB, VmHWM {:.1} MB", status_kb("VmRSS:") as f64 / 1024.0, status_kb("VmHWM:") as f64 / 1024.0);
}

fn fake_detector(tile: &TileImage) -> Result<Vec<TileInstance>> {
    let (w, h) = (tile.width as i64, tile.height as i64);
    let (tx, ty) = (tile.tile.window.x as i64, tile.tile.window.y as i64);
    let mut out = Vec::new();
    let first = |origin: i64| (origin - DISC_RADIUS).div_euclid(DISC_PERIOD);
    let last = |origin: i64, len: i64| (origin + len + DISC_RADIUS).div_euclid(DISC_PERIOD);
    for cy in first(ty)..=last(ty, h) {
        for cx in first(tx)..=last(tx, w) {
            let (centre_x, centre_y) = (cx * DISC_PERIOD + DISC_PERIOD / 2 - tx, cy * DISC_PERIOD + DISC_PERIOD / 2 - ty);
            let mut mask = vec![0u8; (w * h) as usize];
            let mut pixels = 0;
            for y in (centre_y - DISC_RADIUS).max(0)..(centre_y + DISC_RADIUS + 1).min(h) {
                for x in (centre_x - DISC_RADIUS).max(0)..(centre_x + DISC_RADIUS + 1).min(w) {
                    if (x - centre_x).pow(2) + (y - centre_y).pow(2) <= DISC_RADIUS * DISC_RADIUS {
                        mask[(y * w + x) as usize] = 1;
                        pixels += 1;
                    }
                }
            }
            // A model misses objects it sees only a sliver of; so does this one.
            if pixels > 400 {
                out.push(TileInstance { class_id: 1, score: 0.9, mask: TileMask::whole(w as u32, h as u32, mask) });
            }
        }
    }
    Ok(out)
}

fn read_all(raster: &Path, cache: usize) -> Result<()> {
    let mut tiff = GeoTiff::open(raster)?;
    tiff.set_cache_budget(cache);
    let info = tiff.info().clone();
    let grid = TileGrid::new(info.width, info.height, 512, 64)?;
    report("opened");
    let rows = grid.rows();
    for row in 0..rows {
        for col in 0..grid.cols() {
            let window = grid.tile(row, col).window;
            let data = tiff.read_window(window, &[1, 2, 3])?;
            std::hint::black_box(&data.data);
        }
        if (row + 1) % (rows / 4).max(1) == 0 {
            report(&format!("after tile row {}/{rows}", row + 1));
        }
    }
    eprintln!("{} tiles, {} chunks decoded", grid.len(), tiff.chunks_decoded());
    report("done");
    Ok(())
}

fn pipeline(raster: &Path, output: &Path, cache: usize) -> Result<()> {
    let mut tiff = GeoTiff::open(raster)?;
    tiff.set_cache_budget(cache);
    let info = tiff.info().clone();
    let options = DetectOptions { bands: vec![1, 2, 3], class_names: vec!["bg".into(), "disc".into()], ..DetectOptions::default() };
    let mut sink = create_writer(output, info.crs.as_ref(), &WriteOptions { overwrite: true, ..WriteOptions::default() })?;
    report("opened");
    let mut next_report = 0.25;
    let summary = detect_raster_streaming(&mut tiff, fake_detector, &options, |f| sink.write(&f), |p| {
        if p.tiles_done as f64 >= next_report * p.tiles_total as f64 {
            report(&format!("after {}/{} tiles, {} features written", p.tiles_done, p.tiles_total, p.features_emitted));
            next_report += 0.25;
        }
    })?;
    sink.finish()?;
    eprintln!(
        "{} tiles, {} instances in, {} features out -> {}",
        summary.tiles_processed,
        summary.instances_seen,
        summary.features_emitted,
        output.display()
    );
    report("done");
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cache = |s: &str| s.parse::<usize>().with_context(|| format!("cache budget {s:?} is not a byte count"));
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["read", raster, c] => read_all(Path::new(raster), cache(c)?),
        ["pipeline", raster, out, c] => pipeline(Path::new(raster), Path::new(out), cache(c)?),
        _ => bail!("usage: geo-memory-probe read RASTER CACHE_BYTES | pipeline RASTER OUT.gpkg CACHE_BYTES"),
    }
}
