//! Cell size (ground sample distance): what the model was trained at, what a raster has, and
//! resampling tiles from the one to the other.
//!
//! A model learns objects at the scale of its training chips: a 10 cm model run on 30 cm imagery
//! sees every object three times too small. Training records the chips' cell size in metres
//! (`config.cell_size`); `detect` measures the raster's, and when they differ by more than
//! [`TOLERANCE`] it resamples each tile to the model's cell size before the detector and maps the
//! masks back onto the tile's own pixels, so outputs stay exactly on the raster grid.
//!
//! `predict` takes plain images as they are: photos and chips carry no map scale, and images
//! handed to it are taken to be at the scale the model was trained at.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
pub use maskrcnn_geo::units::cell_size_metres;
use maskrcnn_geo::{Crs, GeoTransform, RasterInfo, TileImage, TileInstance, TileMask};

use crate::config::{TransformConfig, MAX_IMAGE_SIDE};

/// Relative difference between the raster's and the model's cell size below which tiles are
/// used as they are: resampling by a few percent changes nothing a detector notices, and
/// rasters of one sensor vary that much with latitude and off-nadir angle.
pub const TOLERANCE: f64 = 0.05;

/// [`cell_size_metres`] of an opened raster.
pub fn raster_cell_size(info: &RasterInfo) -> Option<(f64, f64)> {
    cell_size_metres(info.geotransform.as_ref()?, info.crs.as_ref(), info.width, info.height)
}

/// One number for a cell of `(x, y)` metres: the side of the square of the same area.
fn isotropic((x, y): (f64, f64)) -> f64 {
    (x * y).sqrt()
}

/// The training chips' cell size and where it was read, from the first georeferenced chips of
/// `data`: GeoTIFF tags, or a world file with a `.aux.xml` CRS beside PNG/JPEG chips.
/// `export-chips` metadata (the chips' `.emd`, COCO `info`) is the fallback.
pub fn training_cell_size(data: &Path, images: Option<&Path>) -> Option<(f64, String)> {
    let root = if data.is_dir() { data.to_path_buf() } else { data.parent().unwrap_or(Path::new(".")).to_path_buf() };
    let mut folders: Vec<PathBuf> = images.map(Path::to_path_buf).into_iter().collect();
    if !data.is_dir() {
        folders.push(maskrcnn_data::coco::default_image_dir(data));
    }
    folders.extend([root.join("images"), root.clone()]);
    for folder in folders {
        if let Some(found) = chip_folder_cell_size(&folder) {
            return Some(found);
        }
    }
    export_metadata_cell_size(&root, data)
}

/// How many chips of a folder are looked at before giving up on georeferencing.
const CHIPS_TRIED: usize = 8;

fn chip_folder_cell_size(folder: &Path) -> Option<(f64, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["tif", "tiff", "png", "jpg", "jpeg"].iter().any(|x| e.eq_ignore_ascii_case(x)))
        })
        .collect();
    files.sort();
    files.into_iter().take(CHIPS_TRIED).find_map(|path| {
        let cell = chip_cell_size(&path)?;
        Some((isotropic(cell), format!("the georeferencing of {}", path.display())))
    })
}

/// Cell size of one chip file: GeoTIFF tags for TIFFs, else its world file and `.aux.xml` CRS.
fn chip_cell_size(path: &Path) -> Option<(f64, f64)> {
    let is_tiff = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.to_ascii_lowercase().starts_with("tif"));
    if is_tiff {
        if let Ok(raster) = maskrcnn_geo::GeoTiff::open(path) {
            if let Some(cell) = raster_cell_size(raster.info()) {
                return Some(cell);
            }
        }
    }
    let (gt, size) = world_file(path)?;
    let crs = aux_xml_crs(path)?;
    cell_size_metres(&gt, Some(&crs), size.0, size.1)
}

/// The transform of `path`'s world file (`.pgw`, `.jgw`, `.tfw` or `.wld`: pixel-centre origin)
/// and the image's size.
fn world_file(path: &Path) -> Option<(GeoTransform, (u32, u32))> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    let short = match ext.as_str() {
        "png" => "pgw",
        "jpg" | "jpeg" => "jgw",
        _ => "tfw",
    };
    let text = [short, "wld"].iter().find_map(|e| std::fs::read_to_string(path.with_extension(e)).ok())?;
    let v: Vec<f64> = text.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
    let &[a, d, b, e, c, f] = v.as_slice() else { return None };
    // Pixel centre (0.5, 0.5) of the world file to the corner origin of a GDAL transform.
    let gt = GeoTransform([c - 0.5 * a - 0.5 * b, a, b, f - 0.5 * d - 0.5 * e, d, e]);
    let size = image::image_dimensions(path).ok()?;
    Some((gt, size))
}

