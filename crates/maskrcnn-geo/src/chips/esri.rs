//! The Esri `RCNN_Masks` side of an export: per-class instance label chips, `map.txt`, the
//! `.emd` model definition and `esri_accumulated_stats.json`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{ensure, Result};
use serde_json::{json, Value};

use super::files::{write_chip, write_png, write_sidecars, write_text};
use super::layout::{burn_instances, ChipObject, PixelPolygon};
use super::{ChipClass, ChipContext, ChipImageFormat, ExportSummary};
use crate::raster::{Crs, GeoTransform, Samples};
use maskrcnn_viz::class_color;

struct BandStats {
    min: f64,
    max: f64,
    sum: f64,
    sum_sq: f64,
    count: u64,
}

/// What an `RCNN_Masks` export gathers over its chips for the metadata files.
pub(super) struct EsriExport {
    stats: Vec<BandStats>,
    map_lines: String,
    objects_per_chip: Vec<usize>,
    object_areas: Vec<f64>,
    class_pixels: Vec<u64>,
}

impl EsriExport {
    pub(super) fn new(bands: usize, classes: usize) -> EsriExport {
        EsriExport {
            stats: (0..bands)
                .map(|_| BandStats { min: f64::MAX, max: f64::MIN, sum: 0.0, sum_sq: 0.0, count: 0 })
                .collect(),
            map_lines: String::new(),
            objects_per_chip: Vec::new(),
            object_areas: Vec::new(),
            class_pixels: vec![0; classes],
        }
    }

    /// Adds the image chip's pixels (band-major, tile×tile) to the band statistics.
    pub(super) fn add_pixels(&mut self, pixels: &Samples, plane: usize, nodata: Option<f64>) {
        accumulate_stats(&mut self.stats, pixels, plane, nodata);
    }

    /// Writes one label chip per class present (every class for an empty chip) and the chip's
    /// `map.txt` line; returns the objects written, which are also counted into `classes`.
    pub(super) fn add_chip(
        &mut self,
        chip: &ChipContext,
        objects: &[ChipObject],
        polygons: &[PixelPolygon],
        classes: &mut [ChipClass],
    ) -> Result<usize> {
        let ext = chip.format.extension();
        let mut first_label: Option<String> = None;
        let mut written_here = 0;
        for (ci, class) in classes.iter_mut().enumerate() {
            let of_class: Vec<&ChipObject> = objects.iter().filter(|o| o.class == ci).collect();
            if of_class.is_empty() && !objects.is_empty() {
                continue; // arcgis.learn treats a missing class file as "no such objects"
            }
            let ids = burn_instances(&of_class, polygons, chip.tile);
            let n = ids.iter().copied().max().unwrap_or(0);
            class.objects += n as usize;
            written_here += n as usize;
            self.class_pixels[ci] += ids.iter().filter(|&&v| v != 0).count() as u64;
            let rel = format!("labels/{}/{}.{ext}", class.folder, chip.stem);
            write_label_chip(&chip.out.join(&rel), chip.format, chip.tile, &ids, chip.gt, chip.crs)?;
            first_label.get_or_insert(rel);
        }
        self.objects_per_chip.push(written_here);
        // arcgis.learn reads only the first line's tokens, with backslashes, as Pro writes them.
        let image_rel = format!("images\\{}.{ext}", chip.stem);
        let label_rel = first_label.unwrap_or_default().replace('/', "\\");
        self.map_lines.push_str(&format!("{image_rel} {label_rel}\n"));
        self.object_areas.extend(objects.iter().map(|o| o.own_pixels.len() as f64));
        Ok(written_here)
    }

    /// Writes `map.txt`, the `.emd` and the accumulated statistics into `out`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish(
        &self,
        out: &Path,
        summary: &ExportSummary,
        classes: &[ChipClass],
        bands: &[usize],
        tile: u32,
        gt: &GeoTransform,
        cell_metres: Option<f64>,
    ) -> Result<()> {
        write_text(&out.join("map.txt"), &self.map_lines)?;
        let mut emd = esri_emd(classes, bands, &self.stats, tile, gt);
        if let Some(cell) = cell_metres {
            // Ours: arcgis's MinCellSize/MaxCellSize are in the raster's CRS units (degrees,
            // feet); training reads this one when the chips themselves lose their georeferencing.
            emd["CellSizeMeters"] = cell.into();
        }
        write_text(&out.join("esri_model_definition.emd"), &serde_json::to_string_pretty(&emd)?)?;
        let acc =
            esri_stats(summary, classes, bands, tile, &self.objects_per_chip, &self.object_areas, &self.class_pixels);
        write_text(&out.join("esri_accumulated_stats.json"), &serde_json::to_string_pretty(&acc)?)
    }
}

fn accumulate_stats(stats: &mut [BandStats], samples: &Samples, plane: usize, nodata: Option<f64>) {
    let values = samples.to_f32();
    for (b, s) in stats.iter_mut().enumerate() {
        for &v in &values[b * plane..(b + 1) * plane] {
            let v = v as f64;
            if v.is_nan() || nodata == Some(v) {
                continue;
            }
            s.min = s.min.min(v);
            s.max = s.max.max(v);
            s.sum += v;
            s.sum_sq += v * v;
            s.count += 1;
        }
    }
}

