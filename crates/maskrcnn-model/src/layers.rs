//! The few layer types Mask R-CNN needs, holding weights in PyTorch's layout so that a torchvision
//! state dict maps onto them one to one (and can be written back unchanged).

use burn::module::{Module, Param};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Device, Distribution, Tensor};
use maskrcnn_kernels::{conv2d, conv_transpose2d};

use crate::weights::{NamedTensors, TensorSlot};

thread_local! {
    static SKIP_RANDOM_INIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `build` with every random initialiser of the model's layers ([`init_random`]) returning
/// zeros instead: for building a model whose every tensor a checkpoint is about to overwrite
/// (loading drew ~40 M random numbers with ChaCha for nothing). Nested and panic-safe.
pub fn without_random_init<R>(build: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SKIP_RANDOM_INIT.with(|flag| flag.set(self.0));
        }
    }
    let _restore = Restore(SKIP_RANDOM_INIT.with(|flag| flag.replace(true)));
    build()
}

/// `Tensor::random(shape, distribution, device)`, or zeros inside [`without_random_init`].
pub fn init_random<const D: usize>(shape: [usize; D], distribution: Distribution, device: &Device) -> Tensor<D> {
    if SKIP_RANDOM_INIT.with(|flag| flag.get()) {
        Tensor::zeros(shape, device)
    } else {
        Tensor::random(shape, distribution, device)
    }
}

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
    pub fn new(
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        device: &Device,
    ) -> Self {
        let fan_in = (in_ch * kernel * kernel) as f64;
        let bound = 1.0 / fan_in.sqrt();
        let weight = init_random([out_ch, in_ch, kernel, kernel], Distribution::Uniform(-bound, bound), device);
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
    pub fn new_resnet(
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        device: &Device,
    ) -> Self {
        let std = (2.0 / (out_ch * kernel * kernel) as f64).sqrt();
        let weight = init_random([out_ch, in_ch, kernel, kernel], Distribution::Normal(0.0, std), device);
        Self { weight: Param::from_tensor(weight), bias: None, stride, padding, dilation: 1 }
    }

    /// torchvision's detection-head init: weights N(0, std), bias 0.
    pub fn new_normal(in_ch: usize, out_ch: usize, kernel: usize, padding: usize, std: f64, device: &Device) -> Self {
        let weight = init_random([out_ch, in_ch, kernel, kernel], Distribution::Normal(0.0, std), device);
        Self {
            weight: Param::from_tensor(weight),
            bias: Some(Param::from_tensor(Tensor::zeros([out_ch], device))),
            stride: 1,
            padding,
            dilation: 1,
        }
    }

    /// Kaiming-normal (fan_out, relu) weights and zero bias, as torchvision inits mask heads.
    pub fn new_kaiming_out(
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        padding: usize,
        dilation: usize,
        device: &Device,
    ) -> Self {
        let std = (2.0 / (out_ch * kernel * kernel) as f64).sqrt();
        let mut conv = Self::new_normal(in_ch, out_ch, kernel, padding, std, device);
        conv.dilation = dilation;
        conv
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let options = ConvOptions::new([self.stride; 2], [self.padding; 2], [self.dilation; 2], 1);
        conv2d_on_device(x, self.weight.val(), self.bias.as_ref().map(|b| b.val()), options)
    }

    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }
}

/// The model's conv2d on any device: our kernels on the CPU (flex), burn's op elsewhere
/// (tests/gpu_op_grads.rs checks the latter's output and gradients against the CPU's).
pub fn conv2d_on_device(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    conv2d(x, weight, bias, options)
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
            weight: Param::from_tensor(init_random(
                [out_features, in_features],
                Distribution::Uniform(-bound, bound),
                device,
            )),
            bias: Param::from_tensor(init_random([out_features], Distribution::Uniform(-bound, bound), device)),
        }
    }

    /// N(0, std) weights and zero bias (torchvision's FastRCNNPredictor-style init).
    pub fn new_normal(in_features: usize, out_features: usize, std: f64, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(init_random(
                [out_features, in_features],
                Distribution::Normal(0.0, std),
                device,
            )),
            bias: Param::from_tensor(Tensor::zeros([out_features], device)),
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.weight.val().transpose()) + self.bias.val().unsqueeze_dim(0)
    }

    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }

    pub fn in_features(&self) -> usize {
        self.weight.dims()[1]
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
            weight: Param::from_tensor(init_random(
                [in_ch, out_ch, kernel, kernel],
                Distribution::Normal(0.0, std),
                device,
            )),
            bias: Param::from_tensor(Tensor::zeros([out_ch], device)),
            stride,
        }
    }

    /// Input and output channels.
    pub fn channels(&self) -> (usize, usize) {
        let [input, out, _, _] = self.weight.dims();
        (input, out)
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

/// Batch norm over `[N, C, H, W]`, stored as torchvision's `BatchNorm2d` / `FrozenBatchNorm2d`
/// (`weight`, `bias`, `running_mean`, `running_var`). [`Self::forward`] is the frozen form
/// (running statistics, no gradient to the affine terms), used for inference and for training
/// with `norm = frozen`; [`Self::forward_batch_stats`] is `BatchNorm2d` in training mode.
#[derive(Module, Debug)]
pub struct BatchNorm {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub running_mean: Tensor<1>,
    pub running_var: Tensor<1>,
}

/// Statistics of one batch-norm input, on the host, for the running-average update.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStats {
    pub mean: Vec<f32>,
    /// Unbiased (n - 1) variance, as PyTorch uses for `running_var`.
    pub var: Vec<f32>,
}

