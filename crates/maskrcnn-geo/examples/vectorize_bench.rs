//! Vectorise a whole label GeoTIFF with `vectorize_label_raster` (the benchmark's counterpart of
//! `gdal_polygonize.py`): `cargo run --release -p maskrcnn-geo --example vectorize_bench -- LABELS.tif
//! [--simplify PIXELS] [--validate]`. Prints times, feature/part/vertex counts, and (with
//! `--validate`) the number of features invalid by `vectorize::validity`.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use maskrcnn_geo::raster::{GeoTiff, PixelWindow, Samples};
use maskrcnn_geo::vectorize::{validity, vectorize_label_raster, LabelPolygon, VectorizeOptions};

fn cpu_seconds() -> f64 {
    // /proc/self/stat fields 14 and 15: user and system time in clock ticks (100 Hz on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) / 100.0
}

fn summarize<T>(features: &[LabelPolygon<T>], validate: bool) -> String {
    let parts: usize = features.iter().map(|f| f.geometry.0.len()).sum();
    let holes: usize = features.iter().flat_map(|f| &f.geometry.0).map(|p| p.interiors().len()).sum();
    let vertices: usize = features
        .iter()
        .flat_map(|f| &f.geometry.0)
        .map(|p| p.exterior().0.len() + p.interiors().iter().map(|h| h.0.len()).sum::<usize>())
        .sum();
    let mut s = format!("{} features, {parts} polygons, {holes} holes, {vertices} vertices", features.len());
    if validate {
        let t = Instant::now();
        let invalid = features.iter().filter(|f| validity::validate_multipolygon(&f.geometry).is_err()).count();
        s += &format!("; {invalid} invalid (checked in {:.2} s)", t.elapsed().as_secs_f64());
    }
    s
}

/// Vectorise (timed), then summarise and optionally validate (not timed): (summary, wall s, CPU s).
fn run<T: Copy + Eq + std::hash::Hash + Ord + Default>(
    labels: &[T],
    w: usize,
    h: usize,
    gt: &maskrcnn_geo::GeoTransform,
    opts: &VectorizeOptions,
    validate: bool,
) -> Result<(String, f64, f64)> {
    let (t, c) = (Instant::now(), cpu_seconds());
    let out = vectorize_label_raster(labels, w, h, T::default(), gt, opts)?;
    let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    Ok((summarize(&out, validate), wall, cpu))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else { bail!("usage: vectorize_bench LABELS.tif [--simplify PIXELS] [--validate]") };
    let simplify_px: f64 = match args.iter().position(|a| a == "--simplify") {
        Some(i) => args.get(i + 1).context("--simplify needs a value")?.parse()?,
        None => 0.0,
    };
    let validate = args.iter().any(|a| a == "--validate");
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let mut tif = GeoTiff::open(path)?;
    let info = tif.info().clone();
    let gt = info.geotransform_or_identity();
    let (w, h) = (info.width as usize, info.height as usize);
    let data = tif.read_window_typed(PixelWindow::new(0, 0, info.width, info.height), &[1])?.data;
    let (t1, c1) = (Instant::now(), cpu_seconds());
    let opts = VectorizeOptions::default().with_simplify_pixels(&gt, simplify_px);
    let (summary, wall, cpu) = match &data {
        Samples::U8(v) => run(v, w, h, &gt, &opts, validate)?,
        Samples::U16(v) => run(v, w, h, &gt, &opts, validate)?,
        Samples::U32(v) => run(v, w, h, &gt, &opts, validate)?,
        Samples::I32(v) => run(v, w, h, &gt, &opts, validate)?,
        _ => bail!("{path}: label rasters must be 8/16/32-bit integers"),
    };
    println!("{path}: {w}x{h}; {summary}");
    println!(
        "read {:.2} s wall / {:.2} s CPU; vectorize {wall:.2} s wall / {cpu:.2} s CPU",
        (t1 - t0).as_secs_f64(),
        c1 - c0
    );
    Ok(())
}
