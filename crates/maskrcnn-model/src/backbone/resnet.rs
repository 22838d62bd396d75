//! ResNet-18/34/50/101/152 (torchvision v1.5: stride on the 3x3 conv). Batch norm is frozen
//! (`FrozenBatchNorm2d`) except when training with `norm = batch`, where the batch statistics of
//! every layer are returned in forward order so the trainer can update the running averages.

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};

use crate::layers::{BatchNorm, BatchStats, Conv};
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
    pub bn: BatchNorm,
}

#[derive(Module, Debug)]
pub struct Block {
    pub conv1: Conv,
    pub bn1: BatchNorm,
    pub conv2: Conv,
    pub bn2: BatchNorm,
    /// Present in bottleneck blocks only.
    pub conv3: Option<Conv>,
    pub bn3: Option<BatchNorm>,
    pub downsample: Option<Downsample>,
}

impl Block {
    fn basic(in_ch: usize, planes: usize, stride: usize, device: &Device) -> Self {
        let downsample = (stride != 1 || in_ch != planes).then(|| Downsample {
            conv: Conv::new_resnet(in_ch, planes, 1, stride, 0, device),
            bn: BatchNorm::new(planes, device),
        });
        Self {
            conv1: Conv::new_resnet(in_ch, planes, 3, stride, 1, device),
            bn1: BatchNorm::new(planes, device),
            conv2: Conv::new_resnet(planes, planes, 3, 1, 1, device),
            bn2: BatchNorm::new(planes, device),
            conv3: None,
            bn3: None,
            downsample,
        }
    }

    fn bottleneck(in_ch: usize, planes: usize, stride: usize, device: &Device) -> Self {
        let out = planes * 4;
        let downsample = (stride != 1 || in_ch != out).then(|| Downsample {
            conv: Conv::new_resnet(in_ch, out, 1, stride, 0, device),
            bn: BatchNorm::new(out, device),
        });
        Self {
            conv1: Conv::new_resnet(in_ch, planes, 1, 1, 0, device),
            bn1: BatchNorm::new(planes, device),
            conv2: Conv::new_resnet(planes, planes, 3, stride, 1, device),
            bn2: BatchNorm::new(planes, device),
            conv3: Some(Conv::new_resnet(planes, out, 1, 1, 0, device)),
            bn3: Some(BatchNorm::new(out, device)),
            downsample,
        }
    }

    /// Batch norms in the order [`Self::forward`] applies them.
    fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        let mut out = vec![&mut self.bn1, &mut self.bn2];
        out.extend(self.bn3.as_mut());
        out.extend(self.downsample.as_mut().map(|d| &mut d.bn));
        out
    }

    fn forward(&self, x: Tensor<4>, stats: &mut Option<&mut Vec<BatchStats>>) -> Tensor<4> {
        let mut out = relu(norm(&self.bn1, self.conv1.forward(x.clone()), stats));
        out = norm(&self.bn2, self.conv2.forward(out), stats);
        if let (Some(conv3), Some(bn3)) = (&self.conv3, &self.bn3) {
            out = norm(bn3, conv3.forward(relu(out)), stats);
        }
        let identity = match &self.downsample {
            Some(d) => norm(&d.bn, d.conv.forward(x), stats),
            None => x,
        };
        relu(out + identity)
    }
}

/// Frozen batch norm, or training-mode batch norm recording its statistics when `stats` is given.
fn norm(bn: &BatchNorm, x: Tensor<4>, stats: &mut Option<&mut Vec<BatchStats>>) -> Tensor<4> {
    match stats {
        Some(s) => bn.forward_batch_stats(x, s),
        None => bn.forward(x),
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
    pub bn1: BatchNorm,
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
                stage_blocks.push(if bottleneck {
                    Block::bottleneck(in_ch, planes, s, device)
                } else {
                    Block::basic(in_ch, planes, s, device)
                });
                in_ch = planes * expansion;
            }
            layers.push(stage_blocks);
        }
        Self {
            conv1: Conv::new_resnet(in_channels, 64, 7, 2, 3, device),
            bn1: BatchNorm::new(64, device),
            layers,
            bottleneck,
        }
    }

    /// Output channels of stage `layer` (1-based, as torchvision's `layer1`..`layer4`).
    pub fn stage_out_channels(&self, layer: usize) -> usize {
        (64 << (layer - 1)) * if self.bottleneck { 4 } else { 1 }
    }

    /// Outputs of the requested stages (1-based), in order, with frozen batch norm.
    pub fn forward(&self, x: Tensor<4>, returned_layers: &[usize]) -> Vec<Tensor<4>> {
        self.forward_with_stats(x, returned_layers, None)
    }

    /// As [`Self::forward`]; with `stats`, batch norm runs in training mode and appends each
    /// layer's batch statistics, in the order [`Self::update_running_stats`] expects.
    pub fn forward_with_stats(
        &self,
        x: Tensor<4>,
        returned_layers: &[usize],
        mut stats: Option<&mut Vec<BatchStats>>,
    ) -> Vec<Tensor<4>> {
        let x = relu(norm(&self.bn1, self.conv1.forward(x), &mut stats));
        let pool = MaxPoolOptions {
            kernel_size: [3, 3],
            stride: [2, 2],
            padding: [(1, 1), (1, 1)],
            dilation: [1, 1],
            ceil_mode: false,
        };
        let mut x = max_pool2d(x, pool);
        let mut outputs = Vec::new();
        for (i, stage) in self.layers.iter().enumerate() {
            for block in stage {
                x = block.forward(x, &mut stats);
            }
            if returned_layers.contains(&(i + 1)) {
                outputs.push(x.clone());
            }
        }
        outputs
    }

    /// Folds the statistics of one training forward into every layer's running averages.
    pub fn update_running_stats(&mut self, stats: &[BatchStats]) -> anyhow::Result<()> {
        let mut norms = vec![&mut self.bn1];
        for stage in self.layers.iter_mut() {
            for block in stage.iter_mut() {
                norms.extend(block.batch_norms_mut());
            }
        }
        anyhow::ensure!(
            norms.len() == stats.len(),
            "{} batch-norm statistics for {} batch-norm layers",
            stats.len(),
            norms.len()
        );
        for (bn, s) in norms.into_iter().zip(stats) {
            bn.update_running(s);
        }
        Ok(())
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
