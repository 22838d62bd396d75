//! Mask R-CNN instance segmentation (with PointRend) in torchvision's architecture, defaults and
//! weight layout, on burn: the model, its components, weight loading and saving, and training.
//!
//! The application (command line, drivers over folders and rasters, overlays) lives in the
//! `maskrcnn` crate at the workspace root; nothing here depends on it.

pub mod backbone;
pub mod config;
pub mod device;
pub mod io_util;
pub mod layers;
pub mod model;
pub mod ops;
pub mod proposal;
pub mod roi_heads;
pub mod sampling;
pub mod surgery;
pub mod targets;
pub mod tensor_util;
pub mod train;
pub mod transform;
pub mod weights;

pub use config::MaskRcnnConfig;
pub use model::{Detection, MaskRcnn};
