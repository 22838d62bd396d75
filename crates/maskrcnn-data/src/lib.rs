//! maskrcnn-data: training data for Mask R-CNN.
//!
//! Readers produce [`Sample`]s (a CHW image of raw pixel values plus instance targets) through the
//! [`Dataset`] trait:
//! - [`coco::CocoDataset`]: COCO instance JSON (polygons, uncompressed and compressed RLE, crowd).
//! - [`esri::EsriRcnnMasksDataset`]: ArcGIS "Export Training Data" folders in `RCNN_Masks` format.
//! - [`instance_masks::InstanceMaskFolder`]: `images/` + `masks/` with instance-id PNGs (Penn-Fudan).
//! - [`synthetic`]: a seeded generator of simple shapes, in memory or written as COCO.
//!
//! [`stats::compute_band_stats`] gives per-band statistics to store with a model,
//! [`scaling::PixelScale`] the one rule mapping raw values to the model's input range, and
//! [`transforms`] holds seeded, mask-consistent augmentation.
//!
//! Box convention everywhere: `[x1, y1, x2, y2]` in continuous pixel coordinates, where pixel
//! (col c, row r) covers `[c, c+1) x [r, r+1)`. A mask's tight box is therefore
//! `[min_col, min_row, max_col + 1, max_row + 1]`, which matches COCO's `[x, y, x + w, y + h]`.

pub mod coco;
pub mod esri;
pub mod image_io;
pub mod instance_masks;
pub mod jpeg_check;
pub mod process_lock;
pub mod scaling;
pub mod stats;
pub mod synthetic;
pub mod transforms;

pub use anyhow::{Error, Result};

/// An image as channel-major (CHW) `f32`, holding raw pixel values: 0..=255 for 8-bit data, the
/// stored integers for 16-bit data, the stored floats for float rasters. Scaling and
/// normalisation are left to the model so that band statistics stay in the data's own units.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageTensor {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl ImageTensor {
    pub fn zeros(channels: usize, height: usize, width: usize) -> Self {
        ImageTensor { channels, height, width, data: vec![0.0; channels * height * width] }
    }

    /// Builds a CHW tensor from interleaved (HWC) samples, the layout most decoders produce.
    pub fn from_interleaved<T: Copy + Into<f64>>(
        channels: usize,
        height: usize,
        width: usize,
        interleaved: &[T],
    ) -> Result<Self> {
        let plane = height * width;
        anyhow::ensure!(
            interleaved.len() == plane * channels,
            "pixel buffer has {} samples, expected {}x{}x{} = {}",
            interleaved.len(),
            height,
            width,
            channels,
            plane * channels
        );
        let mut data = vec![0.0f32; plane * channels];
        for (pixel, samples) in interleaved.chunks_exact(channels).enumerate() {
            for (c, &v) in samples.iter().enumerate() {
                data[c * plane + pixel] = v.into() as f32;
            }
        }
        Ok(ImageTensor { channels, height, width, data })
    }

    pub fn plane(&self, channel: usize) -> &[f32] {
        let n = self.height * self.width;
        &self.data[channel * n..(channel + 1) * n]
    }

    pub fn plane_mut(&mut self, channel: usize) -> &mut [f32] {
        let n = self.height * self.width;
        &mut self.data[channel * n..(channel + 1) * n]
    }

    #[inline]
    pub fn get(&self, channel: usize, row: usize, col: usize) -> f32 {
        self.data[(channel * self.height + row) * self.width + col]
    }

    /// Repeats a single band three times, for RGB models fed grayscale photos.
    pub fn gray_to_rgb(&self) -> ImageTensor {
        if self.channels != 1 {
            return self.clone();
        }
        let mut data = Vec::with_capacity(self.data.len() * 3);
        for _ in 0..3 {
            data.extend_from_slice(&self.data);
        }
        ImageTensor { channels: 3, height: self.height, width: self.width, data }
    }
}

