//! `TwoMLPHead` and `FastRCNNPredictor`, and detection post-processing.

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::layers::Linear;
use crate::weights::{NamedTensors, TensorSlot};

#[derive(Module, Debug)]
pub struct TwoMlpHead {
    pub fc6: Linear,
    pub fc7: Linear,
}

impl TwoMlpHead {
    pub fn new(in_features: usize, representation: usize, device: &Device) -> Self {
        Self { fc6: Linear::new(in_features, representation, device), fc7: Linear::new(representation, representation, device) }
    }

    pub fn forward(&self, pooled: Tensor<4>) -> Tensor<2> {
        let x: Tensor<2> = pooled.flatten(1, 3);
        relu(self.fc7.forward(relu(self.fc6.forward(x))))
    }
}

impl NamedTensors for TwoMlpHead {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        self.fc6.visit_named(&format!("{prefix}.fc6"), visit);
        self.fc7.visit_named(&format!("{prefix}.fc7"), visit);
    }
}

#[derive(Module, Debug)]
pub struct FastRcnnPredictor {
    pub cls_score: Linear,
    pub bbox_pred: Linear,
}

impl FastRcnnPredictor {
    pub fn new(in_features: usize, num_classes: usize, device: &Device) -> Self {
        Self { cls_score: Linear::new(in_features, num_classes, device), bbox_pred: Linear::new(in_features, num_classes * 4, device) }
    }

    pub fn num_classes(&self) -> usize {
        self.cls_score.out_features()
    }

    /// Class logits `[R, C]` and per-class box deltas `[R, 4C]`.
    pub fn forward(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        (self.cls_score.forward(x.clone()), self.bbox_pred.forward(x))
    }
}

impl NamedTensors for FastRcnnPredictor {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        self.cls_score.visit_named(&format!("{prefix}.cls_score"), visit);
        self.bbox_pred.visit_named(&format!("{prefix}.bbox_pred"), visit);
    }
}
