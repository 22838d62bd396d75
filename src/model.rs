//! Mask R-CNN: backbone, RPN, RoI heads, assembled as torchvision's `MaskRCNN`.

use anyhow::{bail, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::backbone::BackboneWithFpn;
use crate::config::MaskRcnnConfig;
use crate::ops::boxes::{resize_box, Box};
use crate::ops::paste_masks::{paste_mask, PastedMask};
use crate::proposal::rpn::{anchors_for, filter_proposals, sigmoid, RpnHead};
use crate::roi_heads::box_head::{FastRcnnPredictor, TwoMlpHead};
use crate::roi_heads::mask_head::{MaskHead, MaskPredictor};
use crate::roi_heads::pointrend::{CoarseMaskHead, HostFeatures, PointHead, PointRendInference};
use crate::roi_heads::poolers::{infer_scale, multiscale_roi_align};
use crate::roi_heads::{postprocess_detections, RawDetections};
use crate::tensor_util::tensor_to_vec;
use crate::transform::{batch_images, ImageBatch, ImageChw};
use crate::weights::{NamedTensors, TensorSlot};

/// The trainable network. Its tensors carry torchvision's state-dict names.
#[derive(Module, Debug)]
pub struct MaskRcnnNet {
    pub backbone: BackboneWithFpn,
    pub rpn_head: RpnHead,
    pub box_head: TwoMlpHead,
    pub box_predictor: FastRcnnPredictor,
    /// The plain 28x28 mask branch (absent in PointRend models).
    pub mask_head: Option<MaskHead>,
    pub mask_predictor: Option<MaskPredictor>,
    /// The PointRend mask branch (absent in plain models).
    pub pointrend: Option<PointRendHeads>,
}

#[derive(Module, Debug)]
pub struct PointRendHeads {
    pub coarse_head: CoarseMaskHead,
    pub point_head: PointHead,
}

impl PointRendHeads {
    /// Freshly initialised coarse and point heads over `channels`-wide FPN features.
    pub fn new(channels: usize, num_classes: usize, device: &Device) -> Self {
        Self { coarse_head: CoarseMaskHead::new(channels, num_classes, device), point_head: PointHead::new(channels, num_classes, device) }
    }
}

impl NamedTensors for MaskRcnnNet {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        let p = |s: &str| if prefix.is_empty() { s.to_string() } else { format!("{prefix}.{s}") };
        self.backbone.visit_named(&p("backbone"), visit);
        self.rpn_head.visit_named(&p("rpn.head"), visit);
        self.box_head.visit_named(&p("roi_heads.box_head"), visit);
        self.box_predictor.visit_named(&p("roi_heads.box_predictor"), visit);
        if let Some(head) = self.mask_head.as_mut() {
            head.visit_named(&p("roi_heads.mask_head"), visit);
        }
        if let Some(predictor) = self.mask_predictor.as_mut() {
            predictor.visit_named(&p("roi_heads.mask_predictor"), visit);
        }
        if let Some(pr) = self.pointrend.as_mut() {
            pr.coarse_head.visit_named(&p("roi_heads.mask_head"), visit);
            pr.point_head.visit_named(&p("roi_heads.mask_predictor.mask_point_head"), visit);
        }
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
        let rh = &config.roi_heads;
        let net = MaskRcnnNet {
            backbone: BackboneWithFpn::new(&config.backbone, device),
            rpn_head: RpnHead::new(c, config.rpn.aspect_ratios.len() * config.rpn.anchor_sizes[0].len(), device),
            box_head: TwoMlpHead::new(c * rh.box_roi_output_size * rh.box_roi_output_size, rh.representation_size, device),
            box_predictor: FastRcnnPredictor::new(rh.representation_size, config.num_classes, device),
            mask_head: (!config.pointrend).then(|| MaskHead::new(c, &rh.mask_layers, rh.mask_dilation, device)),
            mask_predictor: (!config.pointrend).then(|| {
                MaskPredictor::new(*rh.mask_layers.last().unwrap_or(&c), rh.mask_predictor_channels, config.num_classes, device)
            }),
            pointrend: config.pointrend.then(|| PointRendHeads::new(c, config.num_classes, device)),
        };
        Ok(Self { config, net, device: device.clone() })
    }

    /// Swaps the plain 28x28 mask branch for a freshly initialised PointRend branch, keeping the
    /// backbone, RPN and box head: how a plain (e.g. torchvision COCO) checkpoint starts
    /// PointRend fine-tuning (`train --init … --pointrend --new-pointrend-head`).
    pub fn with_new_pointrend_head(mut self) -> Self {
        if self.config.pointrend {
            return self;
        }
        let c = self.config.backbone.fpn_out_channels;
        self.net.mask_head = None;
        self.net.mask_predictor = None;
        self.net.pointrend = Some(PointRendHeads::new(c, self.config.num_classes, &self.device));
        self.config.pointrend = true;
        self
    }

    pub fn predict(&self, images: &[ImageChw]) -> Vec<Vec<Detection>> {
        self.predict_traced(images, &mut None)
    }

    /// Inference as torchvision's `MaskRCNN.eval()` forward, optionally recording every stage.
    pub fn predict_traced(&self, images: &[ImageChw], trace: &mut Option<ForwardTrace>) -> Vec<Vec<Detection>> {
        if images.is_empty() {
            return Vec::new();
        }
        let cfg = &self.config;
        let mut clock = StageClock::new();
        let batch: ImageBatch = batch_images(images, &cfg.transform, &self.device);
        let [n, _, ph, pw] = batch.tensor.dims();
        clock.lap("transform");

        let features = self.net.backbone.forward(batch.tensor.clone(), &cfg.backbone.returned_layers);
        let fpn_levels = cfg.backbone.returned_layers.len();
        clock.lap("backbone+fpn");

        let (objectness, deltas, per_level) = self.net.rpn_head.forward(&features);
        let feature_sizes: Vec<(usize, usize)> = features.iter().map(|f| (f.dims()[2], f.dims()[3])).collect();
        let anchors = anchors_for(&cfg.rpn, &feature_sizes, (ph, pw));
        let objectness = tensor_to_vec(objectness);
        let deltas = tensor_to_vec(deltas);
        let total = anchors.len();
        let proposals: Vec<Vec<Box>> = (0..n)
            .map(|i| {
                filter_proposals(
                    &objectness[i * total..(i + 1) * total],
                    &deltas[i * total * 4..(i + 1) * total * 4],
                    &anchors,
                    &per_level,
                    batch.image_sizes[i],
                    cfg.rpn.pre_nms_top_n_test,
                    cfg.rpn.post_nms_top_n_test,
                    &cfg.rpn,
                )
                .0
            })
            .collect();
        clock.lap("rpn");

        let rh = &cfg.roi_heads;
        let rois: Vec<(usize, Box)> = proposals.iter().enumerate().flat_map(|(i, ps)| ps.iter().map(move |b| (i, *b))).collect();
        let pooled = multiscale_roi_align(&features[..fpn_levels], &rois, &batch.image_sizes, rh.box_roi_output_size, rh.sampling_ratio);
        let box_features = self.net.box_head.forward(pooled.clone());
        let (logits, regression) = self.net.box_predictor.forward(box_features.clone());
        let num_classes = self.net.box_predictor.num_classes();
        let logits_host = tensor_to_vec(logits);
        let regression_host = tensor_to_vec(regression);
        let mut offset = 0;
        let detections: Vec<RawDetections> = proposals
            .iter()
            .enumerate()
            .map(|(i, ps)| {
                let d = postprocess_detections(
                    &logits_host[offset * num_classes..(offset + ps.len()) * num_classes],
                    &regression_host[offset * num_classes * 4..(offset + ps.len()) * num_classes * 4],
                    ps,
                    num_classes,
                    batch.image_sizes[i],
                    rh,
                );
                offset += ps.len();
                d
            })
            .collect();
        clock.lap("box head");

        let mask_rois: Vec<(usize, Box)> = detections.iter().enumerate().flat_map(|(i, d)| d.boxes.iter().map(move |b| (i, *b))).collect();
        let mut mask_probs: Vec<Vec<Vec<f32>>> = detections.iter().map(|_| Vec::new()).collect();
        let mut mask_side = 0;
        let mut mask_trace = None;
        if let (Some(pr), false) = (&self.net.pointrend, mask_rois.is_empty()) {
            let labels: Vec<usize> = detections.iter().flat_map(|d| d.labels.iter().copied()).collect();
            let max_image_h = batch.image_sizes.iter().map(|s| s.0).max().unwrap_or(1);
            let fine_features = HostFeatures::from_tensor(&features[0]);
            let inference = PointRendInference {
                coarse_head: &pr.coarse_head,
                point_head: &pr.point_head,
                fine_features: &fine_features,
                fine_scale: infer_scale(features[0].dims()[2], max_image_h),
            };
            let (probs, side) = inference.masks(&mask_rois, &labels);
            mask_side = side;
            let mut it = probs.into_iter();
            for (i, d) in detections.iter().enumerate() {
                mask_probs[i].extend(it.by_ref().take(d.labels.len()));
            }
        } else if let (Some(head), Some(predictor), false) = (&self.net.mask_head, &self.net.mask_predictor, mask_rois.is_empty()) {
            let mask_pooled = multiscale_roi_align(&features[..fpn_levels], &mask_rois, &batch.image_sizes, rh.mask_roi_output_size, rh.sampling_ratio);
            let mask_logits = predictor.forward(head.forward(mask_pooled.clone()));
            let [r, c, m, _] = mask_logits.dims();
            mask_side = m;
            let host = tensor_to_vec(mask_logits.clone());
            let mut k = 0;
            for (i, d) in detections.iter().enumerate() {
                for &label in &d.labels {
                    debug_assert!(k < r && label < c);
                    let start = (k * c + label) * m * m;
                    mask_probs[i].push(host[start..start + m * m].iter().map(|&v| sigmoid(v)).collect());
                    k += 1;
                }
            }
            if trace.is_some() {
                mask_trace = Some((mask_pooled, mask_logits));
            }
        }
        clock.lap("mask head");

        let results: Vec<Vec<Detection>> = detections
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
                        Detection { bbox, score, label, mask: paste_mask(probs, mask_side, &bbox, oh, ow) }
                    })
                    .collect()
            })
            .collect();
        clock.lap("paste masks");

        if let Some(t) = trace.as_mut() {
            t.batch = Some(batch.tensor.clone());
            t.image_sizes = batch.image_sizes.clone();
            t.features = features;
            t.anchors = anchors;
            t.objectness = objectness;
            t.rpn_deltas = deltas;
            t.proposals = proposals;
            t.box_pooled = Some(pooled);
            t.box_features = Some(box_features);
            t.class_logits = logits_host;
            t.box_regression = regression_host;
            t.detections = detections;
            if let Some((p, l)) = mask_trace {
                t.mask_pooled = Some(p);
                t.mask_logits = Some(l);
            }
            t.mask_probs = mask_probs;
            t.timings = clock.laps;
        }
        results
    }
}

pub fn validate_config(config: &MaskRcnnConfig) -> Result<()> {
    let b = &config.backbone;
    if crate::backbone::resnet::resnet_layout(b.depth).is_none() {
        bail!("unsupported ResNet depth {} (use 18, 34, 50, 101 or 152)", b.depth);
    }
    if b.returned_layers.is_empty() || b.returned_layers.iter().any(|&l| !(1..=4).contains(&l)) {
        bail!("returned_layers must be a non-empty subset of 1..=4, got {:?}", b.returned_layers);
    }
    if config.rpn.anchor_sizes.len() != b.returned_layers.len() + 1 {
        bail!(
            "{} anchor size lists for {} feature maps (the FPN levels plus 'pool')",
            config.rpn.anchor_sizes.len(),
            b.returned_layers.len() + 1
        );
    }
    if config.num_classes < 2 {
        bail!("num_classes must count the background and at least one class, got {}", config.num_classes);
    }
    let t = &config.transform;
    if t.image_mean.len() != b.in_channels || t.image_std.len() != b.in_channels {
        bail!("image_mean/image_std have {}/{} values for {} input bands", t.image_mean.len(), t.image_std.len(), b.in_channels);
    }
    Ok(())
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
