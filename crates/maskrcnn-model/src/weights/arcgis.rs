//! arcgis.learn model packages: the `.emd` JSON that describes a model, and `.dlpk` zips of the
//! model folder.

use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::config::MaskRcnnConfig;

/// What an `.emd` says about the model, resolved against the `.emd`'s folder.
#[derive(Debug, Clone)]
pub struct EmdPackage {
    pub model_file: PathBuf,
    pub backbone: Option<String>,
    pub pointrend: bool,
    /// `(value, name, colour)` per class, in file order (labels 1..=K).
    pub classes: Vec<(u64, String, [u8; 3])>,
    pub chip_size: Option<usize>,
    pub kwargs: serde_json::Map<String, Value>,
    /// Training cell size from `MinCellSize`/`MaxCellSize` (their geometric mean when they
    /// differ), taken as metres per pixel; `None` for `PIXEL_SPACE` models, whose chips had no
    /// map scale, and for values no metric ground sample distance can have (see [`emd_cell_size`]).
    pub cell_size: Option<f64>,
    /// 0-based raster bands from `ExtractBands`, in model input order.
    pub extract_bands: Vec<usize>,
}

/// Smallest cell size taken as metres: below 0.1 mm per pixel the `.emd` almost certainly
/// recorded degrees (arcgis.learn copies the training raster's own units).
const MIN_METRIC_CELL_SIZE: f64 = 1e-4;

/// The cell size an `.emd` records: `MinCellSize` and `MaxCellSize` (arcgis.learn writes both,
/// equal for one training raster), unless `ImageSpaceUsed` is `PIXEL_SPACE`.
pub fn emd_cell_size(emd: &Value) -> Option<f64> {
    let pixel_space =
        emd.get("ImageSpaceUsed").and_then(Value::as_str).is_some_and(|s| s.eq_ignore_ascii_case("PIXEL_SPACE"));
    if pixel_space {
        return None;
    }
    let value = |k: &str| emd.get(k).and_then(Value::as_f64).filter(|v| v.is_finite() && *v >= MIN_METRIC_CELL_SIZE);
    match (value("MinCellSize"), value("MaxCellSize")) {
        (Some(a), Some(b)) => Some((a * b).sqrt()),
        (a, b) => a.or(b),
    }
}

pub fn find_emd(dir: &Path) -> Result<Option<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("emd")))
        .collect();
    found.sort();
    Ok(found.into_iter().next())
}

pub fn read_emd(path: &Path) -> Result<EmdPackage> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let emd: Value = serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
    let model_name = emd
        .get("ModelFile")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{}: no \"ModelFile\" entry", path.display()))?;
    let model_file = package_file(path, "ModelFile", model_name)?;
    let params = emd.get("ModelParameters");
    let backbone = params.and_then(|p| p.get("backbone")).and_then(Value::as_str).map(str::to_string);
    let pointrend = params.and_then(|p| p.get("pointrend")).and_then(Value::as_bool).unwrap_or(false);
    let mut classes = Vec::new();
    for c in emd.get("Classes").and_then(Value::as_array).into_iter().flatten() {
        let value = c
            .get("Value")
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("{}: a class without a numeric \"Value\"", path.display()))?;
        let name = c.get("Name").and_then(Value::as_str).unwrap_or("").to_string();
        let color = c
            .get("Color")
            .and_then(Value::as_array)
            .map(|a| {
                let ch = |i: usize| a.get(i).and_then(Value::as_u64).unwrap_or(0).min(255) as u8;
                [ch(0), ch(1), ch(2)]
            })
            .unwrap_or([255, 0, 0]);
        classes.push((value, name, color));
    }
    let chip_size = emd.get("ImageHeight").and_then(Value::as_u64).map(|v| v as usize);
    let kwargs = emd.get("MaskRCNNkwargs").and_then(Value::as_object).cloned().unwrap_or_default();
    let extract_bands = match emd.get("ExtractBands") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => v
            .as_array()
            .and_then(|a| a.iter().map(|b| b.as_u64().map(|b| b as usize)).collect::<Option<Vec<_>>>())
            .ok_or_else(|| anyhow!("{}: \"ExtractBands\" must be a list of 0-based band numbers", path.display()))?,
    };
    let cell_size = emd_cell_size(&emd);
    Ok(EmdPackage { model_file, backbone, pointrend, classes, chip_size, kwargs, cell_size, extract_bands })
}

