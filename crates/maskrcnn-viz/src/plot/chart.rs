//! The line chart itself: plot area, grid, lines, markers and legend.

use image::{Rgb, RgbImage};

use super::axis::Axis;
use crate::draw::fill_rect;
use crate::font::{draw_text, draw_text_vertical, text_size};
use crate::grid::fit_text;

/// One named line; points are (x, y) in data units. Non-finite points (and non-positive ones on a
/// log axis) break the line instead of being drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend entry; an empty name leaves the series out of the legend.
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self { name: name.into(), points }
    }
}

/// A vertical dashed line at `x`, labelled, with a dot where it crosses the first series
/// (used for the suggested learning rate).
#[derive(Clone, Debug, PartialEq)]
pub struct Marker {
    pub x: f64,
    pub label: String,
}

/// Everything [`plot_curves_with`] can be told; [`PlotOptions::new`] gives linear axes, fitted
/// ranges and no markers.
#[derive(Clone, Debug)]
pub struct PlotOptions {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Image size in pixels; at least 160x120 is drawn.
    pub width: u32,
    pub height: u32,
    /// Logarithmic axes; non-positive values are then left out.
    pub log_x: bool,
    pub log_y: bool,
    /// Fixed y range in data units; `None` fits the data. Lines leaving it are clipped.
    pub y_range: Option<(f64, f64)>,
    pub markers: Vec<Marker>,
}

impl PlotOptions {
    pub fn new(title: &str, x_label: &str, y_label: &str, width: u32, height: u32) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            width,
            height,
            log_x: false,
            log_y: false,
            y_range: None,
            markers: Vec::new(),
        }
    }
}

/// matplotlib's "tab10" colours: they read well on white, unlike the overlay palette.
const SERIES_COLORS: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// Line colour of series `index`: tab10, then the overlay palette beyond ten series.
pub fn series_color(index: usize) -> [u8; 3] {
    SERIES_COLORS.get(index).copied().unwrap_or_else(|| crate::palette::class_color(index))
}

const WHITE: [u8; 3] = [255, 255, 255];
const INK: [u8; 3] = [30, 30, 30];
const GRID: [u8; 3] = [228, 228, 228];
pub(super) const MARKER: [u8; 3] = [200, 0, 0];
const MARGIN: i64 = 10;
const TICK: i64 = 4;

/// Line chart with linear axes, numbered ticks, grid and legend.
pub fn plot_curves(series: &[Series], title: &str, x_label: &str, y_label: &str, width: u32, height: u32) -> RgbImage {
    plot_curves_with(series, &PlotOptions::new(title, x_label, y_label, width, height))
}

struct PlotArea {
    left: i64,
    top: i64,
    right: i64,
    bottom: i64,
}

impl PlotArea {
    fn contains(&self, x: i64, y: i64) -> bool {
        x >= self.left && x <= self.right && y >= self.top && y <= self.bottom
    }
    fn map_x(&self, axis: &Axis, t: f64) -> f64 {
        self.left as f64 + (t - axis.lo) / (axis.hi - axis.lo) * (self.right - self.left) as f64
    }
    fn map_y(&self, axis: &Axis, t: f64) -> f64 {
        self.bottom as f64 - (t - axis.lo) / (axis.hi - axis.lo) * (self.bottom - self.top) as f64
    }
}

