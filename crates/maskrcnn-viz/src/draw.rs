//! Instance overlays: masks blended in the class colour with a contour, boxes, and "label 0.93" tags.

use anyhow::{bail, Result};
use image::{Rgb, RgbImage};
use std::str::FromStr;

use crate::font::{draw_text, text_size};
use crate::palette::contrasting_text_color;

/// A borrowed binary mask, one byte per pixel in row-major order; any non-zero byte is "inside".
/// Built through [`MaskRef::new`] so the buffer length is known to match the size.
#[derive(Clone, Copy, Debug)]
pub struct MaskRef<'a> {
    data: &'a [u8],
    width: u32,
    height: u32,
}

impl<'a> MaskRef<'a> {
    /// Fails when `data` does not hold exactly `width * height` bytes.
    pub fn new(data: &'a [u8], width: u32, height: u32) -> Result<Self> {
        let expected = width as usize * height as usize;
        if data.len() != expected {
            bail!("mask buffer has {} bytes but a {width}x{height} mask needs {expected}", data.len());
        }
        Ok(Self { data, width, height })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Whether pixel (x, y) is inside the mask; pixels outside the mask's size are not.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        x < self.width && y < self.height && self.data[(y * self.width + x) as usize] != 0
    }
}

/// One object to draw: a ground-truth annotation (score `None`) or a prediction.
#[derive(Clone, Debug)]
pub struct DrawInstance<'a> {
    /// x1, y1, x2, y2 in image pixels (continuous coordinates, as torchvision boxes).
    pub bbox: [f32; 4],
    /// Full-image mask. If its size differs from the image it is resampled (nearest neighbour),
    /// so masks kept at another resolution still line up.
    pub mask: Option<MaskRef<'a>>,
    /// Class name shown in the tag; empty for none.
    pub label: String,
    /// Shown after the label for predictions; `None` for ground truth.
    pub score: Option<f32>,
    /// RGB of the fill, contour, box and tag (see [`crate::class_color`]).
    pub color: [u8; 3],
}

/// What to draw for each instance, named as in arcgis.learn's `show_results(mode=...)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DrawMode {
    /// Masks and contours only. An instance without a mask falls back to its box so it is not lost.
    #[default]
    Mask,
    BBox,
    BBoxMask,
}

impl FromStr for DrawMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mask" => Ok(Self::Mask),
            "bbox" => Ok(Self::BBox),
            "bbox_mask" => Ok(Self::BBoxMask),
            other => bail!("unknown draw mode {other:?}: expected \"mask\", \"bbox\" or \"bbox_mask\""),
        }
    }
}

/// How [`draw_instances`] draws; the defaults follow arcgis.learn's `show_results`.
#[derive(Clone, Debug)]
pub struct DrawOptions {
    pub mode: DrawMode,
    /// Opacity of the class colour over the mask area (arcgis.learn's `alpha`, default 0.5).
    pub mask_alpha: f32,
    /// Contour thickness in pixels, drawn inside the mask edge; 0 disables it.
    pub contour_width: u32,
    /// Box line thickness in pixels, drawn inside the box.
    pub box_width: u32,
    /// Integer font scale; `None` picks one from the image size so tags stay readable when the
    /// picture is later shrunk into a grid cell.
    pub font_scale: Option<u32>,
    /// Draw a tag with the class name at each object.
    pub show_labels: bool,
    /// Add the score to the tag of predictions.
    pub show_scores: bool,
    /// When false (the default), a tag that finds no spot free of other tags is left out (the
    /// object itself is still drawn), so crowded scenes such as aerial tiles with hundreds of
    /// buildings stay readable. Better-scoring objects get their tags first.
    pub overlapping_tags: bool,
}

impl Default for DrawOptions {
    fn default() -> Self {
        Self {
            mode: DrawMode::Mask,
            mask_alpha: 0.5,
            contour_width: 2,
            box_width: 2,
            font_scale: None,
            show_labels: true,
            show_scores: true,
            overlapping_tags: false,
        }
    }
}