/// The CRS in `<path>.aux.xml`'s `<SRS>` (WKT or `EPSG:n`), as export tools leave beside chips.
fn aux_xml_crs(path: &Path) -> Option<Crs> {
    let mut aux = path.as_os_str().to_owned();
    aux.push(".aux.xml");
    let text = std::fs::read_to_string(Path::new(&aux)).ok()?;
    let start = text.find("<SRS")?;
    let body = &text[start..];
    let srs = &body[body.find('>')? + 1..body.find("</SRS>")?];
    let srs = srs.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&");
    let srs = srs.trim();
    match srs.strip_prefix("EPSG:").and_then(|c| c.parse().ok()) {
        Some(code) => Some(Crs::from_epsg(code)),
        None if !srs.is_empty() => Some(Crs::from_wkt(srs)),
        None => None,
    }
}

/// What `export-chips` wrote about its cell size: `CellSizeMeters` in the chips' `.emd` (ours)
/// or `cell_size_m` in COCO's `info`, else the `.emd`'s arcgis `MinCellSize`/`MaxCellSize`.
fn export_metadata_cell_size(root: &Path, data: &Path) -> Option<(f64, String)> {
    let read =
        |p: &Path| std::fs::read_to_string(p).ok().and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let positive = |v: Option<f64>| v.filter(|v| v.is_finite() && *v > 0.0);
    let emd_path = root.join("esri_model_definition.emd");
    if let Some(emd) = read(&emd_path) {
        let cell = positive(emd.get("CellSizeMeters").and_then(|v| v.as_f64()))
            .or_else(|| crate::weights::arcgis::emd_cell_size(&emd));
        if let Some(cell) = cell {
            return Some((cell, emd_path.display().to_string()));
        }
    }
    let coco = if data.is_file() { data.to_path_buf() } else { root.join("annotations.json") };
    let doc = read(&coco)?;
    let cell = positive(doc.pointer("/info/cell_size_m").and_then(|v| v.as_f64()))?;
    Some((cell, format!("the info block of {}", coco.display())))
}

/// How `detect` treats the cell sizes: the user's choices.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CellSizeRequest {
    /// `--cell-size`: the raster's cell size in metres, in place of its georeferencing's.
    pub raster_cell_size: Option<f64>,
    /// `--no-resample`: run at the raster's own resolution whatever the model's.
    pub no_resample: bool,
}

/// The resampling of one detect run: model pixels per raster pixel along x and y (1 = none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellSizePlan {
    pub fx: f64,
    pub fy: f64,
}

impl Default for CellSizePlan {
    fn default() -> Self {
        CellSizePlan::NONE
    }
}

impl CellSizePlan {
    pub const NONE: CellSizePlan = CellSizePlan { fx: 1.0, fy: 1.0 };

    /// The plan for a raster (`info`, named `raster` in messages) and a model trained at
    /// `model_cell` metres, with one line on stderr saying what is done (or why not).
    pub fn new(raster: &Path, info: &RasterInfo, model_cell: Option<f64>, request: CellSizeRequest) -> Result<Self> {
        if let Some(c) = request.raster_cell_size {
            if !(c.is_finite() && c > 0.0) {
                bail!("--cell-size must be a number of metres above 0, got {c}");
            }
        }
        if request.no_resample {
            return Ok(CellSizePlan::NONE);
        }
        let raster_cell = match request.raster_cell_size {
            Some(c) => Some((c, c)),
            None => raster_cell_size(info),
        };
        let shown = raster.display();
        let (model, (rx, ry)) = match (model_cell, raster_cell) {
            (None, _) => {
                eprintln!(
                    "warning: the model does not record the cell size it was trained at; {shown} is used at its own \
                     resolution (train with --cell-size to record it)"
                );
                return Ok(CellSizePlan::NONE);
            }
            (Some(m), None) => {
                eprintln!(
                    "warning: {shown}: cell size unknown (no georeferencing or CRS); it is used at its own resolution, \
                     not resampled to the model's {m} m (pass --cell-size METRES)"
                );
                return Ok(CellSizePlan::NONE);
            }
            (Some(m), Some(r)) => (m, r),
        };
        let plan = CellSizePlan { fx: rx / model, fy: ry / model };
        let near = |f: f64| (f - 1.0).abs() <= TOLERANCE;
        if near(plan.fx) && near(plan.fy) {
            return Ok(CellSizePlan::NONE);
        }
        eprintln!(
            "{shown}: cell size {} m, the model's {model} m: tiles resampled by {:.3} x {:.3} to the model's cell size \
             (--no-resample to keep the raster's)",
            round_for_display(isotropic((rx, ry))),
            plan.fx,
            plan.fy
        );
        Ok(plan)
    }

