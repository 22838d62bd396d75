//! ResNet body with a Feature Pyramid Network, as torchvision's `resnet_fpn_backbone` builds it.

pub mod fpn;
pub mod resnet;

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::config::BackboneConfig;
use crate::weights::{NamedTensors, TensorSlot};
use fpn::Fpn;
use resnet::ResNet;

#[derive(Module, Debug)]
pub struct BackboneWithFpn {
    pub body: ResNet,
    pub fpn: Fpn,
}

impl BackboneWithFpn {
    pub fn new(config: &BackboneConfig, device: &Device) -> Self {
        let body = ResNet::new(
            config.depth,
            config.in_channels,
            config.returned_layers.iter().copied().max().unwrap_or(4),
            device,
        );
        let in_channels: Vec<usize> = config.returned_layers.iter().map(|&l| body.stage_out_channels(l)).collect();
        let fpn = Fpn::new(&in_channels, config.fpn_out_channels, device);
        Self { body, fpn }
    }

    /// FPN levels for the returned stages, then the extra max-pooled level ('pool').
    pub fn forward(&self, images: Tensor<4>, returned_layers: &[usize]) -> Vec<Tensor<4>> {
        self.forward_with_stats(images, returned_layers, None)
    }

    /// As [`Self::forward`]; with `stats`, the ResNet's batch norm runs in training mode (see
    /// [`ResNet::forward_with_stats`]).
    pub fn forward_with_stats(
        &self,
        images: Tensor<4>,
        returned_layers: &[usize],
        stats: Option<&mut Vec<crate::layers::BatchStats>>,
    ) -> Vec<Tensor<4>> {
        let stages = self.body.forward_with_stats(images, returned_layers, stats);
        self.fpn.forward(stages)
    }
}

impl NamedTensors for BackboneWithFpn {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        self.body.visit_named(&format!("{prefix}.body"), visit);
        self.fpn.visit_named(&format!("{prefix}.fpn"), visit);
    }
}
