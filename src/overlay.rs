//! Pictures of detections for people to look at.

use std::path::Path;

use anyhow::{Context, Result};
use maskrcnn_viz::{class_color, draw_instances, DrawInstance, DrawMode, DrawOptions, MaskRef};

use crate::config::MaskRcnnConfig;
use crate::model::Detection;
use crate::transform::ImageChw;

pub fn to_rgb(image: &ImageChw) -> image::RgbImage {
    let plane = image.height * image.width;
    let band = |b: usize| b.min(image.channels - 1) * plane;
    image::RgbImage::from_fn(image.width as u32, image.height as u32, |x, y| {
        let p = y as usize * image.width + x as usize;
        let px = |b: usize| (image.data[band(b) + p] * 255.0).round().clamp(0.0, 255.0) as u8;
        image::Rgb([px(0), px(1), px(2)])
    })
}

pub fn draw_detections(image: &ImageChw, dets: &[Detection], config: &MaskRcnnConfig) -> image::RgbImage {
    draw_detections_with(image, dets, config, DrawMode::BBoxMask, |label| {
        class_color(config.category_id(label) as usize)
    })
}

/// Draws detections with `mode`; colours come from the model's class colours when it has them,
/// else from `fallback_color(label)`.
pub fn draw_detections_with(
    image: &ImageChw,
    dets: &[Detection],
    config: &MaskRcnnConfig,
    mode: DrawMode,
    fallback_color: impl Fn(usize) -> [u8; 3],
) -> image::RgbImage {
    let (h, w) = (image.height, image.width);
    let masks: Vec<Vec<u8>> = dets.iter().map(|d| d.mask.to_binary_full(h, w)).collect();
    let instances: Vec<DrawInstance> = dets
        .iter()
        .zip(&masks)
        .map(|(d, m)| DrawInstance {
            bbox: d.bbox,
            mask: Some(MaskRef::new(m, w as u32, h as u32).expect("mask sized to the image")),
            label: config.class_name(d.label),
            score: Some(d.score),
            color: config.class_colors.get(d.label).copied().unwrap_or_else(|| fallback_color(d.label)),
        })
        .collect();
    draw_instances(&to_rgb(image), &instances, &DrawOptions { mode, ..DrawOptions::default() })
}

pub fn write_overlay(
    source: &Path,
    image: &ImageChw,
    dets: &[Detection],
    config: &MaskRcnnConfig,
    out: &Path,
) -> Result<()> {
    let picture = draw_detections(image, dets, config);
    let tmp = crate::io_util::temp_path_for(out);
    picture
        .save_with_format(&tmp, image::ImageFormat::Png)
        .with_context(|| format!("writing the overlay of {}", source.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))
}