/// Label chip: 8-bit when ids fit, else 16-bit (PNG) or 32-bit (TIFF).
fn write_label_chip(
    path: &Path,
    format: ChipImageFormat,
    tile: u32,
    ids: &[u32],
    gt: &GeoTransform,
    crs: Option<&Crs>,
) -> Result<()> {
    let max = ids.iter().copied().max().unwrap_or(0);
    match format {
        ChipImageFormat::Png => {
            if max <= 255 {
                let bytes: Vec<u8> = ids.iter().map(|&v| v as u8).collect();
                write_png(path, tile, 1, png::BitDepth::Eight, &bytes)?;
            } else {
                ensure!(max <= 65535, "{}: {max} objects in one chip do not fit a 16-bit PNG label", path.display());
                let bytes: Vec<u8> = ids.iter().flat_map(|&v| (v as u16).to_be_bytes()).collect();
                write_png(path, tile, 1, png::BitDepth::Sixteen, &bytes)?;
            }
            write_sidecars(path, format, gt, crs)
        }
        ChipImageFormat::Tiff => {
            let samples = if max <= 255 {
                Samples::U8(ids.iter().map(|&v| v as u8).collect())
            } else if max <= 65535 {
                Samples::U16(ids.iter().map(|&v| v as u16).collect())
            } else {
                Samples::U32(ids.to_vec())
            };
            write_chip(path, format, tile, 1, &samples, gt, crs, None)
        }
    }
}

fn band_stats_json(bands: &[usize], stats: &[BandStats]) -> Vec<Value> {
    bands
        .iter()
        .zip(stats)
        .map(|(b, s)| {
            let n = s.count.max(1) as f64;
            let mean = s.sum / n;
            let var = (s.sum_sq / n - mean * mean).max(0.0);
            let (min, max) = if s.count == 0 { (0.0, 0.0) } else { (s.min, s.max) };
            json!({"BandName": format!("Band_{b}"), "Min": min, "Max": max, "Mean": mean, "StdDev": var.sqrt()})
        })
        .collect()
}

fn esri_emd(classes: &[ChipClass], bands: &[usize], stats: &[BandStats], tile: u32, gt: &GeoTransform) -> Value {
    let cell = gt.pixel_size();
    json!({
        "Framework": "",
        "ModelConfiguration": "",
        "ModelType": "InstanceDetection",
        "ImageHeight": tile,
        "ImageWidth": tile,
        "ExtractBands": (0..bands.len()).collect::<Vec<_>>(),
        "ImageSpaceUsed": "MAP_SPACE",
        "IsMultidimensional": false,
        "InputRastersProps": {
            "RasterCount": 1,
            "SensorName": "",
            "BandNames": bands.iter().map(|b| format!("Band_{b}")).collect::<Vec<_>>(),
        },
        "AllTilesStats": band_stats_json(bands, stats),
        "MinCellSize": cell,
        "MaxCellSize": cell,
        "Classes": classes
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"Value": c.value, "Name": c.name, "Color": class_color(i)}))
            .collect::<Vec<_>>(),
    })
}

fn min_max_mean(v: &[f64]) -> Value {
    if v.is_empty() {
        return json!({"Min": 0, "Max": 0, "Mean": 0});
    }
    let min = v.iter().copied().fold(f64::MAX, f64::min);
    let max = v.iter().copied().fold(f64::MIN, f64::max);
    json!({"Min": min, "Max": max, "Mean": v.iter().sum::<f64>() / v.len() as f64})
}

fn esri_stats(
    summary: &ExportSummary,
    classes: &[ChipClass],
    bands: &[usize],
    tile: u32,
    objects_per_chip: &[usize],
    object_areas: &[f64],
    class_pixels: &[u64],
) -> Value {
    let per_chip: Vec<f64> = objects_per_chip.iter().map(|&n| n as f64).collect();
    let total_pixels = (summary.chips_written as u64 * tile as u64 * tile as u64).max(1) as f64;
    let mut by_class = BTreeMap::new();
    for (c, &px) in classes.iter().zip(class_pixels) {
        by_class.insert(
            c.value,
            json!({"ClassValue": c.value, "ClassName": c.name, "NumFeatures": c.objects, "NumPixels": px,
                   "PixelFraction": px as f64 / total_pixels}),
        );
    }
    json!({
        "MetaDataMode": "RCNN_Masks",
        "ImageSpaceUsed": "MAP_SPACE",
        "NumTiles": summary.chips_written,
        "NumTilesSkippedEmpty": summary.chips_empty_skipped,
        "NumTilesSkippedNoData": summary.chips_nodata_skipped,
        "NumFeatures": summary.objects,
        "NumBands": bands.len(),
        "ImageHeight": tile,
        "ImageWidth": tile,
        "FeatureStats": {
            "NumFeaturesPerImage": min_max_mean(&per_chip),
            "FeatureAreaInPixels": min_max_mean(object_areas),
        },
        "ClassPixelStats": by_class.into_values().collect::<Vec<_>>(),
    })
}
