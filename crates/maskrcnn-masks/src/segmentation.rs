use serde::{Deserialize, Serialize};

use crate::error::MaskError;
use crate::rle::Rle;

/// Largest polygon coordinate magnitude accepted: five times it (the rasteriser's upsampling)
/// must fit the C code's 32-bit `int`.
pub const MAX_POLYGON_COORDINATE: f64 = 4.0e8;

/// The COCO JSON `segmentation` field: a list of polygons, an uncompressed RLE
/// (`{"size":[h,w],"counts":[...]}`, used for crowd regions) or a compressed RLE
/// (`{"size":[h,w],"counts":"..."}`, what detectors write).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Segmentation {
    Polygons(Vec<Vec<f64>>),
    CompressedRle { size: [usize; 2], counts: String },
    UncompressedRle { size: [usize; 2], counts: Vec<u32> },
}

impl Segmentation {
    /// The compressed form of a mask, as detectors put it in results files.
    pub fn from_rle(rle: &Rle) -> Segmentation {
        Segmentation::CompressedRle { size: [rle.height, rle.width], counts: rle.to_coco_string() }
    }

    /// Converts to an RLE like `COCO.annToRLE`: polygons are rasterised at the image size
    /// given; RLE forms must already have that size (pycocotools would silently give
    /// IoU -1 for a mismatch, which hides a broken file, so it is an error here).
    ///
    /// As in pycocotools, a polygon list whose first polygon has fewer than 6 numbers is
    /// rejected (`frPyObjects` misreads a 4-number first polygon as a box and fails), while
    /// later short polygons are rasterised as the C code does.
    ///
    /// Sizes whose pixel count does not fit RLE's 32-bit run lengths, and polygon coordinates
    /// beyond ±[`MAX_POLYGON_COORDINATE`] (where the C code's `int` cast is undefined), are
    /// errors.
    pub fn to_rle(&self, height: usize, width: usize) -> Result<Rle, MaskError> {
        if (height as u64).checked_mul(width as u64).is_none_or(|n| n > u32::MAX as u64) {
            return Err(MaskError::InvalidSegmentation(format!(
                "a {height}x{width} mask has more pixels than RLE's 32-bit run lengths can count"
            )));
        }
        match self {
            Segmentation::Polygons(polygons) => {
                match polygons.first() {
                    None => return Err(MaskError::InvalidSegmentation("empty polygon list".into())),
                    Some(first) if first.len() < 6 => {
                        return Err(MaskError::InvalidSegmentation(format!(
                            "first polygon has {} coordinates; a polygon needs at least 3 points (6 numbers)",
                            first.len()
                        )))
                    }
                    _ => {}
                }
                if let Some(bad) = polygons.iter().flatten().find(|v| !v.is_finite()) {
                    return Err(MaskError::InvalidSegmentation(format!("polygon coordinate {bad} is not finite")));
                }
                if let Some(bad) = polygons.iter().flatten().find(|v| v.abs() > MAX_POLYGON_COORDINATE) {
                    return Err(MaskError::InvalidSegmentation(format!(
                        "polygon coordinate {bad} is out of range (at most {MAX_POLYGON_COORDINATE:e} pixels)"
                    )));
                }
                Ok(Rle::from_polygons(polygons, height, width))
            }
            Segmentation::CompressedRle { size, counts } => {
                check_size(*size, height, width)?;
                Rle::from_coco_string(counts, size[0], size[1])
            }
            Segmentation::UncompressedRle { size, counts } => {
                check_size(*size, height, width)?;
                Rle::from_counts(counts.clone(), size[0], size[1])
            }
        }
    }
}

fn check_size(size: [usize; 2], height: usize, width: usize) -> Result<(), MaskError> {
    if size != [height, width] {
        return Err(MaskError::InvalidSegmentation(format!(
            "RLE size [{}, {}] differs from the image size [{height}, {width}]",
            size[0], size[1]
        )));
    }
    Ok(())
}
