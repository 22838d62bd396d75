//! The few layer types Mask R-CNN needs, holding weights in PyTorch's layout so that a torchvision
//! state dict maps onto them one to one (and can be written back unchanged).

use burn::module::{Module, Param};
use burn::tensor::module::{conv2d, conv_transpose2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Device, Distribution, Tensor};

use crate::weights::{NamedTensors, TensorSlot};

/// 2-D convolution, weight `[out, in, k, k]`.
#[derive(Module, Debug)]
pub struct Conv {
    pub weight: Param<Tensor<4>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
}

impl Conv {
    /// Kaiming-uniform weights (PyTorch's `Conv2d` default, a=sqrt(5)) and zero bias.
    pub fn new(in_ch: usize, out_ch: usize, kernel: usize, stride: usize, padding: usize, bias: bool, device: &Device) -> Self {
        let fan_in = (in_ch * kernel * kernel) as f64;
        let bound = 1.0 / fan_in.sqrt();
        let weight = Tensor::random([out_ch, in_ch, kernel, kernel], Distribution::Uniform(-bound, bound), device);
        Self {
            weight: Param::from_tensor(weight),
            bias: bias.then(|| Param::from_tensor(Tensor::zeros([out_ch], device))),
            stride,
            padding,
            dilation: 1,
        }
    }

    /// torchvision's ResNet init: bias-free, kaiming-normal weights (fan_out, relu). With frozen
    /// identity batch norm (training from scratch) the scale matters: PyTorch's default conv init
    /// is ~2.4x smaller and activations would fade layer by layer.
    pub fn new_resnet(in_ch: usize, out_ch: usize, kernel: usize, stride: usize, padding: usize, device: &Device) -> Self {
        let std = (2.0 / (out_ch * kernel * kernel) as f64).sqrt();
        let weight = Tensor::random([out_ch, in_ch, kernel, kernel], Distribution::Normal(0.0, std), device);
        Self { weight: Param::from_tensor(weight), bias: None, stride, padding, dilation: 1 }
    }

    /// torchvision's detection-head init: weights N(0, std), bias 0.
    pub fn new_normal(in_ch: usize, out_ch: usize, kernel: usize, padding: usize, std: f64, device: &Device) -> Self {
        let weight = Tensor::random([out_ch, in_ch, kernel, kernel], Distribution::Normal(0.0, std), device);
        Self {
            weight: Param::from_tensor(weight),
            bias: Some(Param::from_tensor(Tensor::zeros([out_ch], device))),
            stride: 1,
            padding,
            dilation: 1,
        }
    }

    /// Kaiming-normal (fan_out, relu) weights and zero bias, as torchvision inits mask heads.
    pub fn new_kaiming_out(in_ch: usize, out_ch: usize, kernel: usize, padding: usize, dilation: usize, device: &Device) -> Self {
        let std = (2.0 / (out_ch * kernel * kernel) as f64).sqrt();
        let mut conv = Self::new_normal(in_ch, out_ch, kernel, padding, std, device);
        conv.dilation = dilation;
        conv
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let options = ConvOptions::new([self.stride; 2], [self.padding; 2], [self.dilation; 2], 1);
        conv2d(x, self.weight.val(), self.bias.as_ref().map(|b| b.val()), options)
    }

    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }
}

impl NamedTensors for Conv {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        visit(format!("{prefix}.weight"), TensorSlot::Param4(&mut self.weight));
        if let Some(bias) = self.bias.as_mut() {
            visit(format!("{prefix}.bias"), TensorSlot::Param1(bias));
        }
    }
}

/// Fully connected layer, weight `[out, in]` as PyTorch stores it.
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
}

impl Linear {
    /// PyTorch's `nn.Linear` default init (uniform ±1/sqrt(in)).
    pub fn new(in_features: usize, out_features: usize, device: &Device) -> Self {
        let bound = 1.0 / (in_features as f64).sqrt();
        Self {
            weight: Param::from_tensor(Tensor::random([out_features, in_features], Distribution::Uniform(-bound, bound), device)),
            bias: Param::from_tensor(Tensor::random([out_features], Distribution::Uniform(-bound, bound), device)),
        }
    }

    /// N(0, std) weights and zero bias (torchvision's FastRCNNPredictor-style init).
    pub fn new_normal(in_features: usize, out_features: usize, std: f64, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::random([out_features, in_features], Distribution::Normal(0.0, std), device)),
            bias: Param::from_tensor(Tensor::zeros([out_features], device)),
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.weight.val().transpose()) + self.bias.val().unsqueeze_dim(0)
    }

    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }
}

impl NamedTensors for Linear {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        visit(format!("{prefix}.weight"), TensorSlot::Param2(&mut self.weight));
        visit(format!("{prefix}.bias"), TensorSlot::Param1(&mut self.bias));
    }
}

/// Transposed convolution, weight `[in, out, k, k]`, no padding.
#[derive(Module, Debug)]
pub struct ConvTranspose {
    pub weight: Param<Tensor<4>>,
    pub bias: Param<Tensor<1>>,
    pub stride: usize,
}

impl ConvTranspose {
    pub fn new_kaiming_out(in_ch: usize, out_ch: usize, kernel: usize, stride: usize, device: &Device) -> Self {
        // PyTorch's fan_out for ConvTranspose weights [in, out, k, k] is in * k * k.
        let std = (2.0 / (in_ch * kernel * kernel) as f64).sqrt();
        Self {
            weight: Param::from_tensor(Tensor::random([in_ch, out_ch, kernel, kernel], Distribution::Normal(0.0, std), device)),
            bias: Param::from_tensor(Tensor::zeros([out_ch], device)),
            stride,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let options = ConvTransposeOptions::new([self.stride; 2], [0; 2], [0; 2], [1; 2], 1);
        conv_transpose2d(x, self.weight.val(), Some(self.bias.val()), options)
    }
}

impl NamedTensors for ConvTranspose {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        visit(format!("{prefix}.weight"), TensorSlot::Param4(&mut self.weight));
        visit(format!("{prefix}.bias"), TensorSlot::Param1(&mut self.bias));
    }
}

/// torchvision's `FrozenBatchNorm2d`: batch statistics and affine parameters are constants.
#[derive(Module, Debug)]
pub struct FrozenBatchNorm {
    pub weight: Tensor<1>,
    pub bias: Tensor<1>,
    pub running_mean: Tensor<1>,
    pub running_var: Tensor<1>,
}

impl FrozenBatchNorm {
    pub const EPS: f64 = 1e-5;

    pub fn new(channels: usize, device: &Device) -> Self {
        Self {
            weight: Tensor::ones([channels], device),
            bias: Tensor::zeros([channels], device),
            running_mean: Tensor::zeros([channels], device),
            running_var: Tensor::ones([channels], device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // Same operation order as torchvision: scale = w * rsqrt(var + eps); bias = b - mean * scale.
        let scale = self.weight.clone() * (self.running_var.clone() + Self::EPS).sqrt().recip();
        let bias = self.bias.clone() - self.running_mean.clone() * scale.clone();
        let c = scale.dims()[0];
        x * scale.reshape([1, c, 1, 1]) + bias.reshape([1, c, 1, 1])
    }
}

impl NamedTensors for FrozenBatchNorm {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        visit(format!("{prefix}.weight"), TensorSlot::Const1(&mut self.weight));
        visit(format!("{prefix}.bias"), TensorSlot::Const1(&mut self.bias));
        visit(format!("{prefix}.running_mean"), TensorSlot::Const1(&mut self.running_mean));
        visit(format!("{prefix}.running_var"), TensorSlot::Const1(&mut self.running_var));
    }
}
