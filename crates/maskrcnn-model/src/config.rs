//! Model configuration: one plain struct with torchvision's defaults, serialised with the model.
//!
//! Every default below is torchvision's `maskrcnn_resnet50_fpn` default, so a config written as `{}`
//! describes the COCO model torchvision ships.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MaskRcnnConfig {
    /// Including background (torchvision's convention): COCO is 91.
    pub num_classes: usize,
    /// Names for labels 0..num_classes (index 0 is background). Empty when unknown.
    pub class_names: Vec<String>,
    /// Category id written to results for each label 0..num_classes (COCO ids, Esri class
    /// values). Empty means the label itself.
    pub category_ids: Vec<u64>,
    /// Colour per label for drawings, from arcgis.learn `.emd` files when known.
    pub class_colors: Vec<[u8; 3]>,
    pub backbone: BackboneConfig,
    pub transform: TransformConfig,
    pub rpn: RpnConfig,
    pub roi_heads: RoiHeadsConfig,
    /// Which mask head the RoI heads carry. Older config files say `"pointrend": true|false`.
    #[serde(alias = "pointrend", deserialize_with = "MaskHeadKind::deserialize_with_legacy")]
    pub mask_head: MaskHeadKind,
    /// Where the model's input bands came from in training (unknown for older model folders and
    /// imported checkpoints), so `detect` can feed a raster the same way.
    #[serde(default)]
    pub input_bands: InputBands,
    /// Ground sample distance of the training chips in metres per pixel (unknown for older
    /// model folders and most imported checkpoints), so `detect` can resample a raster of
    /// another resolution to the scale the model learned its objects at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell_size: Option<f64>,
}

/// The bands training fed the model: how many the training images had (one band is repeated to
/// the model's three inputs) and, when the chips were cut from a raster and say so, which of its
/// bands (1-based, in input order).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InputBands {
    /// Bands of the training images, before a single band was repeated.
    pub image_bands: Option<usize>,
    /// 1-based bands of the source raster, in the order the model takes them.
    pub raster_bands: Vec<usize>,
}

/// The mask head: torchvision's 28x28 head or PointRend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskHeadKind {
    #[default]
    Standard,
    #[serde(rename = "pointrend")]
    PointRend,
}

