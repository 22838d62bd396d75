//! The one rule for turning raw pixel values into the model's input range.
//!
//! Readers keep raw values (0..=255, the stored 16-bit integers, the stored floats) so that band
//! statistics stay in the data's own units; the model sees `raw / divisor`. The divisor is:
//!
//! 1. the one stored with the model (`transform.pixel_scale`), whenever there is one, because a
//!    model only works on inputs scaled the way it was trained;
//! 2. when training, [`PixelScale::from_data_max`] of the largest value in a few images: the
//!    smallest of 1, 255 and 65535 that covers it, or the maximum itself above that. So 8-bit
//!    data gives 255, 16-bit data 65535 (12-bit data too: its maximum is above 255), 16-bit
//!    files holding 8-bit values 255, reflectance floats in 0..1 give 1, and float or 32-bit
//!    data beyond 65535 is divided by its own maximum. The sample type does not enter: only
//!    the values do, and the result is stored with the model;
//! 3. with neither (weights imported without a stored scale), [`PixelScale::from_sample_type`]:
//!    the same ladder applied to the largest value the type can hold, for 8 and 16-bit integers
//!    (u8 and i8 give 255, u16 and i16 65535, as training on such data would, whatever the
//!    sign); wider integers and floats carry no usable range, so they are taken as already
//!    scaled (1).

use anyhow::Result;

use crate::Dataset;

/// How an image or raster stores its samples (`maskrcnn_geo` re-exports it for GeoTIFF bands).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SampleType {
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F32,
    F64,
}

impl SampleType {
    /// Bits per sample in storage.
    pub fn bits(self) -> u32 {
        match self {
            SampleType::U8 | SampleType::I8 => 8,
            SampleType::U16 | SampleType::I16 => 16,
            SampleType::U32 | SampleType::I32 | SampleType::F32 => 32,
            SampleType::U64 | SampleType::I64 | SampleType::F64 => 64,
        }
    }

    /// Whether samples are floating point.
    pub fn is_float(self) -> bool {
        matches!(self, SampleType::F32 | SampleType::F64)
    }
}

/// The divisor from raw pixel values to model input (see the [module docs](self) for the rule).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelScale(f32);

/// How many images [`PixelScale::from_dataset`] looks at: enough to see the data's range,
/// few enough that starting a run stays quick on large rasters.
pub const SCAN_IMAGES: usize = 8;

impl PixelScale {
    /// A given divisor, e.g. one stored with a model or set on the command line.
    pub fn new(divisor: f32) -> PixelScale {
        PixelScale(divisor)
    }

    /// The divisor: model input is `raw / divisor`.
    pub fn divisor(self) -> f32 {
        self.0
    }

    /// The training rule: 1, 255 or 65535, whichever is the smallest at or above `max`, else
    /// `max` itself.
    pub fn from_data_max(max: f32) -> PixelScale {
        PixelScale(if max <= 1.0 {
            1.0
        } else if max <= 255.0 {
            255.0
        } else if max <= 65535.0 {
            65535.0
        } else {
            max
        })
    }

    /// The rule without data: [`PixelScale::from_data_max`] of the type's largest value for 8
    /// and 16-bit integers, 1 for wider integers and floats.
    pub fn from_sample_type(sample_type: SampleType) -> PixelScale {
        let type_max = match sample_type {
            SampleType::U8 => f32::from(u8::MAX),
            SampleType::I8 => f32::from(i8::MAX),
            SampleType::U16 => f32::from(u16::MAX),
            SampleType::I16 => f32::from(i16::MAX),
            _ => return PixelScale(1.0),
        };
        PixelScale::from_data_max(type_max)
    }

    /// [`PixelScale::from_data_max`] over the largest value of the first [`SCAN_IMAGES`] readable
    /// images of `indices` (NaN samples, e.g. nodata, are ignored). Unreadable images are passed
    /// over (training skips and reports them); it is an error only when none can be read.
    pub fn from_dataset(dataset: &dyn Dataset, indices: &[usize]) -> Result<PixelScale> {
        let mut max = 0.0f32;
        let mut seen = 0;
        let mut first_error = None;
        for &i in indices {
            if seen == SCAN_IMAGES {
                break;
            }
            match dataset.image(i) {
                Ok(image) => {
                    max = image.data.iter().copied().fold(max, f32::max);
                    seen += 1;
                }
                Err(e) => {
                    first_error.get_or_insert(e.context(format!("reading image {i}")));
                }
            }
        }
        match (seen, first_error) {
            (0, Some(e)) => Err(e.context("no image could be read to choose the pixel scale")),
            _ => Ok(PixelScale::from_data_max(max)),
        }
    }

