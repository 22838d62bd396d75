//! Line charts for training curves and the learning-rate finder, plus reading `metrics.jsonl`.

use anyhow::{bail, Context, Result};
use image::{Rgb, RgbImage};
use serde_json::{Map, Value};
use std::path::Path;

use crate::draw::fill_rect;
use crate::font::{draw_text, draw_text_vertical, text_size};
use crate::grid::fit_text;

/// One named line; points are (x, y) in data units. Non-finite points (and non-positive ones on a
/// log axis) break the line instead of being drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
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

#[derive(Clone, Debug)]
pub struct PlotOptions {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub width: u32,
    pub height: u32,
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

pub fn series_color(index: usize) -> [u8; 3] {
    SERIES_COLORS.get(index).copied().unwrap_or_else(|| crate::palette::class_color(index))
}

const WHITE: [u8; 3] = [255, 255, 255];
const INK: [u8; 3] = [30, 30, 30];
const GRID: [u8; 3] = [228, 228, 228];
const MARKER: [u8; 3] = [200, 0, 0];
const MARGIN: i64 = 10;
const TICK: i64 = 4;

/// Line chart with linear axes, numbered ticks, grid and legend.
pub fn plot_curves(series: &[Series], title: &str, x_label: &str, y_label: &str, width: u32, height: u32) -> RgbImage {
    plot_curves_with(series, &PlotOptions::new(title, x_label, y_label, width, height))
}

/// Learning-rate finder plot: loss against lr on a log x axis, with the suggested lr marked.
/// The y axis stops a little above the highest loss reached before the minimum, so the usual
/// blow-up at the end of the sweep does not flatten the part that matters.
pub fn lr_finder_plot(lr_loss: &[(f64, f64)], suggested_lr: Option<f64>, width: u32, height: u32) -> RgbImage {
    let mut opts = PlotOptions::new("Learning rate finder", "learning rate", "loss", width, height);
    opts.log_x = true;
    let finite: Vec<(f64, f64)> = lr_loss.iter().copied().filter(|(lr, loss)| *lr > 0.0 && lr.is_finite() && loss.is_finite()).collect();
    if let Some(min_index) = (0..finite.len()).min_by(|&a, &b| finite[a].1.total_cmp(&finite[b].1)) {
        let min_loss = finite[min_index].1;
        let head_max = finite[..=min_index].iter().map(|p| p.1).fold(f64::MIN, f64::max);
        if head_max > min_loss {
            let span = head_max - min_loss;
            opts.y_range = Some((min_loss - 0.05 * span, head_max + 0.1 * span));
        }
    }
    if let Some(lr) = suggested_lr.filter(|lr| *lr > 0.0 && lr.is_finite()) {
        opts.markers.push(Marker { x: lr, label: format!("suggested lr {}", format_sci(lr)) });
    }
    plot_curves_with(&[Series::new("loss", lr_loss.to_vec())], &opts)
}

#[derive(Clone, Copy, Debug)]
struct Axis {
    log: bool,
    /// Range in transformed units (log10 for log axes).
    lo: f64,
    hi: f64,
}

impl Axis {
    fn transform(&self, v: f64) -> Option<f64> {
        transform(v, self.log)
    }

    fn fit(values: impl Iterator<Item = f64>, log: bool, fixed: Option<(f64, f64)>) -> Self {
        if let Some((a, b)) = fixed {
            if let (Some(a), Some(b)) = (transform(a, log), transform(b, log)) {
                if a != b {
                    return Self { log, lo: a.min(b), hi: a.max(b) };
                }
            }
        }
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for t in values.filter_map(|v| transform(v, log)) {
            lo = lo.min(t);
            hi = hi.max(t);
        }
        if !lo.is_finite() {
            return Self { log, lo: 0.0, hi: 1.0 };
        }
        if lo == hi {
            let half = if log { 0.5 } else if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            return Self { log, lo: lo - half, hi: hi + half };
        }
        let pad = (hi - lo) * 0.03;
        Self { log, lo: lo - pad, hi: hi + pad }
    }

