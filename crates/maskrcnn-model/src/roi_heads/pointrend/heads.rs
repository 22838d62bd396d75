//! detectron2's PointRend heads under arcgis.learn's key names: the coarse mask head and the point head.

use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor};

use crate::layers::{Conv, Linear};
use crate::weights::{NamedTensors, TensorSlot};

use super::{COARSE_INPUT_SIDE, COARSE_OUTPUT_SIDE};

/// `Conv1d(in, out, kernel_size=1)`, weight `[out, in, 1]` as PyTorch stores it.
#[derive(Module, Debug)]
pub struct PointConv {
    pub weight: Param<Tensor<3>>,
    pub bias: Param<Tensor<1>>,
}

impl PointConv {
    fn new(in_ch: usize, out_ch: usize, std: Option<f64>, device: &Device) -> Self {
        let dist = match std {
            Some(s) => Distribution::Normal(0.0, s),
            // c2_msra_fill: kaiming normal, fan_out, relu.
            None => Distribution::Normal(0.0, (2.0 / out_ch as f64).sqrt()),
        };
        Self {
            weight: Param::from_tensor(crate::layers::init_random([out_ch, in_ch, 1], dist, device)),
            bias: Param::from_tensor(Tensor::zeros([out_ch], device)),
        }
    }

    /// `[R, in, P] -> [R, out, P]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [r, c, p] = x.dims();
        let [out, _, _] = self.weight.dims();
        let w: Tensor<2> = self.weight.val().reshape([out, c]);
        let y = x.swap_dims(1, 2).reshape([r * p, c]).matmul(w.transpose()) + self.bias.val().unsqueeze_dim(0);
        y.reshape([r, p, out]).swap_dims(1, 2)
    }

    /// Input and output channels.
    pub fn channels(&self) -> (usize, usize) {
        let [out, input, _] = self.weight.dims();
        (input, out)
    }

    /// The same layer on points laid out as rows: `[M, in] -> [M, out]` (no transposes).
    pub fn forward_rows(&self, x: Tensor<2>) -> Tensor<2> {
        let [out, c, _] = self.weight.dims();
        let w: Tensor<2> = self.weight.val().reshape([out, c]);
        x.matmul(w.transpose()) + self.bias.val().unsqueeze_dim(0)
    }
}

impl NamedTensors for PointConv {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        visit(format!("{prefix}.weight"), TensorSlot::Param3(&mut self.weight));
        visit(format!("{prefix}.bias"), TensorSlot::Param1(&mut self.bias));
    }
}

/// detectron2's `CoarseMaskHead` under arcgis.learn's key names (`roi_heads.mask_head.*`).
#[derive(Module, Debug)]
pub struct CoarseMaskHead {
    pub reduce_spatial_dim_conv: Conv,
    pub coarse_mask_fc1: Linear,
    pub coarse_mask_fc2: Linear,
    pub prediction: Linear,
}

impl CoarseMaskHead {
    pub fn new(channels: usize, num_classes: usize, device: &Device) -> Self {
        let mut reduce = Conv::new_kaiming_out(channels, channels, 2, 0, 1, device);
        reduce.stride = 2;
        let half = COARSE_INPUT_SIDE / 2;
        Self {
            reduce_spatial_dim_conv: reduce,
            coarse_mask_fc1: Linear::new(channels * half * half, 1024, device),
            coarse_mask_fc2: Linear::new(1024, 1024, device),
            prediction: Linear::new_normal(1024, num_classes * COARSE_OUTPUT_SIDE * COARSE_OUTPUT_SIDE, 0.001, device),
        }
    }

    /// The same head with a fresh class-specific prediction layer for `num_classes` classes.
    pub fn set_num_classes(&mut self, num_classes: usize, device: &Device) {
        let hidden = self.coarse_mask_fc2.out_features();
        self.prediction =
            Linear::new_normal(hidden, num_classes * COARSE_OUTPUT_SIDE * COARSE_OUTPUT_SIDE, 0.001, device);
    }

    /// `[R, C, 14, 14]` point features to coarse logits `[R, K, 7, 7]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let r = x.dims()[0];
        let x: Tensor<2> = relu(self.reduce_spatial_dim_conv.forward(x)).flatten(1, 3);
        let x = relu(self.coarse_mask_fc2.forward(relu(self.coarse_mask_fc1.forward(x))));
        let k = self.prediction.out_features() / (COARSE_OUTPUT_SIDE * COARSE_OUTPUT_SIDE);
        self.prediction.forward(x).reshape([r, k, COARSE_OUTPUT_SIDE, COARSE_OUTPUT_SIDE])
    }
}

impl NamedTensors for CoarseMaskHead {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        self.reduce_spatial_dim_conv.visit_named(&format!("{prefix}.reduce_spatial_dim_conv"), visit);
        self.coarse_mask_fc1.visit_named(&format!("{prefix}.coarse_mask_fc1"), visit);
        self.coarse_mask_fc2.visit_named(&format!("{prefix}.coarse_mask_fc2"), visit);
        self.prediction.visit_named(&format!("{prefix}.prediction"), visit);
    }
}

/// detectron2's `StandardPointHead` (3 layers of 256, coarse logits concatenated before every
/// layer and the class-specific predictor), under `roi_heads.mask_predictor.mask_point_head.*`.
#[derive(Module, Debug)]
pub struct PointHead {
    pub fc1: PointConv,
    pub fc2: PointConv,
    pub fc3: PointConv,
    pub predictor: PointConv,
}

impl PointHead {
    pub fn new(channels: usize, num_classes: usize, device: &Device) -> Self {
        let width = 256;
        Self {
            fc1: PointConv::new(channels + num_classes, width, None, device),
            fc2: PointConv::new(width + num_classes, width, None, device),
            fc3: PointConv::new(width + num_classes, width, None, device),
            predictor: PointConv::new(width + num_classes, num_classes, Some(0.001), device),
        }
    }

    /// Channels of the fine features the head reads (its first layer also reads the class logits).
    pub fn fine_channels(&self) -> usize {
        self.fc1.channels().0 - self.predictor.channels().1
    }

    /// Fine features `[R, C, P]` and coarse logits at the same points `[R, K, P]` to point logits
    /// `[R, K, P]`.
    pub fn forward(&self, fine: Tensor<3>, coarse: Tensor<3>) -> Tensor<3> {
        let mut x = Tensor::cat(vec![fine, coarse.clone()], 1);
        for layer in [&self.fc1, &self.fc2, &self.fc3] {
            x = Tensor::cat(vec![relu(layer.forward(x)), coarse.clone()], 1);
        }
        self.predictor.forward(x)
    }

    /// [`Self::forward`] on row-laid-out points: fine `[M, C]`, coarse `[M, K]` to `[M, K]`.
    pub fn forward_rows(&self, fine: Tensor<2>, coarse: Tensor<2>) -> Tensor<2> {
        let mut x = Tensor::cat(vec![fine, coarse.clone()], 1);
        for layer in [&self.fc1, &self.fc2, &self.fc3] {
            x = Tensor::cat(vec![relu(layer.forward_rows(x)), coarse.clone()], 1);
        }
        self.predictor.forward_rows(x)
    }
}

impl NamedTensors for PointHead {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        self.fc1.visit_named(&format!("{prefix}.fc1"), visit);
        self.fc2.visit_named(&format!("{prefix}.fc2"), visit);
        self.fc3.visit_named(&format!("{prefix}.fc3"), visit);
        self.predictor.visit_named(&format!("{prefix}.predictor"), visit);
    }
}
