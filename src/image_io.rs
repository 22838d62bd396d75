//! Reading images for the model: maskrcnn-data's reader (JPEG, PNG and TIFF of any sample type
//! and band count), the model's bands, and the model's pixel scale.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use maskrcnn_data::scaling::PixelScale;

use crate::config::MaskRcnnConfig;
use crate::transform::ImageChw;

pub const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "tif", "tiff"];

/// Decodes an image into `[bands, h, w]` floats divided by its sample type's range (8-bit / 255,
/// 16-bit / 65535), the scale torchvision checkpoints expect. Grey images are repeated to three
/// bands when `bands` is 3; alpha is dropped.
pub fn load_image(path: &Path, bands: usize) -> Result<ImageChw> {
    load_scaled(path, bands, PixelScale::from_sample_type)
}

/// An image as `config`'s model expects it: its bands, scaled by
/// [`crate::config::TransformConfig::pixel_scale_for`] (the scale it was trained with).
pub fn load_model_input(path: &Path, config: &MaskRcnnConfig) -> Result<ImageChw> {
    load_scaled(path, config.backbone.in_channels, |sample_type| config.transform.pixel_scale_for(sample_type))
}

fn load_scaled(
    path: &Path,
    bands: usize,
    scale: impl Fn(maskrcnn_data::scaling::SampleType) -> PixelScale,
) -> Result<ImageChw> {
    if !path.is_file() {
        bail!("{}: no such file", path.display());
    }
    let typed = maskrcnn_data::image_io::read_image_typed(path)
        .map_err(|e| anyhow::anyhow!("{}: not a readable image ({:#})", path.display(), e))?;
    scaled_bands(typed.image, bands, scale(typed.sample_type)).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Raw pixels held in memory (a numpy array in Python) as `config`'s model expects them, by the
/// rule [`load_model_input`] applies to files.
pub fn model_input_from_raw(
    image: maskrcnn_data::ImageTensor,
    sample_type: maskrcnn_data::scaling::SampleType,
    config: &MaskRcnnConfig,
) -> Result<ImageChw> {
    scaled_bands(image, config.backbone.in_channels, config.transform.pixel_scale_for(sample_type))
}

/// The model's bands of `image` (a single band repeated), divided by `scale`.
fn scaled_bands(image: maskrcnn_data::ImageTensor, bands: usize, scale: PixelScale) -> Result<ImageChw> {
    let (height, width) = (image.height, image.width);
    let plane = height * width;
    let take: Vec<usize> = match (image.channels, bands) {
        (1, b) => vec![0; b],
        (c, b) if c == b => (0..b).collect(),
        (c, b) => bail!("the image has {c} band(s) but the model expects {b} (pick or repeat bands to match)"),
    };
    let mut data = Vec::with_capacity(bands * plane);
    for &src in &take {
        data.extend_from_slice(image.plane(src));
    }
    scale.apply(&mut data);
    Ok(ImageChw { channels: bands, height, width, data })
}

/// The image files of a folder (sorted), or the single file given.
pub fn list_images(input: &Path) -> Result<Vec<PathBuf>> {
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    if !input.is_dir() {
        bail!("{}: no such file or folder", input.display());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(input)
        .with_context(|| format!("reading {}", input.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_string_lossy().to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: the folder holds no images ({})", input.display(), IMAGE_EXTENSIONS.join(", "));
    }
    Ok(files)
}
