use serde::{Deserialize, Serialize};

use crate::error::MaskError;
use crate::rle::Rle;

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
    pub fn to_rle(&self, height: usize, width: usize) -> Result<Rle, MaskError> {
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
