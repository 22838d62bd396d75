//! torchvision's `GeneralizedRCNNTransform`: normalise, resize, batch with padding.

use anyhow::{ensure, Result};
use burn::tensor::{Device, Tensor};

use crate::config::TransformConfig;
use crate::ops::interpolate::resize_bilinear;
use crate::tensor_util::tensor_from_vec;

/// An image as `[channels, height, width]` floats, scaled so that 1.0 is full intensity.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageChw {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

/// A padded batch and the size each image had after resizing (before padding).
pub struct ImageBatch {
    pub tensor: Tensor<4>,
    pub image_sizes: Vec<(usize, usize)>,
    pub original_sizes: Vec<(usize, usize)>,
}

/// Resized height and width: the short side becomes `min_size` unless the long side would exceed
/// `max_size`. Computed in f64 and floored, as `interpolate(..., recompute_scale_factor=True)` does.
///
/// Each side is at least 1 px: a sliver such as 3000x1 scales to 1333x0.44, which torchvision
/// floors to 0 and then refuses ("output sizes should be greater than 0"); keeping one row lets
/// every aspect ratio run, and the batch padding to `size_divisible` gives the backbone its
/// minimum size. An image without pixels gives (0, 0).
pub fn resized_size(height: usize, width: usize, min_size: usize, max_size: usize) -> (usize, usize) {
    if height == 0 || width == 0 {
        return (0, 0);
    }
    let (short, long) = (height.min(width) as f64, height.max(width) as f64);
    let scale = (min_size as f64 / short).min(max_size as f64 / long);
    let side = |v: usize| ((v as f64 * scale).floor() as usize).max(1);
    (side(height), side(width))
}

/// Whether `image` has no pixels (a zero height or width).
pub fn is_empty_image(image: &ImageChw) -> bool {
    image.height == 0 || image.width == 0
}

/// The image is well formed for a `bands`-band model: its band count matches and its buffer holds
/// exactly `channels x height x width` values.
pub fn check_shape(image: &ImageChw, bands: usize) -> Result<()> {
    ensure!(image.channels == bands, "the image has {} bands, the model expects {bands}", image.channels);
    let expected = image.channels.checked_mul(image.height).and_then(|v| v.checked_mul(image.width));
    ensure!(
        expected == Some(image.data.len()),
        "a {}x{}x{} image holds {} values",
        image.channels,
        image.height,
        image.width,
        image.data.len()
    );
    Ok(())
}

/// [`check_shape`], and the image has pixels.
pub fn check_image(image: &ImageChw, bands: usize) -> Result<()> {
    check_shape(image, bands)?;
    ensure!(!is_empty_image(image), "the image is {}x{} pixels: it has none", image.width, image.height);
    Ok(())
}

pub fn normalize(image: &ImageChw, config: &TransformConfig) -> Vec<f32> {
    let plane = image.height * image.width;
    let mut out = Vec::with_capacity(image.data.len());
    for c in 0..image.channels {
        let (mean, std) = (config.image_mean[c], config.image_std[c]);
        out.extend(image.data[c * plane..(c + 1) * plane].iter().map(|v| (v - mean) / std));
    }
    out
}

/// Normalises, resizes and pads `images` into one batch whose sides are multiples of
/// `size_divisible`. Every image must pass [`check_image`] (callers check, with their own context).
pub fn batch_images(images: &[ImageChw], config: &TransformConfig, device: &Device) -> ImageBatch {
    let mut resized = Vec::with_capacity(images.len());
    let mut image_sizes = Vec::with_capacity(images.len());
    for image in images {
        let normalized = normalize(image, config);
        let (h, w) = resized_size(image.height, image.width, config.min_size, config.max_size);
        resized.push(resize_bilinear(&normalized, image.channels, (image.height, image.width), (h, w)));
        image_sizes.push((h, w));
    }
    let channels = images.first().map_or(3, |i| i.channels);
    let stride = config.size_divisible.max(1);
    let round_up = |v: usize| v.div_ceil(stride) * stride;
    let max_h = round_up(image_sizes.iter().map(|s| s.0).max().unwrap_or(0));
    let max_w = round_up(image_sizes.iter().map(|s| s.1).max().unwrap_or(0));
    let mut data = vec![0.0f32; images.len() * channels * max_h * max_w];
    for (i, (img, &(h, w))) in resized.iter().zip(&image_sizes).enumerate() {
        for c in 0..channels {
            for y in 0..h {
                let dst = ((i * channels + c) * max_h + y) * max_w;
                data[dst..dst + w].copy_from_slice(&img[(c * h + y) * w..(c * h + y) * w + w]);
            }
        }
    }
    ImageBatch {
        tensor: tensor_from_vec(data, [images.len(), channels, max_h, max_w], device),
        image_sizes,
        original_sizes: images.iter().map(|i| (i.height, i.width)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_follows_torchvision_rules() {
        assert_eq!(resized_size(480, 640, 800, 1333), (800, 1066));
        assert_eq!(resized_size(500, 2000, 800, 1333), (333, 1333));
        assert_eq!(resized_size(256, 256, 384, 512), (384, 384));
    }

    #[test]
    fn slivers_keep_one_pixel_where_torchvision_would_floor_to_zero() {
        // torchvision: 3000x1 -> (1333, 0) and an error; 4x3000 -> (1, 1333).
        assert_eq!(resized_size(3000, 1, 800, 1333), (1333, 1));
        assert_eq!(resized_size(1, 60000, 800, 1333), (1, 1333));
        assert_eq!(resized_size(4, 3000, 800, 1333), (1, 1333));
        assert_eq!(resized_size(1, 1, 800, 1333), (800, 800));
        assert_eq!(resized_size(0, 5, 800, 1333), (0, 0));
    }
}
