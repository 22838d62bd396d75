//! Finding, reading and writing whole models: torchvision checkpoints, our model folders and
//! arcgis.learn packages.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use burn::tensor::Device;

use super::arcgis;
use super::state_dict::StateDict;
use crate::config::MaskRcnnConfig;
use crate::model::MaskRcnn;

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

pub struct LoadedModel {
    pub model: MaskRcnn,
    /// The weights file actually read.
    pub weights_path: PathBuf,
}

/// Sub-folders of a training run that hold model folders, in the order `load_model` prefers them.
pub const RUN_FINAL_MODEL: &str = "model";
pub const RUN_BEST_MODEL: &str = "best";

/// Loads a model from a torchvision `.pth`/`.pt`/`.safetensors` state dict (architecture inferred
/// from tensor shapes, or taken from a `config.json` beside it), one of our model folders, an
/// arcgis.learn `.emd`, a `.dlpk` package, or a training run folder (its `model/`, else `best/`).
pub fn load_model(path: &Path, device: &Device) -> Result<LoadedModel> {
    if !path.exists() {
        bail!("{}: no such file or folder", path.display());
    }
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if path.is_dir() {
        if path.join(CONFIG_FILE).is_file() && path.join(WEIGHTS_FILE).is_file() {
            let config = read_config(&path.join(CONFIG_FILE))?;
            return load_with_config(&path.join(WEIGHTS_FILE), Some(config), device);
        }
        if let Some(emd) = arcgis::find_emd(path)? {
            return load_emd(&emd, device);
        }
        // A training run folder: its final model, else the best one so far (a run still going or
        // stopped early has only `best/`). `weights_path` tells the caller which was read.
        for sub in [RUN_FINAL_MODEL, RUN_BEST_MODEL] {
            let folder = path.join(sub);
            if folder.join(CONFIG_FILE).is_file() && folder.join(WEIGHTS_FILE).is_file() {
                return load_model(&folder, device);
            }
        }
        bail!(
            "{}: a model folder needs {CONFIG_FILE} + {WEIGHTS_FILE}, or an arcgis.learn .emd (or, for a training run \
             folder, {RUN_FINAL_MODEL}/ or {RUN_BEST_MODEL}/)",
            path.display()
        );
    }
    match ext.as_str() {
        "emd" => load_emd(path, device),
        "dlpk" => {
            let dir = arcgis::extract_dlpk(path)?;
            let emd = arcgis::find_emd(dir.path())?
                .ok_or_else(|| anyhow!("{}: the package holds no .emd file", path.display()))?;
            // The extracted files live in a temporary folder: name the package the user gave.
            load_emd(&emd, device).with_context(|| format!("in package {}", path.display()))
        }
        "pth" | "pt" | "bin" | "safetensors" => {
            let sibling = path.with_file_name(CONFIG_FILE);
            let config = if sibling.is_file() { Some(read_config(&sibling)?) } else { None };
            load_with_config(path, config, device)
        }
        _ => bail!(
            "{}: unknown model format (expected .pth, .pt, .safetensors, .emd, .dlpk or a model folder)",
            path.display()
        ),
    }
}

fn load_emd(emd: &Path, device: &Device) -> Result<LoadedModel> {
    let package = arcgis::read_emd(emd)?;
    let sd = StateDict::read(&package.model_file)
        .with_context(|| format!("loading the weights named by {}", emd.display()))?;
    let mut config = infer_config(&sd).with_context(|| format!("{}", package.model_file.display()))?;
    package.apply_to(&mut config)?;
    build(config, &sd, &package.model_file, device)
}

fn load_with_config(weights: &Path, config: Option<MaskRcnnConfig>, device: &Device) -> Result<LoadedModel> {
    let sd = StateDict::read(weights)?;
    let config = match config {
        Some(c) => c,
        None => infer_config(&sd).with_context(|| format!("{}", weights.display()))?,
    };
    build(config, &sd, weights, device)
}