/// Resolves a file an `.emd` names (its `field`) inside the `.emd`'s own folder: absolute paths,
/// `..` components and symbolic links that lead outside that folder are refused, so a package
/// can never make us read files elsewhere on the machine.
fn package_file(emd: &Path, field: &str, name: &str) -> Result<PathBuf> {
    let outside = || anyhow!("{}: {field} \"{name}\" points outside the package", emd.display());
    // Packages are often written on Windows: `\\` separates components too.
    let relative = archive_path(name).ok_or_else(outside)?;
    let dir = match emd.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let model_file = dir.join(&relative);
    if relative.as_os_str().is_empty() || !model_file.is_file() {
        bail!("{}: names model file {}, which does not exist", emd.display(), model_file.display());
    }
    let real_dir = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
    let real = model_file.canonicalize().with_context(|| format!("resolving {}", model_file.display()))?;
    if !real.starts_with(&real_dir) {
        return Err(outside());
    }
    Ok(real)
}

impl EmdPackage {
    /// Applies the package's classes, input size and torchvision kwargs on top of a configuration
    /// inferred from the weights, checking that both agree.
    pub fn apply_to(&self, config: &mut MaskRcnnConfig) -> Result<()> {
        if self.pointrend != config.is_pointrend() {
            bail!(
                "the .emd says pointrend={} but the weights {} (roi_heads.mask_head.reduce_spatial_dim_conv)",
                self.pointrend,
                if config.is_pointrend() { "hold the PointRend head" } else { "lack the PointRend head" }
            );
        }
        if let Some(b) = &self.backbone {
            let depth = b.trim_start_matches("resnet").parse::<usize>().ok();
            if depth.is_some_and(|d| d != config.backbone.depth) {
                bail!("the .emd names backbone {b} but the weights are a ResNet-{}", config.backbone.depth);
            }
        }
        if !self.classes.is_empty() {
            if self.classes.len() + 1 != config.num_classes {
                bail!(
                    "the .emd lists {} classes but the weights predict {} (including background)",
                    self.classes.len(),
                    config.num_classes
                );
            }
            config.class_names =
                std::iter::once("background".to_string()).chain(self.classes.iter().map(|c| c.1.clone())).collect();
            config.category_ids = std::iter::once(0).chain(self.classes.iter().map(|c| c.0)).collect();
            config.class_colors = std::iter::once([0, 0, 0]).chain(self.classes.iter().map(|c| c.2)).collect();
        }
        if let Some(chip) = self.chip_size {
            // arcgis.learn builds the model with min_size = 1.5 chip and max_size = 2 chip.
            config.transform.min_size = chip * 3 / 2;
            config.transform.max_size = chip * 2;
            config.transform.chip_size = Some(chip);
        }
        for (key, value) in &self.kwargs {
            apply_kwarg(config, key, value).with_context(|| format!("MaskRCNNkwargs.{key}"))?;
        }
        if self.cell_size.is_some() {
            config.cell_size = self.cell_size;
        }
        // Bands 0..n in order say nothing beyond the default; others (e.g. [3, 2, 1]) pick the
        // raster bands `detect` feeds, as ArcGIS Pro does with them.
        let in_order = self.extract_bands.iter().enumerate().all(|(i, &b)| i == b);
        if !in_order && self.extract_bands.len() == config.backbone.in_channels {
            config.input_bands.raster_bands = self.extract_bands.iter().map(|b| b + 1).collect();
        } else if self.extract_bands.len() == 1 && config.backbone.in_channels == 3 {
            // One band repeated to the three inputs, as training on single-band chips does.
            config.input_bands =
                crate::config::InputBands { image_bands: Some(1), raster_bands: vec![self.extract_bands[0] + 1] };
        }
        Ok(())
    }
}