    /// Tick positions in transformed units, with their labels.
    fn ticks(&self) -> Vec<(f64, String)> {
        if self.log {
            let decades: Vec<i32> = ((self.lo.ceil() as i32)..=(self.hi.floor() as i32)).collect();
            // Two or three decades alone leave the axis almost unlabelled; add 2x and 5x then.
            if decades.len() >= 4 {
                let stride = decades.len().div_ceil(8);
                return decades.iter().filter(|d| ((**d - decades[0]) as usize).is_multiple_of(stride)).map(|&d| (d as f64, format_number(10f64.powi(d)))).collect();
            }
            let mut ticks = Vec::new();
            for decade in (self.lo.floor() as i32)..=(self.hi.ceil() as i32) {
                for mantissa in [1.0, 2.0, 5.0] {
                    let value: f64 = mantissa * 10f64.powi(decade);
                    let t = value.log10();
                    if t >= self.lo && t <= self.hi {
                        ticks.push((t, format_number(value)));
                    }
                }
            }
            if ticks.len() >= 2 {
                return ticks;
            }
            // Less than a factor of ~2.5 in range: nice linear ticks in data units, placed in log space.
            let (a, b) = (10f64.powf(self.lo), 10f64.powf(self.hi));
            return linear_ticks(a, b).into_iter().filter(|(v, _)| *v > 0.0).map(|(v, label)| (v.log10(), label)).collect();
        }
        linear_ticks(self.lo, self.hi)
    }
}

fn transform(v: f64, log: bool) -> Option<f64> {
    if !v.is_finite() || (log && v <= 0.0) {
        return None;
    }
    Some(if log { v.log10() } else { v })
}

/// Steps of 1, 2 or 5 times a power of ten, aiming for about six ticks.
fn nice_step(span: f64) -> f64 {
    let raw = span / 6.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let m = raw / magnitude;
    let nice = if m < 1.5 { 1.0 } else if m < 3.0 { 2.0 } else if m < 7.0 { 5.0 } else { 10.0 };
    nice * magnitude
}

fn linear_ticks(lo: f64, hi: f64) -> Vec<(f64, String)> {
    let span = hi - lo;
    if span.is_nan() || span <= 0.0 || !span.is_finite() {
        return Vec::new();
    }
    let step = nice_step(span);
    // The tolerance keeps an end tick that float division puts a hair outside the range (0.35 / 0.05).
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let use_sci = hi.abs().max(lo.abs()) >= 1e6 || step < 1e-4;
    (first..=last)
        .map(|i| {
            // Rebuilt from the integer index so labels never show float noise like 0.30000000000000004.
            let value = i as f64 * step;
            let label = if i == 0 {
                "0".to_string()
            } else if use_sci {
                let digits = (value.abs().log10().floor() - step.log10().floor()).clamp(0.0, 3.0) as usize;
                format_sci_digits(value, digits)
            } else {
                format!("{value:.decimals$}")
            };
            (value, label)
        })
        .collect()
}

/// Short label for a tick value such as 0.001, 250 or 1e-05.
pub fn format_number(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 {
        "0".into()
    } else if (1e-3..1e5).contains(&magnitude) {
        let text = format!("{value:.4}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        text.to_string()
    } else {
        format_sci(value).replacen(".0e", "e", 1)
    }
}

/// Scientific notation with two significant digits, e.g. 1.2e-04.
pub fn format_sci(value: f64) -> String {
    format_sci_digits(value, 1)
}

fn format_sci_digits(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$e}");
    // Rust writes "1.2e-4"; pad the exponent to two digits as most plotting tools do.
    match text.split_once('e') {
        Some((mantissa, exponent)) => {
            let (sign, digits) = exponent.strip_prefix('-').map_or(("+", exponent), |d| ("-", d));
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => text,
    }
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

    let x_axis = Axis::fit(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).chain(opts.markers.iter().map(|m| m.x)), opts.log_x, None);
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
            let point = x_axis.transform(x).zip(y_axis.transform(y)).map(|(tx, ty)| (area.map_x(&x_axis, tx), area.map_y(&y_axis, ty)));
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
    for (x0, y0, x1, y1) in [(area.left, area.top, area.right, area.top), (area.left, area.bottom, area.right, area.bottom), (area.left, area.top, area.left, area.bottom), (area.right, area.top, area.right, area.bottom)] {
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
        draw_text(&mut canvas, (area.left + area.right) / 2 - w / 2, height as i64 - MARGIN - char_h, &text, scale, INK);
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
    for (x_a, y_a, x_b, y_b) in [(x0, y0, x0 + box_w, y0), (x0, y0 + box_h, x0 + box_w, y0 + box_h), (x0, y0, x0, y0 + box_h), (x0 + box_w, y0, x0 + box_w, y0 + box_h)] {
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
            let t = if length_sq > 0.0 { (((px - a.0) * dx + (py - a.1) * dy) / length_sq).clamp(0.0, 1.0) } else { 0.0 };
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

/// The records of a training run's `metrics.jsonl`: per-step lines and `"kind":"epoch"` lines.
#[derive(Clone, Debug, Default)]
pub struct MetricsLog {
    pub steps: Vec<Map<String, Value>>,
    pub epochs: Vec<Map<String, Value>>,
}

/// Read `metrics.jsonl`; blank lines are skipped, anything else that is not a JSON object is an
/// error naming the file and line.
pub fn read_metrics_jsonl(path: impl AsRef<Path>) -> Result<MetricsLog> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read metrics file {}", path.display()))?;
    parse_metrics_jsonl(&text).with_context(|| format!("in metrics file {}", path.display()))
}

pub fn parse_metrics_jsonl(text: &str) -> Result<MetricsLog> {
    let mut log = MetricsLog::default();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).with_context(|| format!("line {} is not valid JSON", index + 1))?;
        let Value::Object(record) = value else {
            bail!("line {} is not a JSON object", index + 1);
        };
        if record.get("kind").and_then(Value::as_str) == Some("epoch") {
            log.epochs.push(record);
        } else {
            log.steps.push(record);
        }
    }
    Ok(log)
}

fn number(record: &Map<String, Value>, key: &str) -> Option<f64> {
    record.get(key).and_then(Value::as_f64)
}

/// One series per `loss*` key of the step lines (total `loss` first), over `step` (or the line
/// order when a line has no step), plus one per key containing "loss" in the epoch lines (e.g.
/// `val_loss`), placed at the epoch's `step`, or else at the last training step of that epoch.
pub fn loss_series(log: &MetricsLog) -> Vec<Series> {
    let mut keys: Vec<String> = Vec::new();
    for record in &log.steps {
        for (key, value) in record {
            if key.starts_with("loss") && value.is_number() && !keys.contains(key) {
                keys.push(key.clone());
            }
        }
    }
    keys.sort_by_key(|k| (k != "loss", k.clone()));
    let step_of = |index: usize, record: &Map<String, Value>| number(record, "step").unwrap_or(index as f64);
    let mut series: Vec<Series> = keys
        .iter()
        .map(|key| {
            let points = log.steps.iter().enumerate().filter_map(|(i, r)| Some((step_of(i, r), number(r, key)?))).collect();
            Series::new(key.clone(), points)
        })
        .collect();

    let mut epoch_keys: Vec<String> = Vec::new();
    for record in &log.epochs {
        for (key, value) in record {
            if key.contains("loss") && value.is_number() && !epoch_keys.contains(key) {
                epoch_keys.push(key.clone());
            }
        }
    }
    epoch_keys.sort();
    for key in epoch_keys {
        let points = log
            .epochs
            .iter()
            .filter_map(|r| {
                let value = number(r, &key)?;
                let step = number(r, "step").or_else(|| {
                    let epoch = number(r, "epoch")?;
                    log.steps.iter().enumerate().filter(|(_, s)| number(s, "epoch").is_some_and(|e| e <= epoch)).map(|(i, s)| step_of(i, s)).reduce(f64::max)
                })?;
                Some((step, value))
            })
            .collect();
        series.push(Series::new(key, points));
    }
    series
}

/// Training loss curves from a run's `metrics.jsonl`: every `loss*` term over steps, plus
/// validation losses from the epoch lines. The y axis is logarithmic when the terms span more
/// than a factor of 50 (small terms like `loss_rpn_box_reg` would otherwise lie flat on the axis).
pub fn loss_curves_from_metrics_jsonl(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    let log = read_metrics_jsonl(path)?;
    loss_curves(&log, 960, 540).with_context(|| format!("in metrics file {}", path.display()))
}

pub fn loss_curves(log: &MetricsLog, width: u32, height: u32) -> Result<RgbImage> {
    let series = loss_series(log);
    if series.iter().all(|s| s.points.is_empty()) {
        bail!("no numeric \"loss*\" values found ({} step lines, {} epoch lines)", log.steps.len(), log.epochs.len());
    }
    let values: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|v| v.is_finite()).collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut opts = PlotOptions::new("Training losses", "step", "loss", width, height);
    opts.log_y = min > 0.0 && max / min > 50.0;
    if opts.log_y {
        opts.y_label = "loss (log scale)".into();
    }
    Ok(plot_curves_with(&series, &opts))
}