impl BatchNorm {
    pub const EPS: f64 = 1e-5;
    /// PyTorch's default `momentum`.
    pub const MOMENTUM: f32 = 0.1;

    pub fn new(channels: usize, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([channels], device)),
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
            running_mean: Tensor::zeros([channels], device),
            running_var: Tensor::ones([channels], device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // Same operation order as torchvision: scale = w * rsqrt(var + eps); bias = b - mean * scale.
        // Detached: frozen affine terms are buffers in torchvision and must get no gradient.
        let scale = self.weight.val().detach() * (self.running_var.clone() + Self::EPS).sqrt().recip();
        let bias = self.bias.val().detach() - self.running_mean.clone() * scale.clone();
        let c = scale.dims()[0];
        x * scale.reshape([1, c, 1, 1]) + bias.reshape([1, c, 1, 1])
    }

    /// `BatchNorm2d` in training mode: normalises with this batch's mean and biased variance
    /// (gradients flow through both) and records the statistics for [`Self::update_running`].
    ///
    /// On the flex CPU device one fused kernel forward and one backward
    /// ([`maskrcnn_kernels::batch_norm_train`]); elsewhere the same formulas as tensor operations.
    pub fn forward_batch_stats(&self, x: Tensor<4>, stats: &mut Vec<BatchStats>) -> Tensor<4> {
        let Some(fused) = maskrcnn_kernels::batch_norm_train(x.clone(), self.weight.val(), self.bias.val(), Self::EPS)
        else {
            return self.forward_batch_stats_tensor_ops(x, stats);
        };
        let [n, _, h, w] = x.dims();
        let unbias = Self::unbias(n * h * w);
        stats.push(BatchStats {
            mean: crate::tensor_util::tensor_to_vec(fused.mean),
            var: crate::tensor_util::tensor_to_vec(fused.variance).into_iter().map(|v| v * unbias).collect(),
        });
        fused.output
    }

    /// `count / (count - 1)`: PyTorch's `running_var` takes the unbiased variance.
    fn unbias(count: usize) -> f32 {
        if count > 1 {
            count as f32 / (count - 1) as f32
        } else {
            1.0
        }
    }

    /// [`Self::forward_batch_stats`] as burn tensor operations, for any device.
    fn forward_batch_stats_tensor_ops(&self, x: Tensor<4>, stats: &mut Vec<BatchStats>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let count = n * h * w;
        let mean = x.clone().mean_dim(0).mean_dim(2).mean_dim(3);
        let centered = x - mean.clone();
        let var = (centered.clone() * centered.clone()).mean_dim(0).mean_dim(2).mean_dim(3);
        let unbias = Self::unbias(count);
        stats.push(BatchStats {
            mean: crate::tensor_util::tensor_to_vec(mean.detach().reshape([c])),
            var: crate::tensor_util::tensor_to_vec(var.clone().detach().reshape([c]))
                .into_iter()
                .map(|v| v * unbias)
                .collect(),
        });
        let inv_std = (var + Self::EPS).sqrt().recip();
        centered * inv_std * self.weight.val().reshape([1, c, 1, 1]) + self.bias.val().reshape([1, c, 1, 1])
    }

    /// `running = (1 - momentum) * running + momentum * batch`, as PyTorch updates it.
    pub fn update_running(&mut self, stats: &BatchStats) {
        let device = self.running_mean.device();
        let blend = |running: &Tensor<1>, batch: &[f32]| {
            let old = crate::tensor_util::tensor_to_vec(running.clone());
            let new: Vec<f32> =
                old.iter().zip(batch).map(|(r, b)| (1.0 - Self::MOMENTUM) * r + Self::MOMENTUM * b).collect();
            crate::tensor_util::tensor_from_vec(new, [batch.len()], &device)
        };
        self.running_mean = blend(&self.running_mean, &stats.mean);
        self.running_var = blend(&self.running_var, &stats.var);
    }
}