/// Instance annotations for one image. All vectors have one entry per instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Target {
    /// `[x1, y1, x2, y2]`, continuous pixel coordinates (see the crate docs).
    pub boxes: Vec<[f32; 4]>,
    /// Contiguous labels `1..=C`; 0 is background and never appears here.
    pub labels: Vec<i64>,
    /// One binary mask per instance, row-major `height * width`, values 0 or 1.
    pub masks: Vec<Vec<u8>>,
    /// Crowd regions (COCO `iscrowd = 1`): the trainer should ignore proposals matching them
    /// rather than treat them as positives or negatives, as torchvision's reference does.
    pub iscrowd: Vec<bool>,
}

impl Target {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn push(&mut self, bbox: [f32; 4], label: i64, mask: Vec<u8>, iscrowd: bool) {
        self.boxes.push(bbox);
        self.labels.push(label);
        self.masks.push(mask);
        self.iscrowd.push(iscrowd);
    }

    /// Keeps the instances for which `keep(i)` is true, in order.
    pub fn retain_indices(&mut self, mut keep: impl FnMut(usize) -> bool) {
        let flags: Vec<bool> = (0..self.len()).map(&mut keep).collect();
        let mut it = flags.iter();
        self.boxes.retain(|_| *it.next().unwrap());
        let mut it = flags.iter();
        self.labels.retain(|_| *it.next().unwrap());
        let mut it = flags.iter();
        self.masks.retain(|_| *it.next().unwrap());
        let mut it = flags.iter();
        self.iscrowd.retain(|_| *it.next().unwrap());
    }
}

/// One training example.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub image: ImageTensor,
    pub target: Target,
    /// An id for results files: the COCO image id where the format has one, else derived from
    /// the index.
    pub image_id: u64,
    /// The image's file name (the chip stem for RCNN_Masks exports), for messages.
    pub file_name: String,
}

/// Random access to samples. `class_names()[label - 1]` names label `label`; background
/// (label 0) is not listed.
pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;
    fn get(&self, index: usize) -> Result<Sample>;
    fn class_names(&self) -> &[String];

    /// Only the image of sample `index`; readers override it to skip decoding masks
    /// (used by [`stats::compute_band_stats`]).
    fn image(&self, index: usize) -> Result<ImageTensor> {
        Ok(self.get(index)?.image)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn num_classes(&self) -> usize {
        self.class_names().len()
    }

    /// The id each class has in the data's own terms, in label order (`category_ids()[label - 1]`):
    /// COCO category ids, Esri class values. Results must carry these, not the contiguous labels,
    /// or data whose ids have gaps (COCO itself) would be written with the wrong ids.
    fn category_ids(&self) -> Vec<u64> {
        (1..=self.num_classes() as u64).collect()
    }
}

/// Tight box of a binary mask in continuous pixel coordinates, or `None` when the mask is empty.
pub fn mask_to_box(mask: &[u8], height: usize, width: usize) -> Option<[f32; 4]> {
    debug_assert_eq!(mask.len(), height * width);
    let (mut x1, mut y1, mut x2, mut y2) = (usize::MAX, usize::MAX, 0usize, 0usize);
    let mut any = false;
    for row in 0..height {
        let line = &mask[row * width..(row + 1) * width];
        let Some(first) = line.iter().position(|&v| v != 0) else {
            continue;
        };
        let last = line.iter().rposition(|&v| v != 0).unwrap();
        any = true;
        x1 = x1.min(first);
        x2 = x2.max(last + 1);
        y1 = y1.min(row);
        y2 = row + 1;
    }
    any.then_some([x1 as f32, y1 as f32, x2 as f32, y2 as f32])
}

/// Most bytes the instance masks of one sample may take (one byte per pixel per instance).
/// Targets hold a full-size mask per instance, so a label raster with many ids (a 256x256 PNG
/// holding all 65,535 16-bit values needs 4 GiB) is refused with this limit named instead of
/// exhausting memory. 1 GiB is 1024 instances on a 1024x1024 chip.
pub const MAX_SAMPLE_MASK_BYTES: usize = 1 << 30;

