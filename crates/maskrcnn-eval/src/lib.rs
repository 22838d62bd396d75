//! COCO-style evaluation of instance detections and masks.
//!
//! [`evaluate`] reproduces pycocotools' `COCOeval` for `bbox` and `segm` and
//! boundary_iou_api's `COCOeval` for `boundary` (checked number by number against
//! pycocotools 2.0.11 in `tests/`; see `tools/reference/eval/make_eval_fixtures.py`).
//! [`average_precision_score`] gives an arcgis.learn-style single-threshold AP.

mod arcgis_ap;
mod coco;
mod cocoeval;
mod error;
mod report;

pub use arcgis_ap::{average_precision_score, ArcgisApScores};
pub use coco::{
    load_ground_truth, load_results, CocoAnnotation, CocoCategory, CocoGroundTruth, CocoImage, DetectionResult,
};
pub use cocoeval::{evaluate, ClassMetrics, CocoMetrics, EvalParams, IouType, STAT_NAMES};
pub use error::EvalError;
pub use report::{evaluate_all, format_report, format_table, EvaluationReport};
