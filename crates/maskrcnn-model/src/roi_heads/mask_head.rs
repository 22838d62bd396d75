//! torchvision's plain mask branch: `MaskRCNNHeads` (3x3 convs) and `MaskRCNNPredictor` (2x
//! upsampling, per-class logits), with its inference and `maskrcnn_loss` (targets included).

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use anyhow::{ensure, Result};

use super::poolers::multiscale_roi_align;
use super::sampling::SampledRois;
use crate::config::RoiHeadsConfig;
use crate::layers::{Conv, ConvTranspose};
use crate::ops::boxes::Box;
use crate::ops::losses::bce_with_logits_mean;
use crate::ops::roi_align::{roi_align_host, RoiAlignParams};
use crate::proposal::rpn::sigmoid;
use crate::targets::TrainTarget;
use crate::tensor_util::{int_tensor_from_vec, tensor_from_vec, tensor_to_vec};
use crate::weights::{NamedTensors, TensorSlot};

#[derive(Module, Debug)]
pub struct MaskHead {
    pub convs: Vec<Conv>,
}

impl MaskHead {
    pub fn new(in_channels: usize, layers: &[usize], dilation: usize, device: &Device) -> Self {
        let mut convs = Vec::new();
        let mut cin = in_channels;
        for &cout in layers {
            convs.push(Conv::new_kaiming_out(cin, cout, 3, dilation, dilation, device));
            cin = cout;
        }
        Self { convs }
    }

    /// Channels of the last conv's output (the predictor's input).
    pub fn out_channels(&self) -> Option<usize> {
        self.convs.last().map(Conv::out_channels)
    }

    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<4> {
        for conv in &self.convs {
            x = relu(conv.forward(x));
        }
        x
    }
}

impl NamedTensors for MaskHead {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        for (i, conv) in self.convs.iter_mut().enumerate() {
            conv.visit_named(&format!("{prefix}.{i}.0"), visit);
        }
    }
}

#[derive(Module, Debug)]
pub struct MaskPredictor {
    pub conv5_mask: ConvTranspose,
    pub mask_fcn_logits: Conv,
}

impl MaskPredictor {
    pub fn new(in_channels: usize, dim_reduced: usize, num_classes: usize, device: &Device) -> Self {
        Self {
            conv5_mask: ConvTranspose::new_kaiming_out(in_channels, dim_reduced, 2, 2, device),
            mask_fcn_logits: Conv::new_kaiming_out(dim_reduced, num_classes, 1, 0, 1, device),
        }
    }

    /// Per-class mask logits `[R, C, 2S, 2S]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.mask_fcn_logits.forward(relu(self.conv5_mask.forward(x)))
    }
}

impl NamedTensors for MaskPredictor {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        self.conv5_mask.visit_named(&format!("{prefix}.conv5_mask"), visit);
        self.mask_fcn_logits.visit_named(&format!("{prefix}.mask_fcn_logits"), visit);
    }
}

/// The plain mask branch: `roi_heads.mask_head.*` and `roi_heads.mask_predictor.*`.
#[derive(Module, Debug)]
pub struct StandardMaskHeads {
    pub head: MaskHead,
    pub predictor: MaskPredictor,
}

/// Masks for detections: per RoI, the `side x side` probabilities of its label.
pub struct MaskProbabilities {
    pub probs: Vec<Vec<f32>>,
    pub side: usize,
    /// The pooled features and the logits of every class (plain head only; parity tests read them).
    pub pooled: Option<Tensor<4>>,
    pub logits: Option<Tensor<4>>,
}

impl StandardMaskHeads {
    /// Freshly initialised heads over `channels`-wide FPN features.
    pub fn new(channels: usize, config: &RoiHeadsConfig, num_classes: usize, device: &Device) -> Self {
        let head = MaskHead::new(channels, &config.mask_layers, config.mask_dilation, device);
        let width = head.out_channels().unwrap_or(channels);
        Self { head, predictor: MaskPredictor::new(width, config.mask_predictor_channels, num_classes, device) }
    }

