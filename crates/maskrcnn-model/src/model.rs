//! Mask R-CNN: backbone, RPN, RoI heads, assembled as torchvision's `MaskRCNN`.

use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::backbone::BackboneWithFpn;
use crate::config::MaskRcnnConfig;
use crate::ops::boxes::{resize_box, Box};
use crate::ops::paste_masks::{paste_mask, PastedMask};
use crate::proposal::rpn::RpnHead;
use crate::roi_heads::{RawDetections, RoiHeads};
use crate::transform::{batch_images, check_image, check_shape, is_empty_image, ImageBatch, ImageChw};
use crate::weights::{NamedTensors, TensorSlot};

/// The trainable network. Its tensors carry torchvision's state-dict names.
#[derive(Module, Debug)]
pub struct MaskRcnnNet {
    pub backbone: BackboneWithFpn,
    pub rpn_head: RpnHead,
    pub roi_heads: RoiHeads,
}

impl NamedTensors for MaskRcnnNet {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        let p = |s: &str| if prefix.is_empty() { s.to_string() } else { format!("{prefix}.{s}") };
        self.backbone.visit_named(&p("backbone"), visit);
        self.rpn_head.visit_named(&p("rpn.head"), visit);
        self.roi_heads.visit_named(&p("roi_heads"), visit);
    }
}

/// One detected object in original-image pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub bbox: Box,
    pub score: f32,
    /// Model label, 1..num_classes (0 is background).
    pub label: usize,
    /// Mask probabilities inside the detection's window of the image.
    pub mask: PastedMask,
}

impl Detection {
    /// The binary mask (probability > 0.5, as torchvision users threshold it) as RLE over the
    /// whole `height x width` image.
    pub fn to_rle(&self, height: usize, width: usize) -> maskrcnn_masks::Rle {
        maskrcnn_masks::Rle::from_mask(&self.mask.to_binary_full(height, width), height, width)
    }
}

/// Intermediate results of one forward pass, kept for parity tests and profiling.
#[derive(Default)]
pub struct ForwardTrace {
    pub batch: Option<Tensor<4>>,
    pub image_sizes: Vec<(usize, usize)>,
    pub features: Vec<Tensor<4>>,
    pub anchors: Vec<Box>,
    pub objectness: Vec<f32>,
    pub rpn_deltas: Vec<f32>,
    pub proposals: Vec<Vec<Box>>,
    pub box_pooled: Option<Tensor<4>>,
    pub box_features: Option<Tensor<2>>,
    pub class_logits: Vec<f32>,
    pub box_regression: Vec<f32>,
    pub detections: Vec<RawDetections>,
    pub mask_pooled: Option<Tensor<4>>,
    pub mask_logits: Option<Tensor<4>>,
    /// Per detection, the `M x M` probabilities of its labelled class.
    pub mask_probs: Vec<Vec<Vec<f32>>>,
    pub timings: Vec<(&'static str, f64)>,
}

/// A Mask R-CNN: its configuration, its network and the device it runs on.
pub struct MaskRcnn {
    pub config: MaskRcnnConfig,
    pub net: MaskRcnnNet,
    pub device: Device,
}

impl MaskRcnn {
    /// A freshly initialised model (torchvision's initialisers) for `config`.
    pub fn new(config: MaskRcnnConfig, device: &Device) -> Result<Self> {
        validate_config(&config)?;
        let c = config.backbone.fpn_out_channels;
        let anchors_per_cell = config.rpn.aspect_ratios.len() * config.rpn.anchor_sizes[0].len();
        let net = MaskRcnnNet {
            backbone: BackboneWithFpn::new(&config.backbone, device),
            rpn_head: RpnHead::new(c, anchors_per_cell, device),
            roi_heads: RoiHeads::new(&config, device),
        };
        Ok(Self { config, net, device: device.clone() })
    }

    /// Detections for each of `images`. Any aspect ratio works (see [`crate::transform::resized_size`]);
    /// an image without pixels has no detections.
    ///
    /// # Panics
    /// On an image whose band count or buffer length disagrees with the model; [`Self::try_predict`]
    /// returns those as errors.
    pub fn predict(&self, images: &[ImageChw]) -> Vec<Vec<Detection>> {
        self.predict_traced(images, &mut None)
    }

    /// [`Self::predict`] that refuses, as an error naming the image, what `predict` cannot run
    /// (band count, buffer length, no pixels) or an invalid configuration, instead of panicking.
    pub fn try_predict(&self, images: &[ImageChw]) -> Result<Vec<Vec<Detection>>> {
        self.config.validate().context("invalid model configuration")?;
        for (i, image) in images.iter().enumerate() {
            check_image(image, self.config.backbone.in_channels).with_context(|| format!("image {i}"))?;
        }
        Ok(self.predict(images))
    }