impl NamedTensors for BatchNorm {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        visit(format!("{prefix}.weight"), TensorSlot::Param1(&mut self.weight));
        visit(format!("{prefix}.bias"), TensorSlot::Param1(&mut self.bias));
        visit(format!("{prefix}.running_mean"), TensorSlot::Const1(&mut self.running_mean));
        visit(format!("{prefix}.running_var"), TensorSlot::Const1(&mut self.running_var));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor_util::{tensor_from_vec, tensor_to_vec};

    /// Deterministic, non-trivial values.
    fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.731 + seed).sin() * 2.0 + 0.3 * (i % 7) as f32).collect()
    }

    /// PyTorch's `BatchNorm2d` in training mode, written out on the host: output, and the input
    /// gradient of `sum(y * dy)` by the textbook formula.
    fn reference(
        x: &[f32],
        dy: &[f32],
        w: &[f32],
        b: &[f32],
        [n, c, hw]: [usize; 3],
    ) -> (Vec<f32>, Vec<f32>, Vec<f64>, Vec<f64>) {
        let m = (n * hw) as f64;
        let (mut y, mut dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        let (mut means, mut vars) = (vec![], vec![]);
        for ch in 0..c {
            let idx: Vec<usize> = (0..n).flat_map(|i| (0..hw).map(move |k| (i * c + ch) * hw + k)).collect();
            let mean = idx.iter().map(|&i| x[i] as f64).sum::<f64>() / m;
            let var = idx.iter().map(|&i| (x[i] as f64 - mean).powi(2)).sum::<f64>() / m;
            let inv = 1.0 / (var + BatchNorm::EPS).sqrt();
            let sum_dy: f64 = idx.iter().map(|&i| dy[i] as f64).sum();
            let sum_dy_xhat: f64 = idx.iter().map(|&i| dy[i] as f64 * (x[i] as f64 - mean) * inv).sum();
            for &i in &idx {
                let xhat = (x[i] as f64 - mean) * inv;
                y[i] = (xhat * w[ch] as f64 + b[ch] as f64) as f32;
                dx[i] = (w[ch] as f64 * inv / m * (m * dy[i] as f64 - sum_dy - xhat * sum_dy_xhat)) as f32;
            }
            means.push(mean);
            vars.push(var * m / (m - 1.0));
        }
        (y, dx, means, vars)
    }

    #[test]
    fn training_batch_norm_matches_pytorch_formulas() {
        let device = Device::flex().autodiff();
        let (n, c, h, w) = (2, 3, 4, 5);
        let x = values(n * c * h * w, 0.1);
        let dy = values(n * c * h * w, 1.7);
        let weight = vec![0.5, 1.5, -0.7];
        let bias = vec![0.1, -0.2, 0.3];
        let mut bn = BatchNorm::new(c, &device);
        bn.weight = Param::from_tensor(tensor_from_vec(weight.clone(), [c], &device));
        bn.bias = Param::from_tensor(tensor_from_vec(bias.clone(), [c], &device));
        let input = tensor_from_vec(x.clone(), [n, c, h, w], &device).require_grad();
        let mut stats = Vec::new();
        let y = bn.forward_batch_stats(input.clone(), &mut stats);
        let grads = (y.clone() * tensor_from_vec(dy.clone(), [n, c, h, w], &device)).sum().backward();
        let (y_ref, dx_ref, means, vars) = reference(&x, &dy, &weight, &bias, [n, c, h * w]);
        for (a, b) in tensor_to_vec(y).iter().zip(&y_ref) {
            assert!((a - b).abs() < 1e-5, "output {a} vs {b}");
        }
        for (a, b) in tensor_to_vec(input.grad(&grads).expect("input gradient")).iter().zip(&dx_ref) {
            assert!((a - b).abs() < 1e-4, "input gradient {a} vs {b}");
        }
        assert!(bn.weight.val().grad(&grads).is_some(), "the affine terms train");
        assert_eq!(stats.len(), 1);
        bn.update_running(&stats[0]);
        let rm = tensor_to_vec(bn.running_mean.clone());
        let rv = tensor_to_vec(bn.running_var.clone());
        for ch in 0..c {
            assert!((rm[ch] as f64 - 0.1 * means[ch]).abs() < 1e-5, "running mean");
            assert!((rv[ch] as f64 - (0.9 + 0.1 * vars[ch])).abs() < 1e-5, "running var uses the unbiased variance");
        }
    }

    /// Output, input gradient, affine gradients and recorded statistics of one training-mode
    /// batch norm with output gradient `dy`, by the fused kernels or by tensor operations.
    fn batch_norm_step(
        bn: &BatchNorm,
        x: &[f32],
        dy: &[f32],
        dims: [usize; 4],
        fused: bool,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, BatchStats) {
        let device = bn.weight.val().device();
        let input = tensor_from_vec(x.to_vec(), dims, &device).require_grad();
        let mut stats = Vec::new();
        let y = if fused {
            bn.forward_batch_stats(input.clone(), &mut stats)
        } else {
            bn.forward_batch_stats_tensor_ops(input.clone(), &mut stats)
        };
        let grads = (y.clone() * tensor_from_vec(dy.to_vec(), dims, &device)).sum().backward();
        let grad = |t: Tensor<1>| tensor_to_vec(t.grad(&grads).expect("affine gradient"));
        (
            tensor_to_vec(y),
            tensor_to_vec(input.grad(&grads).expect("input gradient")),
            grad(bn.weight.val()),
            grad(bn.bias.val()),
            stats.pop().expect("statistics recorded"),
        )
    }

    #[test]
    fn fused_training_batch_norm_matches_tensor_ops_and_pytorch_formulas() {
        let device = Device::default().autodiff();
        // Off-centre channels (post-convolution activations are not centred) and a plane that is
        // not a multiple of the kernel's vector width.
        let (n, c, h, w) = (2, 4, 9, 13);
        let plane = h * w;
        let x: Vec<f32> = values(n * c * plane, 0.4)
            .iter()
            .enumerate()
            .map(|(i, v)| v * (0.5 + ((i / plane) % c) as f32) + 4.0 * ((i / plane) % c) as f32 - 3.0)
            .collect();
        let dy: Vec<f32> = values(n * c * plane, 2.3).iter().map(|v| 0.1 * v).collect();
        let (weight, bias) = (vec![0.5, 1.5, -0.7, 1.1], vec![0.1, -0.2, 0.3, 0.0]);
        let mut bn = BatchNorm::new(c, &device);
        bn.weight = Param::from_tensor(tensor_from_vec(weight.clone(), [c], &device));
        bn.bias = Param::from_tensor(tensor_from_vec(bias.clone(), [c], &device));
        let probe = tensor_from_vec(x.clone(), [n, c, h, w], &device);
        assert!(
            maskrcnn_kernels::batch_norm_train(probe, bn.weight.val(), bn.bias.val(), BatchNorm::EPS).is_some(),
            "the fused kernels must run on flex (is MASKRCNN_BATCH_NORM=tensor-ops set?)"
        );

        let (y_ref, dx_ref, means, vars) = reference(&x, &dy, &weight, &bias, [n, c, plane]);
        let fused = batch_norm_step(&bn, &x, &dy, [n, c, h, w], true);
        let ops = batch_norm_step(&bn, &x, &dy, [n, c, h, w], false);
        let close = |what: &str, a: &[f32], b: &[f32], tol: f32| {
            assert_eq!(a.len(), b.len(), "{what}: length");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{what}[{i}]: {x} vs {y}");
            }
        };
        // dgamma = sum(dy * xhat), dbeta = sum(dy), per channel.
        let (mut dgamma_ref, mut dbeta_ref) = (vec![0.0f32; c], vec![0.0f32; c]);
        for ch in 0..c {
            let biased = vars[ch] * (plane * n - 1) as f64 / (plane * n) as f64;
            let inv = 1.0 / (biased + BatchNorm::EPS).sqrt();
            let idx: Vec<usize> = (0..n).flat_map(|b| (0..plane).map(move |k| (b * c + ch) * plane + k)).collect();
            dgamma_ref[ch] = idx.iter().map(|&i| dy[i] as f64 * (x[i] as f64 - means[ch]) * inv).sum::<f64>() as f32;
            dbeta_ref[ch] = idx.iter().map(|&i| dy[i] as f64).sum::<f64>() as f32;
        }
        for (name, (y, dx, dgamma, dbeta, _)) in [("fused", &fused), ("tensor ops", &ops)] {
            close(&format!("{name} output"), y, &y_ref, 1e-5);
            close(&format!("{name} input gradient"), dx, &dx_ref, 1e-4);
            close(&format!("{name} gamma gradient"), dgamma, &dgamma_ref, 1e-4);
            close(&format!("{name} beta gradient"), dbeta, &dbeta_ref, 1e-4);
        }
        close("fused vs tensor ops output", &fused.0, &ops.0, 1e-5);
        close("fused vs tensor ops input gradient", &fused.1, &ops.1, 1e-5);
        close("fused vs tensor ops gamma gradient", &fused.2, &ops.2, 1e-5);
        close("fused vs tensor ops beta gradient", &fused.3, &ops.3, 1e-5);
        close("fused vs tensor ops mean", &fused.4.mean, &ops.4.mean, 1e-6);
        close("fused vs tensor ops variance", &fused.4.var, &ops.4.var, 1e-5);

        let mut running = [bn.clone(), bn];
        for (bn, (_, _, _, _, stats)) in running.iter_mut().zip([&fused, &ops]) {
            bn.update_running(stats);
            let (rm, rv) = (tensor_to_vec(bn.running_mean.clone()), tensor_to_vec(bn.running_var.clone()));
            for ch in 0..c {
                assert!((rm[ch] as f64 - 0.1 * means[ch]).abs() < 1e-5, "running mean {} vs {}", rm[ch], means[ch]);
                let want = 0.9 + 0.1 * vars[ch];
                assert!((rv[ch] as f64 - want).abs() < 1e-5 * want, "running var {} vs {want}", rv[ch]);
            }
        }
    }

    /// At the stem's size (512 px, batch 2: 131,072 values per channel) and with off-centre channels, the fused
    /// path stays within f32 rounding of the f64 formulas; the largest errors of both paths are printed
    /// (`--nocapture`) because the tensor-op path's long f32 reductions are what the fused sums improve on.
    #[test]
    fn fused_training_batch_norm_is_accurate_at_the_stems_size() {
        let device = Device::default().autodiff();
        let (n, c, h, w) = (2, 2, 256, 256);
        let plane = h * w;
        let x: Vec<f32> = values(n * c * plane, 0.9)
            .iter()
            .enumerate()
            .map(|(i, v)| v + 6.0 * ((i / plane) % c) as f32 + 2.0)
            .collect();
        let dy: Vec<f32> = values(n * c * plane, 0.2).iter().map(|v| 0.01 * v).collect();
        let (weight, bias) = (vec![0.8, -1.3], vec![0.2, 0.1]);
        let mut bn = BatchNorm::new(c, &device);
        bn.weight = Param::from_tensor(tensor_from_vec(weight.clone(), [c], &device));
        bn.bias = Param::from_tensor(tensor_from_vec(bias.clone(), [c], &device));
        let (y_ref, dx_ref, _, _) = reference(&x, &dy, &weight, &bias, [n, c, plane]);
        let max_err = |got: &[f32], want: &[f32]| {
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max) / scale
        };
        let fused = batch_norm_step(&bn, &x, &dy, [n, c, h, w], true);
        let ops = batch_norm_step(&bn, &x, &dy, [n, c, h, w], false);
        let (fused_y, fused_dx) = (max_err(&fused.0, &y_ref), max_err(&fused.1, &dx_ref));
        let (ops_y, ops_dx) = (max_err(&ops.0, &y_ref), max_err(&ops.1, &dx_ref));
        eprintln!(
            "relative max error: fused output {fused_y:e}, dx {fused_dx:e}; tensor ops output {ops_y:e}, dx {ops_dx:e}"
        );
        assert!(fused_y < 1e-5 && fused_dx < 1e-5, "fused: output {fused_y:e}, dx {fused_dx:e}");
    }

    #[test]
    fn loading_builds_skip_random_init_and_restore_it() {
        let device = Device::flex();
        let zeroed = without_random_init(|| Conv::new(3, 4, 3, 1, 1, true, &device));
        assert!(tensor_to_vec(zeroed.weight.val().reshape([-1])).iter().all(|&v| v == 0.0));
        let nested = without_random_init(|| without_random_init(|| Linear::new(5, 2, &device)));
        assert!(tensor_to_vec(nested.weight.val().reshape([-1])).iter().all(|&v| v == 0.0));
        // Outside the scope (also after a nested one) initialisation is random again.
        let fresh = Conv::new(3, 4, 3, 1, 1, true, &device);
        assert!(tensor_to_vec(fresh.weight.val().reshape([-1])).iter().any(|&v| v != 0.0));
    }

    #[test]
    fn frozen_batch_norm_gives_no_gradient_to_its_affine_terms() {
        let device = Device::flex().autodiff();
        let bn = BatchNorm::new(2, &device);
        let input = tensor_from_vec(values(16, 0.3), [1, 2, 2, 4], &device).require_grad();
        let grads = bn.forward(input.clone()).sum().backward();
        assert!(input.grad(&grads).is_some());
        assert!(bn.weight.val().grad(&grads).is_none() && bn.bias.val().grad(&grads).is_none());
    }
}
