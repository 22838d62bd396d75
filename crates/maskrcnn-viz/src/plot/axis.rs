//! Axis ranges, tick placement and tick label formatting.

#[derive(Clone, Copy, Debug)]
pub(super) struct Axis {
    log: bool,
    /// Range in transformed units (log10 for log axes).
    pub(super) lo: f64,
    pub(super) hi: f64,
}

impl Axis {
    pub(super) fn transform(&self, v: f64) -> Option<f64> {
        transform(v, self.log)
    }

    pub(super) fn fit(values: impl Iterator<Item = f64>, log: bool, fixed: Option<(f64, f64)>) -> Self {
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
            let half = if log {
                0.5
            } else if lo == 0.0 {
                1.0
            } else {
                lo.abs() * 0.1
            };
            return Self { log, lo: lo - half, hi: hi + half };
        }
        let pad = (hi - lo) * 0.03;
        Self { log, lo: lo - pad, hi: hi + pad }
    }

    /// Tick positions in transformed units, with their labels.
    pub(super) fn ticks(&self) -> Vec<(f64, String)> {
        if self.log {
            let decades: Vec<i32> = ((self.lo.ceil() as i32)..=(self.hi.floor() as i32)).collect();
            // Two or three decades alone leave the axis almost unlabelled; add 2x and 5x then.
            if decades.len() >= 4 {
                let stride = decades.len().div_ceil(8);
                return decades
                    .iter()
                    .filter(|d| ((**d - decades[0]) as usize).is_multiple_of(stride))
                    .map(|&d| (d as f64, format_number(10f64.powi(d))))
                    .collect();
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
            return linear_ticks(a, b)
                .into_iter()
                .filter(|(v, _)| *v > 0.0)
                .map(|(v, label)| (v.log10(), label))
                .collect();
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
    let nice = if m < 1.5 {
        1.0
    } else if m < 3.0 {
        2.0
    } else if m < 7.0 {
        5.0
    } else {
        10.0
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_linear_ticks() {
        let ticks = linear_ticks(0.0, 1.0);
        let labels: Vec<&str> = ticks.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        let ticks = linear_ticks(-3.0, 1234.0);
        assert_eq!(
            ticks.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(),
            ["0", "200", "400", "600", "800", "1000", "1200"]
        );
        let ticks = linear_ticks(0.1, 0.35);
        assert_eq!(
            ticks.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(),
            ["0.10", "0.15", "0.20", "0.25", "0.30", "0.35"]
        );
        let ticks = linear_ticks(1e-6, 5e-5);
        assert_eq!(
            ticks.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(),
            ["1e-05", "2e-05", "3e-05", "4e-05", "5e-05"]
        );
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
}
