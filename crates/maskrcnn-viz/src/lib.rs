//! Pure-Rust rendering of Mask R-CNN results: instance overlays, ground truth / prediction grids,
//! training curves and an offline HTML report. No system fonts or native libraries are needed.
pub mod draw;
pub mod font;
pub mod grid;
pub mod palette;
pub mod plot;

pub use draw::{auto_font_scale, draw_instances, tag_text, DrawInstance, DrawMode, DrawOptions, MaskRef};
pub use grid::{image_grid, results_grid};
pub use palette::{class_color, contrasting_text_color};
pub use plot::{
    epoch_metrics_plot, loss_curves, loss_curves_from_metrics_jsonl, loss_series, lr_finder_plot, parse_metrics_jsonl, plot_curves, plot_curves_with,
    read_metrics_jsonl, Marker, MetricsLog, PlotOptions, Series,
};
pub mod report;
pub use report::{encode_png, escape_html, html_report, png_data_uri, save_png};