/// Font scale for tags: 1 up to COCO-sized pictures (a scale of 2 there covers crowded scenes
/// with tags), 2 from 800 px on the short side, 3 from 1200 px, and so on.
pub fn auto_font_scale(width: u32, height: u32) -> u32 {
    (width.min(height) / 400).max(1)
}

/// Text of an instance's tag, e.g. "building 0.93"; empty when there is nothing to say.
pub fn tag_text(instance: &DrawInstance, show_scores: bool) -> String {
    match (instance.label.is_empty(), instance.score.filter(|_| show_scores)) {
        (_, None) => instance.label.clone(),
        (true, Some(score)) => format!("{score:.2}"),
        (false, Some(score)) => format!("{} {score:.2}", instance.label),
    }
}

/// Draw `instances` over a copy of `image`. All masks go down first, then contours, boxes and
/// finally tags, so no mask ever covers another instance's outline or text.
pub fn draw_instances(image: &RgbImage, instances: &[DrawInstance], opts: &DrawOptions) -> RgbImage {
    let mut canvas = image.clone();
    let draw_masks = matches!(opts.mode, DrawMode::Mask | DrawMode::BBoxMask);
    let alpha = if opts.mask_alpha.is_finite() { opts.mask_alpha.clamp(0.0, 1.0) } else { 0.5 };

    let masks: Vec<Option<LocalMask>> = instances
        .iter()
        .map(|inst| {
            if draw_masks {
                inst.mask.as_ref().and_then(|m| LocalMask::from_mask(m, canvas.width(), canvas.height()))
            } else {
                None
            }
        })
        .collect();

    for (inst, mask) in instances.iter().zip(&masks) {
        if let Some(mask) = mask {
            mask.for_each_inside(|x, y| blend_pixel(&mut canvas, x, y, inst.color, alpha));
        }
    }
    if opts.contour_width > 0 {
        for (inst, mask) in instances.iter().zip(&masks) {
            if let Some(mask) = mask {
                mask.for_each_contour(opts.contour_width, |x, y| canvas.put_pixel(x, y, Rgb(inst.color)));
            }
        }
    }
    for (inst, mask) in instances.iter().zip(&masks) {
        let wants_box = match opts.mode {
            DrawMode::BBox | DrawMode::BBoxMask => true,
            DrawMode::Mask => mask.is_none(),
        };
        if wants_box {
            if let Some(rect) = PixelRect::from_bbox(inst.bbox, canvas.width(), canvas.height()) {
                draw_rect_outline(&mut canvas, rect, opts.box_width.max(1), inst.color);
            }
        }
    }
    if opts.show_labels {
        let scale = opts.font_scale.unwrap_or_else(|| auto_font_scale(canvas.width(), canvas.height())).max(1);
        // Highest scores pick their tag position first (ground truth, without scores, before all).
        let mut order: Vec<usize> = (0..instances.len()).collect();
        let rank = |i: usize| instances[i].score.filter(|s| s.is_finite()).unwrap_or(f32::INFINITY);
        order.sort_by(|&a, &b| rank(b).total_cmp(&rank(a)));
        let mut placed: Vec<(TagRect, String, [u8; 3])> = Vec::new();
        for index in order {
            let (inst, mask) = (&instances[index], &masks[index]);
            let text = tag_text(inst, opts.show_scores);
            if text.is_empty() {
                continue;
            }
            // A box with NaN coordinates still gets its tag if the mask tells where the object is.
            let anchor = PixelRect::from_bbox(inst.bbox, canvas.width(), canvas.height())
                .or_else(|| mask.as_ref().map(|m| m.extent()));
            if let Some(anchor) = anchor {
                let (text_w, text_h) = text_size(&text, scale);
                let pad = scale as i64 + 1;
                let size = (text_w as i64 + 2 * pad, text_h as i64 + 2 * pad);
                let others: Vec<TagRect> = placed.iter().map(|p| p.0).collect();
                match place_tag(canvas.width(), canvas.height(), anchor, size, &others) {
                    TagSpot::Free(rect) => placed.push((rect, text, inst.color)),
                    TagSpot::Crowded(rect) if opts.overlapping_tags => placed.push((rect, text, inst.color)),
                    TagSpot::Crowded(_) => {}
                }
            }
        }
        // Drawn in reverse so that, where tags still overlap, the best-scoring one is on top.
        for (rect, text, color) in placed.iter().rev() {
            let pad = scale as i64 + 1;
            fill_rect(&mut canvas, rect.x, rect.y, rect.x + rect.w - 1, rect.y + rect.h - 1, *color);
            draw_text(&mut canvas, rect.x + pad, rect.y + pad, text, scale, contrasting_text_color(*color));
        }
    }
    canvas
}