fn apply_kwarg(config: &mut MaskRcnnConfig, key: &str, value: &Value) -> Result<()> {
    let as_usize = || value.as_u64().map(|v| v as usize).ok_or_else(|| anyhow!("expected an integer"));
    let as_f32 = || value.as_f64().map(|v| v as f32).ok_or_else(|| anyhow!("expected a number"));
    let as_f64 = || value.as_f64().ok_or_else(|| anyhow!("expected a number"));
    let (rpn, rh) = (&mut config.rpn, &mut config.roi_heads);
    match key {
        "min_size" => config.transform.min_size = as_usize()?,
        "max_size" => config.transform.max_size = as_usize()?,
        "rpn_pre_nms_top_n_train" => rpn.pre_nms_top_n_train = as_usize()?,
        "rpn_pre_nms_top_n_test" => rpn.pre_nms_top_n_test = as_usize()?,
        "rpn_post_nms_top_n_train" => rpn.post_nms_top_n_train = as_usize()?,
        "rpn_post_nms_top_n_test" => rpn.post_nms_top_n_test = as_usize()?,
        "rpn_nms_thresh" => rpn.nms_thresh = as_f64()?,
        "rpn_fg_iou_thresh" => rpn.fg_iou_thresh = as_f32()?,
        "rpn_bg_iou_thresh" => rpn.bg_iou_thresh = as_f32()?,
        "rpn_batch_size_per_image" => rpn.batch_size_per_image = as_usize()?,
        "rpn_positive_fraction" => rpn.positive_fraction = as_f32()?,
        "rpn_score_thresh" => rpn.score_thresh = as_f32()?,
        "box_score_thresh" => rh.box_score_thresh = as_f32()?,
        "box_nms_thresh" => rh.box_nms_thresh = as_f64()?,
        "box_detections_per_img" => rh.box_detections_per_img = as_usize()?,
        "box_fg_iou_thresh" => rh.box_fg_iou_thresh = as_f32()?,
        "box_bg_iou_thresh" => rh.box_bg_iou_thresh = as_f32()?,
        "box_batch_size_per_image" => rh.box_batch_size_per_image = as_usize()?,
        "box_positive_fraction" => rh.box_positive_fraction = as_f32()?,
        other => bail!("unsupported torchvision MaskRCNN argument `{other}`"),
    }
    Ok(())
}

/// Bounds on what unpacking one `.dlpk` may write, so a hostile archive (a zip bomb, a header
/// that lies about sizes, millions of entries) fails fast instead of filling the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DlpkLimits {
    /// Most entries (files and folders) the archive may hold.
    pub max_entries: usize,
    /// Most bytes all entries together may decompress to.
    pub max_total_bytes: u64,
    /// Largest uncompressed / compressed size ratio of one entry bigger than
    /// [`DlpkLimits::ratio_floor`] bytes (deflate tops out near 1032:1; model weights barely
    /// compress).
    pub max_ratio: u64,
    /// Entries up to this size are exempt from the ratio check.
    pub ratio_floor: u64,
}

pub const DLPK_MAX_ENTRIES: usize = 10_000;
pub const DLPK_MAX_TOTAL_BYTES: u64 = 8 << 30;
pub const DLPK_MAX_RATIO: u64 = 200;

impl Default for DlpkLimits {
    fn default() -> Self {
        Self {
            max_entries: DLPK_MAX_ENTRIES,
            max_total_bytes: DLPK_MAX_TOTAL_BYTES,
            max_ratio: DLPK_MAX_RATIO,
            ratio_floor: 1 << 20,
        }
    }
}

