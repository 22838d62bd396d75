//! ResNet-18/34/50/101/152 (torchvision v1.5: stride on the 3x3 conv) with frozen batch norm.

use burn::module::Module;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::layers::{Conv, FrozenBatchNorm};
use crate::weights::{NamedTensors, TensorSlot};

/// Blocks per stage and whether the stage uses bottleneck blocks.
pub fn resnet_layout(depth: usize) -> Option<([usize; 4], bool)> {
    match depth {
        18 => Some(([2, 2, 2, 2], false)),
        34 => Some(([3, 4, 6, 3], false)),
        50 => Some(([3, 4, 6, 3], true)),
        101 => Some(([3, 4, 23, 3], true)),
        152 => Some(([3, 8, 36, 3], true)),
        _ => None,
    }
}

#[derive(Module, Debug)]
pub struct Downsample {
    pub conv: Conv,
    pub bn: FrozenBatchNorm,
}

#[derive(Module, Debug)]
pub struct Block {
    pub conv1: Conv,
    pub bn1: FrozenBatchNorm,
    pub conv2: Conv,
    pub bn2: FrozenBatchNorm,
    /// Present in bottleneck blocks only.
    pub conv3: Option<Conv>,
    pub bn3: Option<FrozenBatchNorm>,
    pub downsample: Option<Downsample>,
}

impl Block {
    fn basic(in_ch: usize, planes: usize, stride: usize, device: &Device) -> Self {
        let downsample = (stride != 1 || in_ch != planes).then(|| Downsample {
            conv: Conv::new_resnet(in_ch, planes, 1, stride, 0, device),
            bn: FrozenBatchNorm::new(planes, device),
        });
        Self {
            conv1: Conv::new_resnet(in_ch, planes, 3, stride, 1, device),
            bn1: FrozenBatchNorm::new(planes, device),
            conv2: Conv::new_resnet(planes, planes, 3, 1, 1, device),
            bn2: FrozenBatchNorm::new(planes, device),
            conv3: None,
            bn3: None,
            downsample,
        }
    }

    fn bottleneck(in_ch: usize, planes: usize, stride: usize, device: &Device) -> Self {
        let out = planes * 4;
        let downsample = (stride != 1 || in_ch != out).then(|| Downsample {
            conv: Conv::new_resnet(in_ch, out, 1, stride, 0, device),
            bn: FrozenBatchNorm::new(out, device),
        });
        Self {
            conv1: Conv::new_resnet(in_ch, planes, 1, 1, 0, device),
            bn1: FrozenBatchNorm::new(planes, device),
            conv2: Conv::new_resnet(planes, planes, 3, stride, 1, device),
            bn2: FrozenBatchNorm::new(planes, device),
            conv3: Some(Conv::new_resnet(planes, out, 1, 1, 0, device)),
            bn3: Some(FrozenBatchNorm::new(out, device)),
            downsample,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(d) => d.bn.forward(d.conv.forward(x.clone())),
            None => x.clone(),
        };
        let mut out = relu(self.bn1.forward(self.conv1.forward(x)));
        out = self.bn2.forward(self.conv2.forward(out));
        if let (Some(conv3), Some(bn3)) = (&self.conv3, &self.bn3) {
            out = bn3.forward(conv3.forward(relu(out)));
        }
        relu(out + identity)
    }
}

impl NamedTensors for Block {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        self.conv1.visit_named(&format!("{prefix}.conv1"), visit);
        self.bn1.visit_named(&format!("{prefix}.bn1"), visit);
        self.conv2.visit_named(&format!("{prefix}.conv2"), visit);
        self.bn2.visit_named(&format!("{prefix}.bn2"), visit);
        if let Some(c) = self.conv3.as_mut() {
            c.visit_named(&format!("{prefix}.conv3"), visit);
        }
        if let Some(b) = self.bn3.as_mut() {
            b.visit_named(&format!("{prefix}.bn3"), visit);
        }
        if let Some(d) = self.downsample.as_mut() {
            d.conv.visit_named(&format!("{prefix}.downsample.0"), visit);
            d.bn.visit_named(&format!("{prefix}.downsample.1"), visit);
        }
    }
}

/// The ResNet body up to the deepest stage the FPN reads (torchvision's `IntermediateLayerGetter`
/// drops later stages, and so do we).
#[derive(Module, Debug)]
pub struct ResNet {
    pub conv1: Conv,
    pub bn1: FrozenBatchNorm,
    pub layers: Vec<Vec<Block>>,
    pub bottleneck: bool,
}

impl ResNet {
    pub fn new(depth: usize, in_channels: usize, num_stages: usize, device: &Device) -> Self {
        let (blocks, bottleneck) = resnet_layout(depth).unwrap_or_else(|| panic!("unsupported ResNet depth {depth}"));
        let expansion = if bottleneck { 4 } else { 1 };
        let mut in_ch = 64;
        let mut layers = Vec::new();
        for (stage, &n) in blocks.iter().enumerate().take(num_stages) {
            let planes = 64 << stage;
            let stride = if stage == 0 { 1 } else { 2 };
            let mut stage_blocks = Vec::new();
            for b in 0..n {
                let s = if b == 0 { stride } else { 1 };
                stage_blocks.push(if bottleneck { Block::bottleneck(in_ch, planes, s, device) } else { Block::basic(in_ch, planes, s, device) });
                in_ch = planes * expansion;
            }
            layers.push(stage_blocks);
        }
        Self { conv1: Conv::new_resnet(in_channels, 64, 7, 2, 3, device), bn1: FrozenBatchNorm::new(64, device), layers, bottleneck }
    }

    /// Output channels of stage `layer` (1-based, as torchvision's `layer1`..`layer4`).
    pub fn stage_out_channels(&self, layer: usize) -> usize {
        (64 << (layer - 1)) * if self.bottleneck { 4 } else { 1 }
    }

    /// Outputs of the requested stages (1-based), in order.
    pub fn forward(&self, x: Tensor<4>, returned_layers: &[usize]) -> Vec<Tensor<4>> {
        let x = relu(self.bn1.forward(self.conv1.forward(x)));
        let pool = MaxPoolOptions { kernel_size: [3, 3], stride: [2, 2], padding: [(1, 1), (1, 1)], dilation: [1, 1], ceil_mode: false };
        let mut x = max_pool2d(x, pool);
        let mut outputs = Vec::new();
        for (i, stage) in self.layers.iter().enumerate() {
            for block in stage {
                x = block.forward(x);
            }
            if returned_layers.contains(&(i + 1)) {
                outputs.push(x.clone());
            }
        }
        outputs
    }
}

impl NamedTensors for ResNet {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        self.conv1.visit_named(&format!("{prefix}.conv1"), visit);
        self.bn1.visit_named(&format!("{prefix}.bn1"), visit);
        for (i, stage) in self.layers.iter_mut().enumerate() {
            stage.visit_named(&format!("{prefix}.layer{}", i + 1), visit);
        }
    }
}
