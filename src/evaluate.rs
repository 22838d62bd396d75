//! Scoring models against COCO ground truth, and pictures of ground truth beside predictions.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use maskrcnn_eval::{CocoGroundTruth, DetectionResult};
use maskrcnn_masks::Segmentation;
use maskrcnn_viz::{class_color, draw_instances, results_grid, DrawInstance, DrawMode, DrawOptions, MaskRef};

use crate::model::{Detection, MaskRcnn};
use crate::predict::{to_coco_results, CocoResult};
use crate::transform::ImageChw;

/// COCO ground truth to score against: the annotation file, the folder its `file_name`s are
/// relative to, and the annotations as the evaluator reads them.
pub struct GroundTruthSet {
    pub annotations: PathBuf,
    pub images: PathBuf,
    pub ground_truth: CocoGroundTruth,
}

impl GroundTruthSet {
    /// `data` is a COCO JSON file, or a folder holding `instances.json` (or `annotations.json`) and
    /// `images/`. Without `images`, images are looked up in `images/` beside the JSON, then beside it.
    pub fn open(data: &Path, images: Option<&Path>) -> Result<Self> {
        let annotations =
            if data.is_dir() {
                ["instances.json", "annotations.json"].iter().map(|n| data.join(n)).find(|p| p.is_file()).with_context(
                    || format!("{}: no instances.json or annotations.json in the folder", data.display()),
                )?
            } else {
                data.to_path_buf()
            };
        let ground_truth =
            maskrcnn_eval::load_ground_truth(&annotations).with_context(|| format!("{}", annotations.display()))?;
        let images = images.map_or_else(|| maskrcnn_data::coco::default_image_dir(&annotations), Path::to_path_buf);
        Ok(Self { annotations, images, ground_truth })
    }

    pub fn image_path(&self, file_name: &str) -> PathBuf {
        self.images.join(file_name)
    }
}

/// One predicted image, handed to the caller of [`predict_dataset`] as it is done.
pub struct PredictedImage<'a> {
    pub done: usize,
    pub total: usize,
    pub path: &'a Path,
    pub image: &'a ImageChw,
    pub detections: &'a [Detection],
}