    pub fn is_identity(&self) -> bool {
        *self == CellSizePlan::NONE
    }

    /// The model's input resizing for this run's `tile_width x tile_height` tiles (raster pixels),
    /// so that objects reach the network at the scale they had in training:
    /// - with the training chip size known, the resampled tile is resized by the factor the chips
    ///   were (`min(min_size, max_size) / chip`), whatever the tile size;
    /// - otherwise `min_size`/`max_size` are scaled by the plan, so that a resampled tile reaches
    ///   the network at the size the tile would without resampling, times the plan's factor (the
    ///   input resize would otherwise undo the resampling).
    pub fn scale_transform(&self, transform: &mut TransformConfig, tile_width: u32, tile_height: u32) -> Result<()> {
        let (w, h) = (tile_width as f64 * self.fx, tile_height as f64 * self.fy);
        let (min_size, max_size) = match transform.chip_size {
            Some(chip) => {
                let k = transform.min_size.min(transform.max_size) as f64 / chip.max(1) as f64;
                let min_size = ((w.min(h) * k).round() as usize).max(1);
                // At least the long side times k, so that the short side decides the scale.
                (min_size, ((w.max(h) * k).ceil() as usize).max(min_size))
            }
            None if self.is_identity() => return Ok(()),
            None => {
                let f = isotropic((self.fx, self.fy));
                let scaled = |v: usize| ((v as f64 * f).round() as usize).max(1);
                (scaled(transform.min_size), scaled(transform.max_size))
            }
        };
        let side = w.max(h).round();
        if side > MAX_IMAGE_SIDE as f64 || max_size > MAX_IMAGE_SIDE {
            bail!(
                "{tile_width}x{tile_height} px tiles would reach the model at {} px (resampled to {side} px, the \
                 scale of its training), beyond the {MAX_IMAGE_SIDE} px a model takes; use a smaller --tile-size or \
                 --no-resample",
                max_size.max(side as usize)
            );
        }
        transform.min_size = min_size;
        transform.max_size = max_size;
        Ok(())
    }

    /// `model` with its input resizing set for this run's tiles ([`Self::scale_transform`]), or
    /// `None` when that changes nothing and `model` serves as it is. With `no_resample` (the
    /// plan is then [`CellSizePlan::NONE`]) tiles go in at the model's own `min_size`.
    pub fn model_for(
        &self,
        model: &crate::MaskRcnn,
        tile_width: u32,
        tile_height: u32,
        no_resample: bool,
    ) -> Result<Option<crate::MaskRcnn>> {
        if no_resample {
            return Ok(None);
        }
        let mut config = model.config.clone();
        self.scale_transform(&mut config.transform, tile_width, tile_height)?;
        if config.transform == model.config.transform {
            return Ok(None);
        }
        let (old, new) = (&model.config.transform, &config.transform);
        if let Some(chip) = old.chip_size {
            // Said when it differs from what the cell size alone would give (tiles the chips' size).
            let mut without_chip = TransformConfig { chip_size: None, ..old.clone() };
            self.scale_transform(&mut without_chip, tile_width, tile_height)?;
            if (new.min_size as f64 / without_chip.min_size as f64 - 1.0).abs() > TOLERANCE {
                eprintln!(
                    "the model was trained on {chip} px chips, resized to {} px: {tile_width}x{tile_height} px tiles \
                     go in at {} px, the chips' scale (--no-resample for its own {} px)",
                    old.min_size.min(old.max_size),
                    new.min_size,
                    old.min_size
                );
            }
        }
        Ok(Some(crate::MaskRcnn { config, net: model.net.clone(), device: model.device.clone() }))
    }

