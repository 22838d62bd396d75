//! Line charts for training curves and the learning-rate finder, plus reading `metrics.jsonl`.

mod axis;
mod chart;
mod figures;

pub use axis::{format_number, format_sci};
pub use chart::{plot_curves, plot_curves_with, series_color, Marker, PlotOptions, Series};
pub use figures::{
    epoch_metrics_plot, loss_curves, loss_curves_from_metrics_jsonl, loss_series, lr_finder_plot, parse_metrics_jsonl,
    read_metrics_jsonl, MetricsLog,
};