    /// A fresh class-specific predictor for `num_classes` classes.
    pub fn set_num_classes(&mut self, num_classes: usize, device: &Device) {
        let (input, reduced) = self.predictor.conv5_mask.channels();
        self.predictor = MaskPredictor::new(input, reduced, num_classes, device);
    }

    /// `[R, C, M, M]` logits for `rois` pooled from the FPN `levels`.
    fn logits(
        &self,
        levels: &[Tensor<4>],
        rois: &[(usize, Box)],
        image_sizes: &[(usize, usize)],
        config: &RoiHeadsConfig,
    ) -> (Tensor<4>, Tensor<4>) {
        let pooled =
            multiscale_roi_align(levels, rois, image_sizes, config.mask_roi_output_size, config.sampling_ratio);
        let logits = self.predictor.forward(self.head.forward(pooled.clone()));
        (pooled, logits)
    }

    /// `maskrcnn_inference`: the sigmoid of each RoI's `label` channel.
    pub fn masks(
        &self,
        levels: &[Tensor<4>],
        rois: &[(usize, Box)],
        labels: &[usize],
        image_sizes: &[(usize, usize)],
        config: &RoiHeadsConfig,
    ) -> MaskProbabilities {
        let (pooled, logits) = self.logits(levels, rois, image_sizes, config);
        let [r, c, m, _] = logits.dims();
        let host = tensor_to_vec(logits.clone());
        let probs = labels
            .iter()
            .enumerate()
            .map(|(k, &label)| {
                debug_assert!(k < r && label < c);
                let start = (k * c + label) * m * m;
                host[start..start + m * m].iter().map(|&v| sigmoid(v)).collect()
            })
            .collect();
        MaskProbabilities { probs, side: m, pooled: Some(pooled), logits: Some(logits) }
    }

    /// torchvision's `maskrcnn_loss`: binary cross-entropy of each positive RoI's matched-class
    /// logits against its instance mask cropped and resized to the box (`project_masks_on_boxes`).
    pub fn loss(
        &self,
        levels: &[Tensor<4>],
        sampled: &SampledRois,
        targets: &[TrainTarget],
        image_sizes: &[(usize, usize)],
        config: &RoiHeadsConfig,
    ) -> Result<Tensor<1>> {
        let side = 2 * config.mask_roi_output_size;
        let params =
            RoiAlignParams { output_h: side, output_w: side, spatial_scale: 1.0, sampling_ratio: -1, aligned: false };
        let num_classes = self.predictor.mask_fcn_logits.out_channels();
        let mut rois = Vec::with_capacity(sampled.positives.len());
        let mut rows = Vec::with_capacity(sampled.positives.len());
        let mut mask_targets = Vec::with_capacity(sampled.positives.len() * side * side);
        for (k, p) in sampled.positives.iter().enumerate() {
            let (h, w) = image_sizes[p.image];
            rows.push((k * num_classes + p.label) as i64);
            rois.push((p.image, p.bbox));
            mask_targets.extend(roi_align_host(&targets[p.image].mask_f32(p.gt), 1, h, w, &[p.bbox], &params));
        }
        let (_, logits) = self.logits(levels, &rois, image_sizes, config);
        let device = logits.device();
        let [p, c, m, _] = logits.dims();
        ensure!(m == side, "mask predictor gives {m}x{m} logits, expected {side}");
        let picked: Tensor<2> = logits.reshape([p * c, m * m]).select(0, int_tensor_from_vec(rows, &device));
        Ok(bce_with_logits_mean(picked.reshape([p * m * m]), tensor_from_vec(mask_targets, [p * m * m], &device)))
    }
}

impl NamedTensors for StandardMaskHeads {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        self.head.visit_named(&format!("{prefix}.mask_head"), visit);
        self.predictor.visit_named(&format!("{prefix}.mask_predictor"), visit);
    }
}
