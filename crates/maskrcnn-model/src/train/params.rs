//! Parameters by torchvision name: which ones train, their gradients, and in-place updates.

use std::collections::BTreeMap;

use burn::module::Param;
use burn::tensor::{Device, Gradients, Tensor};

use crate::model::MaskRcnnNet;
use crate::tensor_util::{tensor_from_vec, tensor_to_vec};
use crate::weights::{NamedTensors, TensorSlot};

/// Whether parameter `name` trains under torchvision's `trainable_layers` rule: the ResNet body
/// trains only in `["layer4", "layer3", "layer2", "layer1", "conv1"][:n]` (plus `bn1` at 5);
/// FPN, RPN and heads always train. Batch-norm affine terms follow their stage but only get a
/// gradient with `norm = batch` (the frozen forward detaches them).
pub fn is_trainable(name: &str, trainable_layers: usize) -> bool {
    let Some(body_name) = name.strip_prefix("backbone.body.") else { return true };
    let mut layers: Vec<&str> =
        ["layer4", "layer3", "layer2", "layer1", "conv1"].into_iter().take(trainable_layers.min(5)).collect();
    if trainable_layers >= 5 {
        layers.push("bn1");
    }
    layers.iter().any(|l| body_name.starts_with(l))
}

/// Stops gradients for frozen parameters, so backward skips the frozen stages entirely.
pub fn freeze_layers(net: &mut MaskRcnnNet, trainable_layers: usize) {
    net.visit_named("", &mut |name, slot| {
        let train = is_trainable(&name, trainable_layers);
        match slot {
            TensorSlot::Param1(p) => *p = p.clone().set_require_grad(train),
            TensorSlot::Param2(p) => *p = p.clone().set_require_grad(train),
            TensorSlot::Param4(p) => *p = p.clone().set_require_grad(train),
            TensorSlot::Param3(p) => *p = p.clone().set_require_grad(train),
            TensorSlot::Const1(_) => {}
        }
    });
}

/// Gradients of every parameter that has one, by name, on the host.
pub fn gradients_by_name(net: &mut MaskRcnnNet, grads: &Gradients) -> BTreeMap<String, Vec<f32>> {
    fn host<const D: usize>(p: &Param<Tensor<D>>, grads: &Gradients) -> Option<Vec<f32>> {
        p.val().grad(grads).map(tensor_to_vec)
    }
    let mut out = BTreeMap::new();
    net.visit_named("", &mut |name, slot| {
        let g = match slot {
            TensorSlot::Param1(p) => host(p, grads),
            TensorSlot::Param2(p) => host(p, grads),
            TensorSlot::Param4(p) => host(p, grads),
            TensorSlot::Param3(p) => host(p, grads),
            TensorSlot::Const1(_) => None,
        };
        if let Some(g) = g {
            out.insert(name, g);
        }
    });
    out
}

/// Values of the named parameters (all of them when `names` is `None`), on the host.
pub fn parameter_values(net: &mut MaskRcnnNet, only: Option<&dyn Fn(&str) -> bool>) -> BTreeMap<String, Vec<f32>> {
    let mut out = BTreeMap::new();
    net.visit_named("", &mut |name, slot| {
        if only.is_some_and(|f| !f(&name)) {
            return;
        }
        let v = match slot {
            TensorSlot::Param1(p) => tensor_to_vec(p.val()),
            TensorSlot::Param2(p) => tensor_to_vec(p.val()),
            TensorSlot::Param4(p) => tensor_to_vec(p.val()),
            TensorSlot::Param3(p) => tensor_to_vec(p.val()),
            TensorSlot::Const1(_) => return,
        };
        out.insert(name, v);
    });
    out
}

/// Replaces the parameters named in `values` (keeping their shapes), as trainable leaves.
pub fn set_parameters(net: &mut MaskRcnnNet, values: &BTreeMap<String, Vec<f32>>, device: &Device) {
    net.visit_named("", &mut |name, slot| {
        let Some(v) = values.get(&name) else { return };
        match slot {
            TensorSlot::Param1(p) => *p = Param::from_tensor(tensor_from_vec(v.clone(), p.dims(), device)),
            TensorSlot::Param2(p) => *p = Param::from_tensor(tensor_from_vec(v.clone(), p.dims(), device)),
            TensorSlot::Param4(p) => *p = Param::from_tensor(tensor_from_vec(v.clone(), p.dims(), device)),
            TensorSlot::Param3(p) => *p = Param::from_tensor(tensor_from_vec(v.clone(), p.dims(), device)),
            TensorSlot::Const1(_) => {}
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trainable_layers_follow_torchvision() {
        assert!(is_trainable("rpn.head.conv.0.0.weight", 0));
        assert!(is_trainable("backbone.fpn.inner_blocks.0.0.weight", 0));
        assert!(!is_trainable("backbone.body.layer4.0.conv1.weight", 0));
        assert!(is_trainable("backbone.body.layer4.0.conv1.weight", 1));
        assert!(!is_trainable("backbone.body.layer1.0.conv1.weight", 3));
        assert!(is_trainable("backbone.body.layer2.1.conv2.weight", 3));
        assert!(!is_trainable("backbone.body.conv1.weight", 4));
        assert!(is_trainable("backbone.body.conv1.weight", 5));
    }
}