    /// `detector` (a batch of tiles in, tile-sized masks out, as the detect pipeline calls it)
    /// running at the model's cell size: each tile is resampled by the plan, the batch detected,
    /// and each tile's masks resampled back to its own pixels.
    pub fn wrap_batch<'a, D>(
        &'a self,
        detector: D,
    ) -> impl Fn(&[TileImage]) -> Result<Vec<Vec<TileInstance>>> + Sync + 'a
    where
        D: Fn(&[TileImage]) -> Result<Vec<Vec<TileInstance>>> + Sync + 'a,
    {
        move |tiles: &[TileImage]| {
            if self.is_identity() {
                return detector(tiles);
            }
            let resampled: Vec<TileImage> = tiles.iter().map(|t| self.resample_tile(t)).collect();
            let found = detector(&resampled)?;
            if found.len() != tiles.len() {
                bail!("the detector returned {} answers for a batch of {} tiles", found.len(), tiles.len());
            }
            tiles
                .iter()
                .zip(&resampled)
                .zip(found)
                .map(|((tile, seen), instances)| self.map_back(tile, seen, instances))
                .collect()
        }
    }

    /// Masks found on `seen` (the resampled `tile`) brought back onto `tile`'s pixels.
    fn map_back(&self, tile: &TileImage, seen: &TileImage, instances: Vec<TileInstance>) -> Result<Vec<TileInstance>> {
        let (w, h) = (seen.width as usize, seen.height as usize);
        let back_x = Axis::new(w, tile.width as usize);
        let back_y = Axis::new(h, tile.height as usize);
        instances
            .into_iter()
            .map(|inst| {
                inst.mask
                    .check(seen.width, seen.height)
                    .with_context(|| format!("the detector's answer for the resampled {w}x{h} tile"))?;
                let probs: Vec<f32> =
                    inst.mask.to_tile(seen.width, seen.height).iter().map(|&m| (m != 0) as u8 as f32).collect();
                let back = resample_plane(&probs, w, None, &back_x, &back_y);
                // Half the pixel covered (or interpolated to more than half) is inside.
                let mask = TileMask::whole(tile.width, tile.height, back.iter().map(|&p| (p >= 0.5) as u8).collect());
                Ok(TileInstance { mask, ..inst })
            })
            .collect()
    }

    /// The tile at the model's cell size: area averaging where it shrinks, bilinear where it
    /// grows; nodata (and NaN) pixels are left out of the averages, and a pixel with no valid
    /// source is nodata.
    pub fn resample_tile(&self, tile: &TileImage) -> TileImage {
        let (w, h) = (tile.width as usize, tile.height as usize);
        let nw = ((w as f64 * self.fx).round() as usize).max(1);
        let nh = ((h as f64 * self.fy).round() as usize).max(1);
        let (ax, ay) = (Axis::new(w, nw), Axis::new(h, nh));
        let plane = w * h;
        let bands = tile.data.len().checked_div(plane).unwrap_or(0);
        let mut data = Vec::with_capacity(bands * nw * nh);
        for b in 0..bands {
            let src = &tile.data[b * plane..(b + 1) * plane];
            let valid: Vec<f32> =
                src.iter().map(|&v| (!v.is_nan() && tile.nodata != Some(v as f64)) as u8 as f32).collect();
            data.extend(resample_plane(src, w, Some((&valid, tile.nodata)), &ax, &ay));
        }
        let g = tile.geotransform.0;
        let (sx, sy) = (w as f64 / nw as f64, h as f64 / nh as f64);
        TileImage {
            tile: tile.tile,
            width: nw as u32,
            height: nh as u32,
            bands: tile.bands.clone(),
            data,
            geotransform: GeoTransform([g[0], g[1] * sx, g[2] * sy, g[3], g[4] * sx, g[5] * sy]),
            nodata: tile.nodata,
        }
    }
}