/// Runs the model on every image of the dataset, in COCO results form; `on_image` sees each image
/// and its detections (for progress or pictures) without predicting again. The first image that
/// cannot be read ends the run; [`predict_dataset_skipping`] goes on without it instead.
pub fn predict_dataset(
    model: &MaskRcnn,
    dataset: &GroundTruthSet,
    on_image: impl FnMut(PredictedImage<'_>) -> Result<()>,
) -> Result<Vec<CocoResult>> {
    Ok(predict_images(model, dataset, None, on_image)?.results)
}

/// An image of a batch that could not be read (missing, truncated, corrupt, or with bands the
/// model cannot take), and why.
#[derive(Debug, Clone)]
pub struct SkippedImage {
    pub path: PathBuf,
    /// The dataset's image id (0 outside a dataset).
    pub image_id: i64,
    pub reason: String,
}

impl SkippedImage {
    /// `warning: <file>: <reason>; skipped`, the line a batch command prints for it.
    pub fn warning(&self) -> String {
        format!("warning: {}: {}; skipped", self.path.display(), self.reason)
    }
}

/// An image-reading failure as a [`SkippedImage`]: the reason without the path the error already
/// starts with.
pub fn skipped_image(path: &Path, image_id: i64, error: &anyhow::Error) -> SkippedImage {
    let message = format!("{error:#}");
    let prefix = format!("{}: ", path.display());
    let reason = message.strip_prefix(&prefix).unwrap_or(&message).to_string();
    SkippedImage { path: path.to_path_buf(), image_id, reason }
}

/// The results of [`predict_dataset_skipping`]: those of the readable images, and the others.
pub struct DatasetPredictions {
    pub results: Vec<CocoResult>,
    pub skipped: Vec<SkippedImage>,
}

/// [`predict_dataset`], but an image that cannot be read is handed to `on_skip` and left out
/// instead of ending the run. An image whose size differs from its annotation still ends it: that
/// is a dataset that does not match its images, not one bad file.
pub fn predict_dataset_skipping(
    model: &MaskRcnn,
    dataset: &GroundTruthSet,
    mut on_skip: impl FnMut(&SkippedImage),
    on_image: impl FnMut(PredictedImage<'_>) -> Result<()>,
) -> Result<DatasetPredictions> {
    predict_images(model, dataset, Some(&mut on_skip), on_image)
}

fn predict_images(
    model: &MaskRcnn,
    dataset: &GroundTruthSet,
    mut on_skip: Option<&mut dyn FnMut(&SkippedImage)>,
    mut on_image: impl FnMut(PredictedImage<'_>) -> Result<()>,
) -> Result<DatasetPredictions> {
    let images = &dataset.ground_truth.images;
    let mut results = Vec::new();
    let mut skipped = Vec::new();
    for (i, info) in images.iter().enumerate() {
        let path = dataset.image_path(&info.file_name);
        let image = match (crate::predict::load_checked_input(&path, &model.config), on_skip.as_mut()) {
            (Ok(image), _) => image,
            (Err(e), Some(on_skip)) => {
                let skip = skipped_image(&path, info.id, &e);
                on_skip(&skip);
                skipped.push(skip);
                continue;
            }
            (Err(e), None) => return Err(e),
        };
        if (image.height, image.width) != (info.height, info.width) {
            bail!(
                "{}: image is {}x{} but the annotations say {}x{}",
                path.display(),
                image.width,
                image.height,
                info.width,
                info.height
            );
        }
        let dets = model.predict(std::slice::from_ref(&image)).pop().unwrap_or_default();
        results.extend(to_coco_results(model, info.id as u64, &info.file_name, (image.height, image.width), &dets));
        on_image(PredictedImage { done: i + 1, total: images.len(), path: &path, image: &image, detections: &dets })?;
    }
    Ok(DatasetPredictions { results, skipped })
}

/// Leaves `skipped` images, and their annotations, out of the ground truth, so that scores are
/// those of the images the model saw rather than counting unreadable ones as misses.
pub fn drop_images(ground_truth: &mut CocoGroundTruth, skipped: &[SkippedImage]) {
    let ids: std::collections::HashSet<i64> = skipped.iter().map(|s| s.image_id).collect();
    ground_truth.images.retain(|i| !ids.contains(&i.id));
    ground_truth.annotations.retain(|a| !ids.contains(&a.image_id));
}

/// Our results in the evaluator's form (same JSON fields).
pub fn as_detection_results(results: &[CocoResult]) -> Result<Vec<DetectionResult>> {
    let json = serde_json::to_string(results)?;
    Ok(serde_json::from_str(&json)?)
}

const CELL: (u32, u32) = (480, 360);

/// Ground truth and predictions side by side for the first `rows` images.
pub fn show_results(
    model: &MaskRcnn,
    dataset: &GroundTruthSet,
    rows: usize,
    mode: DrawMode,
    score_threshold: f32,
) -> Result<image::RgbImage> {
    let gt = &dataset.ground_truth;
    let mut pairs = Vec::new();
    let mut titles = Vec::new();
    for info in gt.images.iter().take(rows) {
        let path = dataset.image_path(&info.file_name);
        let image = crate::predict::load_checked_input(&path, &model.config)?;
        let mut dets = model.predict(std::slice::from_ref(&image)).pop().unwrap_or_default();
        dets.retain(|d| d.score >= score_threshold);
        // Small chips are enlarged by whole factors (nearest) so they fill the grid cell.
        let factor = (CELL.1 / image.height.max(1) as u32).clamp(1, 4);
        let enlarge = |img: image::RgbImage| {
            image::imageops::resize(
                &img,
                img.width() * factor,
                img.height() * factor,
                image::imageops::FilterType::Nearest,
            )
        };
        pairs.push((
            enlarge(draw_ground_truth(&image, gt, info.id, mode)?),
            enlarge(draw_predictions(&image, &dets, model, mode)),
        ));
        titles.push(info.file_name.clone());
    }
    if pairs.is_empty() {
        bail!("{}: the dataset has no images", dataset.annotations.display());
    }
    Ok(results_grid(&pairs, &titles, CELL))
}

fn draw_ground_truth(image: &ImageChw, gt: &CocoGroundTruth, image_id: i64, mode: DrawMode) -> Result<image::RgbImage> {
    let (h, w) = (image.height, image.width);
    let anns: Vec<_> = gt.annotations.iter().filter(|a| a.image_id == image_id).collect();
    let masks: Vec<Option<Vec<u8>>> = anns
        .iter()
        .map(|a| a.segmentation.as_ref().map(|s: &Segmentation| s.to_rle(h, w).map(|r| r.to_mask())).transpose())
        .collect::<std::result::Result<_, _>>()
        .context("decoding a ground-truth mask")?;
    let name_of =
        |id: i64| gt.categories.iter().find(|c| c.id == id).map(|c| c.name.clone()).unwrap_or_else(|| id.to_string());
    let instances: Vec<DrawInstance> = anns
        .iter()
        .zip(&masks)
        .map(|(a, m)| {
            let b = a.bbox.unwrap_or([0.0; 4]);
            DrawInstance {
                bbox: [b[0] as f32, b[1] as f32, (b[0] + b[2]) as f32, (b[1] + b[3]) as f32],
                mask: m.as_ref().map(|m| MaskRef::new(m, w as u32, h as u32).expect("mask sized to the image")),
                label: name_of(a.category_id),
                score: None,
                color: class_color(a.category_id as usize),
            }
        })
        .collect();
    Ok(draw_instances(&crate::overlay::to_rgb(image), &instances, &DrawOptions { mode, ..DrawOptions::default() }))
}

fn draw_predictions(image: &ImageChw, dets: &[Detection], model: &MaskRcnn, mode: DrawMode) -> image::RgbImage {
    crate::overlay::draw_detections_with(image, dets, &model.config, mode, |label| {
        class_color(model.config.category_id(label) as usize)
    })
}
