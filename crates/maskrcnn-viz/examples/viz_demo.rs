//! Renders every kind of picture this crate makes, from real COCO images, so they can be checked
//! by eye: `cargo run -p maskrcnn-viz --example viz_demo -- /tmp/viz_demo`.
//!
//! There is no trained model here, so the "predictions" are the ground truth with shifted masks,
//! jittered boxes, made-up scores and every fourth object dropped; they only exercise the drawing.

#[path = "../tests/support/coco.rs"]
mod coco;

use anyhow::{Context, Result};
use maskrcnn_viz::*;
use std::path::PathBuf;

fn main() -> Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "viz_demo".into()));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let dir = coco::coco_dir();
    let json = coco::load_instances_json(&dir);

    let mut rows = Vec::new();
    let mut titles = Vec::new();
    for file_name in ["000000000030.jpg", "000000000257.jpg", "000000000071.jpg"] {
        let (image, objects) = coco::load_annotated(&dir, &json, file_name);
        let (w, h) = image.dimensions();
        let gt: Vec<DrawInstance> = objects
            .iter()
            .map(|o| DrawInstance { bbox: o.bbox_xyxy, mask: Some(MaskRef::new(&o.mask, w, h).unwrap()), label: o.category_name.clone(), score: None, color: class_color(o.category_id as usize) })
            .collect();
        let shifted: Vec<Vec<u8>> = objects.iter().map(|o| shift_mask(&o.mask, w, h, 4, 3)).collect();
        let pred: Vec<DrawInstance> = objects
            .iter()
            .zip(&shifted)
            .enumerate()
            .filter(|(i, _)| i % 4 != 3)
            .map(|(i, (o, mask))| {
                let b = o.bbox_xyxy;
                DrawInstance {
                    bbox: [b[0] + 4.0, b[1] + 3.0, b[2] + 2.0, b[3] + 5.0],
                    mask: Some(MaskRef::new(mask, w, h).unwrap()),
                    label: o.category_name.clone(),
                    score: Some(0.99 - 0.07 * (i % 6) as f32),
                    color: class_color(o.category_id as usize),
                }
            })
            .collect();
        let stem = file_name.trim_end_matches(".jpg");
        for (mode, name) in [(DrawMode::Mask, "mask"), (DrawMode::BBox, "bbox"), (DrawMode::BBoxMask, "bbox_mask")] {
            let drawn = draw_instances(&image, &pred, &DrawOptions { mode, ..Default::default() });
            save_png(&drawn, out.join(format!("{stem}_pred_{name}.png")))?;
        }
        let opts = DrawOptions { mode: DrawMode::BBoxMask, ..Default::default() };
        rows.push((draw_instances(&image, &gt, &opts), draw_instances(&image, &pred, &opts)));
        titles.push(format!("{file_name}: {} objects", objects.len()));
    }
    let grid = results_grid(&rows, &titles, (480, 360));
    save_png(&grid, out.join("grid.png"))?;

    let metrics_path = coco::repo_root().join("fixtures/viz/metrics.jsonl");
    let losses = loss_curves_from_metrics_jsonl(&metrics_path)?;
    save_png(&losses, out.join("loss_curves.png"))?;
    let log = read_metrics_jsonl(&metrics_path)?;
    let val = epoch_metrics_plot(&log, 640, 400).context("fixture has epoch metrics")?;
    save_png(&val, out.join("val_metrics.png"))?;

    // A typical lr-finder sweep shape: flat, falling, then diverging.
    let sweep: Vec<(f64, f64)> = (0..150)
        .map(|i| {
            let lr = 1e-6 * 10f64.powf(6.0 * i as f64 / 149.0);
            let t = lr.log10();
            let loss = 2.4 - 1.2 / (1.0 + (-(t + 4.0) * 2.5).exp()) + if t > -2.0 { (t + 2.0).powi(2) * 3.0 } else { 0.0 } + 0.03 * (i as f64 * 1.3).sin();
            (lr, loss)
        })
        .collect();
    let lr_plot = lr_finder_plot(&sweep, Some(2.1e-4), 800, 480);
    save_png(&lr_plot, out.join("lr_finder.png"))?;

    let metrics = serde_json::json!({
        "model": "demo (simulated predictions)",
        "images": 3,
        "segm": {"AP": 0.4123, "AP50": 0.6311, "AP75": 0.4402, "APs": 0.2101, "APm": 0.4512, "APl": 0.5903},
        "bbox": {"AP": 0.4401, "AP50": 0.6622, "AP75": 0.4811, "APs": 0.2403, "APm": 0.4809, "APl": 0.6012},
        "per_class": [{"class": "person", "AP": 0.52, "gt": 14}, {"class": "potted plant", "AP": 0.31, "gt": 3}, {"class": "vase", "AP": null, "gt": 0}]
    });
    let html = html_report("Mask R-CNN report (demo)", &metrics, &[("Training losses", &losses), ("Validation metrics", &val), ("Learning rate finder", &lr_plot), ("Ground truth vs predictions", &grid)]);
    let html_path = out.join("report.html");
    std::fs::write(&html_path, &html).with_context(|| format!("cannot write {}", html_path.display()))?;
    println!("wrote pictures and report.html ({} bytes) to {}", html.len(), out.display());
    Ok(())
}

fn shift_mask(mask: &[u8], w: u32, h: u32, dx: i64, dy: i64) -> Vec<u8> {
    let mut shifted = vec![0u8; mask.len()];
    for y in 0..h as i64 {
        for x in 0..w as i64 {
            let (sx, sy) = (x - dx, y - dy);
            if sx >= 0 && sy >= 0 && sx < w as i64 && sy < h as i64 {
                shifted[(y * w as i64 + x) as usize] = mask[(sy * w as i64 + sx) as usize];
            }
        }
    }
    shifted
}
