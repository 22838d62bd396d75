//! Validation AP while training: the model as it stands is copied to an inference device, run
//! on the validation images exactly as `maskrcnn predict` runs, and scored with the same COCO
//! evaluation as `maskrcnn evaluate` (masks thresholded at 0.5, 100 detections per image).

use anyhow::Result;
use burn::tensor::Device;
use maskrcnn_eval::{
    evaluate, CocoAnnotation, CocoCategory, CocoGroundTruth, CocoImage, DetectionResult, EvalParams, IouType,
};
use maskrcnn_masks::{Rle, Segmentation};

use super::forward::TrainTarget;
use crate::model::MaskRcnn;
use crate::transform::ImageChw;
use crate::weights::state_dict::StateDict;

/// COCO numbers of one validation pass (`-1` where COCO leaves them undefined).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValidationAp {
    pub mask_ap: f64,
    pub mask_ap50: f64,
    pub mask_ap75: f64,
    pub box_ap: f64,
    pub box_ap50: f64,
}

/// Collects ground truth and detections image by image, so the validation split never has to
/// be held in memory at once.
pub struct ValidationScorer {
    inference: MaskRcnn,
    ground_truth: CocoGroundTruth,
    results: Vec<DetectionResult>,
}

impl ValidationScorer {
    /// Snapshots `model`'s current weights (including batch-norm running statistics) into an
    /// inference copy on the device the model trains on, without autodiff.
    pub fn new(model: &mut MaskRcnn) -> Result<Self> {
        let device: Device = model.device.clone().inner();
        let weights = StateDict::from_module(&mut model.net, "");
        let mut inference = MaskRcnn::new(model.config.clone(), &device)?;
        weights.load_into(&mut inference.net, "", &device)?;
        let categories = (1..model.config.num_classes)
            .map(|label| CocoCategory {
                id: label as i64,
                name: model.config.class_names.get(label).cloned().unwrap_or_else(|| label.to_string()),
            })
            .collect();
        Ok(Self {
            inference,
            ground_truth: CocoGroundTruth { images: Vec::new(), categories, annotations: Vec::new() },
            results: Vec::new(),
        })
    }

    /// Predicts `images` and records them with their ground truth (crowd regions were already
    /// dropped from training targets, so they count as background here).
    pub fn add(&mut self, images: &[ImageChw], targets: &[TrainTarget]) {
        for (image, target) in images.iter().zip(targets) {
            let image_id = self.ground_truth.images.len() as i64 + 1;
            let (h, w) = (image.height, image.width);
            self.ground_truth.images.push(CocoImage { id: image_id, width: w, height: h, file_name: String::new() });
            for ((mask, bbox), &label) in target.masks.iter().zip(&target.boxes).zip(&target.labels) {
                let rle = Rle::from_mask(mask, h, w);
                let id = self.ground_truth.annotations.len() as i64 + 1;
                self.ground_truth.annotations.push(CocoAnnotation {
                    id,
                    image_id,
                    category_id: label as i64,
                    area: Some(rle.area() as f64),
                    segmentation: Some(Segmentation::from_rle(&rle)),
                    bbox: Some([
                        bbox[0] as f64,
                        bbox[1] as f64,
                        (bbox[2] - bbox[0]) as f64,
                        (bbox[3] - bbox[1]) as f64,
                    ]),
                    iscrowd: false,
                    ignore: false,
                });
            }
            let detections = self.inference.predict(std::slice::from_ref(image)).pop().unwrap_or_default();
            for d in &detections {
                let b = d.bbox;
                self.results.push(DetectionResult {
                    image_id,
                    category_id: d.label as i64,
                    bbox: Some([b[0] as f64, b[1] as f64, (b[2] - b[0]) as f64, (b[3] - b[1]) as f64]),
                    score: d.score as f64,
                    segmentation: Some(Segmentation::from_rle(&d.to_rle(h, w))),
                });
            }
        }
    }

    /// Mask and box AP over everything added; `None` when the images hold no object at all.
    pub fn finish(self) -> Result<Option<ValidationAp>> {
        if self.ground_truth.annotations.is_empty() {
            return Ok(None);
        }
        let segm = evaluate(&self.ground_truth, &self.results, &EvalParams::new(IouType::Segm))?;
        let bbox = evaluate(&self.ground_truth, &self.results, &EvalParams::new(IouType::Bbox))?;
        Ok(Some(ValidationAp {
            mask_ap: segm.stat("AP"),
            mask_ap50: segm.stat("AP50"),
            mask_ap75: segm.stat("AP75"),
            box_ap: bbox.stat("AP"),
            box_ap50: bbox.stat("AP50"),
        }))
    }
}