fn build(config: MaskRcnnConfig, sd: &StateDict, weights: &Path, device: &Device) -> Result<LoadedModel> {
    crate::model::validate_config(&config)
        .with_context(|| format!("{}: invalid model configuration", weights.display()))?;
    // Before allocating the model: its size follows the configuration, which must match the file.
    check_config_matches(sd, &config)
        .with_context(|| format!("{}: not a compatible Mask R-CNN checkpoint", weights.display()))?;
    // load_into requires every tensor of the model from the checkpoint, so initial values are never seen.
    let mut model = crate::layers::without_random_init(|| MaskRcnn::new(config, device))
        .with_context(|| format!("{}: invalid model configuration", weights.display()))?;
    sd.load_into(&mut model.net, "", device)
        .with_context(|| format!("{}: not a compatible Mask R-CNN checkpoint", weights.display()))?;
    Ok(LoadedModel { model, weights_path: weights.to_path_buf() })
}

pub fn read_config(path: &Path) -> Result<MaskRcnnConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: invalid model configuration", path.display()))
}

/// Writes a model folder: `config.json` and `model.safetensors` with torchvision key names.
pub fn save_model_dir(model: &mut MaskRcnn, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let sd = StateDict::from_module(&mut model.net, "");
    sd.write_safetensors(&dir.join(WEIGHTS_FILE))?;
    let json = serde_json::to_string_pretty(&model.config)?;
    crate::io_util::write_atomic(&dir.join(CONFIG_FILE), json.as_bytes())
}

/// The shape of tensor `key`, which must exist, be `rank`-d and have no empty dimension.
fn shape_of<'a>(sd: &'a StateDict, key: &str, rank: usize) -> Result<&'a [usize]> {
    let shape =
        sd.shape(key).ok_or_else(|| anyhow!("checkpoint is missing `{key}`; is it a torchvision Mask R-CNN?"))?;
    if shape.len() != rank {
        bail!("tensor {key} has shape {shape:?}, expected a {rank}-d tensor");
    }
    if shape.contains(&0) {
        bail!("tensor {key} has shape {shape:?}, with an empty dimension");
    }
    Ok(shape)
}

/// Checks that tensor `key` exists with exactly the shape `expected`.
fn expect_shape(sd: &StateDict, key: &str, expected: &[usize]) -> Result<()> {
    let shape = shape_of(sd, key, expected.len())?;
    if shape != expected {
        bail!("tensor {key} has shape {shape:?}, expected {expected:?}");
    }
    Ok(())
}