/// Line chart with all options: log axes, fixed y range and vertical markers.
pub fn plot_curves_with(series: &[Series], opts: &PlotOptions) -> RgbImage {
    let (width, height) = (opts.width.max(160), opts.height.max(120));
    let mut canvas = RgbImage::from_pixel(width, height, Rgb(WHITE));
    let scale = if width >= 1200 { 2 } else { 1 };
    let title_scale = scale + 1;
    let char_h = text_size("0", scale).1 as i64;

    let x_axis = Axis::fit(
        series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).chain(opts.markers.iter().map(|m| m.x)),
        opts.log_x,
        None,
    );
    let y_axis = Axis::fit(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)), opts.log_y, opts.y_range);
    let x_ticks = x_axis.ticks();
    let y_ticks = y_axis.ticks();

    let y_tick_label_w = y_ticks.iter().map(|(_, l)| text_size(l, scale).0 as i64).max().unwrap_or(0);
    let y_label_w = if opts.y_label.is_empty() { 0 } else { char_h + MARGIN };
    let title_h = if opts.title.is_empty() { 0 } else { text_size("0", title_scale).1 as i64 + MARGIN };
    let x_label_h = if opts.x_label.is_empty() { 0 } else { char_h + MARGIN };
    let last_x_label_half = x_ticks.last().map(|(_, l)| text_size(l, scale).0 as i64 / 2).unwrap_or(0);
    let area = PlotArea {
        left: MARGIN + y_label_w + y_tick_label_w + TICK + 4,
        top: MARGIN + title_h,
        right: width as i64 - 1 - MARGIN.max(last_x_label_half + 2),
        bottom: height as i64 - 1 - (MARGIN + x_label_h + char_h + TICK + 4),
    };
    if area.right - area.left < 10 || area.bottom - area.top < 10 {
        draw_text(&mut canvas, MARGIN, MARGIN, &fit_text("plot too small", width, 1), 1, INK);
        return canvas;
    }

    for (t, _) in &x_ticks {
        let x = area.map_x(&x_axis, *t).round() as i64;
        fill_rect(&mut canvas, x, area.top, x, area.bottom, GRID);
    }
    for (t, _) in &y_ticks {
        let y = area.map_y(&y_axis, *t).round() as i64;
        fill_rect(&mut canvas, area.left, y, area.right, y, GRID);
    }

    for (index, s) in series.iter().enumerate() {
        let color = series_color(index);
        let mut previous: Option<(f64, f64)> = None;
        let mut drew_segment = false;
        let mut lone_points = Vec::new();
        for &(x, y) in &s.points {
            let point = x_axis
                .transform(x)
                .zip(y_axis.transform(y))
                .map(|(tx, ty)| (area.map_x(&x_axis, tx), area.map_y(&y_axis, ty)));
            match (previous, point) {
                (Some(a), Some(b)) => {
                    draw_segment(&mut canvas, &area, a, b, 1.0, color);
                    drew_segment = true;
                }
                (None, Some(b)) => lone_points.push(b),
                _ => {}
            }
            previous = point;
        }
        // A series of single points (e.g. one validation loss) would otherwise be invisible.
        if !drew_segment {
            for p in lone_points {
                draw_dot(&mut canvas, &area, p, 3.0, color);
            }
        }
    }

    for marker in &opts.markers {
        let Some(tx) = x_axis.transform(marker.x) else { continue };
        let x = area.map_x(&x_axis, tx);
        let xi = x.round() as i64;
        for y in (area.top..=area.bottom).filter(|y| (y - area.top) % 8 < 5) {
            if area.contains(xi, y) {
                canvas.put_pixel(xi as u32, y as u32, Rgb(MARKER));
            }
        }
        if let Some(first) = series.first() {
            let nearest = first
                .points
                .iter()
                .filter_map(|&(px, py)| Some((x_axis.transform(px)?, y_axis.transform(py)?)))
                .min_by(|a, b| (a.0 - tx).abs().total_cmp(&(b.0 - tx).abs()));
            if let Some((_, ty)) = nearest {
                draw_dot(&mut canvas, &area, (x, area.map_y(&y_axis, ty)), 4.0, MARKER);
            }
        }
        let (label_w, _) = text_size(&marker.label, scale);
        let label_x = if xi + 4 + label_w as i64 <= area.right { xi + 4 } else { xi - 4 - label_w as i64 };
        let label_y = area.top + 4;
        fill_rect(&mut canvas, label_x - 2, label_y - 2, label_x + label_w as i64 + 1, label_y + char_h + 1, WHITE);
        draw_text(&mut canvas, label_x, label_y, &marker.label, scale, MARKER);
    }

    // Frame, ticks and tick labels.
    for (x0, y0, x1, y1) in [
        (area.left, area.top, area.right, area.top),
        (area.left, area.bottom, area.right, area.bottom),
        (area.left, area.top, area.left, area.bottom),
        (area.right, area.top, area.right, area.bottom),
    ] {
        fill_rect(&mut canvas, x0, y0, x1, y1, INK);
    }
    for (t, label) in &x_ticks {
        let x = area.map_x(&x_axis, *t).round() as i64;
        fill_rect(&mut canvas, x, area.bottom + 1, x, area.bottom + TICK, INK);
        let w = text_size(label, scale).0 as i64;
        draw_text(&mut canvas, x - w / 2, area.bottom + TICK + 4, label, scale, INK);
    }
    for (t, label) in &y_ticks {
        let y = area.map_y(&y_axis, *t).round() as i64;
        fill_rect(&mut canvas, area.left - TICK, y, area.left - 1, y, INK);
        let w = text_size(label, scale).0 as i64;
        draw_text(&mut canvas, area.left - TICK - 4 - w, y - char_h / 2, label, scale, INK);
    }

    if !opts.x_label.is_empty() {
        let text = fit_text(&opts.x_label, (area.right - area.left) as u32, scale);
        let w = text_size(&text, scale).0 as i64;
        draw_text(
            &mut canvas,
            (area.left + area.right) / 2 - w / 2,
            height as i64 - MARGIN - char_h,
            &text,
            scale,
            INK,
        );
    }
    if !opts.y_label.is_empty() {
        let text = fit_text(&opts.y_label, (area.bottom - area.top) as u32, scale);
        let w = text_size(&text, scale).0 as i64;
        draw_text_vertical(&mut canvas, MARGIN, (area.top + area.bottom) / 2 - w / 2, &text, scale, INK);
    }
    if !opts.title.is_empty() {
        let text = fit_text(&opts.title, width - 2 * MARGIN as u32, title_scale);
        let w = text_size(&text, title_scale).0 as i64;
        draw_text(&mut canvas, width as i64 / 2 - w / 2, MARGIN, &text, title_scale, INK);
    }

    draw_legend(&mut canvas, &area, series, scale);
    canvas
}

