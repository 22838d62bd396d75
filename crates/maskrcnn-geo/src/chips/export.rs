//! The export driver: checks the inputs, lays out the chips, writes each image chip and hands
//! its objects to the RCNN_Masks or COCO writer.

use std::fs;

use anyhow::{anyhow, bail, ensure, Context, Result};
use geo::{Area, BoundingRect};

use super::coco::CocoExport;
use super::esri::EsriExport;
use super::files::{pad_to_tile, write_chip};
use super::labels::{build_classes, labels_to_raster, read_labels, reproject_features};
use super::layout::{chip_objects, chip_windows, to_pixels, PixelPolygon, PolygonIndex};
use super::{ChipContext, ChipFormat, ChipImageFormat, ExportChipsOptions, ExportSummary};
use crate::raster::{Crs, GeoTiff, SampleType};

/// Everything an export may write into its folder; only these are removed when overwriting.
const OUR_OUTPUTS: [&str; 6] =
    ["images", "labels", "map.txt", "esri_model_definition.emd", "esri_accumulated_stats.json", "annotations.json"];

/// Largest distance, in pixels, between a reprojected label edge and its true course.
const LABEL_TOLERANCE_PIXELS: f64 = 0.05;

/// Creates `output/images`, after removing a previous export when overwriting is allowed.
fn prepare_output(opts: &ExportChipsOptions) -> Result<()> {
    let out = &opts.output;
    if out.exists() {
        ensure!(out.is_dir(), "output {} exists and is not a folder", out.display());
        let non_empty = fs::read_dir(out).with_context(|| format!("cannot list {}", out.display()))?.next().is_some();
        if non_empty && !opts.overwrite {
            bail!(
                "output folder {} already exists and is not empty; choose another folder or allow overwriting",
                out.display()
            );
        }
        for name in OUR_OUTPUTS {
            let p = out.join(name);
            if p.is_dir() {
                fs::remove_dir_all(&p).with_context(|| format!("cannot remove old {}", p.display()))?;
            } else if p.exists() {
                fs::remove_file(&p).with_context(|| format!("cannot remove old {}", p.display()))?;
            }
        }
    }
    fs::create_dir_all(out.join("images")).with_context(|| format!("cannot create {}", out.display()))?;
    Ok(())
}