fn round_for_display(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

/// Source pixels and weights of each output pixel along one axis, for `from` pixels resampled to
/// `to` over the same extent: pixel edges line up at both ends, so output pixel `i` covers source
/// `[i * from / to, (i + 1) * from / to)`.
struct Axis {
    taps: Vec<Vec<(usize, f32)>>,
}

impl Axis {
    fn new(from: usize, to: usize) -> Axis {
        let scale = from as f64 / to as f64;
        let taps = (0..to)
            .map(|i| {
                if scale > 1.0 {
                    // Shrinking: each output pixel is the area average of the source it covers.
                    let (lo, hi) = (i as f64 * scale, (i as f64 + 1.0) * scale);
                    let mut taps = Vec::new();
                    let mut s = lo.floor() as usize;
                    while (s as f64) < hi && s < from {
                        let overlap = (hi.min(s as f64 + 1.0) - lo.max(s as f64)) / scale;
                        if overlap > 0.0 {
                            taps.push((s, overlap as f32));
                        }
                        s += 1;
                    }
                    taps
                } else {
                    // Growing: bilinear between the two nearest source pixel centres.
                    let u = ((i as f64 + 0.5) * scale - 0.5).clamp(0.0, (from - 1) as f64);
                    let s0 = u.floor() as usize;
                    let t = u - s0 as f64;
                    if s0 + 1 < from && t > 0.0 {
                        vec![(s0, (1.0 - t) as f32), (s0 + 1, t as f32)]
                    } else {
                        vec![(s0, 1.0)]
                    }
                }
            })
            .collect();
        Axis { taps }
    }

    fn len(&self) -> usize {
        self.taps.len()
    }
}

/// One row-major plane `w` pixels wide resampled along x then y. With `valid` (1 = valid, 0 = not) the average
/// is over valid sources only and an output with none is `nodata` (NaN without one).
fn resample_plane(src: &[f32], w: usize, valid: Option<(&[f32], Option<f64>)>, ax: &Axis, ay: &Axis) -> Vec<f32> {
    let h = src.len().checked_div(w).unwrap_or(0);
    let pass = |plane: &[f32]| -> Vec<f32> {
        let nw = ax.len();
        let mut rows = vec![0.0f32; nw * h];
        for y in 0..h {
            let row = &plane[y * w..(y + 1) * w];
            for (x, taps) in ax.taps.iter().enumerate() {
                rows[y * nw + x] = taps.iter().map(|&(s, wt)| row[s] * wt).sum();
            }
        }
        let mut out = vec![0.0f32; nw * ay.len()];
        for (y, taps) in ay.taps.iter().enumerate() {
            for &(s, wt) in taps {
                let src_row = &rows[s * nw..(s + 1) * nw];
                for (o, &v) in out[y * nw..(y + 1) * nw].iter_mut().zip(src_row) {
                    *o += v * wt;
                }
            }
        }
        out
    };
    let Some((valid, nodata)) = valid else { return pass(src) };
    if valid.iter().all(|&v| v == 1.0) {
        return pass(src);
    }
    // Invalid samples (NaN among them) must not reach the sums, so they are zeroed first.
    let masked: Vec<f32> = src.iter().zip(valid).map(|(&v, &ok)| if ok == 1.0 { v } else { 0.0 }).collect();
    let sums = pass(&masked);
    let weights = pass(valid);
    let fill = nodata.map_or(f32::NAN, |n| n as f32);
    sums.iter().zip(&weights).map(|(&s, &wt)| if wt > 1e-6 { s / wt } else { fill }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use maskrcnn_geo::TileGrid;

    fn tile(w: u32, h: u32, data: Vec<f32>, nodata: Option<f64>) -> TileImage {
        let grid = TileGrid::new(w, h, w.max(h), 0).unwrap();
        TileImage {
            tile: grid.tile(0, 0),
            width: w,
            height: h,
            bands: vec![1],
            data,
            geotransform: GeoTransform([100.0, 1.0, 0.0, 200.0, 0.0, -1.0]),
            nodata,
        }
    }

    #[test]
    fn halving_averages_blocks_and_doubling_interpolates() {
        let t = tile(4, 2, vec![0., 2., 4., 6., 2., 4., 6., 8.], None);
        let half = CellSizePlan { fx: 0.5, fy: 0.5 }.resample_tile(&t);
        assert_eq!((half.width, half.height), (2, 1));
        assert_eq!(half.data, vec![2.0, 6.0]);
        assert_eq!(half.geotransform.0, [100.0, 2.0, 0.0, 200.0, 0.0, -2.0]);
        let double = CellSizePlan { fx: 2.0, fy: 2.0 }.resample_tile(&t);
        assert_eq!((double.width, double.height), (8, 4));
        // Pixel centres 0.25 px inside the first source pixel's centre clamp to it; between
        // centres the values are linear.
        assert_eq!(&double.data[..4], &[0.0, 0.5, 1.5, 2.5]);
    }

    #[test]
    fn nodata_stays_out_of_averages() {
        let t = tile(2, 2, vec![-9999.0, 4.0, -9999.0, -9999.0], Some(-9999.0));
        let one = CellSizePlan { fx: 0.5, fy: 0.5 }.resample_tile(&t);
        assert_eq!(one.data, vec![4.0]);
        let none = tile(2, 2, vec![-9999.0; 4], Some(-9999.0));
        assert_eq!(CellSizePlan { fx: 0.5, fy: 0.5 }.resample_tile(&none).data, vec![-9999.0]);
        let nan = tile(2, 1, vec![f32::NAN, 3.0], None);
        assert_eq!(CellSizePlan { fx: 0.5, fy: 1.0 }.resample_tile(&nan).data, vec![3.0]);
    }

    #[test]
    fn tiles_reach_the_network_at_the_training_chips_scale() {
        let transform = |min_size, max_size, chip_size| TransformConfig {
            min_size,
            max_size,
            chip_size,
            ..TransformConfig::default()
        };
        let scaled = |plan: CellSizePlan, mut t: TransformConfig, w, h| {
            plan.scale_transform(&mut t, w, h).map(|()| (t.min_size, t.max_size))
        };
        let none = CellSizePlan::NONE;
        // 256 px chips resized to 800: a 512 px tile goes in at 1600, as two chips side by side would.
        assert_eq!(scaled(none, transform(800, 1333, Some(256)), 512, 512).unwrap(), (1600, 1600));
        // The short side sets the scale; the long side is not capped below it.
        assert_eq!(scaled(none, transform(800, 1333, Some(256)), 512, 300).unwrap(), (938, 1600));
        // A tile the chips' size gives the chips' own scale.
        assert_eq!(scaled(none, transform(128, 128, Some(128)), 128, 128).unwrap(), (128, 128));
        // With resampling to the model's cell size, the resampled tile is what is scaled.
        let twice = CellSizePlan { fx: 2.0, fy: 2.0 };
        assert_eq!(scaled(twice, transform(64, 64, Some(64)), 64, 64).unwrap(), (128, 128));
        // No chip size recorded (torchvision and older models): only the cell-size factor applies.
        assert_eq!(scaled(none, transform(800, 1333, None), 512, 512).unwrap(), (800, 1333));
        assert_eq!(scaled(twice, transform(800, 1333, None), 512, 512).unwrap(), (1600, 2666));
        // Beyond what a model takes: one line that says what to do.
        let err = scaled(none, transform(800, 1333, Some(64)), 1024, 1024).unwrap_err().to_string();
        assert!(
            err.contains("1024x1024 px tiles would reach the model at 12800 px") && err.contains("--tile-size"),
            "{err}"
        );
    }

    #[test]
    fn masks_come_back_on_the_tile_grid() {
        // The detector sees the tile at twice the resolution and finds the block at resampled
        // pixels 4..12 x 2..6, which is tile pixels 2..6 x 1..3.
        let t = tile(8, 4, vec![0.0; 32], None);
        let plan = CellSizePlan { fx: 2.0, fy: 2.0 };
        let seen = std::sync::Mutex::new(None);
        let wrapped = plan.wrap_batch(|tiles: &[TileImage]| {
            let t = &tiles[0];
            *seen.lock().unwrap() = Some((t.width, t.height));
            let mask = TileMask { x0: 4, y0: 2, width: 8, height: 4, data: vec![1; 32] };
            Ok(vec![vec![TileInstance { class_id: 1, score: 0.9, mask }]])
        });
        let out = wrapped(std::slice::from_ref(&t)).unwrap().remove(0);
        drop(wrapped);
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen, Some((16, 8)));
        let mut want = vec![0u8; 32];
        for y in 1..3 {
            for x in 2..6 {
                want[y * 8 + x] = 1;
            }
        }
        assert_eq!(out[0].mask, TileMask::whole(8, 4, want));
    }

    #[test]
    fn cell_size_in_metres_for_degrees_and_feet() {
        let utm = Crs::from_epsg(32633);
        let gt = GeoTransform([500000.0, 0.5, 0.0, 0.0, 0.0, -0.5]);
        assert_eq!(cell_size_metres(&gt, Some(&utm), 100, 100), Some((0.5, 0.5)));
        assert_eq!(cell_size_metres(&gt, None, 100, 100), None, "no CRS, no units");
        // 1e-5 degrees at the equator is about 1.11 m along both axes.
        let wgs84 = Crs::from_epsg(4326);
        let deg = GeoTransform([10.0, 1e-5, 0.0, 0.0005, 0.0, -1e-5]);
        let (x, y) = cell_size_metres(&deg, Some(&wgs84), 100, 100).unwrap();
        assert!((x - 1.113).abs() < 0.01 && (y - 1.106).abs() < 0.01, "{x} {y}");
    }
}
