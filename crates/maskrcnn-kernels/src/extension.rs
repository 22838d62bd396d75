//! The backend extension that routes conv2d through our kernels.
//!
//! burn 0.22's tensors are backend-erased (`Dispatch`), so a backend's `ModuleOps` cannot be
//! overridden from outside its crate. An extension trait can: `#[backend_extension]` generates
//! the `Dispatch` implementation that picks the concrete backend of the input and calls its impl
//! of [`ConvKernels`]. Autodiff gets a hand-written impl (the macro derives no backward) that
//! records the same graph node as burn-autodiff's own conv2d but calls the inner backend's
//! [`ConvKernels`] gradient hooks.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend, Flex};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};

use crate::forward::{conv2d_forward, forward_algorithm, ForwardAlgorithm};
use crate::generic;
use crate::transpose::conv_transpose2d_nonoverlapping;

/// conv2d forward and backward as a backend extension.
///
/// Every method defaults to burn's standard op of the same backend, so supporting another backend
/// is one line (`impl ConvKernels for Cube {}` plus its selector in `#[backend_extension(..)]`);
/// [`Flex`] overrides the three gradients with the im2col + GEMM kernels of this crate.
#[backend_extension(Flex, Autodiff)]
pub trait ConvKernels: Backend {
    /// 2D convolution without bias; the contract of [`ModuleOps::conv2d`].
    fn kernel_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv2d(x, weight, None, options)
    }

    /// 2D convolution plus `bias`. A separate method rather than an `Option` argument because
    /// the extension macro maps only plain tensors (and `ExtensionType`s) across `Dispatch`.
    fn kernel_conv2d_with_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv2d(x, weight, Some(bias), options)
    }

    /// `conv_transpose2d(x, weight, bias)` for inference only (no autodiff).
    fn kernel_conv_transpose2d_inference_with_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv_transpose2d(x, weight, Some(bias), options)
    }

    /// Gradient of [`Self::kernel_conv2d_with_bias`] with respect to `x`.
    fn kernel_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv2d_x_backward(x, weight, output_grad, options)
    }

    /// Gradient of [`Self::kernel_conv2d_with_bias`] with respect to `weight`.
    fn kernel_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv2d_weight_backward(x, weight, output_grad, options)
    }

    /// Gradient of [`Self::kernel_conv2d_with_bias`] with respect to `bias`.
    fn kernel_conv2d_bias_backward(
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv2d_bias_backward(x, bias, output_grad)
    }
}

/// Forward: im2col + GEMM, Winograd for eligible 3x3 layers, unless [`crate::forward::FORWARD_ENV`]`=flex`; gradients:
/// this crate's kernels unless [`generic::BACKWARD_ENV`]`=generic`.
impl ConvKernels for Flex {
    // Also the forward of training (autodiff calls it): Winograd's values differ from direct
    // convolution by rounding only, and the gradients come from x and w, not from the forward.
    fn kernel_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        flex_forward(x, weight, None, options)
    }

    fn kernel_conv2d_with_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        flex_forward(x, weight, Some(bias), options)
    }

    fn kernel_conv_transpose2d_inference_with_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        if forward_algorithm() != ForwardAlgorithm::Flex {
            if let Some(y) = conv_transpose2d_nonoverlapping(&x, &weight, Some(&bias), &options) {
                return y;
            }
        }
        <Flex as ModuleOps<Flex>>::conv_transpose2d(x, weight, Some(bias), options)
    }

    fn kernel_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        if generic::use_generic() {
            return generic::conv2d_x_backward(x, weight, output_grad, options);
        }
        crate::conv2d_x_backward(x, weight, output_grad, &options)
    }

    fn kernel_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        if generic::use_generic() {
            return generic::conv2d_weight_backward(x, weight, output_grad, options);
        }
        crate::conv2d_weight_backward(x, weight, output_grad, &options)
    }

    fn kernel_conv2d_bias_backward(
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        if generic::use_generic() {
            return generic::conv2d_bias_backward(x, bias, output_grad);
        }
        crate::conv2d_bias_backward(bias, output_grad)
    }
}

/// This crate's forward on flex tensors, or flex's own conv2d when [`crate::forward::FORWARD_ENV`] says so or the
/// dtype has no kernel here.
fn flex_forward(
    x: FloatTensor<Flex>,
    weight: FloatTensor<Flex>,
    bias: Option<FloatTensor<Flex>>,
    options: ConvOptions<2>,
) -> FloatTensor<Flex> {
    let algorithm = forward_algorithm();
    if algorithm != ForwardAlgorithm::Flex {
        let winograd = algorithm == ForwardAlgorithm::Fast;
        if let Some(y) = conv2d_forward(&x, &weight, bias.as_ref(), &options, winograd) {
            return y;
        }
    }
    <Flex as ModuleOps<Flex>>::conv2d(x, weight, bias, options)
}

/// Backward step of a conv2d with bias: parents (x, weight, bias).
#[derive(Debug)]
struct Conv2dWithBias;

/// Backward step of a conv2d without bias: parents (x, weight).
#[derive(Debug)]
struct Conv2dNoBias;

impl<B: ConvKernels> Backward<B, 3> for Conv2dWithBias {
    type State = (NodeId, NodeId, NodeId, ConvOptions<2>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, bias_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state);
        let bias = checkpointer.retrieve_node_output::<FloatTensor<B>>(bias_state);

        if let Some(node) = node_x {
            let dx = B::kernel_conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone());
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_weight {
            let dw = B::kernel_conv2d_weight_backward(x.clone(), weight, grad.clone(), options);
            grads.register::<B>(node.id, dw);
        }
        if let Some(node) = node_bias {
            grads.register::<B>(node.id, B::kernel_conv2d_bias_backward(x, bias, grad));
        }
    }
}

impl<B: ConvKernels> Backward<B, 2> for Conv2dNoBias {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state);

        if let Some(node) = node_x {
            let dx = B::kernel_conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone());
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_weight {
            grads.register::<B>(node.id, B::kernel_conv2d_weight_backward(x, weight, grad, options));
        }
    }
}

/// The graph node burn-autodiff's own conv2d records (same checkpointing, compute-bound), with
/// the inner backend's [`ConvKernels`] for forward and gradients. The gradient hooks of the
/// autodiff backend itself keep their defaults (burn's differentiable ops), which only matter for
/// higher-order gradients.
impl<B: ConvKernels, C: CheckpointStrategy> ConvKernels for Autodiff<B, C> {
    fn kernel_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        match Conv2dNoBias.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let output = B::kernel_conv2d(x.into_primitive(), weight.into_primitive(), options.clone());
                prep.finish((x_state, weight_state, options), output)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::kernel_conv2d(x.into_primitive(), weight.into_primitive(), options))
            }
        }
    }

    fn kernel_conv2d_with_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match Conv2dWithBias.prepare::<C>([x.node(), weight.node(), bias.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let bias_state = prep.checkpoint(&bias);
                let output = B::kernel_conv2d_with_bias(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    options.clone(),
                );
                prep.finish((x_state, weight_state, bias_state, options), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::kernel_conv2d_with_bias(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                options,
            )),
        }
    }
}
