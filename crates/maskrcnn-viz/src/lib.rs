//! Pure-Rust rendering of Mask R-CNN results.
pub mod font;