/// Errors when `instances` masks of `pixels` pixels each exceed [`MAX_SAMPLE_MASK_BYTES`].
pub fn check_mask_budget(instances: usize, pixels: usize) -> Result<()> {
    let bytes = instances.checked_mul(pixels);
    anyhow::ensure!(
        bytes.is_some_and(|b| b <= MAX_SAMPLE_MASK_BYTES),
        "{instances} instances of {pixels} pixels need {:.1} GiB of masks, more than the {} GiB one sample may hold \
         (is this an instance-id raster? split the image into smaller chips)",
        instances as f64 * pixels as f64 / (1u64 << 30) as f64,
        MAX_SAMPLE_MASK_BYTES >> 30
    );
    Ok(())
}

/// Splits an instance-id raster (0 = background, each other value one instance) into binary
/// masks, ordered by id. Returns `(id, mask)` pairs. `masks_before` is how many masks the
/// sample already holds: together they must fit [`MAX_SAMPLE_MASK_BYTES`], checked before any
/// mask is allocated.
pub fn split_instance_ids(ids: &[u32], masks_before: usize) -> Result<Vec<(u32, Vec<u8>)>> {
    let mut distinct: Vec<u32> = ids.iter().copied().filter(|&v| v != 0).collect();
    distinct.sort_unstable();
    distinct.dedup();
    check_mask_budget(masks_before.saturating_add(distinct.len()), ids.len())?;
    let mut masks = vec![vec![0u8; ids.len()]; distinct.len()];
    // One pass over the pixels (not one per id): a raster with thousands of ids stays linear.
    let mut last = (0u32, 0usize);
    for (pixel, &v) in ids.iter().enumerate() {
        if v == 0 {
            continue;
        }
        if v != last.0 {
            last = (v, distinct.binary_search(&v).expect("every nonzero id is listed"));
        }
        masks[last.1][pixel] = 1;
    }
    Ok(distinct.into_iter().zip(masks).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tight_box_uses_exclusive_max() {
        let (h, w) = (5, 6);
        let mut m = vec![0u8; h * w];
        m[w + 2] = 1;
        m[3 * w + 4] = 1;
        assert_eq!(mask_to_box(&m, h, w), Some([2.0, 1.0, 5.0, 4.0]));
        assert_eq!(mask_to_box(&vec![0; h * w], h, w), None);
    }

    #[test]
    fn interleaved_to_chw() {
        let t = ImageTensor::from_interleaved(3, 1, 2, &[1u8, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(t.data, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert!(ImageTensor::from_interleaved(3, 1, 2, &[1u8, 2]).is_err());
    }

    #[test]
    fn retain_keeps_vectors_aligned() {
        let mut t = Target::default();
        for i in 0..4 {
            t.push([i as f32; 4], i as i64 + 1, vec![i as u8], i % 2 == 0);
        }
        t.retain_indices(|i| i != 1);
        assert_eq!(t.labels, vec![1, 3, 4]);
        assert_eq!(t.masks, vec![vec![0], vec![2], vec![3]]);
        assert_eq!(t.iscrowd, vec![true, true, false]);
    }

    #[test]
    fn instance_ids_split_in_id_order() {
        let parts = split_instance_ids(&[0, 7, 7, 2, 0, 2], 0).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], (2, vec![0, 0, 0, 1, 0, 1]));
        assert_eq!(parts[1], (7, vec![0, 1, 1, 0, 0, 0]));
    }
}

/// Which on-disk layout [`open_dataset`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetFormat {
    Coco,
    EsriRcnnMasks,
    InstanceMaskFolder,
}

/// Opens a dataset by looking at `path`:
/// - a `.json` file: COCO, images in `image_dir` or else the `images/` folder beside the JSON
///   (or the JSON's own folder when there is none);
/// - a folder with an `.emd` and `labels/`: Esri RCNN_Masks;
/// - a folder with `images/` and `masks/`: instance-id masks, one class named `object`
///   (use [`instance_masks::InstanceMaskFolder`] directly for a class name or map);
/// - a folder with `annotations.json` or `instances.json` (what [`synthetic::write_coco`]
///   writes): COCO.
pub fn open_dataset(
    path: &std::path::Path,
    image_dir: Option<&std::path::Path>,
) -> Result<(DatasetFormat, Box<dyn Dataset>)> {
    use anyhow::bail;
    let coco = |json: &std::path::Path| -> Result<(DatasetFormat, Box<dyn Dataset>)> {
        let images = image_dir.map_or_else(|| coco::default_image_dir(json), std::path::Path::to_path_buf);
        Ok((DatasetFormat::Coco, Box::new(coco::CocoDataset::open(json, &images)?)))
    };
    if path.is_file() {
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) {
            return coco(path);
        }
        bail!("{} is a file but not a COCO .json", path.display());
    }
    if !path.is_dir() {
        bail!("{} does not exist", path.display());
    }
    let has_emd = std::fs::read_dir(path)?
        .filter_map(|e| e.ok())
        .any(|e| e.path().extension().is_some_and(|x| x.eq_ignore_ascii_case("emd")));
    if has_emd && path.join("labels").is_dir() {
        return Ok((DatasetFormat::EsriRcnnMasks, Box::new(esri::EsriRcnnMasksDataset::open(path)?)));
    }
    if path.join("images").is_dir() && path.join("masks").is_dir() {
        return Ok((
            DatasetFormat::InstanceMaskFolder,
            Box::new(instance_masks::InstanceMaskFolder::open(path, "object")?),
        ));
    }
    for name in ["annotations.json", "instances.json"] {
        if path.join(name).is_file() {
            return coco(&path.join(name));
        }
    }
    bail!(
        "{} is not a recognised dataset: expected a COCO .json, an RCNN_Masks export (.emd + labels/), \
         or images/ + masks/",
        path.display()
    )
}

