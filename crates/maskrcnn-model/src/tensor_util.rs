//! Moving data between host buffers and tensors.

use burn::tensor::{Device, Int, Tensor, TensorData};

pub fn tensor_from_vec<const D: usize>(data: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

pub fn int_tensor_from_vec(data: Vec<i64>, device: &Device) -> Tensor<1, Int> {
    let n = data.len();
    Tensor::from_data(TensorData::new(data, [n]), device)
}

pub fn tensor_to_vec<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 tensor data")
}

/// The most indices one tracked `select` takes on a GPU device. burn-cubecl 0.22.1's
/// `select_assign`, the backward of `select`, drops contributions from indices past 65,535
/// (tests/gpu_op_grads.rs: `select_backward_past_65535_indices_matches_cpu`), which made every
/// gradient reaching the finest FPN level through RoIAlign wrong.
pub const GPU_SELECT_MAX_INDICES: usize = 65_535;

/// `x.select(dim, indices)`, split into selects of at most [`GPU_SELECT_MAX_INDICES`] indices
/// when `x` is tracked on a GPU device, so its backward stays within what burn-cubecl adds up
/// correctly. One select elsewhere.
pub fn select_indices<const D: usize>(x: Tensor<D>, dim: usize, indices: Vec<i64>) -> Tensor<D> {
    let device = x.device();
    if indices.len() <= GPU_SELECT_MAX_INDICES || !x.is_tracked() || crate::device::is_cpu(&device) {
        return x.select(dim, int_tensor_from_vec(indices, &device));
    }
    let parts =
        indices.chunks(GPU_SELECT_MAX_INDICES).map(|c| x.clone().select(dim, int_tensor_from_vec(c.to_vec(), &device)));
    Tensor::cat(parts.collect(), dim)
}