/// Unpacks a `.dlpk` (a plain zip of the model folder) into a temporary folder, within
/// [`DlpkLimits::default`].
pub fn extract_dlpk(path: &Path) -> Result<tempfile::TempDir> {
    extract_dlpk_with(path, &DlpkLimits::default())
}

/// Unpacks a `.dlpk` into a temporary folder. Every entry is checked before anything is written:
/// the entry count, each declared size and their total against `limits`, the compression ratio,
/// and names that would land outside the folder (absolute, `..`, drive letters) or symbolic
/// links. While writing, an entry that decompresses to more than its header declares is
/// stopped at that size.
pub fn extract_dlpk_with(path: &Path, limits: &DlpkLimits) -> Result<tempfile::TempDir> {
    let shown = path.display();
    let file = std::fs::File::open(path).with_context(|| format!("opening {shown}"))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| anyhow!("{shown}: not a valid .dlpk (zip) file: {e}"))?;
    if zip.len() > limits.max_entries {
        bail!("{shown}: the package holds {} entries, more than the {} allowed", zip.len(), limits.max_entries);
    }
    let mut plan: Vec<(PathBuf, bool, u64)> = Vec::with_capacity(zip.len());
    let mut total = 0u64;
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(|e| anyhow!("{shown}: corrupt entry {i}: {e}"))?;
        let name = entry.name().to_string();
        let relative =
            archive_path(&name).ok_or_else(|| anyhow!("{shown}: entry \"{name}\" points outside the package"))?;
        if entry.is_symlink() {
            bail!("{shown}: entry \"{name}\" is a symbolic link, which a model package may not hold");
        }
        let is_dir = entry.is_dir();
        let size = if is_dir { 0 } else { entry.size() };
        total = total.saturating_add(size);
        if total > limits.max_total_bytes {
            bail!(
                "{shown}: entry \"{name}\" takes the unpacked package past {} bytes ({size} bytes declared); \
                 refusing to extract it",
                limits.max_total_bytes
            );
        }
        let compressed = entry.compressed_size().max(1);
        if size > limits.ratio_floor && size / compressed > limits.max_ratio {
            bail!(
                "{shown}: entry \"{name}\" would expand {}:1 ({compressed} to {size} bytes), more than the {}:1 \
                 a model package needs: refusing a likely zip bomb",
                size / compressed,
                limits.max_ratio
            );
        }
        if relative.as_os_str().is_empty() && !is_dir {
            bail!("{shown}: entry \"{name}\" has no file name");
        }
        plan.push((relative, is_dir, size));
    }
    let dir = tempfile::tempdir().context("creating a temporary folder")?;
    for (i, (relative, is_dir, size)) in plan.into_iter().enumerate() {
        let target = dir.path().join(&relative);
        let extracting = || format!("{shown}: extracting {}", relative.display());
        if is_dir {
            std::fs::create_dir_all(&target).with_context(extracting)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(extracting)?;
        }
        let entry = zip.by_index(i).map_err(|e| anyhow!("{shown}: corrupt entry {i}: {e}"))?;
        let mut out = std::fs::File::create(&target).with_context(extracting)?;
        // One byte past the declared size is enough to catch a header that lies.
        let written = std::io::copy(&mut std::io::Read::take(entry, size.saturating_add(1)), &mut out)
            .with_context(extracting)?;
        if written > size {
            bail!(
                "{shown}: entry \"{}\" decompresses to more than the {size} bytes its header declares",
                relative.display()
            );
        }
    }
    Ok(dir)
}

/// The relative path an archive entry's name stands for, or `None` when it would land outside
/// the extraction folder: absolute names, `..` components, drive prefixes, NUL bytes. Both `/` and
/// `\\` separate components.
fn archive_path(name: &str) -> Option<PathBuf> {
    if name.starts_with(['/', '\\']) || name.contains('\0') {
        return None;
    }
    let mut relative = PathBuf::new();
    for part in name.split(['/', '\\']) {
        match Path::new(part).components().next() {
            None | Some(Component::CurDir) => {}
            Some(Component::Normal(_)) => relative.push(part),
            _ => return None,
        }
    }
    Some(relative)
}

