//! The `maskrcnn` application: the command line, the drivers that run a model over image folders,
//! datasets and georeferenced rasters, overlays, and the demo. The model itself (architecture,
//! weights, training) is the `maskrcnn-model` crate, re-exported here under its module names.

pub use maskrcnn_model::{
    backbone, config, device, io_util, layers, model, ops, proposal, roi_heads, tensor_util, train, transform, weights,
    Detection, MaskRcnn, MaskRcnnConfig,
};

pub mod allocator;
pub mod bands;
pub mod cell_size;
pub mod cli;
pub mod demo;
pub mod detect;
pub mod device_arg;
pub mod evaluate;
pub mod hooks;
pub mod image_io;
pub mod output_policy;
pub mod overlay;
pub mod predict;
pub mod train_cli;
pub mod tta;
