//! The COCO side of an export: one image entry per chip, one annotation per object (the label
//! polygon clipped to the chip, or an RLE mask when the clipped shape has holes), and
//! `annotations.json`.
//!
//! Written with `serde_json` values rather than maskrcnn-data's COCO types: maskrcnn-geo does
//! not depend on maskrcnn-data (only its tests do), and the extra `window`/`geotransform` image
//! fields placing each chip on the raster are not part of those types.

use std::path::Path;

use anyhow::Result;
use geo::{Area, BooleanOps, LineString, MultiPolygon, Polygon};
use serde_json::{json, Value};

use super::files::write_text;
use super::layout::{ChipObject, PixelPolygon};
use super::{ChipClass, ChipContext};
use crate::raster::{Crs, PixelWindow};

/// The images and annotations of a COCO export, gathered chip by chip.
#[derive(Default)]
pub(super) struct CocoExport {
    images: Vec<Value>,
    annotations: Vec<Value>,
}

impl CocoExport {
    /// Adds the next chip (image ids count from 1) with its objects; returns the number of
    /// annotations added, which are also counted into `classes`.
    pub(super) fn add_chip(
        &mut self,
        chip: &ChipContext,
        objects: &[ChipObject],
        polygons: &[PixelPolygon],
        classes: &mut [ChipClass],
    ) -> Result<usize> {
        let (window, tile) = (chip.window, chip.tile);
        let image_id = self.images.len() as u64 + 1;
        self.images.push(json!({
            "id": image_id,
            "file_name": format!("{}.{}", chip.stem, chip.format.extension()),
            "width": tile,
            "height": tile,
            "window": [window.x, window.y, window.width, window.height],
            "geotransform": chip.gt.0,
        }));
        for o in objects {
            let segmentation = coco_segmentation(&polygons[o.polygon].geometry, window, tile, o)?;
            let (area, bbox) = segmentation_extent(&segmentation, o);
            classes[o.class].objects += 1;
            self.annotations.push(json!({
                "id": self.annotations.len() + 1,
                "image_id": image_id,
                "category_id": classes[o.class].value,
                "segmentation": segmentation,
                "area": area,
                "bbox": bbox,
                "iscrowd": 0,
            }));
        }
        Ok(objects.len())
    }

    /// Writes `annotations.json` into `out`; `description` goes to the `info` block.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish(
        self,
        out: &Path,
        description: String,
        crs: Option<&Crs>,
        classes: &[ChipClass],
        tile: u32,
        stride: u32,
        cell_metres: Option<f64>,
    ) -> Result<()> {
        let categories: Vec<Value> =
            classes.iter().map(|c| json!({"id": c.value, "name": c.name, "supercategory": c.name})).collect();
        let doc = json!({
            "info": {
                "description": description,
                "crs": crs.map(Crs::describe),
                "tile_size": tile,
                "stride": stride,
                "cell_size_m": cell_metres,
            },
            "images": self.images,
            "annotations": self.annotations,
            "categories": categories,
        });
        write_text(&out.join("annotations.json"), &serde_json::to_string(&doc)?)
    }
}

/// COCO segmentation of one object: the polygon clipped to the chip, in chip pixels; an
/// uncompressed RLE of its own mask when the clipped shape has holes.
fn coco_segmentation(
    geometry: &MultiPolygon<f64>,
    window: PixelWindow,
    tile: u32,
    object: &ChipObject,
) -> Result<Value> {
    let (x0, y0) = (window.x as f64, window.y as f64);
    let rect = Polygon::new(
        LineString::from(vec![
            (x0, y0),
            (x0 + window.width as f64, y0),
            (x0 + window.width as f64, y0 + window.height as f64),
            (x0, y0 + window.height as f64),
            (x0, y0),
        ]),
        vec![],
    );
    let clipped = geometry.intersection(&MultiPolygon::new(vec![rect]));
    let has_holes = clipped.0.iter().any(|p| !p.interiors().is_empty());
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    let mut rings: Vec<Vec<f64>> = Vec::new();
    if !has_holes {
        for p in &clipped.0 {
            let pts = &p.exterior().0;
            let n = if pts.len() > 1 && pts[0] == pts[pts.len() - 1] { pts.len() - 1 } else { pts.len() };
            if n < 3 || p.unsigned_area() <= 0.0 {
                continue;
            }
            rings.push(pts[..n].iter().flat_map(|c| [round(c.x - x0), round(c.y - y0)]).collect());
        }
    }
    if !has_holes && !rings.is_empty() {
        return Ok(json!(rings));
    }
    // Column-major run lengths starting with background, as COCO's uncompressed RLE.
    let mut mask = vec![false; (tile * tile) as usize];
    for &(x, y) in &object.own_pixels {
        mask[(x * tile + y) as usize] = true;
    }
    let mut counts = Vec::new();
    let (mut current, mut run) = (false, 0u32);
    for &m in &mask {
        if m != current {
            counts.push(run);
            current = m;
            run = 0;
        }
        run += 1;
    }
    counts.push(run);
    Ok(json!({"counts": counts, "size": [tile, tile]}))
}

/// (area, [x, y, w, h]) of a segmentation: polygon area and extent, or pixel count and pixel box.
fn segmentation_extent(seg: &Value, object: &ChipObject) -> (f64, [f64; 4]) {
    if let Some(rings) = seg.as_array() {
        let mut area = 0.0;
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for ring in rings {
            let pts: Vec<f64> = ring.as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
            let n = pts.len() / 2;
            let mut twice = 0.0;
            for i in 0..n {
                let j = (i + 1) % n;
                twice += pts[2 * i] * pts[2 * j + 1] - pts[2 * j] * pts[2 * i + 1];
                x0 = x0.min(pts[2 * i]);
                x1 = x1.max(pts[2 * i]);
                y0 = y0.min(pts[2 * i + 1]);
                y1 = y1.max(pts[2 * i + 1]);
            }
            area += twice.abs() / 2.0;
        }
        return (area, [x0, y0, x1 - x0, y1 - y0]);
    }
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for &(x, y) in &object.own_pixels {
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    (object.own_pixels.len() as f64, [x0 as f64, y0 as f64, (x1 - x0 + 1) as f64, (y1 - y0 + 1) as f64])
}
