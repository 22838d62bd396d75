use maskrcnn_masks::MaskError;
use thiserror::Error;

/// Why ground truth, results or parameters could not be evaluated; result errors give the
/// result's position in the results list.
#[derive(Debug, Error)]
pub enum EvalError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is not valid COCO JSON: {source}")]
    Json { path: String, source: serde_json::Error },
    #[error("invalid ground truth {path}: {reason}")]
    InvalidGroundTruth { path: String, reason: String },
    #[error("ground truth has no annotations, so there is nothing to evaluate against")]
    NoGroundTruthAnnotations,
    #[error("result #{index}: image_id {image_id} is not an image of the ground truth")]
    UnknownImage { index: usize, image_id: i64 },
    #[error("result #{index}: category_id {category_id} is not a category of the ground truth")]
    UnknownCategory { index: usize, category_id: i64 },
    #[error("result #{index}: {reason}")]
    InvalidResult { index: usize, reason: String },
    #[error("result #{index} segmentation: {source}")]
    ResultMask { index: usize, source: MaskError },
    #[error("ground-truth annotation {annotation_id} segmentation: {source}")]
    AnnotationMask { annotation_id: i64, source: MaskError },
    #[error("ground-truth annotation {annotation_id}: {reason}")]
    InvalidAnnotation { annotation_id: i64, reason: String },
    #[error("invalid evaluation parameters: {0}")]
    InvalidParams(String),
}
