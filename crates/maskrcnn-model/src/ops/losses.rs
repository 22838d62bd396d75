//! Loss functions as PyTorch defines them, on (possibly autodiff) tensors.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// torchvision's smooth-L1 `beta` (1/9) for both box-regression losses (RPN and box head).
pub const SMOOTH_L1_BETA: f32 = 1.0 / 9.0;

/// `F.binary_cross_entropy_with_logits(logits, targets)` with mean reduction, in PyTorch's stable
/// form `max(x, 0) - x * y + log(1 + exp(-|x|))`.
pub fn bce_with_logits_mean(logits: Tensor<1>, targets: Tensor<1>) -> Tensor<1> {
    let per_element = logits.clone().clamp_min(0.0) - logits.clone() * targets + logits.abs().neg().exp().log1p();
    per_element.mean()
}

/// `F.smooth_l1_loss(input, target, beta, reduction="sum")`.
pub fn smooth_l1_sum<const D: usize>(input: Tensor<D>, target: Tensor<D>, beta: f32) -> Tensor<1> {
    let diff = (input - target).abs();
    let quadratic = diff.clone().powi_scalar(2) * (0.5 / beta);
    let linear = diff.clone() - 0.5 * beta;
    let small = diff.lower_elem(beta);
    linear.mask_where(small, quadratic).sum()
}

/// `F.cross_entropy(logits, labels)` with mean reduction over rows.
pub fn cross_entropy_mean(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let rows = labels.dims()[0];
    let log_probs = log_softmax(logits, 1);
    let picked: Tensor<2> = log_probs.gather(1, labels.reshape([rows, 1]));
    picked.mean().neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor_util::{int_tensor_from_vec, tensor_from_vec, tensor_to_vec};
    use burn::tensor::Device;

    fn scalar(t: Tensor<1>) -> f32 {
        tensor_to_vec(t)[0]
    }

    #[test]
    fn losses_match_pytorch_values() {
        let device = Device::flex();
        // torch: F.binary_cross_entropy_with_logits(tensor([-2., 0.5, 30.]), tensor([0., 1., 0.5])) = 5.200335
        let x = tensor_from_vec(vec![-2.0, 0.5, 30.0], [3], &device);
        let y = tensor_from_vec(vec![0.0, 1.0, 0.5], [3], &device);
        assert!((scalar(bce_with_logits_mean(x, y)) - 5.200_335).abs() < 1e-5);
        // torch: F.smooth_l1_loss(tensor([0., 0.05, 1.]), zeros(3), beta=1/9, reduction="sum") = 0.01125 + 0.9444...
        let a = tensor_from_vec(vec![0.0, 0.05, 1.0], [3], &device);
        let z = tensor_from_vec(vec![0.0; 3], [3], &device);
        assert!((scalar(smooth_l1_sum(a, z, 1.0 / 9.0)) - (0.01125 + 1.0 - 0.5 / 9.0)).abs() < 1e-6);
        // torch: F.cross_entropy(tensor([[1., 2., 3.], [0., 0., 0.]]), tensor([2, 0])) = 0.753109
        let logits = tensor_from_vec(vec![1.0, 2.0, 3.0, 0.0, 0.0, 0.0], [2, 3], &device);
        let ce = scalar(cross_entropy_mean(logits, int_tensor_from_vec(vec![2, 0], &device)));
        assert!((ce - 0.753_109).abs() < 1e-5, "{ce}");
    }
}
