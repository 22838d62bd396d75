//! Terminal tables and the combined JSON report.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::coco::{CocoGroundTruth, DetectionResult};
use crate::cocoeval::{evaluate, CocoMetrics, EvalParams, IouType, STAT_NAMES};
use crate::error::EvalError;

/// All requested evaluations; serialises as `{"bbox": {...}, "segm": {...}, "boundary": {...}}`
/// with COCO's stat names and `per_class` under each.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EvaluationReport {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bbox: Option<CocoMetrics>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub segm: Option<CocoMetrics>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub boundary: Option<CocoMetrics>,
}

impl EvaluationReport {
    /// The metrics of one IoU type, if it was evaluated.
    pub fn get(&self, iou_type: IouType) -> Option<&CocoMetrics> {
        match iou_type {
            IouType::Bbox => self.bbox.as_ref(),
            IouType::Segm => self.segm.as_ref(),
            IouType::Boundary => self.boundary.as_ref(),
        }
    }

    /// Pretty JSON; numbers are never NaN (undefined stats are -1, undefined per-class
    /// values null).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("metrics contain only finite numbers and strings")
    }
}

/// Evaluates several IoU types with the same `max_dets`.
pub fn evaluate_all(
    gt: &CocoGroundTruth,
    results: &[DetectionResult],
    iou_types: &[IouType],
    max_dets: [usize; 3],
) -> Result<EvaluationReport, EvalError> {
    let mut report = EvaluationReport::default();
    for &iou_type in iou_types {
        let metrics = evaluate(gt, results, &EvalParams::new(iou_type).with_max_dets(max_dets))?;
        match iou_type {
            IouType::Bbox => report.bbox = Some(metrics),
            IouType::Segm => report.segm = Some(metrics),
            IouType::Boundary => report.boundary = Some(metrics),
        }
    }
    Ok(report)
}

/// COCO's 12-line summary followed by a per-class table (classes without ground truth
/// are left out of the table).
pub fn format_table(metrics: &CocoMetrics) -> String {
    let mut out = String::new();
    let [m1, m10, m100] = {
        let mut m = metrics.max_dets;
        m.sort_unstable();
        m
    };
    let _ = writeln!(out, "{} evaluation (COCO)", metrics.iou_type.name());
    let rows: [(&str, &str, &str, &str, usize); 12] = [
        ("Average Precision", "(AP)", "0.50:0.95", "all", m100),
        ("Average Precision", "(AP)", "0.50", "all", m100),
        ("Average Precision", "(AP)", "0.75", "all", m100),
        ("Average Precision", "(AP)", "0.50:0.95", "small", m100),
        ("Average Precision", "(AP)", "0.50:0.95", "medium", m100),
        ("Average Precision", "(AP)", "0.50:0.95", "large", m100),
        ("Average Recall", "(AR)", "0.50:0.95", "all", m1),
        ("Average Recall", "(AR)", "0.50:0.95", "all", m10),
        ("Average Recall", "(AR)", "0.50:0.95", "all", m100),
        ("Average Recall", "(AR)", "0.50:0.95", "small", m100),
        ("Average Recall", "(AR)", "0.50:0.95", "medium", m100),
        ("Average Recall", "(AR)", "0.50:0.95", "large", m100),
    ];
    for (name, (title, kind, iou, area, max_det)) in STAT_NAMES.iter().zip(rows) {
        let _ = writeln!(
            out,
            " {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6} | maxDets={max_det:>3} ] = {:6.3}",
            metrics.stat(name)
        );
    }
    let classes: Vec<_> = metrics.per_class.iter().filter(|c| c.num_ground_truth > 0).collect();
    if !classes.is_empty() {
        let width = classes.iter().map(|c| c.name.len()).max().unwrap_or(5).max(5);
        let _ = writeln!(
            out,
            "\n {:<width$}  {:>6}  {:>6}  {:>6}  {:>6}  {:>6}",
            "class", "AP", "AP50", "AP75", "GT", "dets"
        );
        for class in classes {
            let show = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
            let _ = writeln!(
                out,
                " {:<width$}  {:>6}  {:>6}  {:>6}  {:>6}  {:>6}",
                class.name,
                show(class.ap),
                show(class.ap50),
                show(class.ap75),
                class.num_ground_truth,
                class.num_detections
            );
        }
    }
    out
}

/// [`format_table`] for every evaluation in the report.
pub fn format_report(report: &EvaluationReport) -> String {
    [&report.bbox, &report.segm, &report.boundary]
        .iter()
        .filter_map(|m| m.as_ref())
        .map(format_table)
        .collect::<Vec<_>>()
        .join("\n")
}
