//! Per-band statistics of a dataset's imagery, computed once and stored with the model so that
//! inference normalises new imagery exactly as training did.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::{Dataset, ImageTensor};

/// Per-band statistics in the imagery's raw units. `std` is the population standard deviation.
/// NaN pixels (NoData in float rasters) are skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandStats {
    /// One entry per band in each of `min`, `max`, `mean` and `std`.
    pub min: Vec<f64>,
    pub max: Vec<f64>,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// Valid (non-NaN) pixels seen per band.
    pub pixel_count: Vec<u64>,
    /// Images the statistics were computed over.
    pub images: usize,
}

impl BandStats {
    pub fn bands(&self) -> usize {
        self.mean.len()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("band statistics serialise")
    }

    /// Parses [`BandStats::to_json`] output, rejecting band lists of different lengths.
    pub fn from_json(json: &str) -> Result<Self> {
        let stats: BandStats = serde_json::from_str(json).context("parsing band statistics JSON")?;
        stats.validate()?;
        Ok(stats)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_json()).with_context(|| format!("writing band statistics {}", path.display()))
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading band statistics {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("loading band statistics {}", path.display()))
    }

    fn validate(&self) -> Result<()> {
        let n = self.mean.len();
        ensure!(n > 0, "band statistics have no bands");
        ensure!(
            self.min.len() == n && self.max.len() == n && self.std.len() == n && self.pixel_count.len() == n,
            "band statistics vectors have different lengths"
        );
        Ok(())
    }

    /// Mean and std after min-max scaling each band to [0, 1]: `(mean - min) / (max - min)` and
    /// `std / (max - min)`. (ArcGIS derives the scaled std as `std * scaled_mean / mean`, which
    /// is only right when min = 0.)
    pub fn scaled_mean_std(&self) -> (Vec<f64>, Vec<f64>) {
        (0..self.bands())
            .map(|b| {
                let range = (self.max[b] - self.min[b]).max(f64::EPSILON);
                ((self.mean[b] - self.min[b]) / range, self.std[b] / range)
            })
            .unzip()
    }

    /// Standardises an image in place: `(x - mean) / std` per band; NaN becomes 0 (the mean).
    pub fn normalize(&self, image: &mut ImageTensor) -> Result<()> {
        ensure!(
            image.channels == self.bands(),
            "image has {} bands but the statistics have {}",
            image.channels,
            self.bands()
        );
        for b in 0..image.channels {
            let (mean, std) = (self.mean[b] as f32, self.std[b].max(1e-12) as f32);
            for v in image.plane_mut(b) {
                *v = if v.is_nan() { 0.0 } else { (*v - mean) / std };
            }
        }
        Ok(())
    }
}

/// Streaming accumulator; images are merged with Chan et al.'s parallel update so that large
/// 16-bit datasets do not lose precision the way a running sum of squares would.
#[derive(Debug, Clone)]
pub struct BandStatsAccumulator {
    count: Vec<u64>,
    mean: Vec<f64>,
    m2: Vec<f64>,
    min: Vec<f64>,
    max: Vec<f64>,
    images: usize,
}

impl BandStatsAccumulator {
    pub fn new(bands: usize) -> Self {
        BandStatsAccumulator {
            count: vec![0; bands],
            mean: vec![0.0; bands],
            m2: vec![0.0; bands],
            min: vec![f64::INFINITY; bands],
            max: vec![f64::NEG_INFINITY; bands],
            images: 0,
        }
    }

    /// Merges all pixels of `image`, which must have the accumulator's band count.
    pub fn add_image(&mut self, image: &ImageTensor) -> Result<()> {
        ensure!(
            image.channels == self.count.len(),
            "image has {} bands but earlier images had {}",
            image.channels,
            self.count.len()
        );
        for b in 0..image.channels {
            let plane = image.plane(b);
            let (mut n, mut sum) = (0u64, 0.0f64);
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            for &v in plane.iter().filter(|v| !v.is_nan()) {
                let v = v as f64;
                n += 1;
                sum += v;
                lo = lo.min(v);
                hi = hi.max(v);
            }
            if n == 0 {
                continue;
            }
            let mean = sum / n as f64;
            let m2: f64 = plane.iter().filter(|v| !v.is_nan()).map(|&v| (v as f64 - mean).powi(2)).sum();
            let (na, nb) = (self.count[b] as f64, n as f64);
            let delta = mean - self.mean[b];
            let total = na + nb;
            self.mean[b] += delta * nb / total;
            self.m2[b] += m2 + delta * delta * na * nb / total;
            self.count[b] += n;
            self.min[b] = self.min[b].min(lo);
            self.max[b] = self.max[b].max(hi);
        }
        self.images += 1;
        Ok(())
    }