/// Checks, before any model is built, that the tensors whose sizes follow from `config`'s widths
/// (input bands, classes, FPN channels, head widths) hold exactly those shapes. Building the model
/// allocates every tensor the configuration implies, so without this a checkpoint (or a
/// `config.json`) with one inflated dimension could ask for far more memory than the file holds.
pub fn check_config_matches(sd: &StateDict, config: &MaskRcnnConfig) -> Result<()> {
    crate::model::validate_config(config)?;
    let b = &config.backbone;
    let c = b.fpn_out_channels;
    let k = config.num_classes;
    let rh = &config.roi_heads;
    let (_, bottleneck) = crate::backbone::resnet::resnet_layout(b.depth)
        .ok_or_else(|| anyhow!("unsupported ResNet depth {}", b.depth))?;
    let expansion = if bottleneck { 4 } else { 1 };
    expect_shape(sd, "backbone.body.conv1.weight", &[64, b.in_channels, 7, 7])?;
    for (i, &layer) in b.returned_layers.iter().enumerate() {
        let cin = (64usize << (layer - 1)) * expansion;
        expect_shape(sd, &format!("backbone.fpn.inner_blocks.{i}.0.weight"), &[c, cin, 1, 1])?;
        expect_shape(sd, &format!("backbone.fpn.layer_blocks.{i}.0.weight"), &[c, c, 3, 3])?;
    }
    let anchors = config.rpn.aspect_ratios.len().saturating_mul(config.rpn.anchor_sizes.first().map_or(0, Vec::len));
    expect_shape(sd, "rpn.head.conv.0.0.weight", &[c, c, 3, 3])?;
    expect_shape(sd, "rpn.head.cls_logits.weight", &[anchors, c, 1, 1])?;
    expect_shape(sd, "rpn.head.bbox_pred.weight", &[anchors.saturating_mul(4), c, 1, 1])?;
    let r = rh.representation_size;
    let side = rh.box_roi_output_size;
    expect_shape(sd, "roi_heads.box_head.fc6.weight", &[r, c.saturating_mul(side).saturating_mul(side)])?;
    expect_shape(sd, "roi_heads.box_head.fc7.weight", &[r, r])?;
    expect_shape(sd, "roi_heads.box_predictor.cls_score.weight", &[k, r])?;
    expect_shape(sd, "roi_heads.box_predictor.bbox_pred.weight", &[k.saturating_mul(4), r])?;
    if config.is_pointrend() {
        use crate::roi_heads::pointrend::COARSE_OUTPUT_SIDE;
        expect_shape(sd, "roi_heads.mask_head.reduce_spatial_dim_conv.weight", &[c, c, 2, 2])?;
        let key = "roi_heads.mask_head.prediction.weight";
        let shape = shape_of(sd, key, 2)?;
        let outputs = k.saturating_mul(COARSE_OUTPUT_SIDE * COARSE_OUTPUT_SIDE);
        if shape[0] != outputs {
            bail!("tensor {key} has shape {shape:?}, expected {outputs} rows ({k} classes x {COARSE_OUTPUT_SIDE}x{COARSE_OUTPUT_SIDE})");
        }
        return Ok(());
    }
    let mut cin = c;
    for (i, &width) in rh.mask_layers.iter().enumerate() {
        expect_shape(sd, &format!("roi_heads.mask_head.{i}.0.weight"), &[width, cin, 3, 3])?;
        cin = width;
    }
    let p = rh.mask_predictor_channels;
    expect_shape(sd, "roi_heads.mask_predictor.conv5_mask.weight", &[cin, p, 2, 2])?;
    expect_shape(sd, "roi_heads.mask_predictor.mask_fcn_logits.weight", &[k, p, 1, 1])?;
    Ok(())
}

