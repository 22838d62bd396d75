//! Pure-Rust rendering of Mask R-CNN results: instance overlays, ground truth / prediction grids,
//! training curves and an offline HTML report. No system fonts or native libraries are needed:
//! text uses a small bitmap font embedded in [`font`].
//!
//! ```
//! use maskrcnn_viz::*;
//! use image::{Rgb, RgbImage};
//!
//! let photo = RgbImage::from_pixel(64, 48, Rgb([90, 90, 90]));
//! let mut mask = vec![0u8; 64 * 48];
//! for y in 10..30 { for x in 20..40 { mask[y * 64 + x] = 1; } }
//! let building = DrawInstance {
//!     bbox: [20.0, 10.0, 40.0, 30.0],
//!     mask: Some(MaskRef::new(&mask, 64, 48)?),
//!     label: "building".into(),
//!     score: Some(0.93),
//!     color: class_color(1),
//! };
//! let opts = DrawOptions { mode: "bbox_mask".parse()?, ..Default::default() };
//! let predicted = draw_instances(&photo, &[building], &opts);
//! let grid = results_grid(&[(photo.clone(), predicted)], &["tile_0001.tif"], (256, 192));
//! let curves = plot_curves(&[Series::new("loss", vec![(0.0, 2.0), (1.0, 1.2), (2.0, 0.9)])], "Training", "step", "loss", 480, 300);
//! let html = html_report("run 1", &serde_json::json!({"segm": {"AP": 0.41}}), &[("losses", &curves), ("samples", &grid)]);
//! assert!(html.contains("data:image/png;base64,"));
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! For dense aerial scenes (hundreds of small buildings) set `show_labels: false`: even with
//! overlapping tags left out, the remaining ones hide much of the picture.
pub mod draw;
pub mod font;
pub mod grid;
pub mod palette;
pub mod plot;
pub mod report;

pub use draw::{auto_font_scale, draw_instances, tag_text, DrawInstance, DrawMode, DrawOptions, MaskRef};
pub use grid::{image_grid, results_grid};
pub use palette::{class_color, contrasting_text_color};
pub use plot::{
    epoch_metrics_plot, format_number, format_sci, loss_curves, loss_curves_from_metrics_jsonl, loss_series,
    lr_finder_plot, parse_metrics_jsonl, plot_curves, plot_curves_with, read_metrics_jsonl, series_color, Marker,
    MetricsLog, PlotOptions, Series,
};
pub use report::{encode_png, escape_html, format_value, html_report, png_data_uri, save_png};