    /// Inference as torchvision's `MaskRCNN.eval()` forward, optionally recording every stage.
    pub fn predict_traced(&self, images: &[ImageChw], trace: &mut Option<ForwardTrace>) -> Vec<Vec<Detection>> {
        for (i, image) in images.iter().enumerate() {
            if let Err(e) = check_shape(image, self.config.backbone.in_channels) {
                panic!("image {i}: {e:#}");
            }
        }
        // Images without pixels have nothing to detect; the others run as one batch.
        let (full, empty): (Vec<usize>, Vec<usize>) = (0..images.len()).partition(|&i| !is_empty_image(&images[i]));
        if !empty.is_empty() {
            let kept: Vec<ImageChw> = full.iter().map(|&i| images[i].clone()).collect();
            let mut found = self.predict_traced(&kept, trace).into_iter();
            let mut out: Vec<Vec<Detection>> = vec![Vec::new(); images.len()];
            for &i in &full {
                out[i] = found.next().unwrap_or_default();
            }
            return out;
        }
        if images.is_empty() {
            return Vec::new();
        }
        let cfg = &self.config;
        let mut clock = StageClock::new();
        let batch: ImageBatch = batch_images(images, &cfg.transform, &self.device);
        let [_, _, ph, pw] = batch.tensor.dims();
        clock.lap("transform");

        let features = self.net.backbone.forward(batch.tensor.clone(), &cfg.backbone.returned_layers);
        let levels = &features[..cfg.backbone.returned_layers.len()];
        clock.lap("backbone+fpn");

        let rpn = self.net.rpn_head.propose(&features, (ph, pw), &batch.image_sizes, &cfg.rpn, false);
        clock.lap("rpn");

        let boxes = self.net.roi_heads.detect(levels, &rpn.proposals, &batch.image_sizes, &cfg.roi_heads);
        clock.lap("box head");

        let mask_rois: Vec<(usize, Box)> =
            boxes.detections.iter().enumerate().flat_map(|(i, d)| d.boxes.iter().map(move |b| (i, *b))).collect();
        let labels: Vec<usize> = boxes.detections.iter().flat_map(|d| d.labels.iter().copied()).collect();
        let mut masks = (!mask_rois.is_empty())
            .then(|| self.net.roi_heads.mask.masks(levels, &mask_rois, &labels, &batch.image_sizes, &cfg.roi_heads));
        let mut mask_probs: Vec<Vec<Vec<f32>>> = Vec::with_capacity(boxes.detections.len());
        let mut side = 0;
        if let Some(m) = masks.as_mut() {
            side = m.side;
            let mut it = std::mem::take(&mut m.probs).into_iter();
            for d in &boxes.detections {
                mask_probs.push(it.by_ref().take(d.labels.len()).collect());
            }
        } else {
            mask_probs.resize(boxes.detections.len(), Vec::new());
        }
        clock.lap("mask head");

        let results: Vec<Vec<Detection>> = boxes
            .detections
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let (oh, ow) = batch.original_sizes[i];
                d.boxes
                    .iter()
                    .zip(&d.scores)
                    .zip(&d.labels)
                    .zip(&mask_probs[i])
                    .map(|(((b, &score), &label), probs)| {
                        let bbox = resize_box(b, batch.image_sizes[i], (oh, ow));
                        Detection { bbox, score, label, mask: paste_mask(probs, side, &bbox, oh, ow) }
                    })
                    .collect()
            })
            .collect();
        clock.lap("paste masks");

        if let Some(t) = trace.as_mut() {
            t.batch = Some(batch.tensor.clone());
            t.image_sizes = batch.image_sizes.clone();
            t.features = features;
            t.anchors = rpn.anchors;
            t.objectness = rpn.objectness_host;
            t.rpn_deltas = rpn.deltas_host;
            t.proposals = rpn.proposals;
            t.box_pooled = Some(boxes.pooled);
            t.box_features = Some(boxes.box_features);
            t.class_logits = boxes.class_logits;
            t.box_regression = boxes.box_regression;
            t.detections = boxes.detections;
            if let Some(m) = masks {
                t.mask_pooled = m.pooled;
                t.mask_logits = m.logits;
            }
            t.mask_probs = mask_probs;
            t.timings = clock.laps;
        }
        results
    }
}

/// Refuses a configuration the network cannot be built from, with the reason
/// ([`MaskRcnnConfig::validate`]).
pub fn validate_config(config: &MaskRcnnConfig) -> Result<()> {
    config.validate()
}

struct StageClock {
    last: std::time::Instant,
    laps: Vec<(&'static str, f64)>,
}

impl StageClock {
    fn new() -> Self {
        Self { last: std::time::Instant::now(), laps: Vec::new() }
    }
    fn lap(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.laps.push((name, (now - self.last).as_secs_f64()));
        self.last = now;
    }
}