    /// At inference: the scale stored with the model when there is one, else the sample type's.
    pub fn for_model(stored: Option<f32>, sample_type: SampleType) -> PixelScale {
        stored.map_or_else(|| PixelScale::from_sample_type(sample_type), PixelScale)
    }

    /// Scales raw values in place. Multiplies by the reciprocal, as training always has, so
    /// that inputs stay bit-identical to those a stored model was trained on.
    pub fn apply(self, data: &mut [f32]) {
        let inverse = 1.0 / self.0;
        data.iter_mut().for_each(|v| *v *= inverse);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ImageTensor, Sample, Target};
    use anyhow::Context;

    #[test]
    fn data_max_picks_the_smallest_covering_range() {
        let divisor = |max| PixelScale::from_data_max(max).divisor();
        assert_eq!(divisor(0.0), 1.0);
        assert_eq!(divisor(1.0), 1.0, "reflectance floats in 0..1 are already scaled");
        assert_eq!(divisor(1.5), 255.0);
        assert_eq!(divisor(255.0), 255.0, "8-bit data, also when stored in 16 bits");
        assert_eq!(divisor(256.0), 65535.0);
        assert_eq!(divisor(4095.0), 65535.0, "12-bit data keeps the 16-bit range, as training always did");
        assert_eq!(divisor(65535.0), 65535.0);
        assert_eq!(divisor(70000.5), 70000.5, "beyond 16 bits the data's own maximum");
    }

    #[test]
    fn sample_type_alone_uses_the_type_range() {
        let divisor = |t| PixelScale::from_sample_type(t).divisor();
        assert_eq!(divisor(SampleType::U8), 255.0);
        assert_eq!(divisor(SampleType::U16), 65535.0);
        assert_eq!(divisor(SampleType::I8), 255.0);
        assert_eq!(divisor(SampleType::I16), 65535.0, "int16 as training scales int16 data above 255");
        for wide in
            [SampleType::U32, SampleType::I32, SampleType::U64, SampleType::I64, SampleType::F32, SampleType::F64]
        {
            assert_eq!(divisor(wide), 1.0, "{wide:?}");
        }
    }

    #[test]
    fn a_stored_scale_wins_over_the_sample_type() {
        assert_eq!(PixelScale::for_model(Some(4095.0), SampleType::U16).divisor(), 4095.0);
        assert_eq!(PixelScale::for_model(Some(1.0), SampleType::U8).divisor(), 1.0);
        assert_eq!(PixelScale::for_model(None, SampleType::U16).divisor(), 65535.0);
        assert_eq!(PixelScale::for_model(None, SampleType::F32).divisor(), 1.0);
    }

    #[test]
    fn apply_multiplies_by_the_reciprocal() {
        let mut data = vec![0.0, 51.0, 255.0, 1000.0];
        PixelScale::new(255.0).apply(&mut data);
        let inverse = 1.0f32 / 255.0;
        assert_eq!(data, vec![0.0, 51.0 * inverse, 255.0 * inverse, 1000.0 * inverse]);
    }

    struct Images(Vec<Vec<f32>>);

    impl Dataset for Images {
        fn len(&self) -> usize {
            self.0.len()
        }

        fn get(&self, index: usize) -> Result<Sample> {
            let data = self.0.get(index).context("no such image")?.clone();
            let image = ImageTensor { channels: 1, height: 1, width: data.len(), data };
            Ok(Sample { image, target: Target::default(), image_id: index as u64, file_name: String::new() })
        }

        fn class_names(&self) -> &[String] {
            &[]
        }
    }

    #[test]
    fn dataset_scan_looks_at_the_first_images_given_and_skips_nan() {
        let mut images = vec![vec![0.0, 200.0, f32::NAN]; SCAN_IMAGES];
        images.push(vec![3000.0]);
        let dataset = Images(images);
        let first: Vec<usize> = (0..=SCAN_IMAGES).collect();
        assert_eq!(PixelScale::from_dataset(&dataset, &first).unwrap().divisor(), 255.0);
        assert_eq!(PixelScale::from_dataset(&dataset, &[SCAN_IMAGES, 0]).unwrap().divisor(), 65535.0);
        assert!(PixelScale::from_dataset(&dataset, &[99]).is_err());
    }
}
