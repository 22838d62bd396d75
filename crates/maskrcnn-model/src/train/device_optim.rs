//! One optimiser step wherever the model lives: on the CPU the host path of [`super::optim`]
//! (parameters and buffers as named f32 vectors, bit-exact resume), on a GPU the same SGD and
//! AdamW formulas on device tensors, so a step moves no parameter, gradient or buffer across the
//! bus. Only the gradient norm (one number, needed to skip non-finite steps) comes back.
//!
//! Checkpoints always hold the host form: [`Optimizer::host_state`] downloads the device buffers,
//! and a resumed run uploads them again ([`Optimizer::new`]).

use std::borrow::Cow;
use std::collections::BTreeMap;

use burn::module::Param;
use burn::tensor::{Device, Gradients, Tensor};

use super::optim::{clip_gradients, OptimizerConfig, OptimizerKind, OptimizerState};
use super::params::{gradients_by_name, parameter_values, set_parameters};
use crate::model::MaskRcnnNet;
use crate::tensor_util::{tensor_from_vec, tensor_to_vec};
use crate::weights::{NamedTensors, TensorSlot};

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Update {
    /// Parameters updated; the global gradient norm before clipping.
    Applied { grad_norm: f32 },
    /// The gradient norm was not finite: nothing was changed.
    NonFinite { grad_norm: f32 },
}

/// SGD/AdamW state on the host (CPU) or on the model's device (GPU).
pub enum Optimizer {
    Host(OptimizerState),
    Device(DeviceOptimizer),
}

impl Optimizer {
    /// The optimiser for a model on `device`, continuing from `state` (empty for a new run).
    pub fn new(state: OptimizerState, device: &Device) -> Self {
        if crate::device::is_cpu(device) {
            Self::Host(state)
        } else {
            Self::Device(DeviceOptimizer::from_host(&state, &device.clone().inner()))
        }
    }

    /// The state as a checkpoint stores it.
    pub fn host_state(&self) -> Cow<'_, OptimizerState> {
        match self {
            Self::Host(state) => Cow::Borrowed(state),
            Self::Device(d) => Cow::Owned(d.to_host()),
        }
    }

    /// Clips the gradients of `grads` to `max_norm` (global L2, as `clip_grad_norm_`; infinity
    /// for none) and applies one step at `lr` to every parameter that has a gradient.
    pub fn update(
        &mut self,
        config: &OptimizerConfig,
        lr: f64,
        net: &mut MaskRcnnNet,
        grads: Gradients,
        max_norm: f32,
        device: &Device,
    ) -> Update {
        match self {
            Self::Host(state) => {
                let mut g = gradients_by_name(net, &grads);
                drop(grads);
                let grad_norm = clip_gradients(&mut g, max_norm);
                if !grad_norm.is_finite() {
                    return Update::NonFinite { grad_norm };
                }
                let mut params = parameter_values(net, Some(&|n: &str| g.contains_key(n)));
                state.step(config, lr, &mut params, &g);
                set_parameters(net, &params, device);
                Update::Applied { grad_norm }
            }
            Self::Device(d) => d.update(config, lr, net, grads, max_norm),
        }
    }
}

/// [`OptimizerState`] with its buffers on a device, flattened per parameter.
pub struct DeviceOptimizer {
    steps: u64,
    first: BTreeMap<String, Tensor<1>>,
    second: BTreeMap<String, Tensor<1>>,
    device: Device,
}

fn flat<const D: usize>(t: Tensor<D>) -> Tensor<1> {
    let n = t.shape().num_elements();
    t.reshape([n])
}

impl DeviceOptimizer {
    /// Uploads host buffers; `device` is the inference device (no autodiff).
    pub fn from_host(state: &OptimizerState, device: &Device) -> Self {
        let upload = |m: &BTreeMap<String, Vec<f32>>| {
            m.iter().map(|(k, v)| (k.clone(), tensor_from_vec(v.clone(), [v.len()], device))).collect()
        };
        Self { steps: state.steps, first: upload(&state.first), second: upload(&state.second), device: device.clone() }
    }

    pub fn to_host(&self) -> OptimizerState {
        let download =
            |m: &BTreeMap<String, Tensor<1>>| m.iter().map(|(k, t)| (k.clone(), tensor_to_vec(t.clone()))).collect();
        OptimizerState { steps: self.steps, first: download(&self.first), second: download(&self.second) }
    }