    /// The statistics so far; an error when no image was added or a band has no valid pixel.
    pub fn finish(self) -> Result<BandStats> {
        ensure!(self.images > 0, "no images to compute band statistics from");
        if let Some(b) = self.count.iter().position(|&c| c == 0) {
            anyhow::bail!("band {b} has no valid (non-NaN) pixels in any image");
        }
        Ok(BandStats {
            std: self.m2.iter().zip(&self.count).map(|(m2, &n)| (m2 / n as f64).sqrt()).collect(),
            min: self.min,
            max: self.max,
            mean: self.mean,
            pixel_count: self.count,
            images: self.images,
        })
    }
}

/// Statistics over every image of a dataset (all bands it has).
pub fn compute_band_stats(dataset: &dyn Dataset) -> Result<BandStats> {
    ensure!(!dataset.is_empty(), "the dataset has no images to compute band statistics from");
    let mut acc: Option<BandStatsAccumulator> = None;
    for index in 0..dataset.len() {
        let image = dataset.image(index).with_context(|| format!("band statistics: image {index}"))?;
        let acc = acc.get_or_insert_with(|| BandStatsAccumulator::new(image.channels));
        acc.add_image(&image).with_context(|| format!("band statistics: image {index}"))?;
    }
    acc.expect("dataset is non-empty").finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_stats_equal_direct_computation() {
        let a = ImageTensor { channels: 2, height: 1, width: 3, data: vec![1.0, 2.0, 3.0, 1000.0, 1000.0, 1000.0] };
        let b = ImageTensor { channels: 2, height: 1, width: 2, data: vec![10.0, f32::NAN, 0.0, 60000.0] };
        let mut acc = BandStatsAccumulator::new(2);
        acc.add_image(&a).unwrap();
        acc.add_image(&b).unwrap();
        let s = acc.finish().unwrap();
        // Band 0 values: 1, 2, 3, 10 (NaN skipped).
        assert_eq!(s.pixel_count, vec![4, 5]);
        assert!((s.mean[0] - 4.0).abs() < 1e-12);
        let var0 = ((9.0 + 4.0 + 1.0 + 36.0) / 4.0f64).sqrt();
        assert!((s.std[0] - var0).abs() < 1e-12);
        assert_eq!((s.min[0], s.max[0]), (1.0, 10.0));
        // Band 1 values: 1000 x3, 0, 60000.
        assert!((s.mean[1] - 12600.0).abs() < 1e-9);
        let var1 = (3.0 * 11600.0f64.powi(2) + 12600.0f64.powi(2) + 47400.0f64.powi(2)) / 5.0;
        assert!((s.std[1] - var1.sqrt()).abs() < 1e-6);
        let back = BandStats::from_json(&s.to_json()).unwrap();
        assert_eq!(back, s);
        let (m, sd) = s.scaled_mean_std();
        assert!((m[0] - 3.0 / 9.0).abs() < 1e-12 && (sd[0] - var0 / 9.0).abs() < 1e-12);
    }

    #[test]
    fn band_mismatch_and_empty_are_errors() {
        let mut acc = BandStatsAccumulator::new(3);
        assert!(acc.add_image(&ImageTensor::zeros(4, 2, 2)).is_err());
        assert!(BandStatsAccumulator::new(3).finish().is_err());
        assert!(
            BandStats::from_json(r#"{"min":[1],"max":[],"mean":[1],"std":[1],"pixel_count":[1],"images":1}"#).is_err()
        );
    }

    #[test]
    fn normalize_uses_stats() {
        let stats = BandStats {
            min: vec![0.0],
            max: vec![4.0],
            mean: vec![2.0],
            std: vec![2.0],
            pixel_count: vec![4],
            images: 1,
        };
        let mut img = ImageTensor { channels: 1, height: 1, width: 3, data: vec![0.0, 4.0, f32::NAN] };
        stats.normalize(&mut img).unwrap();
        assert_eq!(img.data, vec![-1.0, 1.0, 0.0]);
    }
}