/// Writes `<dir>/<name>.pth` (torchvision key names, torch.save format), `<dir>/<name>.emd` and
/// `<dir>/<name>.dlpk` (a zip of the two at the archive root), as arcgis.learn's `save()` lays a
/// model folder out. Returns the `.dlpk` path.
pub fn save_package(model: &mut crate::model::MaskRcnn, dir: &Path, name: &str) -> Result<PathBuf> {
    use std::io::Write;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let sd = super::StateDict::from_module(&mut model.net, "");
    let pth = dir.join(format!("{name}.pth"));
    super::pth_writer::write_pth(&sd, &pth)?;
    let emd = dir.join(format!("{name}.emd"));
    crate::io_util::write_atomic(&emd, serde_json::to_string_pretty(&emd_json(&model.config, name))?.as_bytes())?;
    let dlpk = dir.join(format!("{name}.dlpk"));
    let mut bytes = Vec::new();
    {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(&mut bytes));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for file in [&pth, &emd] {
            let entry = file.file_name().expect("named file").to_string_lossy();
            zip.start_file(entry.as_ref(), options)?;
            zip.write_all(&std::fs::read(file)?)?;
        }
        zip.finish().context("finishing the .dlpk")?;
    }
    crate::io_util::write_atomic(&dlpk, &bytes)?;
    Ok(dlpk)
}

/// The `.emd` arcgis.learn writes for a MaskRCNN model (fields of its `save()`).
pub fn emd_json(config: &MaskRcnnConfig, name: &str) -> Value {
    let defaults = MaskRcnnConfig::default();
    let classes: Vec<Value> = (1..config.num_classes)
        .map(|label| {
            let color = config.class_colors.get(label).copied().unwrap_or_else(|| default_color(label));
            serde_json::json!({"Value": config.category_id(label), "Name": config.class_name(label), "Color": color})
        })
        .collect();
    // arcgis.learn builds min_size = 1.5 x chip; keep that relation so its tiling matches ours.
    // Without a recorded chip size, the one arcgis.learn's min_size = 1.5 chip rule implies.
    let chip = config.transform.chip_size.unwrap_or(config.transform.min_size * 2 / 3);
    let mut kwargs = serde_json::Map::new();
    let (rh, d) = (&config.roi_heads, &defaults.roi_heads);
    let mut put = |k: &str, v: Value, differs: bool| {
        if differs {
            kwargs.insert(k.to_string(), v);
        }
    };
    // Sizes other than arcgis.learn's 1.5 / 2 x chip go in as torchvision arguments, which it
    // passes on, so the `.emd` gives back the model's own input size.
    let t = &config.transform;
    put("min_size", t.min_size.into(), t.min_size != chip * 3 / 2);
    put("max_size", t.max_size.into(), t.max_size != chip * 2);
    put("box_score_thresh", rh.box_score_thresh.into(), rh.box_score_thresh != d.box_score_thresh);
    put("box_nms_thresh", rh.box_nms_thresh.into(), rh.box_nms_thresh != d.box_nms_thresh);
    put(
        "box_detections_per_img",
        rh.box_detections_per_img.into(),
        rh.box_detections_per_img != d.box_detections_per_img,
    );
    put(
        "rpn_pre_nms_top_n_test",
        config.rpn.pre_nms_top_n_test.into(),
        config.rpn.pre_nms_top_n_test != defaults.rpn.pre_nms_top_n_test,
    );
    put(
        "rpn_post_nms_top_n_test",
        config.rpn.post_nms_top_n_test.into(),
        config.rpn.post_nms_top_n_test != defaults.rpn.post_nms_top_n_test,
    );
    let mut emd = serde_json::json!({
        "ModelParameters": {"pointrend": config.is_pointrend(), "backbone": format!("resnet{}", config.backbone.depth), "backend": "pytorch"},
        "Framework": "arcgis.learn.models._inferencing",
        "ModelConfiguration": "_maskrcnn_inferencing",
        "InferenceFunction": "[Functions]System\\DeepLearning\\ArcGISLearn\\ArcGISInstanceDetector.py",
        "ModelType": "InstanceDetection",
        "MaskRCNNkwargs": kwargs,
        "ExtractBands": extract_bands(config),
        "SupportsVariableTileSize": true,
        "Classes": classes,
        "ModelFormat": "NCHW",
        "ModelFile": format!("{name}.pth"),
        "ImageHeight": chip,
        "ImageWidth": chip,
        "ImageSpaceUsed": "MAP_SPACE",
        "ModelName": "MaskRCNN",
        "backend": "pytorch",
        "resize_to": Value::Null,
        "IsMultispectral": config.backbone.in_channels != 3,
        "IsImageNetNormalization": config.transform.image_mean == defaults.transform.image_mean,
        "ArcGISLearnVersion": "2.4.4",
        "CreatedBy": "maskrcnn (Rust)",
    });
    if let Some(cell) = config.cell_size {
        // arcgis.learn copies the training data's cell size into both fields.
        emd["MinCellSize"] = cell.into();
        emd["MaxCellSize"] = cell.into();
    }
    if let Some(stats) = &config.transform.band_stats {
        // arcgis.learn's layout for multispectral / non-8-bit data: raw-unit statistics and the
        // same after min-max scaling each band to [0, 1].
        let (scaled_mean, scaled_std) = stats.scaled_mean_std();
        emd["NormalizationStats"] = serde_json::json!({
            "band_min_values": stats.min,
            "band_max_values": stats.max,
            "band_mean_values": stats.mean,
            "band_std_values": stats.std,
            "scaled_min_values": vec![0.0; stats.bands()],
            "scaled_max_values": vec![1.0; stats.bands()],
            "scaled_mean_values": scaled_mean,
            "scaled_std_values": scaled_std,
        });
        emd["DoNormalize"] = Value::Bool(true);
    }
    emd
}

