//! Ready-made figures: the learning-rate finder, and training curves read from `metrics.jsonl`.

use anyhow::{bail, Context, Result};
use image::RgbImage;
use serde_json::{Map, Value};
use std::path::Path;

use super::axis::format_sci;
use super::chart::{plot_curves, plot_curves_with, Marker, PlotOptions, Series};

/// Learning-rate finder plot: loss against lr on a log x axis, with the suggested lr marked.
/// The y axis stops a little above the highest loss reached before the minimum, so the usual
/// blow-up at the end of the sweep does not flatten the part that matters.
pub fn lr_finder_plot(lr_loss: &[(f64, f64)], suggested_lr: Option<f64>, width: u32, height: u32) -> RgbImage {
    let mut opts = PlotOptions::new("Learning rate finder", "learning rate", "loss", width, height);
    opts.log_x = true;
    let finite: Vec<(f64, f64)> =
        lr_loss.iter().copied().filter(|(lr, loss)| *lr > 0.0 && lr.is_finite() && loss.is_finite()).collect();
    if let Some(min_index) = (0..finite.len()).min_by(|&a, &b| finite[a].1.total_cmp(&finite[b].1)) {
        let min_loss = finite[min_index].1;
        let head_max = finite[..=min_index].iter().map(|p| p.1).fold(f64::MIN, f64::max);
        if head_max > min_loss {
            let span = head_max - min_loss;
            opts.y_range = Some((min_loss - 0.05 * span, head_max + 0.1 * span));
        }
    }
    if let Some(lr) = suggested_lr.filter(|lr| *lr > 0.0 && lr.is_finite()) {
        opts.markers.push(Marker { x: lr, label: format!("suggested lr {}", format_sci(lr)) });
    }
    plot_curves_with(&[Series::new("loss", lr_loss.to_vec())], &opts)
}

/// The records of a training run's `metrics.jsonl`: per-step lines and `"kind":"epoch"` lines.
#[derive(Clone, Debug, Default)]
pub struct MetricsLog {
    /// Per-step records, in file order.
    pub steps: Vec<Map<String, Value>>,
    /// `"kind":"epoch"` records (validation results), in file order.
    pub epochs: Vec<Map<String, Value>>,
}

/// Read `metrics.jsonl`; blank lines are skipped, anything else that is not a JSON object is an
/// error naming the file and line.
pub fn read_metrics_jsonl(path: impl AsRef<Path>) -> Result<MetricsLog> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read metrics file {}", path.display()))?;
    parse_metrics_jsonl(&text).with_context(|| format!("in metrics file {}", path.display()))
}

/// [`read_metrics_jsonl`] on text already in memory; errors name the line.
pub fn parse_metrics_jsonl(text: &str) -> Result<MetricsLog> {
    let mut log = MetricsLog::default();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(line).with_context(|| format!("line {} is not valid JSON", index + 1))?;
        let Value::Object(record) = value else {
            bail!("line {} is not a JSON object", index + 1);
        };
        if record.get("kind").and_then(Value::as_str) == Some("epoch") {
            log.epochs.push(record);
        } else {
            log.steps.push(record);
        }
    }
    Ok(log)
}

fn number(record: &Map<String, Value>, key: &str) -> Option<f64> {
    record.get(key).and_then(Value::as_f64)
}

/// One series per `loss*` key of the step lines (total `loss` first), over `step` (or the line
/// order when a line has no step), plus one per key containing "loss" in the epoch lines (e.g.
/// `val_loss`), placed at the epoch's `step`, or else at the last training step of that epoch.
pub fn loss_series(log: &MetricsLog) -> Vec<Series> {
    let mut keys: Vec<String> = Vec::new();
    for record in &log.steps {
        for (key, value) in record {
            if key.starts_with("loss") && value.is_number() && !keys.contains(key) {
                keys.push(key.clone());
            }
        }
    }
    keys.sort_by_key(|k| (k != "loss", k.clone()));
    let step_of = |index: usize, record: &Map<String, Value>| number(record, "step").unwrap_or(index as f64);
    let mut series: Vec<Series> = keys
        .iter()
        .map(|key| {
            let points =
                log.steps.iter().enumerate().filter_map(|(i, r)| Some((step_of(i, r), number(r, key)?))).collect();
            Series::new(key.clone(), points)
        })
        .collect();

    let mut epoch_keys: Vec<String> = Vec::new();
    for record in &log.epochs {
        for (key, value) in record {
            if key.contains("loss") && value.is_number() && !epoch_keys.contains(key) {
                epoch_keys.push(key.clone());
            }
        }
    }
    epoch_keys.sort();
    for key in epoch_keys {
        let points = log
            .epochs
            .iter()
            .filter_map(|r| {
                let value = number(r, &key)?;
                let step = number(r, "step").or_else(|| {
                    let epoch = number(r, "epoch")?;
                    log.steps
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| number(s, "epoch").is_some_and(|e| e <= epoch))
                        .map(|(i, s)| step_of(i, s))
                        .reduce(f64::max)
                })?;
                Some((step, value))
            })
            .collect();
        series.push(Series::new(key, points));
    }
    series
}

/// Training loss curves from a run's `metrics.jsonl`: every `loss*` term over steps, plus
/// validation losses from the epoch lines. The y axis is logarithmic when the terms span more
/// than a factor of 50 (small terms like `loss_rpn_box_reg` would otherwise lie flat on the axis).
pub fn loss_curves_from_metrics_jsonl(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    let log = read_metrics_jsonl(path)?;
    loss_curves(&log, 960, 540).with_context(|| format!("in metrics file {}", path.display()))
}

