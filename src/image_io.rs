//! Reading images for the model: JPEG, PNG and TIFF at 8 or 16 bits.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use image::DynamicImage;

use crate::transform::ImageChw;

pub const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "tif", "tiff", "bmp"];

/// Decodes an image into `[bands, h, w]` floats in 0..1 (8-bit / 255, 16-bit / 65535).
/// Grey images are repeated to three bands and alpha is dropped when `bands` is 3.
pub fn load_image(path: &Path, bands: usize) -> Result<ImageChw> {
    let reader = image::ImageReader::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let img = reader.decode().map_err(|e| anyhow!("{}: not a readable image ({e})", path.display()))?;
    to_chw(&img, bands).with_context(|| format!("{}", path.display()))
}

pub fn to_chw(img: &DynamicImage, bands: usize) -> Result<ImageChw> {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let native_bands = img.color().channel_count() as usize;
    let has_alpha = img.color().has_alpha();
    let sixteen = matches!(img.color().bytes_per_pixel() / img.color().channel_count(), 2);
    let (raw, scale): (Vec<f32>, f32) = if sixteen {
        (img.to_rgba16().into_raw().into_iter().map(f32::from).collect(), 65535.0)
    } else if img.color().bytes_per_pixel() / img.color().channel_count() == 4 {
        (img.to_rgba32f().into_raw(), 1.0)
    } else {
        (img.to_rgba8().into_raw().into_iter().map(f32::from).collect(), 255.0)
    };
    let colour_bands = if has_alpha { native_bands - 1 } else { native_bands };
    let take: Vec<usize> = match (colour_bands, bands) {
        (1, 3) | (3, 3) => vec![0, 1, 2],
        (1, 1) => vec![0],
        (c, b) => bail!("image has {c} band(s) but the model expects {b}"),
    };
    let plane = width * height;
    let mut data = vec![0.0f32; bands * plane];
    for (b, &src) in take.iter().enumerate() {
        for p in 0..plane {
            data[b * plane + p] = raw[p * 4 + src] / scale;
        }
    }
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
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_string_lossy().to_ascii_lowercase().as_str())))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: the folder holds no images ({})", input.display(), IMAGE_EXTENSIONS.join(", "));
    }
    Ok(files)
}