/// Inclusive pixel rectangle, already clipped to the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PixelRect {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

impl PixelRect {
    /// Pixels covered by a continuous box: [10.0, 10.0, 20.0, 20.0] covers pixels 10..=19.
    /// `None` for non-finite boxes or boxes entirely outside the image.
    fn from_bbox(bbox: [f32; 4], width: u32, height: u32) -> Option<Self> {
        if width == 0 || height == 0 || bbox.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let (left, right) = (bbox[0].min(bbox[2]), bbox[0].max(bbox[2]));
        let (top, bottom) = (bbox[1].min(bbox[3]), bbox[1].max(bbox[3]));
        let x0 = left.floor() as i64;
        let y0 = top.floor() as i64;
        // A zero-size box still marks one pixel.
        let x1 = (right.ceil() as i64 - 1).max(x0);
        let y1 = (bottom.ceil() as i64 - 1).max(y0);
        if x1 < 0 || y1 < 0 || x0 >= width as i64 || y0 >= height as i64 {
            return None;
        }
        Some(Self {
            x0: x0.max(0) as u32,
            y0: y0.max(0) as u32,
            x1: x1.min(width as i64 - 1) as u32,
            y1: y1.min(height as i64 - 1) as u32,
        })
    }
}

fn blend_pixel(image: &mut RgbImage, x: u32, y: u32, color: [u8; 3], alpha: f32) {
    let pixel = image.get_pixel_mut(x, y);
    for (channel, target) in pixel.0.iter_mut().zip(color) {
        *channel = (*channel as f32 * (1.0 - alpha) + target as f32 * alpha).round() as u8;
    }
}

pub(crate) fn fill_rect(image: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, color: [u8; 3]) {
    let x_end = x1.min(image.width() as i64 - 1);
    let y_end = y1.min(image.height() as i64 - 1);
    for y in y0.max(0)..=y_end {
        for x in x0.max(0)..=x_end {
            image.put_pixel(x as u32, y as u32, Rgb(color));
        }
    }
}

