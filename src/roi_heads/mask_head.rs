//! `MaskRCNNHeads` (3x3 convs) and `MaskRCNNPredictor` (2x upsampling, per-class logits).

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::layers::{Conv, ConvTranspose};
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
