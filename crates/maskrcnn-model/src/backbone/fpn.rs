//! Feature Pyramid Network with torchvision's `LastLevelMaxPool`.

use burn::module::Module;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};

use crate::layers::Conv;
use crate::ops::interpolate::nearest_indices;
use crate::tensor_util::int_tensor_from_vec;
use crate::weights::{NamedTensors, TensorSlot};

#[derive(Module, Debug)]
pub struct Fpn {
    pub inner_blocks: Vec<Conv>,
    pub layer_blocks: Vec<Conv>,
}

impl Fpn {
    /// torchvision initialises FPN convs with kaiming_uniform(a=1) and zero bias.
    pub fn new(in_channels: &[usize], out_channels: usize, device: &Device) -> Self {
        let init = |cin: usize, k: usize, pad: usize| {
            let mut conv = Conv::new(cin, out_channels, k, 1, pad, true, device);
            // kaiming_uniform with a=1: bound = sqrt(3 / fan_in)
            let bound = (3.0 / (cin * k * k) as f64).sqrt();
            conv.weight = burn::module::Param::from_tensor(crate::layers::init_random(
                [out_channels, cin, k, k],
                burn::tensor::Distribution::Uniform(-bound, bound),
                device,
            ));
            conv
        };
        Self {
            inner_blocks: in_channels.iter().map(|&c| init(c, 1, 0)).collect(),
            layer_blocks: in_channels.iter().map(|_| init(out_channels, 3, 1)).collect(),
        }
    }

    pub fn forward(&self, stages: Vec<Tensor<4>>) -> Vec<Tensor<4>> {
        let n = stages.len();
        let mut last_inner = self.inner_blocks[n - 1].forward(stages[n - 1].clone());
        let mut results = vec![self.layer_blocks[n - 1].forward(last_inner.clone())];
        for idx in (0..n - 1).rev() {
            let lateral = self.inner_blocks[idx].forward(stages[idx].clone());
            let [_, _, h, w] = lateral.dims();
            last_inner = lateral + upsample_nearest(last_inner, h, w);
            results.insert(0, self.layer_blocks[idx].forward(last_inner.clone()));
        }
        let top = results[n - 1].clone();
        let pool = MaxPoolOptions {
            kernel_size: [1, 1],
            stride: [2, 2],
            padding: [(0, 0), (0, 0)],
            dilation: [1, 1],
            ceil_mode: false,
        };
        results.push(max_pool2d(top, pool));
        results
    }
}

/// `F.interpolate(x, size=(h, w), mode="nearest")` as two index selections.
fn upsample_nearest(x: Tensor<4>, h: usize, w: usize) -> Tensor<4> {
    let [_, _, in_h, in_w] = x.dims();
    let device = x.device();
    let rows = int_tensor_from_vec(nearest_indices(in_h, h).into_iter().map(|i| i as i64).collect(), &device);
    let cols = int_tensor_from_vec(nearest_indices(in_w, w).into_iter().map(|i| i as i64).collect(), &device);
    x.select(2, rows).select(3, cols)
}

impl NamedTensors for Fpn {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        for (i, c) in self.inner_blocks.iter_mut().enumerate() {
            c.visit_named(&format!("{prefix}.inner_blocks.{i}.0"), visit);
        }
        for (i, c) in self.layer_blocks.iter_mut().enumerate() {
            c.visit_named(&format!("{prefix}.layer_blocks.{i}.0"), visit);
        }
    }
}