/// A seeded train/validation split of `0..len`: `val_fraction` of the indices (at least one
/// when `len > 1` and the fraction is positive) go to validation. Both lists are sorted.
pub fn split_indices(len: usize, val_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let mut n_val = (len as f64 * val_fraction.clamp(0.0, 1.0)).round() as usize;
    if val_fraction > 0.0 && len > 1 {
        n_val = n_val.clamp(1, len - 1);
    }
    let mut val = order[..n_val].to_vec();
    let mut train = order[n_val..].to_vec();
    val.sort_unstable();
    train.sort_unstable();
    (train, val)
}

/// A view of some samples of another dataset (e.g. one side of [`split_indices`]).
pub struct Subset<'a> {
    pub inner: &'a dyn Dataset,
    pub indices: Vec<usize>,
}

impl Subset<'_> {
    fn inner_index(&self, index: usize) -> Result<usize> {
        self.indices
            .get(index)
            .copied()
            .ok_or_else(|| anyhow::anyhow!("index {index} is out of range for a subset of {}", self.indices.len()))
    }
}

impl Dataset for Subset<'_> {
    fn len(&self) -> usize {
        self.indices.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        self.inner.get(self.inner_index(index)?)
    }

    fn image(&self, index: usize) -> Result<ImageTensor> {
        self.inner.image(self.inner_index(index)?)
    }

    fn class_names(&self) -> &[String] {
        self.inner.class_names()
    }

    fn category_ids(&self) -> Vec<u64> {
        self.inner.category_ids()
    }
}

#[cfg(test)]
mod split_tests {
    use super::*;

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let (train, val) = split_indices(50, 0.1, 42);
        assert_eq!(val.len(), 5);
        assert_eq!(train.len(), 45);
        let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<_>>());
        assert_eq!(split_indices(50, 0.1, 42), (train, val.clone()));
        assert_ne!(split_indices(50, 0.1, 43).1, val);
        assert_eq!(split_indices(3, 0.1, 0).1.len(), 1, "tiny datasets still validate");
        assert_eq!(split_indices(3, 0.0, 0).1.len(), 0);
    }
}