/// [`loss_curves_from_metrics_jsonl`] at any size, for a log already read; an error when the
/// log holds no loss values.
pub fn loss_curves(log: &MetricsLog, width: u32, height: u32) -> Result<RgbImage> {
    let series = loss_series(log);
    if series.iter().all(|s| s.points.is_empty()) {
        bail!("no numeric \"loss*\" values found ({} step lines, {} epoch lines)", log.steps.len(), log.epochs.len());
    }
    let values: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|v| v.is_finite()).collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut opts = PlotOptions::new("Training losses", "step", "loss", width, height);
    opts.log_y = min > 0.0 && max / min > 50.0;
    if opts.log_y {
        opts.y_label = "loss (log scale)".into();
    }
    Ok(plot_curves_with(&series, &opts))
}

/// Validation metrics from the epoch lines (every numeric key except step/epoch/lr/time and
/// losses, e.g. `segm_AP`, `bbox_AP`) over epochs; `None` when there are none.
pub fn epoch_metrics_plot(log: &MetricsLog, width: u32, height: u32) -> Option<RgbImage> {
    let skip = |key: &str| {
        matches!(key, "step" | "epoch" | "lr" | "time" | "elapsed" | "kind")
            || key.contains("loss")
            || key.ends_with("_s")
    };
    let mut keys: Vec<String> = Vec::new();
    for record in &log.epochs {
        for (key, value) in record {
            if !skip(key) && value.is_number() && !keys.contains(key) {
                keys.push(key.clone());
            }
        }
    }
    if keys.is_empty() {
        return None;
    }
    keys.sort();
    let series: Vec<Series> = keys
        .iter()
        .map(|key| {
            Series::new(
                key.clone(),
                log.epochs
                    .iter()
                    .enumerate()
                    .filter_map(|(i, r)| Some((number(r, "epoch").unwrap_or(i as f64), number(r, key)?)))
                    .collect(),
            )
        })
        .collect();
    Some(plot_curves(&series, "Validation metrics", "epoch", "value", width, height))
}

#[cfg(test)]
mod tests {
    use super::super::chart::tests::color_count;
    use super::super::chart::{series_color, MARKER};
    use super::*;

    #[test]
    fn lr_finder_marks_the_suggestion_and_clips_the_blow_up() {
        let points: Vec<(f64, f64)> = (0..100)
            .map(|i| {
                let lr = 1e-6 * 10f64.powf(i as f64 * 6.0 / 99.0);
                let loss = if i < 70 { 2.0 - i as f64 * 0.02 } else { 0.6 + (i - 70) as f64 * 2.0 };
                (lr, loss)
            })
            .collect();
        let image = lr_finder_plot(&points, Some(1e-3), 640, 400);
        assert!(color_count(&image, MARKER) > 100, "marker line and label drawn");
        let without = lr_finder_plot(&points, None, 640, 400);
        assert_eq!(color_count(&without, MARKER), 0);
    }

    const JSONL: &str = r#"{"step": 0, "epoch": 0, "lr": 0.001, "loss": 3.0, "loss_classifier": 1.0, "loss_box_reg": 0.5, "loss_mask": 0.7, "loss_objectness": 0.6, "loss_rpn_box_reg": 0.2}
{"step": 10, "epoch": 0, "lr": 0.002, "loss": 2.0, "loss_classifier": 0.6, "loss_box_reg": 0.4, "loss_mask": 0.5, "loss_objectness": 0.3, "loss_rpn_box_reg": 0.2}

{"kind": "epoch", "epoch": 0, "val_loss": 2.2, "segm_AP": 0.12, "bbox_AP": 0.15}
{"step": 20, "epoch": 1, "lr": 0.001, "loss": 1.5, "loss_classifier": 0.4, "loss_box_reg": 0.3, "loss_mask": 0.4, "loss_objectness": 0.2, "loss_rpn_box_reg": 0.2}
{"kind": "epoch", "epoch": 1, "step": 25, "val_loss": 1.9, "segm_AP": 0.2, "bbox_AP": 0.22}
"#;

    #[test]
    fn metrics_jsonl_gives_one_series_per_loss_term() {
        let log = parse_metrics_jsonl(JSONL).unwrap();
        assert_eq!((log.steps.len(), log.epochs.len()), (3, 2));
        let series = loss_series(&log);
        let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["loss", "loss_box_reg", "loss_classifier", "loss_mask", "loss_objectness", "loss_rpn_box_reg", "val_loss"]
        );
        assert_eq!(series[0].points, vec![(0.0, 3.0), (10.0, 2.0), (20.0, 1.5)]);
        // Epoch 0 has no step: it goes at the last step of epoch 0; epoch 1 has its own step.
        assert_eq!(series[6].points, vec![(10.0, 2.2), (25.0, 1.9)]);
        let image = loss_curves(&log, 640, 400).unwrap();
        for index in 0..series.len() {
            assert!(color_count(&image, series_color(index)) > 20, "series {index} drawn");
        }
        let metrics = epoch_metrics_plot(&log, 400, 300).unwrap();
        assert!(color_count(&metrics, series_color(1)) > 20);
    }

    #[test]
    fn metrics_errors_name_the_file_and_line() {
        let err = parse_metrics_jsonl("{\"step\": 1, \"loss\": 1}\n{oops\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
        let err = parse_metrics_jsonl("[1,2]").unwrap_err();
        assert!(format!("{err:#}").contains("not a JSON object"));
        let err = loss_curves(&parse_metrics_jsonl("{\"step\": 1, \"acc\": 1}").unwrap(), 300, 200).unwrap_err();
        assert!(err.to_string().contains("no numeric"), "{err}");
        let err = loss_curves_from_metrics_jsonl("/nonexistent/metrics.jsonl").unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/metrics.jsonl"));
    }
}
