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
            .map(|o| DrawInstance {
                bbox: o.bbox_xyxy,
                mask: Some(MaskRef::new(&o.mask, w, h).unwrap()),
                label: o.category_name.clone(),
                score: None,
                color: class_color(o.category_id as usize),
            })
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

    aerial_demo(&out)?;

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
            let loss = 2.4 - 1.2 / (1.0 + (-(t + 4.0) * 2.5).exp())
                + if t > -2.0 { (t + 2.0).powi(2) * 3.0 } else { 0.0 }
                + 0.03 * (i as f64 * 1.3).sin();
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
    let html = html_report(
        "Mask R-CNN report (demo)",
        &metrics,
        &[
            ("Training losses", &losses),
            ("Validation metrics", &val),
            ("Learning rate finder", &lr_plot),
            ("Ground truth vs predictions", &grid),
        ],
    );
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

/// Building footprints on the SpaceNet Atlanta panchromatic tile: instances are the connected
/// components of the footprint raster. Also draws a 128 px crop, the size of a training chip.
fn aerial_demo(out: &std::path::Path) -> Result<()> {
    let dir = coco::repo_root().join("../shared/data/spacenet-atlanta-sample");
    let raster_path = dir.join("sample_geotiff.tif");
    let gray = image::open(&raster_path).with_context(|| format!("cannot read {}", raster_path.display()))?.to_luma16();
    let mut values: Vec<u16> = gray.pixels().map(|p| p.0[0]).collect();
    values.sort_unstable();
    let (lo, hi) = (values[values.len() * 2 / 100] as f32, values[values.len() * 98 / 100] as f32);
    let rgb = image::RgbImage::from_fn(gray.width(), gray.height(), |x, y| {
        let v = ((gray.get_pixel(x, y).0[0] as f32 - lo) / (hi - lo).max(1.0) * 255.0).clamp(0.0, 255.0) as u8;
        image::Rgb([v, v, v])
    });
    let mask_path = dir.join("sample_fp_mask.tif");
    let footprints =
        image::open(&mask_path).with_context(|| format!("cannot read {}", mask_path.display()))?.to_luma8();
    let (w, h) = footprints.dimensions();
    let components = connected_components(footprints.as_raw(), w, h);
    let instances: Vec<DrawInstance> = components
        .iter()
        .map(|(mask, bbox)| DrawInstance {
            bbox: *bbox,
            mask: Some(MaskRef::new(mask, w, h).unwrap()),
            label: "building".into(),
            score: Some(0.9),
            color: class_color(1),
        })
        .collect();
    let drawn = draw_instances(&rgb, &instances, &DrawOptions { mode: DrawMode::BBoxMask, ..Default::default() });
    save_png(&drawn, out.join("aerial_buildings.png"))?;

    let crop = image::imageops::crop_imm(&rgb, 380, 380, 128, 128).to_image();
    let crop_masks: Vec<(Vec<u8>, [f32; 4])> = components
        .iter()
        .map(|(mask, bbox)| {
            let cropped: Vec<u8> = (0..128u32)
                .flat_map(|y| (0..128u32).map(move |x| (x, y)))
                .map(|(x, y)| mask[((y + 380) * w + x + 380) as usize])
                .collect();
            (cropped, [bbox[0] - 380.0, bbox[1] - 380.0, bbox[2] - 380.0, bbox[3] - 380.0])
        })
        .filter(|(m, _)| m.iter().any(|v| *v != 0))
        .collect();
    let chip_instances: Vec<DrawInstance> = crop_masks
        .iter()
        .map(|(mask, bbox)| DrawInstance {
            bbox: *bbox,
            mask: Some(MaskRef::new(mask, 128, 128).unwrap()),
            label: "building".into(),
            score: Some(0.87),
            color: class_color(1),
        })
        .collect();
    let chip = draw_instances(&crop, &chip_instances, &DrawOptions { mode: DrawMode::BBoxMask, ..Default::default() });
    save_png(&chip, out.join("aerial_chip_128.png"))?;
    println!("aerial: {} buildings in the tile, {} in the 128 px chip", components.len(), chip_instances.len());
    Ok(())
}

/// 4-connected components of non-zero pixels: one full-size mask and x1,y1,x2,y2 box each.
fn connected_components(raster: &[u8], w: u32, h: u32) -> Vec<(Vec<u8>, [f32; 4])> {
    let mut label = vec![0u32; raster.len()];
    let mut components = Vec::new();
    for start in 0..raster.len() {
        if raster[start] == 0 || label[start] != 0 {
            continue;
        }
        let id = components.len() as u32 + 1;
        let mut mask = vec![0u8; raster.len()];
        let mut bbox = [f32::MAX, f32::MAX, 0.0f32, 0.0f32];
        let mut stack = vec![start];
        label[start] = id;
        while let Some(i) = stack.pop() {
            mask[i] = 1;
            let (x, y) = ((i as u32 % w) as i64, (i as u32 / w) as i64);
            bbox = [
                bbox[0].min(x as f32),
                bbox[1].min(y as f32),
                bbox[2].max(x as f32 + 1.0),
                bbox[3].max(y as f32 + 1.0),
            ];
            for (nx, ny) in [(x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)] {
                if nx >= 0 && ny >= 0 && nx < w as i64 && ny < h as i64 {
                    let j = (ny * w as i64 + nx) as usize;
                    if raster[j] != 0 && label[j] == 0 {
                        label[j] = id;
                        stack.push(j);
                    }
                }
            }
        }
        components.push((mask, bbox));
    }
    components
}