/// Validation metrics from the epoch lines (every numeric key except step/epoch/lr/time and
/// losses, e.g. `segm_AP`, `bbox_AP`) over epochs; `None` when there are none.
pub fn epoch_metrics_plot(log: &MetricsLog, width: u32, height: u32) -> Option<RgbImage> {
    let skip = |key: &str| matches!(key, "step" | "epoch" | "lr" | "time" | "elapsed" | "kind") || key.contains("loss") || key.ends_with("_s");
    let mut keys: Vec<String> = Vec::new();
    for record in &log.epochs {
        for (key, value) in record {
            if !skip(key) && value.is_number() && !keys.contains(key) {
                keys.push(key.clone());
            }
        }
    }
    if keys.is_empty() {
        return None;
    }
    keys.sort();
    let series: Vec<Series> = keys
        .iter()
        .map(|key| Series::new(key.clone(), log.epochs.iter().enumerate().filter_map(|(i, r)| Some((number(r, "epoch").unwrap_or(i as f64), number(r, key)?))).collect()))
        .collect();
    Some(plot_curves(&series, "Validation metrics", "epoch", "value", width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn color_count(image: &RgbImage, color: [u8; 3]) -> usize {
        image.pixels().filter(|p| p.0 == color).count()
    }

    #[test]
    fn nice_linear_ticks() {
        let ticks = linear_ticks(0.0, 1.0);
        let labels: Vec<&str> = ticks.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        let ticks = linear_ticks(-3.0, 1234.0);
        assert_eq!(ticks.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(), ["0", "200", "400", "600", "800", "1000", "1200"]);
        let ticks = linear_ticks(0.1, 0.35);
        assert_eq!(ticks.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(), ["0.10", "0.15", "0.20", "0.25", "0.30", "0.35"]);
        let ticks = linear_ticks(1e-6, 5e-5);
        assert_eq!(ticks.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(), ["1e-05", "2e-05", "3e-05", "4e-05", "5e-05"]);
    }

    #[test]
    fn log_ticks_at_decades_or_one_two_five() {
        let axis = Axis::fit([1e-6, 1.0].into_iter(), true, None);
        let labels: Vec<String> = axis.ticks().into_iter().map(|t| t.1).collect();
        assert_eq!(labels, ["1e-06", "1e-05", "1e-04", "0.001", "0.01", "0.1", "1"]);
        let axis = Axis::fit([0.3, 4.0].into_iter(), true, None);
        let labels: Vec<String> = axis.ticks().into_iter().map(|t| t.1).collect();
        assert_eq!(labels, ["0.5", "1", "2"]);
        let axis = Axis::fit([0.015, 3.0].into_iter(), true, None);
        let labels: Vec<String> = axis.ticks().into_iter().map(|t| t.1).collect();
        assert_eq!(labels, ["0.02", "0.05", "0.1", "0.2", "0.5", "1", "2"]);
    }

    #[test]
    fn number_formats() {
        assert_eq!(format_number(0.001), "0.001");
        assert_eq!(format_number(250.0), "250");
        assert_eq!(format_sci(0.000123), "1.2e-04");
        assert_eq!(format_sci(12345.0), "1.2e+04");
    }

    #[test]
    fn line_passes_through_the_mapped_data_points() {
        // Two points at the corners of the data range: the line must run along the plot diagonal.
        let series = [Series::new("", vec![(0.0, 0.0), (10.0, 10.0)])];
        let image = plot_curves(&series, "", "", "", 400, 300);
        let blue = series_color(0);
        let blue_pixels: Vec<(u32, u32)> = image.enumerate_pixels().filter(|(_, _, p)| p.0 == blue).map(|(x, y, _)| (x, y)).collect();
        assert!(blue_pixels.len() > 200, "only {} fully covered line pixels", blue_pixels.len());
        // Monotone rising line: larger x means smaller (higher up) y.
        let left = blue_pixels.iter().min_by_key(|p| p.0).unwrap();
        let right = blue_pixels.iter().max_by_key(|p| p.0).unwrap();
        assert!(left.1 > right.1 + 100, "{left:?} -> {right:?}");
        // Nothing drawn in the top-left or bottom-right corner of the plot, away from the diagonal.
        let mid_x = (left.0 + right.0) / 2;
        let expected_mid_y = (left.1 + right.1) / 2;
        let column: Vec<u32> = blue_pixels.iter().filter(|p| p.0 == mid_x).map(|p| p.1).collect();
        assert!(column.iter().all(|y| y.abs_diff(expected_mid_y) <= 3), "column {mid_x}: {column:?} vs {expected_mid_y}");
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
        let border: Vec<(u32, u32)> = image.enumerate_pixels().filter(|(_, _, p)| p.0 == legend_border).map(|(x, y, _)| (x, y)).collect();
        assert!(!border.is_empty());
        let mean_y = border.iter().map(|p| p.1 as f64).sum::<f64>() / border.len() as f64;
        assert!(mean_y > 150.0, "legend should be in the lower half, mean y {mean_y}");
    }

    #[test]
    fn lr_finder_marks_the_suggestion_and_clips_the_blow_up() {
        let points: Vec<(f64, f64)> = (0..100)
            .map(|i| {
                let lr = 1e-6 * 10f64.powf(i as f64 * 6.0 / 99.0);
                let loss = if i < 70 { 2.0 - i as f64 * 0.02 } else { 0.6 + (i - 70) as f64 * 2.0 };
                (lr, loss)
            })
            .collect();
        let image = lr_finder_plot(&points, Some(1e-3), 640, 400);
        assert!(color_count(&image, MARKER) > 100, "marker line and label drawn");
        let without = lr_finder_plot(&points, None, 640, 400);
        assert_eq!(color_count(&without, MARKER), 0);
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

    const JSONL: &str = r#"{"step": 0, "epoch": 0, "lr": 0.001, "loss": 3.0, "loss_classifier": 1.0, "loss_box_reg": 0.5, "loss_mask": 0.7, "loss_objectness": 0.6, "loss_rpn_box_reg": 0.2}
{"step": 10, "epoch": 0, "lr": 0.002, "loss": 2.0, "loss_classifier": 0.6, "loss_box_reg": 0.4, "loss_mask": 0.5, "loss_objectness": 0.3, "loss_rpn_box_reg": 0.2}

{"kind": "epoch", "epoch": 0, "val_loss": 2.2, "segm_AP": 0.12, "bbox_AP": 0.15}
{"step": 20, "epoch": 1, "lr": 0.001, "loss": 1.5, "loss_classifier": 0.4, "loss_box_reg": 0.3, "loss_mask": 0.4, "loss_objectness": 0.2, "loss_rpn_box_reg": 0.2}
{"kind": "epoch", "epoch": 1, "step": 25, "val_loss": 1.9, "segm_AP": 0.2, "bbox_AP": 0.22}
"#;

    #[test]
    fn metrics_jsonl_gives_one_series_per_loss_term() {
        let log = parse_metrics_jsonl(JSONL).unwrap();
        assert_eq!((log.steps.len(), log.epochs.len()), (3, 2));
        let series = loss_series(&log);
        let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["loss", "loss_box_reg", "loss_classifier", "loss_mask", "loss_objectness", "loss_rpn_box_reg", "val_loss"]);
        assert_eq!(series[0].points, vec![(0.0, 3.0), (10.0, 2.0), (20.0, 1.5)]);
        // Epoch 0 has no step: it goes at the last step of epoch 0; epoch 1 has its own step.
        assert_eq!(series[6].points, vec![(10.0, 2.2), (25.0, 1.9)]);
        let image = loss_curves(&log, 640, 400).unwrap();
        for index in 0..series.len() {
            assert!(color_count(&image, series_color(index)) > 20, "series {index} drawn");
        }
        let metrics = epoch_metrics_plot(&log, 400, 300).unwrap();
        assert!(color_count(&metrics, series_color(1)) > 20);
    }

    #[test]
    fn metrics_errors_name_the_file_and_line() {
        let err = parse_metrics_jsonl("{\"step\": 1, \"loss\": 1}\n{oops\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
        let err = parse_metrics_jsonl("[1,2]").unwrap_err();
        assert!(format!("{err:#}").contains("not a JSON object"));
        let err = loss_curves(&parse_metrics_jsonl("{\"step\": 1, \"acc\": 1}").unwrap(), 300, 200).unwrap_err();
        assert!(err.to_string().contains("no numeric"), "{err}");
        let err = loss_curves_from_metrics_jsonl("/nonexistent/metrics.jsonl").unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/metrics.jsonl"));
    }
}
