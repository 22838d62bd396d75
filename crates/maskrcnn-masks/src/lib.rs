//! COCO instance masks with the exact semantics of pycocotools' `maskApi.c`.
//!
//! Evaluation numbers are only comparable with published COCO results when every
//! rasterisation and IoU detail matches the reference C code, so the algorithms here are
//! line-by-line ports (including its quirks, which are documented where they matter):
//!
//! * [`Rle`]: column-major run-length encoding, compressed string form, area, bbox, merge.
//! * [`Rle::from_polygons`] / [`Rle::from_bbox`]: `rleFrPoly` (5x upsampled boundary walk).
//! * [`mask_iou`] / [`bbox_iou`]: `rleIou` / `bbIou`, crowd regions scored as
//!   intersection over detection area.
//! * [`Segmentation`]: the COCO JSON `segmentation` field in all three forms.
//! * [`mask_boundary`]: the boundary band used by Boundary IoU (Cheng et al., 2021).

mod boundary;
mod error;
mod iou;
mod polygon;
mod rle;
mod segmentation;

pub use boundary::{boundary_dilation_pixels, mask_boundary, mask_boundary_band};
pub use error::MaskError;
pub use iou::{bbox_iou, mask_iou};
pub use rle::Rle;
pub use segmentation::{Segmentation, MAX_POLYGON_COORDINATE};
