//! Print a raster's header and the mean of a window: `cargo run --example dump_window -- file.tif`.
fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).expect("usage: dump_window FILE.tif");
    let mut r = maskrcnn_geo::GeoTiff::open(&path)?;
    let info = r.info().clone();
    println!("{info:#?}");
    let w = r.read_window(maskrcnn_geo::PixelWindow::new(0, 0, info.width, info.height), &[])?;
    let mean = w.data.iter().map(|&v| v as f64).sum::<f64>() / w.data.len() as f64;
    println!("mean {mean}, decoded chunks {}", r.chunks_decoded());
    Ok(())
}
