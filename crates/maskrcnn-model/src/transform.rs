//! torchvision's `GeneralizedRCNNTransform`: normalise, resize, batch with padding.

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
pub fn resized_size(height: usize, width: usize, min_size: usize, max_size: usize) -> (usize, usize) {
    let (short, long) = (height.min(width) as f64, height.max(width) as f64);
    let scale = (min_size as f64 / short).min(max_size as f64 / long);
    ((height as f64 * scale).floor() as usize, (width as f64 * scale).floor() as usize)
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
/// `size_divisible`.
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
}