fn draw_legend(canvas: &mut RgbImage, area: &PlotArea, series: &[Series], scale: u32) {
    let named: Vec<(usize, &Series)> = series.iter().enumerate().filter(|(_, s)| !s.name.is_empty()).collect();
    if named.is_empty() {
        return;
    }
    let char_h = text_size("0", scale).1 as i64;
    let swatch = 18 * scale as i64;
    let line_h = char_h + 4;
    let max_text_w = (area.right - area.left) / 2;
    let texts: Vec<String> = named.iter().map(|(_, s)| fit_text(&s.name, max_text_w as u32, scale)).collect();
    let text_w = texts.iter().map(|t| text_size(t, scale).0 as i64).max().unwrap_or(0);
    let box_w = 6 + swatch + 6 + text_w + 6;
    let box_h = 6 + named.len() as i64 * line_h + 2;
    // Like matplotlib's loc="best": of the four inside corners, take the one covering the fewest
    // already-drawn pixels (lines, markers), preferring top-right on ties.
    let candidates = [
        (area.right - 6 - box_w, area.top + 6),
        (area.left + 6, area.top + 6),
        (area.right - 6 - box_w, area.bottom - 6 - box_h),
        (area.left + 6, area.bottom - 6 - box_h),
    ];
    let covered = |&(x0, y0): &(i64, i64)| {
        let mut count = 0usize;
        for y in y0.max(0)..=(y0 + box_h).min(canvas.height() as i64 - 1) {
            for x in x0.max(0)..=(x0 + box_w).min(canvas.width() as i64 - 1) {
                let p = canvas.get_pixel(x as u32, y as u32).0;
                count += (p != WHITE && p != GRID) as usize;
            }
        }
        count
    };
    let (x0, y0) = candidates.iter().min_by_key(|c| covered(c)).copied().unwrap_or(candidates[0]);
    fill_rect(canvas, x0, y0, x0 + box_w, y0 + box_h, WHITE);
    for (x_a, y_a, x_b, y_b) in [
        (x0, y0, x0 + box_w, y0),
        (x0, y0 + box_h, x0 + box_w, y0 + box_h),
        (x0, y0, x0, y0 + box_h),
        (x0 + box_w, y0, x0 + box_w, y0 + box_h),
    ] {
        fill_rect(canvas, x_a, y_a, x_b, y_b, [170, 170, 170]);
    }
    for (row, ((index, _), text)) in named.iter().zip(&texts).enumerate() {
        let y = y0 + 6 + row as i64 * line_h;
        let mid = y + char_h / 2;
        fill_rect(canvas, x0 + 6, mid - 1, x0 + 6 + swatch, mid, series_color(*index));
        draw_text(canvas, x0 + 6 + swatch + 6, y, text, scale, INK);
    }
}

/// Anti-aliased thick segment: each pixel gets the colour in proportion to how much of it lies
/// within `half_width` of the segment, clipped to the plot area.
fn draw_segment(canvas: &mut RgbImage, area: &PlotArea, a: (f64, f64), b: (f64, f64), half_width: f64, color: [u8; 3]) {
    let reach = half_width + 1.0;
    let x_lo = (a.0.min(b.0) - reach).floor().max(area.left as f64) as i64;
    let x_hi = (a.0.max(b.0) + reach).ceil().min(area.right as f64) as i64;
    let y_lo = (a.1.min(b.1) - reach).floor().max(area.top as f64) as i64;
    let y_hi = (a.1.max(b.1) + reach).ceil().min(area.bottom as f64) as i64;
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let length_sq = dx * dx + dy * dy;
    for y in y_lo..=y_hi {
        for x in x_lo..=x_hi {
            let (px, py) = (x as f64, y as f64);
            let t =
                if length_sq > 0.0 { (((px - a.0) * dx + (py - a.1) * dy) / length_sq).clamp(0.0, 1.0) } else { 0.0 };
            let distance = ((px - a.0 - t * dx).powi(2) + (py - a.1 - t * dy).powi(2)).sqrt();
            let coverage = (half_width + 0.5 - distance).clamp(0.0, 1.0) as f32;
            if coverage > 0.0 {
                blend(canvas, x, y, color, coverage);
            }
        }
    }
}