/// Cut `opts.raster` into chips with instance labels from `opts.labels`. See the module docs.
pub fn export_chips(opts: &ExportChipsOptions) -> Result<ExportSummary> {
    // Chips are held in memory as whole planes; 16384² is far beyond any training chip.
    ensure!((1..=16384).contains(&opts.tile_size), "tile size {} must be between 1 and 16384", opts.tile_size);
    ensure!(opts.stride > 0, "stride must be positive");
    if opts.output.exists()
        && !opts.overwrite
        && fs::read_dir(&opts.output).map(|mut d| d.next().is_some()).unwrap_or(false)
    {
        bail!(
            "output folder {} already exists and is not empty; choose another folder or allow overwriting",
            opts.output.display()
        );
    }
    let mut raster = GeoTiff::open(&opts.raster)?;
    let info = raster.info().clone();
    let gt = info.geotransform.ok_or_else(|| {
        anyhow!("raster {} has no georeferencing, so label polygons cannot be placed on it", opts.raster.display())
    })?;
    let mut labels = read_labels(&opts.labels, opts.label_layer.as_deref(), opts.class_field.as_deref())?;
    if let Some(reprojector) = labels_to_raster(&labels, info.crs.as_ref(), &opts.raster)? {
        // A twentieth of a pixel: burnt masks are those of the true (curved) outline.
        reproject_features(&mut labels, &reprojector, LABEL_TOLERANCE_PIXELS * gt.pixel_size())?;
    }
    let bands: Vec<usize> = if opts.bands.is_empty() { (1..=info.bands).collect() } else { opts.bands.clone() };
    if let Some(b) = bands.iter().find(|&&b| b == 0 || b > info.bands) {
        bail!("band {b} requested but raster {} has bands 1..={}", opts.raster.display(), info.bands);
    }

    let (mut classes, class_index) = build_classes(&labels.features);
    let mut polygons = Vec::with_capacity(labels.features.len());
    for (geometry, key) in &labels.features {
        let px = to_pixels(geometry, &gt)?;
        let Some(r) = px.bounding_rect() else { continue };
        polygons.push(PixelPolygon {
            area: px.unsigned_area(),
            geometry: px,
            class: class_index[key],
            bbox: (r.min().x, r.min().y, r.max().x, r.max().y),
        });
    }
    let (w, h) = (info.width as f64, info.height as f64);
    if !polygons.iter().any(|p| p.bbox.0 < w && p.bbox.2 > 0.0 && p.bbox.1 < h && p.bbox.3 > 0.0) {
        let (x0, y0, x1, y1) = info.map_bounds();
        bail!(
            "none of the {} label polygons in {} overlaps raster {} (extent {x0:.3},{y0:.3} .. {x1:.3},{y1:.3}); \
             are the labels in the raster's CRS ({})?",
            labels.features.len(),
            opts.labels.display(),
            opts.raster.display(),
            info.crs.as_ref().map(Crs::describe).unwrap_or_else(|| "unknown".into())
        );
    }

    prepare_output(opts)?;
    let image_format = match (info.sample_type, bands.len()) {
        (SampleType::U8, 1 | 3) => ChipImageFormat::Png,
        _ => ChipImageFormat::Tiff,
    };
    let out = &opts.output;
    if opts.format == ChipFormat::RcnnMasks {
        for c in &classes {
            fs::create_dir_all(out.join("labels").join(&c.folder))
                .with_context(|| format!("cannot create labels/{} in {}", c.folder, out.display()))?;
        }
    }

    let tile = opts.tile_size;
    let mut summary = ExportSummary {
        chips_written: 0,
        chips_empty_skipped: 0,
        chips_nodata_skipped: 0,
        objects: 0,
        classes: Vec::new(),
        image_format,
        label_polygons: labels.features.len(),
    };
    let mut esri = EsriExport::new(bands.len(), classes.len());
    let mut coco = CocoExport::default();

    let index = PolygonIndex::new(&polygons, info.width, info.height, tile);
    for window in chip_windows(info.width, info.height, tile, opts.stride) {
        let data = raster.read_window_typed(window, &bands)?;
        if let Some(nd) = info.nodata {
            let all_nodata = {
                let v = data.data.to_f32();
                v.iter().all(|&s| s as f64 == nd || (nd.is_nan() && s.is_nan()))
            };
            if all_nodata {
                summary.chips_nodata_skipped += 1;
                continue;
            }
        }
        let objects = chip_objects(&polygons, &index.candidates(window), window, tile)?;
        if objects.is_empty() && !opts.keep_empty {
            summary.chips_empty_skipped += 1;
            continue;
        }
        let stem = format!("{:09}", summary.chips_written);
        let chip_gt = gt.shifted(window.x as f64, window.y as f64);
        let pixels = pad_to_tile(&data.data, window, tile, bands.len(), info.nodata.unwrap_or(0.0));
        let image_path = out.join("images").join(format!("{stem}.{}", image_format.extension()));
        write_chip(&image_path, image_format, tile, bands.len(), &pixels, &chip_gt, info.crs.as_ref(), info.nodata)?;
        let chip =
            ChipContext { out, stem: &stem, format: image_format, tile, window, gt: &chip_gt, crs: info.crs.as_ref() };
        summary.objects += match opts.format {
            ChipFormat::RcnnMasks => {
                esri.add_pixels(&pixels, (tile * tile) as usize, info.nodata);
                esri.add_chip(&chip, &objects, &polygons, &mut classes)?
            }
            ChipFormat::Coco => coco.add_chip(&chip, &objects, &polygons, &mut classes)?,
        };
        summary.chips_written += 1;
    }

    if summary.chips_written == 0 {
        bail!(
            "no chips written to {}: {} chips have no label polygon{} and {} are entirely nodata",
            out.display(),
            summary.chips_empty_skipped,
            if opts.keep_empty { "" } else { " (they are kept only when empty chips are asked for)" },
            summary.chips_nodata_skipped
        );
    }
    // One number for the export, at the raster's centre (the side of the pixel's square in metres).
    let cell_metres = info
        .geotransform
        .as_ref()
        .and_then(|g| crate::units::cell_size_metres(g, info.crs.as_ref(), info.width, info.height))
        .map(|(x, y)| (x * y).sqrt());
    match opts.format {
        ChipFormat::RcnnMasks => esri.finish(out, &summary, &classes, &bands, tile, &gt, cell_metres)?,
        ChipFormat::Coco => {
            let description = format!("chips of {} labelled from {}", opts.raster.display(), opts.labels.display());
            coco.finish(out, description, info.crs.as_ref(), &classes, tile, opts.stride, cell_metres)?
        }
    }
    summary.classes = classes;
    Ok(summary)
}
