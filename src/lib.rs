//! Mask R-CNN instance segmentation with torchvision's architecture, defaults and weight layout,
//! on burn's pure-Rust CPU backend.

pub mod backbone;
pub mod image_io;
pub mod predict;
pub mod config;
pub mod demo;
pub mod detect;
pub mod tta;
pub mod io_util;
pub mod layers;
pub mod cli;
pub mod evaluate;
pub mod model;
pub mod overlay;
pub mod ops;
pub mod proposal;
pub mod roi_heads;
pub mod tensor_util;
pub mod transform;
pub mod train;
pub mod weights;

pub use config::MaskRcnnConfig;
pub use model::{Detection, MaskRcnn};
