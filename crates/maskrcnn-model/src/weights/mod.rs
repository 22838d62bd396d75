//! Checkpoints: torchvision state dicts (`.pth`, `.safetensors`), our model folders, and
//! arcgis.learn `.emd` / `.dlpk` packages.

pub mod arcgis;
pub mod backbone_init;
pub mod checkpoint;
pub mod pth_writer;
pub mod state_dict;

use burn::module::Param;
use burn::tensor::Tensor;

pub use checkpoint::{load_model, save_model_dir, LoadedModel};
pub use state_dict::{HostTensor, StateDict};

/// A mutable view of one named tensor of a module, so one walk over the model serves both
/// loading and saving.
pub enum TensorSlot<'a> {
    Param1(&'a mut Param<Tensor<1>>),
    Param2(&'a mut Param<Tensor<2>>),
    Param3(&'a mut Param<Tensor<3>>),
    Param4(&'a mut Param<Tensor<4>>),
    Const1(&'a mut Tensor<1>),
}

/// Modules that expose their tensors under torchvision's state-dict names.
pub trait NamedTensors {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>));
}

impl<T: NamedTensors> NamedTensors for Vec<T> {
    fn visit_named(&mut self, prefix: &str, visit: &mut dyn FnMut(String, TensorSlot<'_>)) {
        for (i, item) in self.iter_mut().enumerate() {
            item.visit_named(&format!("{prefix}.{i}"), visit);
        }
    }
}
