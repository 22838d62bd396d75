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

/// Loads a model from a torchvision `.pth`/`.pt`/`.safetensors` state dict (architecture inferred
/// from tensor shapes, or taken from a `config.json` beside it), one of our model folders, an
/// arcgis.learn `.emd`, or a `.dlpk` package.
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
        bail!("{}: a model folder needs {CONFIG_FILE} + {WEIGHTS_FILE}, or an arcgis.learn .emd", path.display());
    }
    match ext.as_str() {
        "emd" => load_emd(path, device),
        "dlpk" => {
            let dir = arcgis::extract_dlpk(path)?;
            let emd = arcgis::find_emd(dir.path())?
                .ok_or_else(|| anyhow!("{}: the package holds no .emd file", path.display()))?;
            load_emd(&emd, device)
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
    let mut model =
        MaskRcnn::new(config, device).with_context(|| format!("{}: invalid model configuration", weights.display()))?;
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

/// Rebuilds torchvision's constructor arguments from tensor shapes: classes, ResNet depth, FPN
/// stages and widths, head sizes.
pub fn infer_config(sd: &StateDict) -> Result<MaskRcnnConfig> {
    let need = |key: &str| {
        sd.shape(key).ok_or_else(|| anyhow!("checkpoint is missing `{key}`; is it a torchvision Mask R-CNN?"))
    };
    if sd.get("backbone.body.conv1.weight").is_none() && sd.get("backbone.0.weight").is_some() {
        bail!("this checkpoint uses arcgis.learn's ResNet without FPN (keys backbone.0.*), which is not supported; retrain with an FPN backbone");
    }
    let mut config = MaskRcnnConfig::default();
    config.num_classes = need("roi_heads.box_predictor.cls_score.weight")?[0];
    config.backbone.in_channels = need("backbone.body.conv1.weight")?[1];
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
            let (layout, is_bottleneck) = crate::backbone::resnet::resnet_layout(d).unwrap();
            is_bottleneck == bottleneck && layout[..stages] == blocks[..stages]
        })
        .ok_or_else(|| {
            anyhow!("ResNet with blocks {:?} (bottleneck: {bottleneck}) is not a standard depth", &blocks[..stages])
        })?;
    let expansion = if bottleneck { 4 } else { 1 };
    let fpn_levels = (0..).take_while(|i| sd.get(&format!("backbone.fpn.inner_blocks.{i}.0.weight")).is_some()).count();
    let mut returned = Vec::new();
    for i in 0..fpn_levels {
        let cin = need(&format!("backbone.fpn.inner_blocks.{i}.0.weight"))?[1];
        let layer = (1..=4)
            .find(|&l| (64 << (l - 1)) * expansion == cin)
            .ok_or_else(|| anyhow!("FPN input of {cin} channels matches no ResNet stage"))?;
        returned.push(layer);
    }
    config.backbone.returned_layers = returned;
    config.backbone.fpn_out_channels = need("backbone.fpn.inner_blocks.0.0.weight")?[0];
    // 'pool' plus one per FPN level; torchvision's defaults are 32..512 for four levels.
    config.rpn.anchor_sizes = (0..=fpn_levels).map(|i| vec![32.0 * (1u32 << i) as f32]).collect();
    let anchors_per_cell = need("rpn.head.cls_logits.weight")?[0];
    if anchors_per_cell != config.rpn.aspect_ratios.len() {
        bail!("the RPN predicts {anchors_per_cell} anchors per location; only the default 3 aspect ratios can be inferred (give a config.json)");
    }
    config.roi_heads.representation_size = need("roi_heads.box_head.fc6.weight")?[0];
    if sd.get("roi_heads.mask_head.reduce_spatial_dim_conv.weight").is_some() {
        config.mask_head = crate::config::MaskHeadKind::PointRend;
        return Ok(config);
    }
    let mask_layers: Vec<usize> =
        (0..).map_while(|i| sd.shape(&format!("roi_heads.mask_head.{i}.0.weight")).map(|s| s[0])).collect();
    if mask_layers.is_empty() {
        bail!("checkpoint has no mask head (roi_heads.mask_head.*): it is not a Mask R-CNN");
    }
    config.roi_heads.mask_layers = mask_layers;
    config.roi_heads.mask_predictor_channels = need("roi_heads.mask_predictor.conv5_mask.weight")?[1];
    Ok(config)
}
