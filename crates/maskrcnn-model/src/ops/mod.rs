//! Detection operators with torchvision's exact semantics, on host memory.
//!
//! Box bookkeeping (decoding, NMS, level assignment, pasting) is small and branchy, so it runs on
//! plain slices; only RoIAlign's sampling is expressed as a tensor gather so that autodiff flows
//! through it during training.

pub mod box_coding;
pub mod boxes;
pub mod interpolate;
pub mod losses;
pub mod nms;
pub mod paste_masks;
pub mod point_sample;
pub mod roi_align;
pub mod roi_align_cpu;

pub use box_coding::BoxCoder;
pub use nms::{batched_nms, nms};
