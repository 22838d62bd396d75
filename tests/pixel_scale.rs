//! One pixel-scaling rule at both ends: what training divided raw values by (stored in the
//! model's config) is what `predict` divides new imagery by, whatever the sample type. Before, a
//! float32 raster (a DEM) trained at /65535 was read at /1 by inference.

use maskrcnn::config::MaskRcnnConfig;
use maskrcnn::image_io::{load_image, load_model_input};
use maskrcnn_data::image_io::{write_tiff, TiffSampleType};
use maskrcnn_data::ImageTensor;

fn ramp(channels: usize, max: f32) -> ImageTensor {
    let mut image = ImageTensor::zeros(channels, 4, 5);
    for c in 0..channels {
        for (i, v) in image.plane_mut(c).iter_mut().enumerate() {
            *v = max * i as f32 / 19.0;
        }
    }
    image
}

#[test]
fn float_raster_uses_the_scale_training_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dem.tif");
    let raw = ramp(1, 812.5);
    write_tiff(&path, &raw, TiffSampleType::F32, false).unwrap();

    let mut config = MaskRcnnConfig::small(2, 64, 8);
    config.transform.pixel_scale = Some(65535.0);
    let input = load_model_input(&path, &config).unwrap();
    assert_eq!(input.channels, 3, "a single band is repeated for a 3-band model");
    let inverse = 1.0f32 / 65535.0;
    for (got, raw) in input.data[..20].iter().zip(raw.plane(0)) {
        // Bit-identical to training's `raw * (1 / pixel_scale)`.
        assert_eq!(*got, raw * inverse);
    }
    assert_eq!(&input.data[..20], &input.data[40..60]);

    // Without a stored scale, float data is taken as already scaled (the torchvision convention).
    config.transform.pixel_scale = None;
    let unscaled = load_model_input(&path, &config).unwrap();
    assert_eq!(&unscaled.data[..20], raw.plane(0));
}

#[test]
fn sixteen_bit_imagery_uses_a_stored_twelve_bit_scale() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pan.tif");
    let raw = ramp(3, 4095.0);
    write_tiff(&path, &raw.clone(), TiffSampleType::U16, false).unwrap();
    let mut config = MaskRcnnConfig::small(2, 64, 8);
    config.transform.pixel_scale = Some(4095.0);
    let input = load_model_input(&path, &config).unwrap();
    let max = input.data.iter().copied().fold(0.0f32, f32::max);
    assert!((max - 1.0).abs() < 1e-6, "4095 / 4095 is 1, got {max}");
    // The type's own range applies without a stored scale, as for torchvision checkpoints.
    let by_type = load_image(&path, 3).unwrap();
    let max = by_type.data.iter().copied().fold(0.0f32, f32::max);
    assert!((max - 4095.0 / 65535.0).abs() < 1e-6, "{max}");
}