    fn update(
        &mut self,
        config: &OptimizerConfig,
        lr: f64,
        net: &mut MaskRcnnNet,
        grads: Gradients,
        max_norm: f32,
    ) -> Update {
        // Gradients and current values of every parameter that has a gradient, flattened.
        let mut work: BTreeMap<String, (Tensor<1>, Tensor<1>)> = BTreeMap::new();
        net.visit_named("", &mut |name, slot| {
            fn pair<const D: usize>(p: &Param<Tensor<D>>, grads: &Gradients) -> Option<(Tensor<1>, Tensor<1>)> {
                let g = p.val().grad(grads)?;
                Some((flat(g), flat(p.val().inner())))
            }
            let entry = match slot {
                TensorSlot::Param1(p) => pair(p, &grads),
                TensorSlot::Param2(p) => pair(p, &grads),
                TensorSlot::Param3(p) => pair(p, &grads),
                TensorSlot::Param4(p) => pair(p, &grads),
                TensorSlot::Const1(_) => None,
            };
            if let Some(e) = entry {
                work.insert(name, e);
            }
        });
        drop(grads);
        if work.is_empty() {
            return Update::Applied { grad_norm: 0.0 };
        }
        let squares = work.values().map(|(g, _)| (g.clone() * g.clone()).sum()).reduce(|a, b| a + b);
        let grad_norm = squares.map(|s| s.into_scalar::<f32>().sqrt()).unwrap_or(0.0);
        if !grad_norm.is_finite() {
            return Update::NonFinite { grad_norm };
        }
        let coef = max_norm / (grad_norm + 1e-6);
        self.steps += 1;
        let lr32 = lr as f32;
        let wd = config.weight_decay as f32;
        let mut updated: BTreeMap<String, Tensor<1>> = BTreeMap::new();
        for (name, (mut g, p)) in work {
            if coef < 1.0 {
                g = g * coef;
            }
            let new_p = match config.kind {
                OptimizerKind::Sgd => {
                    let momentum = config.momentum as f32;
                    let d = g + p.clone() * wd;
                    // torch initialises the buffer with the first (decayed) gradient.
                    let buf = match self.first.remove(&name) {
                        Some(b) => b * momentum + d,
                        None => d,
                    };
                    let new_p = p - buf.clone() * lr32;
                    self.first.insert(name.clone(), buf);
                    new_p
                }
                OptimizerKind::Adamw => {
                    let (b1, b2) = (config.beta1 as f32, config.beta2 as f32);
                    let t = self.steps as i32;
                    let bias1 = 1.0 - config.beta1.powi(t);
                    let bias2_sqrt = (1.0 - config.beta2.powi(t)).sqrt() as f32;
                    let step_size = (lr / bias1) as f32;
                    let n = p.dims()[0];
                    let m = self.first.remove(&name).unwrap_or_else(|| Tensor::zeros([n], &self.device));
                    let v = self.second.remove(&name).unwrap_or_else(|| Tensor::zeros([n], &self.device));
                    let decayed = p * (1.0 - lr32 * wd);
                    let m = m * b1 + g.clone() * (1.0 - b1);
                    let v = v * b2 + g.clone() * g * (1.0 - b2);
                    let denom = v.clone().sqrt() / bias2_sqrt + config.eps as f32;
                    let new_p = decayed - (m.clone() * step_size) / denom;
                    self.first.insert(name.clone(), m);
                    self.second.insert(name.clone(), v);
                    new_p
                }
            };
            updated.insert(name, new_p);
        }
        net.visit_named("", &mut |name, slot| {
            fn put<const D: usize>(p: &mut Param<Tensor<D>>, v: Tensor<1>) {
                *p = Param::from_tensor(v.reshape(p.dims()).autodiff());
            }
            let Some(v) = updated.remove(&name) else { return };
            match slot {
                TensorSlot::Param1(p) => put(p, v),
                TensorSlot::Param2(p) => put(p, v),
                TensorSlot::Param3(p) => put(p, v),
                TensorSlot::Param4(p) => put(p, v),
                TensorSlot::Const1(_) => {}
            }
        });
        Update::Applied { grad_norm }
    }
}