/// Rebuilds torchvision's constructor arguments from tensor shapes: classes, ResNet depth, FPN
/// stages and widths, head sizes. Every shape read is checked for rank first, and the result is
/// checked against the checkpoint with [`check_config_matches`].
pub fn infer_config(sd: &StateDict) -> Result<MaskRcnnConfig> {
    // Sizes read from shapes are trusted below (per-band statistics are allocated from conv1's
    // input width), so every shape must be backed by its values, as the file readers ensure.
    if let Some((key, t)) =
        sd.tensors.iter().find(|(_, t)| super::state_dict::element_count(&t.shape) != Some(t.data.len()))
    {
        bail!("tensor {key} has shape {:?} but holds {} values", t.shape, t.data.len());
    }
    let need = |key: &str, rank: usize| shape_of(sd, key, rank);
    if sd.get("backbone.body.conv1.weight").is_none() && sd.get("backbone.0.weight").is_some() {
        bail!("this checkpoint uses arcgis.learn's ResNet without FPN (keys backbone.0.*), which is not supported; retrain with an FPN backbone");
    }
    let mut config =
        MaskRcnnConfig { num_classes: need("roi_heads.box_predictor.cls_score.weight", 2)?[0], ..Default::default() };
    config.backbone.in_channels = need("backbone.body.conv1.weight", 4)?[1];
    let bands = config.backbone.in_channels;
    if bands != 3 {
        // Without statistics, use the ImageNet mean/std of the RGB bands for every band.
        config.transform.image_mean = (0..bands).map(|b| [0.485, 0.456, 0.406][b % 3]).collect();
        config.transform.image_std = (0..bands).map(|b| [0.229, 0.224, 0.225][b % 3]).collect();
    }
    let bottleneck = sd.get("backbone.body.layer1.0.conv3.weight").is_some();
    let blocks: Vec<usize> = (1..=4)
        .map(|l| (0..).take_while(|b| sd.get(&format!("backbone.body.layer{l}.{b}.conv1.weight")).is_some()).count())
        .collect();
    let stages = blocks.iter().take_while(|&&n| n > 0).count();
    config.backbone.depth = [18usize, 34, 50, 101, 152]
        .into_iter()
        .find(|&d| {
            crate::backbone::resnet::resnet_layout(d).is_some_and(|(layout, is_bottleneck)| {
                is_bottleneck == bottleneck && layout[..stages] == blocks[..stages]
            })
        })
        .ok_or_else(|| {
            anyhow!("ResNet with blocks {:?} (bottleneck: {bottleneck}) is not a standard depth", &blocks[..stages])
        })?;
    let expansion = if bottleneck { 4 } else { 1 };
    let fpn_levels = (0..).take_while(|i| sd.get(&format!("backbone.fpn.inner_blocks.{i}.0.weight")).is_some()).count();
    if fpn_levels > 4 {
        bail!("checkpoint has {fpn_levels} FPN levels (backbone.fpn.inner_blocks.*); a ResNet has at most 4");
    }
    let mut returned: Vec<usize> = Vec::new();
    for i in 0..fpn_levels {
        let key = format!("backbone.fpn.inner_blocks.{i}.0.weight");
        let cin = need(&key, 4)?[1];
        let layer = (1..=4)
            .find(|&l| (64 << (l - 1)) * expansion == cin)
            .ok_or_else(|| anyhow!("tensor {key}: an FPN input of {cin} channels matches no ResNet stage"))?;
        if returned.last().is_some_and(|&prev| prev >= layer) {
            bail!(
                "tensor {key}: FPN inputs must follow the ResNet stages in order, got stage {layer} after {returned:?}"
            );
        }
        returned.push(layer);
    }
    config.backbone.returned_layers = returned;
    config.backbone.fpn_out_channels = need("backbone.fpn.inner_blocks.0.0.weight", 4)?[0];
    // 'pool' plus one per FPN level; torchvision's defaults are 32..512 for four levels.
    config.rpn.anchor_sizes = (0..=fpn_levels).map(|i| vec![32.0 * (1u32 << i) as f32]).collect();
    let anchors_per_cell = need("rpn.head.cls_logits.weight", 4)?[0];
    if anchors_per_cell != config.rpn.aspect_ratios.len() {
        bail!("the RPN predicts {anchors_per_cell} anchors per location; only the default 3 aspect ratios can be inferred (give a config.json)");
    }
    config.roi_heads.representation_size = need("roi_heads.box_head.fc6.weight", 2)?[0];
    if sd.get("roi_heads.mask_head.reduce_spatial_dim_conv.weight").is_some() {
        config.mask_head = crate::config::MaskHeadKind::PointRend;
    } else {
        let mut mask_layers = Vec::new();
        while sd.get(&format!("roi_heads.mask_head.{}.0.weight", mask_layers.len())).is_some() {
            mask_layers.push(need(&format!("roi_heads.mask_head.{}.0.weight", mask_layers.len()), 4)?[0]);
        }
        if mask_layers.is_empty() {
            bail!("checkpoint has no mask head (roi_heads.mask_head.*): it is not a Mask R-CNN");
        }
        config.roi_heads.mask_layers = mask_layers;
        config.roi_heads.mask_predictor_channels = need("roi_heads.mask_predictor.conv5_mask.weight", 4)?[1];
    }
    check_config_matches(sd, &config)?;
    Ok(config)
}
