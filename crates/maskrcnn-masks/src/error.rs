use thiserror::Error;

/// Why a mask could not be decoded or combined.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MaskError {
    #[error("malformed compressed RLE string at byte {position}: {reason}")]
    MalformedRleString { position: usize, reason: String },
    #[error("RLE counts sum to {sum} pixels but the mask is {height}x{width} = {expected} pixels")]
    CountsDoNotCoverMask { sum: u64, height: usize, width: usize, expected: u64 },
    #[error("mask sizes differ: {first_height}x{first_width} vs {other_height}x{other_width}")]
    SizeMismatch { first_height: usize, first_width: usize, other_height: usize, other_width: usize },
    #[error("invalid segmentation: {0}")]
    InvalidSegmentation(String),
    #[error("mask buffer has {len} bytes but {height}x{width} needs {expected}")]
    BufferSize { len: usize, height: usize, width: usize, expected: usize },
}
