//! Element types the kernels compute in, and the dtype plumbing around them: f32 and f64 run
//! natively, f16/bf16 are computed in f32 and cast back (gemm's f16 kernel accumulates in f16,
//! which is too lossy for gradients summed over a whole feature map).

use burn::tensor::{bf16, f16, Bytes, DType, Element, Shape};
use burn_flex::{FlexTensor, Layout};

/// Element types with a native GEMM kernel.
pub trait GradElement:
    bytemuck::Pod + Copy + Send + Sync + 'static + core::ops::Add<Output = Self> + core::ops::AddAssign + Element
{
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity (GEMM's alpha/beta).
    const ONE: Self;
}

impl GradElement for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

impl GradElement for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

fn cast<S: Element + bytemuck::Pod, D: Element + bytemuck::Pod>(tensor: &FlexTensor, f: impl Fn(S) -> D) -> FlexTensor {
    let tensor = tensor.to_contiguous();
    let shape = tensor.layout().shape().clone();
    let data: Vec<D> = tensor.storage::<S>().iter().map(|&v| f(v)).collect();
    FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(shape), D::dtype())
}

/// Contiguous copy of `tensor` in the dtype the kernels compute `compute_for` in: f64 stays f64,
/// everything else becomes f32.
pub(crate) fn to_compute_dtype(tensor: &FlexTensor, compute_for: DType) -> FlexTensor {
    match (compute_for, tensor.dtype()) {
        (DType::F64, _) | (_, DType::F32) => tensor.to_contiguous(),
        (_, DType::F16) => cast(tensor, f16::to_f32),
        (_, DType::BF16) => cast(tensor, bf16::to_f32),
        (_, other) => panic!("conv2d backward: unsupported dtype {other:?}"),
    }
}

/// Casts an f32 result back to `dtype` (f16/bf16); f32 passes through.
pub(crate) fn from_f32(tensor: FlexTensor, dtype: DType) -> FlexTensor {
    match dtype {
        DType::F16 => cast(&tensor, f16::from_f32),
        DType::BF16 => cast(&tensor, bf16::from_f32),
        _ => tensor,
    }
}

/// Runs the f32 or f64 instance of a kernel for a result of `dtype`, and wraps its output as a
/// contiguous `shape` tensor of that dtype.
pub(crate) fn run_typed(
    dtype: DType,
    shape: Shape,
    f32_fn: impl FnOnce() -> Vec<f32>,
    f64_fn: impl FnOnce() -> Vec<f64>,
    what: &str,
) -> FlexTensor {
    match dtype {
        DType::F64 => FlexTensor::new(Bytes::from_elems(f64_fn()), Layout::contiguous(shape), DType::F64),
        DType::F32 | DType::F16 | DType::BF16 => {
            from_f32(FlexTensor::new(Bytes::from_elems(f32_fn()), Layout::contiguous(shape), DType::F32), dtype)
        }
        other => panic!("{what}: unsupported dtype {other:?}"),
    }
}