impl MaskHeadKind {
    /// Reads a name, or the boolean that config files before the enum wrote under `pointrend`.
    fn deserialize_with_legacy<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            PointRendFlag(bool),
            Kind(MaskHeadKind),
        }
        Ok(match Stored::deserialize(deserializer)? {
            Stored::PointRendFlag(true) => Self::PointRend,
            Stored::PointRendFlag(false) => Self::Standard,
            Stored::Kind(kind) => kind,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackboneConfig {
    /// ResNet depth: 18, 34, 50, 101 or 152.
    pub depth: usize,
    /// ResNet stages (1..=4) whose outputs feed the FPN; torchvision's `returned_layers`.
    pub returned_layers: Vec<usize>,
    /// Number of trainable ResNet stages counted from the top (0..=5); torchvision's `trainable_layers`.
    pub trainable_layers: usize,
    pub fpn_out_channels: usize,
    /// Image bands the first convolution expects.
    pub in_channels: usize,
    /// How the ResNet's batch norm behaves while training (inference always uses the running
    /// statistics). torchvision freezes it for pretrained backbones and trains it from scratch.
    pub norm: NormKind,
}

/// Batch norm in training: `frozen` is torchvision's `FrozenBatchNorm2d` (constants), `batch` its
/// `BatchNorm2d` (batch statistics, trainable affine terms, running averages updated each step).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormKind {
    #[default]
    Frozen,
    Batch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransformConfig {
    pub min_size: usize,
    pub max_size: usize,
    /// Per-band mean and std applied to images scaled to 0..1.
    pub image_mean: Vec<f32>,
    pub image_std: Vec<f32>,
    pub size_divisible: usize,
    /// Statistics of the training imagery in its raw units, when `image_mean`/`image_std` were
    /// derived from them (multi-band or non-8-bit data) instead of ImageNet's; written to the
    /// `.emd` as arcgis.learn's `NormalizationStats`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub band_stats: Option<maskrcnn_data::stats::BandStats>,
    /// What raw pixel values were divided by in training to reach 0..1 (1, 255, 65535 or the
    /// data maximum); inference reads 8-bit files as /255 and 16-bit as /65535.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixel_scale: Option<f32>,
    /// Side of the images (chips) the model was trained on, when known (our training, an
    /// arcgis `.emd`'s `ImageHeight`). `detect` scales its tiles so that objects reach the network
    /// at the scale the chips did, whatever the tile size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chip_size: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RpnConfig {
    /// One list of sizes per feature map (FPN levels then 'pool').
    pub anchor_sizes: Vec<Vec<f32>>,
    pub aspect_ratios: Vec<f32>,
    pub pre_nms_top_n_train: usize,
    pub pre_nms_top_n_test: usize,
    pub post_nms_top_n_train: usize,
    pub post_nms_top_n_test: usize,
    pub nms_thresh: f64,
    pub fg_iou_thresh: f32,
    pub bg_iou_thresh: f32,
    pub batch_size_per_image: usize,
    pub positive_fraction: f32,
    pub score_thresh: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoiHeadsConfig {
    pub box_roi_output_size: usize,
    pub mask_roi_output_size: usize,
    pub sampling_ratio: i32,
    /// Width of TwoMLPHead's two fully connected layers.
    pub representation_size: usize,
    pub box_score_thresh: f32,
    pub box_nms_thresh: f64,
    pub box_detections_per_img: usize,
    pub box_fg_iou_thresh: f32,
    pub box_bg_iou_thresh: f32,
    pub box_batch_size_per_image: usize,
    pub box_positive_fraction: f32,
    pub bbox_reg_weights: [f32; 4],
    /// Output channels of each 3x3 conv of MaskRCNNHeads.
    pub mask_layers: Vec<usize>,
    pub mask_dilation: usize,
    /// Channels of the mask predictor's transposed convolution.
    pub mask_predictor_channels: usize,
}

impl Default for MaskRcnnConfig {
    fn default() -> Self {
        Self {
            num_classes: 91,
            class_names: Vec::new(),
            category_ids: Vec::new(),
            class_colors: Vec::new(),
            backbone: BackboneConfig::default(),
            transform: TransformConfig::default(),
            rpn: RpnConfig::default(),
            roi_heads: RoiHeadsConfig::default(),
            mask_head: MaskHeadKind::Standard,
            input_bands: InputBands::default(),
            cell_size: None,
        }
    }
}

impl TransformConfig {
    /// How raw pixel values of `sample_type` reach the model's input range: the divisor training
    /// recorded, else the sample type's (255 for 8-bit, as torchvision's checkpoints expect).
    /// `predict` and `detect` go through here and training records what it used, so a model sees
    /// the same scale at both ends (maskrcnn-data's `scaling` holds the rule).
    pub fn pixel_scale_for(
        &self,
        sample_type: maskrcnn_data::scaling::SampleType,
    ) -> maskrcnn_data::scaling::PixelScale {
        let stored = self.pixel_scale.filter(|s| s.is_finite() && *s > 0.0);
        maskrcnn_data::scaling::PixelScale::for_model(stored, sample_type)
    }

    /// torchvision's ImageNet mean/std, repeated over `bands` bands, in place of any data statistics.
    pub fn use_imagenet_normalisation(&mut self, bands: usize) {
        let imagenet = Self::default();
        self.image_mean = (0..bands).map(|b| imagenet.image_mean[b % 3]).collect();
        self.image_std = (0..bands).map(|b| imagenet.image_std[b % 3]).collect();
        self.band_stats = None;
    }
}

impl Default for BackboneConfig {
    fn default() -> Self {
        Self {
            depth: 50,
            returned_layers: vec![1, 2, 3, 4],
            trainable_layers: 3,
            fpn_out_channels: 256,
            in_channels: 3,
            norm: NormKind::Frozen,
        }
    }
}

impl Default for TransformConfig {
    fn default() -> Self {
        Self {
            min_size: 800,
            max_size: 1333,
            image_mean: vec![0.485, 0.456, 0.406],
            image_std: vec![0.229, 0.224, 0.225],
            size_divisible: 32,
            band_stats: None,
            pixel_scale: None,
            chip_size: None,
        }
    }
}

impl Default for RpnConfig {
    fn default() -> Self {
        Self {
            anchor_sizes: vec![vec![32.0], vec![64.0], vec![128.0], vec![256.0], vec![512.0]],
            aspect_ratios: vec![0.5, 1.0, 2.0],
            pre_nms_top_n_train: 2000,
            pre_nms_top_n_test: 1000,
            post_nms_top_n_train: 2000,
            post_nms_top_n_test: 1000,
            nms_thresh: 0.7,
            fg_iou_thresh: 0.7,
            bg_iou_thresh: 0.3,
            batch_size_per_image: 256,
            positive_fraction: 0.5,
            score_thresh: 0.0,
        }
    }
}

impl Default for RoiHeadsConfig {
    fn default() -> Self {
        Self {
            box_roi_output_size: 7,
            mask_roi_output_size: 14,
            sampling_ratio: 2,
            representation_size: 1024,
            box_score_thresh: 0.05,
            box_nms_thresh: 0.5,
            box_detections_per_img: 100,
            box_fg_iou_thresh: 0.5,
            box_bg_iou_thresh: 0.5,
            box_batch_size_per_image: 512,
            box_positive_fraction: 0.25,
            bbox_reg_weights: [10.0, 10.0, 5.0, 5.0],
            mask_layers: vec![256, 256, 256, 256],
            mask_dilation: 1,
            mask_predictor_channels: 256,
        }
    }
}

impl MaskRcnnConfig {
    /// torchvision's defaults for a new model of ResNet `depth` trained on `class_names`
    /// (without background) from `bands`-band imagery.
    pub fn for_classes(depth: usize, class_names: &[String], bands: usize, trainable_layers: usize) -> Self {
        let mut config = Self { num_classes: class_names.len() + 1, ..Default::default() };
        config.backbone.depth = depth;
        config.backbone.trainable_layers = trainable_layers;
        config.backbone.in_channels = bands;
        if bands != 3 {
            config.transform.use_imagenet_normalisation(bands);
        }
        config.class_names = std::iter::once("__background__".to_string()).chain(class_names.iter().cloned()).collect();
        config
    }

    /// Uses the dataset's per-band statistics (raw units, divided by `pixel_scale`) as the
    /// model's input mean/std, and records them. One-band imagery feeds a 3-band model (the band
    /// repeated), so its statistics are repeated too.
    pub fn apply_band_stats(&mut self, stats: maskrcnn_data::stats::BandStats, pixel_scale: f32) {
        let bands = self.backbone.in_channels;
        let t = &mut self.transform;
        t.image_mean = (0..bands).map(|b| (stats.mean[b % stats.bands()] / pixel_scale as f64) as f32).collect();
        // A constant band would divide by zero; such a band carries no information either way.
        t.image_std =
            (0..bands).map(|b| ((stats.std[b % stats.bands()] / pixel_scale as f64) as f32).max(1e-6)).collect();
        t.band_stats = Some(stats);
        t.pixel_scale = Some(pixel_scale);
    }

    /// A ResNet-18 cut after its second stage, a `width`-channel FPN and slim heads, for
    /// `image_size` px images: big enough for synthetic shapes, small enough to train in minutes
    /// on two cores (the demo, tests and timing examples use it).
    pub fn small(num_classes: usize, image_size: usize, width: usize) -> Self {
        let mut c = Self { num_classes, ..Default::default() };
        c.backbone.depth = 18;
        c.backbone.returned_layers = vec![1, 2];
        c.backbone.fpn_out_channels = width;
        c.backbone.trainable_layers = 5;
        c.transform.min_size = image_size;
        c.transform.max_size = image_size;
        c.rpn.anchor_sizes = vec![vec![16.0], vec![32.0], vec![64.0]];
        c.rpn.pre_nms_top_n_train = 600;
        c.rpn.post_nms_top_n_train = 300;
        c.rpn.pre_nms_top_n_test = 300;
        c.rpn.post_nms_top_n_test = 100;
        c.roi_heads.box_batch_size_per_image = 128;
        c.roi_heads.representation_size = 4 * width;
        c.roi_heads.mask_layers = vec![width, width];
        c.roi_heads.mask_predictor_channels = width;
        c.roi_heads.box_detections_per_img = 20;
        c
    }

    pub fn is_pointrend(&self) -> bool {
        self.mask_head == MaskHeadKind::PointRend
    }

    pub fn category_id(&self, label: usize) -> u64 {
        self.category_ids.get(label).copied().unwrap_or(label as u64)
    }

    pub fn class_name(&self, label: usize) -> String {
        self.class_names.get(label).cloned().unwrap_or_else(|| format!("class {label}"))
    }

    /// Feature maps the box and mask poolers read: the FPN levels, not 'pool'.
    pub fn fpn_level_names(&self) -> Vec<String> {
        (0..self.backbone.returned_layers.len()).map(|i| i.to_string()).collect()
    }
}

/// Largest `min_size`/`max_size` accepted: one 8192 px image already needs gigabytes of
/// activations; larger values are typing mistakes that would end in an out-of-memory abort.
pub const MAX_IMAGE_SIDE: usize = 8192;
/// Largest channel width of any layer (torchvision uses 256..1024).
pub const MAX_WIDTH: usize = 16384;
/// Largest input band count (hyperspectral imagery has a few hundred).
pub const MAX_BANDS: usize = 1024;
/// Largest class count including background (LVIS has 1204).
pub const MAX_CLASSES: usize = 32768;
/// Largest proposal, sample or detection count per image.
pub const MAX_COUNT: usize = 1_000_000;
/// Largest RoI output side, fixed sampling ratio and mask dilation.
pub const MAX_ROI_SIDE: usize = 128;

/// `field` must lie in `lo..=hi`.
fn check_range(field: &str, value: usize, lo: usize, hi: usize) -> Result<()> {
    if !(lo..=hi).contains(&value) {
        bail!("{field} must be in {lo}..={hi}, got {value}");
    }
    Ok(())
}

/// `field` must be a finite number in `[0, 1]` (an IoU, score or fraction).
fn check_unit(field: &str, value: f64) -> Result<()> {
    if !(value.is_finite() && (0.0..=1.0).contains(&value)) {
        bail!("{field} must be in [0, 1], got {value}");
    }
    Ok(())
}

/// `field` must be finite and above zero.
fn check_positive(field: &str, value: f64) -> Result<()> {
    if !(value.is_finite() && value > 0.0) {
        bail!("{field} must be a finite number above 0, got {value}");
    }
    Ok(())
}

impl MaskRcnnConfig {
    /// Refuses a configuration the network cannot be built from or run with, naming the first
    /// offending field and its valid range. Every size and count is bounded so that a stray value
    /// (a zero, or an extra digit) is an error here instead of a panic or an out-of-memory abort
    /// deep inside a layer. Called when a model is built or a model folder is loaded, and by the
    /// commands after applying their flags.
    pub fn validate(&self) -> Result<()> {
        check_range("num_classes (background included)", self.num_classes, 2, MAX_CLASSES)?;
        self.backbone.validate()?;
        self.transform.validate(self.backbone.in_channels)?;
        self.rpn.validate(self.backbone.returned_layers.len() + 1)?;
        if let Some(cell) = self.cell_size {
            check_positive("cell_size (metres per pixel)", cell)?;
        }
        self.roi_heads.validate(self.mask_head)
    }
}

impl BackboneConfig {
    fn validate(&self) -> Result<()> {
        if !matches!(self.depth, 18 | 34 | 50 | 101 | 152) {
            bail!("backbone.depth must be one of 18, 34, 50, 101, 152, got {}", self.depth);
        }
        let r = &self.returned_layers;
        // The poolers map RoIs to levels by consecutive powers of two (torchvision's LevelMapper):
        // a gap such as [2, 4] would send RoIs to a level that does not exist.
        if r.is_empty() || r.iter().any(|&l| !(1..=4).contains(&l)) || r.windows(2).any(|w| w[1] != w[0] + 1) {
            bail!("backbone.returned_layers must be consecutive ResNet stages within 1..=4 (e.g. [1, 2, 3, 4] or [2, 3]), got {r:?}");
        }
        check_range("backbone.trainable_layers", self.trainable_layers, 0, 5)?;
        check_range("backbone.fpn_out_channels", self.fpn_out_channels, 1, MAX_WIDTH)?;
        check_range("backbone.in_channels", self.in_channels, 1, MAX_BANDS)
    }
}

impl TransformConfig {
    fn validate(&self, bands: usize) -> Result<()> {
        // min_size above max_size is allowed, as in torchvision: the long side is then max_size.
        check_range("transform.min_size", self.min_size, 1, MAX_IMAGE_SIDE)?;
        check_range("transform.max_size", self.max_size, 1, MAX_IMAGE_SIDE)?;
        check_range("transform.size_divisible", self.size_divisible, 1, 1024)?;
        if let Some(chip) = self.chip_size {
            check_range("transform.chip_size", chip, 1, MAX_IMAGE_SIDE)?;
        }
        if self.image_mean.len() != bands || self.image_std.len() != bands {
            bail!(
                "transform.image_mean/image_std must have one value per input band ({bands}), got {}/{}",
                self.image_mean.len(),
                self.image_std.len()
            );
        }
        if let Some(m) = self.image_mean.iter().find(|m| !m.is_finite()) {
            bail!("transform.image_mean must be finite numbers, got {m}");
        }
        for &s in &self.image_std {
            check_positive("transform.image_std", s.into())?;
        }
        if let Some(s) = self.pixel_scale {
            check_positive("transform.pixel_scale", s.into())?;
        }
        Ok(())
    }
}

impl RpnConfig {
    fn validate(&self, feature_maps: usize) -> Result<()> {
        if self.anchor_sizes.len() != feature_maps {
            bail!(
                "rpn.anchor_sizes must hold one list per feature map ({feature_maps}: the FPN levels plus 'pool'), got {}",
                self.anchor_sizes.len()
            );
        }
        // One RPN head serves every level, so every level has the same anchors per location.
        let per_level = self.anchor_sizes[0].len();
        if per_level == 0 || self.anchor_sizes.iter().any(|s| s.len() != per_level) {
            bail!(
                "rpn.anchor_sizes lists must be non-empty and equally long (one RPN head serves every level), got {:?}",
                self.anchor_sizes
            );
        }
        for &s in self.anchor_sizes.iter().flatten() {
            check_positive("rpn.anchor_sizes", s.into())?;
        }
        if self.aspect_ratios.is_empty() {
            bail!("rpn.aspect_ratios must hold at least one ratio");
        }
        for &r in &self.aspect_ratios {
            check_positive("rpn.aspect_ratios", r.into())?;
        }
        check_range(
            "rpn.anchor_sizes x rpn.aspect_ratios (anchors per location)",
            per_level * self.aspect_ratios.len(),
            1,
            1024,
        )?;
        check_range("rpn.pre_nms_top_n_train", self.pre_nms_top_n_train, 1, MAX_COUNT)?;
        check_range("rpn.pre_nms_top_n_test", self.pre_nms_top_n_test, 1, MAX_COUNT)?;
        check_range("rpn.post_nms_top_n_train", self.post_nms_top_n_train, 1, MAX_COUNT)?;
        check_range("rpn.post_nms_top_n_test", self.post_nms_top_n_test, 1, MAX_COUNT)?;
        check_unit("rpn.nms_thresh", self.nms_thresh)?;
        check_unit("rpn.fg_iou_thresh", self.fg_iou_thresh.into())?;
        check_unit("rpn.bg_iou_thresh", self.bg_iou_thresh.into())?;
        if self.bg_iou_thresh > self.fg_iou_thresh {
            bail!(
                "rpn.bg_iou_thresh must not exceed rpn.fg_iou_thresh ({}), got {}",
                self.fg_iou_thresh,
                self.bg_iou_thresh
            );
        }
        check_range("rpn.batch_size_per_image", self.batch_size_per_image, 1, MAX_COUNT)?;
        check_unit("rpn.positive_fraction", self.positive_fraction.into())?;
        check_unit("rpn.score_thresh", self.score_thresh.into())
    }
}

impl RoiHeadsConfig {
    fn validate(&self, mask_head: MaskHeadKind) -> Result<()> {
        check_range("roi_heads.box_roi_output_size", self.box_roi_output_size, 1, MAX_ROI_SIDE)?;
        check_range("roi_heads.mask_roi_output_size", self.mask_roi_output_size, 1, MAX_ROI_SIDE)?;
        // Zero or below is torchvision's adaptive ratio (ceil(roi / output)); above, a fixed count.
        if self.sampling_ratio > MAX_ROI_SIDE as i32 {
            bail!(
                "roi_heads.sampling_ratio must be at most {MAX_ROI_SIDE} (0 or below: adaptive), got {}",
                self.sampling_ratio
            );
        }
        check_range("roi_heads.representation_size", self.representation_size, 1, MAX_WIDTH)?;
        check_unit("roi_heads.box_score_thresh", self.box_score_thresh.into())?;
        check_unit("roi_heads.box_nms_thresh", self.box_nms_thresh)?;
        // Zero detections per image is a valid (if useless) request: every image yields none.
        check_range("roi_heads.box_detections_per_img", self.box_detections_per_img, 0, MAX_COUNT)?;
        check_unit("roi_heads.box_fg_iou_thresh", self.box_fg_iou_thresh.into())?;
        check_unit("roi_heads.box_bg_iou_thresh", self.box_bg_iou_thresh.into())?;
        if self.box_bg_iou_thresh > self.box_fg_iou_thresh {
            bail!(
                "roi_heads.box_bg_iou_thresh must not exceed roi_heads.box_fg_iou_thresh ({}), got {}",
                self.box_fg_iou_thresh,
                self.box_bg_iou_thresh
            );
        }
        check_range("roi_heads.box_batch_size_per_image", self.box_batch_size_per_image, 1, MAX_COUNT)?;
        check_unit("roi_heads.box_positive_fraction", self.box_positive_fraction.into())?;
        for &w in &self.bbox_reg_weights {
            check_positive("roi_heads.bbox_reg_weights", w.into())?;
        }
        if mask_head == MaskHeadKind::Standard {
            if self.mask_layers.is_empty() {
                bail!("roi_heads.mask_layers must hold at least one layer width");
            }
            for &w in &self.mask_layers {
                check_range("roi_heads.mask_layers", w, 1, MAX_WIDTH)?;
            }
            check_range("roi_heads.mask_dilation", self.mask_dilation, 1, MAX_ROI_SIDE)?;
            check_range("roi_heads.mask_predictor_channels", self.mask_predictor_channels, 1, MAX_WIDTH)?;
        }
        Ok(())
    }
}
