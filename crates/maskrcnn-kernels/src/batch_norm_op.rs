//! The backend extension that runs training-mode batch norm as the fused kernels of
//! [`crate::batch_norm`] on flex, and its autodiff node.
//!
//! The node is the one burn-autodiff records for `ModuleOps::batch_norm_train` (input and scale
//! checkpointed, the batch statistics kept as the forward computed them), with the inner backend's
//! [`BatchNormKernels`] for forward and gradients, so a whole batch norm is one node backward
//! instead of a chain of element-wise and reduction nodes.

use std::sync::OnceLock;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, AutodiffBackend, Backend, Dispatch, DispatchDevice, Flex};
use burn::tensor::{Bytes, DType, Shape, Tensor};
use burn_flex::{FlexTensor, Layout};

use crate::batch_norm::{batch_norm_train_backward, batch_norm_train_forward};

/// Environment variable that, set to `tensor-ops` (any case), makes [`batch_norm_train`] decline
/// (return `None`) so that callers run their tensor-operation form: the "before" of benchmarks, in
/// the same binary. Read once per process.
pub const BATCH_NORM_ENV: &str = "MASKRCNN_BATCH_NORM";

fn fused_disabled() -> bool {
    static DISABLED: OnceLock<bool> = OnceLock::new();
    *DISABLED.get_or_init(|| std::env::var(BATCH_NORM_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("tensor-ops")))
}

/// Training-mode batch norm as a backend extension. Every method defaults to burn's own
/// `ModuleOps` op of the same backend; [`Flex`] overrides both with the fused kernels.
#[backend_extension(Flex, Autodiff)]
pub trait BatchNormKernels: Backend {
    /// `ModuleOps::batch_norm_train`: (output, mean, biased variance) of `x` `[batch, channels, ...]`
    /// normalised with its own statistics, then scaled by `gamma` and shifted by `beta`.
    fn kernel_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let result = <Self as ModuleOps<Self>>::batch_norm_train(x, gamma, beta, epsilon);
        (result.output, result.mean, result.variance)
    }

    /// `ModuleOps::batch_norm_train_backward`: gradients (x, gamma, beta) of
    /// [`Self::kernel_batch_norm_train`] given its statistics and the output gradient.
    fn kernel_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let result =
            <Self as ModuleOps<Self>>::batch_norm_train_backward(x, gamma, mean, variance, epsilon, output_grad);
        (result.x_grad, result.gamma_grad, result.beta_grad)
    }
}

/// `[batch, channels, plane]` of a rank >= 2 flex tensor.
fn dims3(x: &FlexTensor) -> [usize; 3] {
    let shape = x.layout().shape();
    let plane = (2..shape.num_dims()).map(|d| shape[d]).product();
    [shape[0], shape[1], plane]
}

fn f32_tensor(data: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(shape), DType::F32)
}

/// The fused kernels for f32; other dtypes take burn's default ops.
impl BatchNormKernels for Flex {
    fn kernel_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        if [x.dtype(), gamma.dtype(), beta.dtype()] != [DType::F32; 3] {
            let result = <Flex as ModuleOps<Flex>>::batch_norm_train(x, gamma, beta, epsilon);
            return (result.output, result.mean, result.variance);
        }
        let (x, gamma, beta) = (x.to_contiguous(), gamma.to_contiguous(), beta.to_contiguous());
        let dims = dims3(&x);
        let result = batch_norm_train_forward(x.storage(), gamma.storage(), beta.storage(), dims, epsilon);
        let channels = Shape::new([dims[1]]);
        (
            f32_tensor(result.output, x.layout().shape().clone()),
            f32_tensor(result.mean, channels.clone()),
            f32_tensor(result.variance, channels),
        )
    }

    fn kernel_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        if [x.dtype(), gamma.dtype(), mean.dtype(), variance.dtype(), output_grad.dtype()] != [DType::F32; 5] {
            let result =
                <Flex as ModuleOps<Flex>>::batch_norm_train_backward(x, gamma, mean, variance, epsilon, output_grad);
            return (result.x_grad, result.gamma_grad, result.beta_grad);
        }
        let [x, gamma, mean, variance, dy] = [x, gamma, mean, variance, output_grad].map(|t| t.to_contiguous());
        let dims = dims3(&x);
        let result = batch_norm_train_backward(
            x.storage(),
            gamma.storage(),
            mean.storage(),
            variance.storage(),
            dy.storage(),
            dims,
            epsilon,
        );
        let channels = Shape::new([dims[1]]);
        (
            f32_tensor(result.x_grad, x.layout().shape().clone()),
            f32_tensor(result.gamma_grad, channels.clone()),
            f32_tensor(result.beta_grad, channels),
        )
    }
}

