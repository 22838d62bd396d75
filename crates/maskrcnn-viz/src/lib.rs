//! Pure-Rust rendering of Mask R-CNN results: instance overlays, ground truth / prediction grids,
//! training curves and an offline HTML report. No system fonts or native libraries are needed.
pub mod draw;
pub mod font;
pub mod palette;

pub use draw::{auto_font_scale, draw_instances, tag_text, DrawInstance, DrawMode, DrawOptions, MaskRef};
pub use palette::{class_color, contrasting_text_color};