fn draw_dot(canvas: &mut RgbImage, area: &PlotArea, centre: (f64, f64), radius: f64, color: [u8; 3]) {
    draw_segment(canvas, area, centre, centre, radius, color);
}

fn blend(canvas: &mut RgbImage, x: i64, y: i64, color: [u8; 3], alpha: f32) {
    if x < 0 || y < 0 || x >= canvas.width() as i64 || y >= canvas.height() as i64 {
        return;
    }
    let pixel = canvas.get_pixel_mut(x as u32, y as u32);
    for (channel, target) in pixel.0.iter_mut().zip(color) {
        *channel = (*channel as f32 * (1.0 - alpha) + target as f32 * alpha).round() as u8;
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn color_count(image: &RgbImage, color: [u8; 3]) -> usize {
        image.pixels().filter(|p| p.0 == color).count()
    }

    #[test]
    fn line_passes_through_the_mapped_data_points() {
        // Two points at the corners of the data range: the line must run along the plot diagonal.
        let series = [Series::new("", vec![(0.0, 0.0), (10.0, 10.0)])];
        let image = plot_curves(&series, "", "", "", 400, 300);
        let blue = series_color(0);
        let blue_pixels: Vec<(u32, u32)> =
            image.enumerate_pixels().filter(|(_, _, p)| p.0 == blue).map(|(x, y, _)| (x, y)).collect();
        assert!(blue_pixels.len() > 200, "only {} fully covered line pixels", blue_pixels.len());
        // Monotone rising line: larger x means smaller (higher up) y.
        let left = blue_pixels.iter().min_by_key(|p| p.0).unwrap();
        let right = blue_pixels.iter().max_by_key(|p| p.0).unwrap();
        assert!(left.1 > right.1 + 100, "{left:?} -> {right:?}");
        // Nothing drawn in the top-left or bottom-right corner of the plot, away from the diagonal.
        let mid_x = (left.0 + right.0) / 2;
        let expected_mid_y = (left.1 + right.1) / 2;
        let column: Vec<u32> = blue_pixels.iter().filter(|p| p.0 == mid_x).map(|p| p.1).collect();
        assert!(
            column.iter().all(|y| y.abs_diff(expected_mid_y) <= 3),
            "column {mid_x}: {column:?} vs {expected_mid_y}"
        );
    }

    #[test]
    fn non_finite_points_break_the_line_and_legend_shows_names() {
        let series = [
            Series::new("train", vec![(0.0, 1.0), (1.0, f64::NAN), (2.0, 1.0)]),
            Series::new("val", vec![(0.0, 0.0), (2.0, 0.0)]),
        ];
        let image = plot_curves(&series, "t", "x", "y", 400, 300);
        // "train" has no two consecutive finite points, so it only appears as the legend swatch
        // (and dots, which are anti-aliased and so never exactly the pure colour in every pixel).
        let orange = color_count(&image, series_color(1));
        assert!(orange > 100, "val line drawn: {orange}");
        let legend_swatch = 2 * 19;
        let blue = color_count(&image, series_color(0));
        assert!(blue >= legend_swatch && blue < legend_swatch + 40, "train drawn only as swatch and two dots: {blue}");
    }

    #[test]
    fn legend_moves_away_from_the_data() {
        // A line along the top of the plot: the legend must not sit in the top-right corner.
        let series = [Series::new("rising then flat", vec![(0.0, 0.0), (1.0, 10.0), (10.0, 10.0)])];
        let image = plot_curves(&series, "", "", "", 400, 300);
        let legend_border = [170u8, 170, 170];
        let border: Vec<(u32, u32)> =
            image.enumerate_pixels().filter(|(_, _, p)| p.0 == legend_border).map(|(x, y, _)| (x, y)).collect();
        assert!(!border.is_empty());
        let mean_y = border.iter().map(|p| p.1 as f64).sum::<f64>() / border.len() as f64;
        assert!(mean_y > 150.0, "legend should be in the lower half, mean y {mean_y}");
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        plot_curves(&[], "empty", "x", "y", 10, 10);
        plot_curves(&[Series::new("one", vec![(5.0, 5.0)])], "", "", "", 300, 200);
        plot_curves(&[Series::new("inf", vec![(f64::INFINITY, 1.0), (1.0, f64::NEG_INFINITY)])], "", "", "", 300, 200);
        let mut opts = PlotOptions::new("log", "x", "y", 300, 200);
        opts.log_x = true;
        opts.log_y = true;
        plot_curves_with(&[Series::new("neg", vec![(-1.0, -1.0), (0.0, 0.0)])], &opts);
        let single = plot_curves(&[Series::new("one", vec![(5.0, 5.0)])], "", "", "", 300, 200);
        assert!(color_count(&single, series_color(0)) > 19 * 2, "a single point is drawn as a dot");
    }
}