fn draw_rect_outline(image: &mut RgbImage, rect: PixelRect, thickness: u32, color: [u8; 3]) {
    let (x0, y0, x1, y1) = (rect.x0 as i64, rect.y0 as i64, rect.x1 as i64, rect.y1 as i64);
    let t = thickness as i64 - 1;
    fill_rect(image, x0, y0, x1, (y0 + t).min(y1), color);
    fill_rect(image, x0, (y1 - t).max(y0), x1, y1, color);
    fill_rect(image, x0, y0, (x0 + t).min(x1), y1, color);
    fill_rect(image, (x1 - t).max(x0), y0, x1, y1, color);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TagRect {
    x: i64,
    y: i64,
    w: i64,
    h: i64,
}

impl TagRect {
    fn overlap(&self, other: &TagRect) -> i64 {
        let w = (self.x + self.w).min(other.x + other.w) - self.x.max(other.x);
        let h = (self.y + self.h).min(other.y + other.h) - self.y.max(other.y);
        w.max(0) * h.max(0)
    }
}

enum TagSpot {
    Free(TagRect),
    /// Every spot covers another tag; this one covers the least.
    Crowded(TagRect),
}

/// Where a tag of `size` goes: just above the box, else inside its top edge, else below it, else
/// inside its bottom edge, taking the first spot that does not cover a tag already placed.
/// Each spot is shifted to lie inside the image.
fn place_tag(img_w: u32, img_h: u32, anchor: PixelRect, size: (i64, i64), placed: &[TagRect]) -> TagSpot {
    let (w, h) = size;
    let (img_w, img_h) = (img_w as i64, img_h as i64);
    let x = (anchor.x0 as i64).min(img_w - w).max(0);
    let clamp_y = |y: i64| y.min(img_h - h).max(0);
    let above = anchor.y0 as i64 - h;
    let mut candidates = Vec::with_capacity(4);
    if above >= 0 {
        candidates.push(above);
    }
    candidates.extend([anchor.y0 as i64, anchor.y1 as i64 + 1, anchor.y1 as i64 + 1 - h]);
    let rects: Vec<TagRect> = candidates.into_iter().map(|y| TagRect { x, y: clamp_y(y), w, h }).collect();
    let covered = |r: &TagRect| placed.iter().map(|p| r.overlap(p)).sum::<i64>();
    match rects.iter().find(|r| covered(r) == 0) {
        Some(free) => TagSpot::Free(*free),
        None => TagSpot::Crowded(*rects.iter().min_by_key(|r| covered(r)).unwrap_or(&rects[0])),
    }
}

/// A mask cropped to the bounding box of its set pixels, in image coordinates.
struct LocalMask {
    origin_x: u32,
    origin_y: u32,
    width: u32,
    height: u32,
    image_width: u32,
    image_height: u32,
    inside: Vec<bool>,
}

impl LocalMask {
    /// `None` if the mask is empty.
    fn from_mask(mask: &MaskRef, image_width: u32, image_height: u32) -> Option<Self> {
        if image_width == 0 || image_height == 0 || mask.width == 0 || mask.height == 0 {
            return None;
        }
        let same_size = mask.width == image_width && mask.height == image_height;
        let sample = |x: u32, y: u32| {
            if same_size {
                mask.contains(x, y)
            } else {
                let mx = (x as u64 * mask.width as u64 / image_width as u64) as u32;
                let my = (y as u64 * mask.height as u64 / image_height as u64) as u32;
                mask.contains(mx, my)
            }
        };
        let (mut min_x, mut min_y, mut max_x, mut max_y) = (u32::MAX, u32::MAX, 0, 0);
        if same_size {
            // Row slices instead of per-pixel lookups: this scan dominates the cost of drawing
            // many instances on a large image.
            for (y, row) in mask.data.chunks_exact(mask.width as usize).enumerate() {
                if let Some(first) = row.iter().position(|v| *v != 0) {
                    let last = row.iter().rposition(|v| *v != 0).unwrap_or(first);
                    min_x = min_x.min(first as u32);
                    max_x = max_x.max(last as u32);
                    min_y = min_y.min(y as u32);
                    max_y = max_y.max(y as u32);
                }
            }
        } else {
            for y in 0..image_height {
                for x in 0..image_width {
                    if sample(x, y) {
                        min_x = min_x.min(x);
                        max_x = max_x.max(x);
                        min_y = min_y.min(y);
                        max_y = max_y.max(y);
                    }
                }
            }
        }
        if min_x == u32::MAX {
            return None;
        }
        let (width, height) = (max_x - min_x + 1, max_y - min_y + 1);
        let mut inside = Vec::with_capacity((width * height) as usize);
        for y in min_y..=max_y {
            for x in min_x..=max_x {
                inside.push(sample(x, y));
            }
        }
        Some(Self { origin_x: min_x, origin_y: min_y, width, height, image_width, image_height, inside })
    }

    fn extent(&self) -> PixelRect {
        PixelRect {
            x0: self.origin_x,
            y0: self.origin_y,
            x1: self.origin_x + self.width - 1,
            y1: self.origin_y + self.height - 1,
        }
    }

    fn at(&self, lx: i64, ly: i64) -> bool {
        lx >= 0
            && ly >= 0
            && lx < self.width as i64
            && ly < self.height as i64
            && self.inside[(ly as u32 * self.width + lx as u32) as usize]
    }

    fn for_each_inside(&self, mut f: impl FnMut(u32, u32)) {
        for ly in 0..self.height {
            for lx in 0..self.width {
                if self.inside[(ly * self.width + lx) as usize] {
                    f(self.origin_x + lx, self.origin_y + ly);
                }
            }
        }
    }

    /// Inside pixels within Chebyshev distance `width` of an outside pixel. Pixels beyond the image
    /// border do not count as outside: an object cut by the image edge gets no contour along it,
    /// which would otherwise read as a frame around the picture.
    fn for_each_contour(&self, width: u32, mut f: impl FnMut(u32, u32)) {
        let r = width as i64;
        let is_outside = |lx: i64, ly: i64| {
            let gx = self.origin_x as i64 + lx;
            let gy = self.origin_y as i64 + ly;
            let in_image = gx >= 0 && gy >= 0 && gx < self.image_width as i64 && gy < self.image_height as i64;
            in_image && !self.at(lx, ly)
        };
        // Separable test: first mark, per pixel, whether an outside pixel lies within r columns on
        // its row; then a pixel is contour if any row within r rows has such a mark.
        let (w, h) = (self.width as i64, self.height as i64);
        let padded_w = w + 2 * r;
        let padded_h = h + 2 * r;
        let mut near_outside_row = vec![false; (padded_w * padded_h) as usize];
        for py in 0..padded_h {
            let ly = py - r;
            for px in 0..padded_w {
                let lx = px - r;
                near_outside_row[(py * padded_w + px) as usize] = (lx - r..=lx + r).any(|sx| is_outside(sx, ly));
            }
        }
        for ly in 0..h {
            for lx in 0..w {
                if !self.at(lx, ly) {
                    continue;
                }
                let px = lx + r;
                let near = (ly..=ly + 2 * r).any(|py| near_outside_row[(py * padded_w + px) as usize]);
                if near {
                    f(self.origin_x + lx as u32, self.origin_y + ly as u32);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRAY: [u8; 3] = [100, 100, 100];
    const RED: [u8; 3] = [200, 0, 0];

    fn gray_image(w: u32, h: u32) -> RgbImage {
        RgbImage::from_pixel(w, h, Rgb(GRAY))
    }

    /// Square mask covering pixels x0..x1, y0..y1 (exclusive ends).
    fn square_mask(w: u32, h: u32, x0: u32, y0: u32, x1: u32, y1: u32) -> Vec<u8> {
        let mut data = vec![0u8; (w * h) as usize];
        for y in y0..y1 {
            for x in x0..x1 {
                data[(y * w + x) as usize] = 1;
            }
        }
        data
    }

    /// An unlabelled, unscored red instance: what most of these tests draw.
    fn red_instance(bbox: [f32; 4], mask: Option<MaskRef<'_>>) -> DrawInstance<'_> {
        DrawInstance { bbox, mask, label: String::new(), score: None, color: RED }
    }

    fn no_text() -> DrawOptions {
        DrawOptions { show_labels: false, ..Default::default() }
    }

    #[test]
    fn mask_is_blended_with_alpha_and_outlined_by_a_two_pixel_contour() {
        let image = gray_image(60, 50);
        let data = square_mask(60, 50, 10, 10, 40, 30);
        let inst = red_instance([10.0, 10.0, 40.0, 30.0], Some(MaskRef::new(&data, 60, 50).unwrap()));
        let out = draw_instances(&image, &[inst], &no_text());
        assert_eq!(out.get_pixel(25, 20).0, [150, 50, 50], "interior is 50% gray + 50% red");
        assert_eq!(out.get_pixel(10, 20).0, RED, "edge pixel is contour");
        assert_eq!(out.get_pixel(11, 20).0, RED, "second pixel in is still contour (width 2)");
        assert_eq!(out.get_pixel(12, 20).0, [150, 50, 50], "third pixel in is blended");
        assert_eq!(out.get_pixel(39, 29).0, RED);
        assert_eq!(out.get_pixel(9, 20).0, GRAY, "outside is untouched");
        assert_eq!(out.get_pixel(45, 40).0, GRAY);
        assert_eq!(image.get_pixel(25, 20).0, GRAY, "input is not modified");
        let contour = out.pixels().filter(|p| p.0 == RED).count();
        // Ring of width 2 around a 30x20 square: 30*20 - 26*16.
        assert_eq!(contour, 30 * 20 - 26 * 16);
    }

    #[test]
    fn one_pixel_contour_and_no_contour_along_the_image_border() {
        let image = gray_image(40, 40);
        let data = square_mask(40, 40, 0, 0, 20, 20);
        let inst = red_instance([0.0, 0.0, 20.0, 20.0], Some(MaskRef::new(&data, 40, 40).unwrap()));
        let opts = DrawOptions { contour_width: 1, mask_alpha: 1.0, ..no_text() };
        let out = draw_instances(&image, &[inst], &opts);
        // With alpha 1 the fill equals the contour colour; check the contour by making the fill differ.
        assert_eq!(out.get_pixel(5, 5).0, RED);
        let opts = DrawOptions { contour_width: 1, mask_alpha: 0.0, ..no_text() };
        let inst = red_instance([0.0, 0.0, 20.0, 20.0], Some(MaskRef::new(&data, 40, 40).unwrap()));
        let out = draw_instances(&image, &[inst], &opts);
        assert_eq!(out.get_pixel(19, 5).0, RED, "right edge (inside the image) has a contour");
        assert_eq!(out.get_pixel(18, 5).0, GRAY, "contour is one pixel wide");
        assert_eq!(out.get_pixel(0, 5).0, GRAY, "no contour where the mask is cut by the image border");
        assert_eq!(out.get_pixel(5, 0).0, GRAY);
        assert_eq!(out.pixels().filter(|p| p.0 == RED).count(), 20 + 19);
    }

    #[test]
    fn modes_choose_between_mask_and_box() {
        let image = gray_image(60, 60);
        let data = square_mask(60, 60, 20, 20, 30, 30);
        let make = || red_instance([10.0, 10.0, 50.0, 50.0], Some(MaskRef::new(&data, 60, 60).unwrap()));
        let interior = (25, 25);
        let box_edge = (10, 30);

        let out = draw_instances(&image, &[make()], &DrawOptions { mode: DrawMode::Mask, ..no_text() });
        assert_ne!(out.get_pixel(interior.0, interior.1).0, GRAY);
        assert_eq!(out.get_pixel(box_edge.0, box_edge.1).0, GRAY);

        let out = draw_instances(&image, &[make()], &DrawOptions { mode: DrawMode::BBox, ..no_text() });
        assert_eq!(out.get_pixel(interior.0, interior.1).0, GRAY);
        assert_eq!(out.get_pixel(box_edge.0, box_edge.1).0, RED);
        assert_eq!(out.get_pixel(11, 30).0, RED, "box is 2 px thick");
        assert_eq!(out.get_pixel(12, 30).0, GRAY);
        assert_eq!(out.get_pixel(49, 49).0, RED, "box [10,50) ends at pixel 49");
        assert_eq!(out.get_pixel(50, 49).0, GRAY);

        let out = draw_instances(&image, &[make()], &DrawOptions { mode: DrawMode::BBoxMask, ..no_text() });
        assert_ne!(out.get_pixel(interior.0, interior.1).0, GRAY);
        assert_eq!(out.get_pixel(box_edge.0, box_edge.1).0, RED);
    }

    #[test]
    fn mask_mode_falls_back_to_the_box_when_there_is_no_mask() {
        let image = gray_image(30, 30);
        let inst = red_instance([5.0, 5.0, 25.0, 25.0], None);
        let out = draw_instances(&image, &[inst], &no_text());
        assert_eq!(out.get_pixel(5, 15).0, RED);
    }

    #[test]
    fn tag_stays_inside_the_image_with_contrasting_text() {
        let image = gray_image(80, 60);
        let yellow = [255, 225, 25];
        // Box in the top-right corner: no room above it, and the tag would overflow to the right.
        let inst = DrawInstance {
            bbox: [70.0, 0.0, 80.0, 10.0],
            mask: None,
            label: "car".into(),
            score: Some(0.926),
            color: yellow,
        };
        let opts = DrawOptions { mode: DrawMode::BBox, font_scale: Some(1), ..Default::default() };
        let out = draw_instances(&image, &[inst], &opts);
        let (text_w, text_h) = text_size("car 0.93", 1);
        let (tag_w, tag_h) = (text_w + 4, text_h + 4);
        // The tag is right-aligned against the image edge and starts at the top.
        for y in 0..tag_h {
            for x in 80 - tag_w..80 {
                let p = out.get_pixel(x, y).0;
                assert!(p == yellow || p == [0, 0, 0], "tag pixel ({x},{y}) is {p:?}");
            }
        }
        let text_pixels = out.pixels().filter(|p| p.0 == [0, 0, 0]).count();
        let expected: u32 =
            "car 0.93".chars().map(|c| crate::font::glyph_rows(c).iter().map(|r| r.count_ones()).sum::<u32>()).sum();
        assert_eq!(text_pixels as u32, expected, "all glyph pixels of \"car 0.93\" are drawn in black on yellow");
        assert_eq!(out.get_pixel(80 - tag_w - 1, tag_h + 1).0, GRAY);
    }

    #[test]
    fn tag_goes_above_the_box_when_there_is_room() {
        let image = gray_image(100, 100);
        let blue = [0, 0, 128];
        let inst =
            DrawInstance { bbox: [20.0, 50.0, 60.0, 90.0], mask: None, label: "ship".into(), score: None, color: blue };
        let out = draw_instances(
            &image,
            &[inst],
            &DrawOptions { mode: DrawMode::BBox, font_scale: Some(1), ..Default::default() },
        );
        let tag_h = text_size("ship", 1).1 + 4;
        assert_eq!(out.get_pixel(20, 50 - tag_h).0, blue, "tag top row");
        assert_eq!(out.get_pixel(20, 50 - tag_h - 1).0, GRAY, "nothing above the tag");
        assert!(out.pixels().any(|p| p.0 == [255, 255, 255]), "white text on navy");
    }

    #[test]
    fn tags_of_the_same_box_do_not_cover_each_other_and_the_best_score_goes_above() {
        let image = gray_image(120, 120);
        let (red, blue) = ([200, 0, 0], [0, 0, 200]);
        let low = DrawInstance {
            bbox: [30.0, 50.0, 90.0, 100.0],
            mask: None,
            label: "low".into(),
            score: Some(0.3),
            color: red,
        };
        let high = DrawInstance {
            bbox: [30.0, 50.0, 90.0, 100.0],
            mask: None,
            label: "high".into(),
            score: Some(0.9),
            color: blue,
        };
        let opts = DrawOptions { mode: DrawMode::BBox, font_scale: Some(1), box_width: 1, ..Default::default() };
        let out = draw_instances(&image, &[low, high], &opts);
        let tag_h = text_size("x", 1).1 + 4;
        // The higher score takes the spot above the box; the lower one moves inside the top edge.
        assert_eq!(out.get_pixel(31, 50 - tag_h).0, blue);
        assert_eq!(out.get_pixel(31, 50 - 1).0, blue);
        assert_eq!(out.get_pixel(31, 51).0, red);
        assert_eq!(out.get_pixel(31, 50 + tag_h - 1).0, red);
    }

    #[test]
    fn tags_with_no_free_spot_are_left_out_unless_overlap_is_allowed() {
        // Three objects filling a 30 px high image: only two tag rows fit, so one tag must go.
        let image = gray_image(60, 30);
        let colors = [[200, 0, 0], [0, 200, 0], [0, 0, 200]];
        // The lowest-scoring tag is the widest, so it shows past the others when drawn.
        let labels = ["obj", "obj", "a long label"];
        let instances: Vec<DrawInstance> = (0..3)
            .map(|i| DrawInstance {
                bbox: [0.0, 0.0, 60.0, 30.0],
                mask: None,
                label: labels[i].into(),
                score: Some(0.9 - 0.1 * i as f32),
                color: colors[i],
            })
            .collect();
        let opts = DrawOptions {
            mode: DrawMode::BBox,
            font_scale: Some(1),
            box_width: 1,
            show_scores: false,
            ..Default::default()
        };
        // Rows 1..=28 leave out the box outlines; tags are 21 px wide except the long one.
        let tag_at = |out: &RgbImage, x: u32, color: [u8; 3]| (1..29).any(|y| out.get_pixel(x, y).0 == color);
        let out = draw_instances(&image, &instances, &opts);
        assert!(tag_at(&out, 10, colors[0]) && tag_at(&out, 10, colors[1]), "best two tags drawn");
        assert!(!tag_at(&out, 40, colors[2]), "lowest score loses its tag");
        let out = draw_instances(&image, &instances, &DrawOptions { overlapping_tags: true, ..opts });
        assert!(tag_at(&out, 40, colors[2]), "kept when overlap is allowed");
        assert!(tag_at(&out, 10, colors[0]) && tag_at(&out, 10, colors[1]), "and drawn beneath the better ones");
    }

    #[test]
    fn masks_at_another_resolution_are_resampled_to_the_image() {
        let image = gray_image(40, 40);
        let data = square_mask(20, 20, 5, 5, 10, 10); // covers 10..20 at full resolution
        let inst = red_instance([f32::NAN; 4], Some(MaskRef::new(&data, 20, 20).unwrap()));
        let out = draw_instances(&image, &[inst], &DrawOptions { contour_width: 0, ..no_text() });
        assert_eq!(out.get_pixel(10, 10).0, [150, 50, 50]);
        assert_eq!(out.get_pixel(19, 19).0, [150, 50, 50]);
        assert_eq!(out.get_pixel(9, 10).0, GRAY);
        assert_eq!(out.get_pixel(20, 19).0, GRAY);
    }

    #[test]
    fn bad_mask_buffer_is_an_error_and_odd_boxes_do_not_panic() {
        let err = MaskRef::new(&[0u8; 10], 4, 4).unwrap_err().to_string();
        assert!(err.contains("10 bytes") && err.contains("4x4"), "{err}");
        let image = gray_image(10, 10);
        let odd = [
            [f32::INFINITY, 0.0, 5.0, 5.0],
            [-50.0, -50.0, -10.0, -10.0],
            [8.0, 8.0, 2.0, 2.0],
            [3.0, 3.0, 3.0, 3.0],
            [-5.0, -5.0, 500.0, 500.0],
        ];
        for bbox in odd {
            let inst = DrawInstance {
                bbox,
                mask: None,
                label: "a very long label that is wider than the image".into(),
                score: Some(0.5),
                color: RED,
            };
            draw_instances(&image, &[inst], &DrawOptions { mode: DrawMode::BBoxMask, ..Default::default() });
        }
        let empty = RgbImage::new(0, 0);
        draw_instances(
            &empty,
            &[DrawInstance { bbox: [0.0, 0.0, 1.0, 1.0], mask: None, label: "x".into(), score: None, color: RED }],
            &DrawOptions::default(),
        );
    }

    #[test]
    fn font_scale_grows_with_the_short_side() {
        assert_eq!(auto_font_scale(90, 90), 1);
        assert_eq!(auto_font_scale(640, 480), 1);
        assert_eq!(auto_font_scale(1024, 1024), 2);
        assert_eq!(auto_font_scale(4000, 3000), 7);
    }

    #[test]
    fn mode_names_parse_like_arcgis() {
        assert_eq!("bbox_mask".parse::<DrawMode>().unwrap(), DrawMode::BBoxMask);
        assert!("boxes".parse::<DrawMode>().unwrap_err().to_string().contains("boxes"));
    }

    #[test]
    fn tag_text_formats_score_with_two_decimals() {
        let mut inst =
            DrawInstance { bbox: [0.0; 4], mask: None, label: "building".into(), score: Some(0.9349), color: RED };
        assert_eq!(tag_text(&inst, true), "building 0.93");
        assert_eq!(tag_text(&inst, false), "building");
        inst.label.clear();
        assert_eq!(tag_text(&inst, true), "0.93");
    }
}