/// Backward step of a training-mode batch norm: parents (x, gamma, beta).
#[derive(Debug)]
struct BatchNormTrainStep;

impl<B: BatchNormKernels> Backward<B, 3> for BatchNormTrainStep {
    type State = (NodeId, NodeId, FloatTensor<B>, FloatTensor<B>, f64);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, gamma_state, mean, variance, epsilon) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
        let (dx, dgamma, dbeta) = B::kernel_batch_norm_train_backward(x, gamma, mean, variance, grad, epsilon);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_gamma {
            grads.register::<B>(node.id, dgamma);
        }
        if let Some(node) = node_beta {
            grads.register::<B>(node.id, dbeta);
        }
    }
}

/// One graph node per batch norm; the statistics come back detached, as burn's own op returns
/// them. The backward hook of the autodiff backend itself keeps its default (second-order
/// gradients of batch norm are not supported, as in burn).
impl<B: BatchNormKernels, C: CheckpointStrategy> BatchNormKernels for Autodiff<B, C> {
    fn kernel_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        match BatchNormTrainStep.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let (output, mean, variance) = B::kernel_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                );
                let output = prep.finish((x_state, gamma_state, mean.clone(), variance.clone(), epsilon), output);
                (output, Self::from_inner(mean), Self::from_inner(variance))
            }
            OpsKind::UnTracked(prep) => {
                let (output, mean, variance) = B::kernel_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                );
                (prep.finish(output), Self::from_inner(mean), Self::from_inner(variance))
            }
        }
    }
}

/// Output of [`batch_norm_train`].
#[derive(Debug, Clone)]
pub struct BatchNormTrainOutput {
    /// The normalised input, `[batch, channels, h, w]`; differentiable in the input, `gamma` and
    /// `beta` (through the batch statistics too).
    pub output: Tensor<4>,
    /// Batch mean per channel, detached.
    pub mean: Tensor<1>,
    /// Biased batch variance per channel, detached.
    pub variance: Tensor<1>,
}

/// `BatchNorm2d` in training mode as one fused kernel forward and one backward, on flex (with or
/// without autodiff) for f32. `None` on any other device or dtype, or when [`BATCH_NORM_ENV`] asks
/// for tensor ops: the caller then runs its own tensor-operation form.
pub fn batch_norm_train(x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>, epsilon: f64) -> Option<BatchNormTrainOutput> {
    // The generated dispatch panics on an unlisted backend, and a GPU backend gets burn's own op
    // (or the caller's) rather than this CPU kernel.
    if fused_disabled() || !matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_)) {
        return None;
    }
    if x.dtype() != DType::F32 {
        return None;
    }
    let channels = x.dims()[1];
    assert!(
        gamma.dims() == [channels] && beta.dims() == [channels],
        "batch_norm_train: gamma {:?} / beta {:?} do not match {channels} input channels",
        gamma.dims(),
        beta.dims()
    );
    let (output, mean, variance) = <Dispatch as BatchNormKernels>::kernel_batch_norm_train(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    );
    Some(BatchNormTrainOutput {
        output: Tensor::from_dispatch(output),
        mean: Tensor::from_dispatch(mean),
        variance: Tensor::from_dispatch(variance),
    })
}