/// `ExtractBands`: the 0-based raster bands the model was trained on when they are known,
/// else the first `in_channels` bands.
fn extract_bands(config: &MaskRcnnConfig) -> Vec<usize> {
    let recorded = &config.input_bands.raster_bands;
    if !recorded.is_empty() && recorded.iter().all(|&b| b > 0) {
        return recorded.iter().map(|b| b - 1).collect();
    }
    if config.input_bands.image_bands == Some(1) {
        return vec![0];
    }
    (0..config.backbone.in_channels).collect()
}

/// The colour pictures draw label `label` in (maskrcnn-viz's palette, counted from the first class).
fn default_color(label: usize) -> [u8; 3] {
    maskrcnn_viz::class_color(label - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_size_comes_from_min_and_max_cell_size_in_map_space() {
        let emd = |v: Value| emd_cell_size(&v);
        assert_eq!(emd(serde_json::json!({"MinCellSize": 0.3, "MaxCellSize": 0.3})), Some(0.3));
        assert_eq!(emd(serde_json::json!({"MinCellSize": 0.25, "MaxCellSize": 1.0})), Some(0.5));
        assert_eq!(emd(serde_json::json!({"MaxCellSize": 2.0, "ImageSpaceUsed": "MAP_SPACE"})), Some(2.0));
        assert_eq!(emd(serde_json::json!({"MinCellSize": 0.3, "ImageSpaceUsed": "PIXEL_SPACE"})), None);
        assert_eq!(emd(serde_json::json!({"MinCellSize": 2.7e-6, "MaxCellSize": 2.7e-6})), None, "degrees");
        assert_eq!(emd(serde_json::json!({})), None);
    }

    #[test]
    fn emd_round_trips_cell_size_and_bands() {
        let mut config = MaskRcnnConfig { num_classes: 2, ..Default::default() };
        config.cell_size = Some(0.3);
        config.input_bands.raster_bands = vec![4, 3, 2];
        let written = emd_json(&config, "m");
        assert_eq!(written["MinCellSize"], 0.3);
        assert_eq!(written["MaxCellSize"], 0.3);
        assert_eq!(written["ExtractBands"], serde_json::json!([3, 2, 1]));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.pth"), b"x").unwrap();
        let path = dir.path().join("m.emd");
        std::fs::write(&path, serde_json::to_vec(&written).unwrap()).unwrap();
        let package = read_emd(&path).unwrap();
        let mut read = MaskRcnnConfig { num_classes: 2, ..Default::default() };
        package.apply_to(&mut read).unwrap();
        assert_eq!(read.cell_size, Some(0.3));
        assert_eq!(read.input_bands.raster_bands, vec![4, 3, 2]);

        // arcgis.learn's own RGB package: bands 0, 1, 2 say nothing beyond the default.
        let mut rgb = written.clone();
        rgb["ExtractBands"] = serde_json::json!([0, 1, 2]);
        std::fs::write(&path, serde_json::to_vec(&rgb).unwrap()).unwrap();
        let mut read = MaskRcnnConfig { num_classes: 2, ..Default::default() };
        read_emd(&path).unwrap().apply_to(&mut read).unwrap();
        assert!(read.input_bands.raster_bands.is_empty());
        rgb["ExtractBands"] = serde_json::json!("0,1,2");
        std::fs::write(&path, serde_json::to_vec(&rgb).unwrap()).unwrap();
        let err = read_emd(&path).unwrap_err().to_string();
        assert!(err.contains("m.emd") && err.contains("ExtractBands"), "{err}");
    }

    #[test]
    fn archive_names_stay_inside_the_folder() {
        assert_eq!(archive_path("model.pth"), Some(PathBuf::from("model.pth")));
        assert_eq!(archive_path("./sub/model.pth"), Some(PathBuf::from("sub/model.pth")));
        assert_eq!(archive_path("sub\\model.pth"), Some(PathBuf::from("sub/model.pth")));
        assert_eq!(archive_path("sub/"), Some(PathBuf::from("sub")));
        for hostile in ["/etc/passwd", "\\windows\\x", "../x.pth", "a/../../x", "a\\..\\x", "..", "a\0b"] {
            assert_eq!(archive_path(hostile), None, "{hostile:?}");
        }
    }

    #[test]
    fn emd_model_files_stay_inside_the_folder() {
        let root = tempfile::tempdir().unwrap();
        let pkg = root.path().join("pkg");
        std::fs::create_dir_all(pkg.join("sub")).unwrap();
        std::fs::write(pkg.join("sub/w.pth"), b"x").unwrap();
        std::fs::write(root.path().join("secret.pth"), b"x").unwrap();
        let emd = pkg.join("m.emd");
        assert!(package_file(&emd, "ModelFile", "sub/w.pth").unwrap().ends_with("sub/w.pth"));
        for hostile in ["/etc/passwd", "../secret.pth", "sub/../../secret.pth"] {
            let err = package_file(&emd, "ModelFile", hostile).unwrap_err().to_string();
            assert!(err.contains("points outside the package") && err.contains("m.emd"), "{err}");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(root.path().join("secret.pth"), pkg.join("link.pth")).unwrap();
            let err = package_file(&emd, "ModelFile", "link.pth").unwrap_err().to_string();
            assert!(err.contains("points outside the package"), "{err}");
            std::os::unix::fs::symlink(pkg.join("sub/w.pth"), pkg.join("inner.pth")).unwrap();
            assert!(package_file(&emd, "ModelFile", "inner.pth").is_ok(), "a link inside the package is fine");
        }
    }
}
