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
