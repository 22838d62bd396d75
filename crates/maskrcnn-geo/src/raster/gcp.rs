//! Ground control points (several ModelTiepoints, no ModelPixelScale): an affine geotransform
//! fitted by least squares when the points are affine, else a refusal that says how to warp.

use anyhow::{bail, Result};

use super::GeoTransform;

/// One tiepoint: pixel (column, row) ↔ map (x, y).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gcp {
    pub col: f64,
    pub row: f64,
    pub x: f64,
    pub y: f64,
}

/// The largest misfit of an affine fit the GCPs may show and still be taken as affine, in
/// pixels: below it, the fitted transform places every object within half a pixel of where
/// the control points say.
pub const MAX_RESIDUAL_PIXELS: f64 = 0.5;

/// ModelTiepoint values (I, J, K, X, Y, Z per point) as GCPs.
pub fn gcps_from_tiepoints(t: &[f64]) -> Vec<Gcp> {
    t.chunks_exact(6).map(|p| Gcp { col: p[0], row: p[1], x: p[3], y: p[4] }).collect()
}

/// The affine transform through the GCPs (least squares), refused unless it fits them all
/// within [`MAX_RESIDUAL_PIXELS`]. Errors say how many points there were and by how much the
/// fit misses; the caller adds the file name and the fix.
pub fn fit_affine(gcps: &[Gcp]) -> Result<GeoTransform> {
    if gcps.len() < 3 {
        bail!("{} ground control point(s) and no pixel scale: an affine transform needs at least 3", gcps.len());
    }
    let n = gcps.len() as f64;
    // Centred coordinates keep the normal equations well conditioned for UTM-sized numbers.
    let (mc, mr) = (gcps.iter().map(|g| g.col).sum::<f64>() / n, gcps.iter().map(|g| g.row).sum::<f64>() / n);
    let (mx, my) = (gcps.iter().map(|g| g.x).sum::<f64>() / n, gcps.iter().map(|g| g.y).sum::<f64>() / n);
    let (mut scc, mut scr, mut srr) = (0.0, 0.0, 0.0);
    let (mut scx, mut srx, mut scy, mut sry) = (0.0, 0.0, 0.0, 0.0);
    for g in gcps {
        let (c, r, x, y) = (g.col - mc, g.row - mr, g.x - mx, g.y - my);
        scc += c * c;
        scr += c * r;
        srr += r * r;
        scx += c * x;
        srx += r * x;
        scy += c * y;
        sry += r * y;
    }
    let det = scc * srr - scr * scr;
    // Relative to the spread of the points, so the test does not depend on the raster's size.
    if !(det.is_finite() && det > 1e-9 * (scc * srr).max(f64::MIN_POSITIVE)) {
        bail!("the {} ground control points are collinear in pixel space: no affine transform fits them", gcps.len());
    }
    let solve = |sa: f64, sb: f64| ((sa * srr - sb * scr) / det, (sb * scc - sa * scr) / det);
    let (a1, a2) = solve(scx, srx);
    let (b1, b2) = solve(scy, sry);
    let gt = GeoTransform([mx - a1 * mc - a2 * mr, a1, a2, my - b1 * mc - b2 * mr, b1, b2]);
    let pixel = gt.pixel_size();
    if !(pixel.is_finite() && pixel > 0.0) {
        bail!("the ground control points map every pixel to one point");
    }
    let worst = gcps
        .iter()
        .map(|g| {
            let (x, y) = gt.pixel_to_map(g.col, g.row);
            ((x - g.x).powi(2) + (y - g.y).powi(2)).sqrt()
        })
        .fold(0.0, f64::max);
    if worst > MAX_RESIDUAL_PIXELS * pixel {
        bail!(
            "the {} ground control points are not affine: the best affine fit misses one by {:.3} map units \
             ({:.2} pixels, more than {MAX_RESIDUAL_PIXELS})",
            gcps.len(),
            worst,
            worst / pixel
        );
    }
    Ok(gt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn affine(gt: &GeoTransform, pts: &[(f64, f64)]) -> Vec<Gcp> {
        pts.iter()
            .map(|&(col, row)| {
                let (x, y) = gt.pixel_to_map(col, row);
                Gcp { col, row, x, y }
            })
            .collect()
    }

    #[test]
    fn affine_gcps_give_back_their_transform() {
        let gt = GeoTransform([733601.0, 0.5, 0.02, 3725139.0, -0.01, -0.5]);
        let gcps = affine(&gt, &[(0.0, 0.0), (4000.0, 0.0), (0.0, 3000.0), (4000.0, 3000.0), (1234.0, 567.0)]);
        let fit = fit_affine(&gcps).unwrap();
        for (a, b) in fit.0.iter().zip(gt.0) {
            assert!((a - b).abs() < 1e-6 * b.abs().max(1.0), "{:?} vs {:?}", fit.0, gt.0);
        }
    }

    #[test]
    fn distorted_or_too_few_gcps_are_refused() {
        let gt = GeoTransform([500000.0, 1.0, 0.0, 4e6, 0.0, -1.0]);
        let mut gcps = affine(&gt, &[(0.0, 0.0), (100.0, 0.0), (0.0, 100.0), (100.0, 100.0)]);
        gcps[3].x += 3.0;
        let err = fit_affine(&gcps).unwrap_err().to_string();
        assert!(err.contains("not affine") && err.contains("0.750 map units (0.7"), "{err}");
        // A quarter-pixel misfit is within tolerance.
        gcps[3].x -= 2.0;
        fit_affine(&gcps).unwrap();
        assert!(fit_affine(&gcps[..2]).unwrap_err().to_string().contains("at least 3"));
        let line = affine(&gt, &[(0.0, 0.0), (10.0, 10.0), (20.0, 20.0)]);
        assert!(fit_affine(&line).unwrap_err().to_string().contains("collinear"));
    }

    #[test]
    fn tiepoint_values_are_read_in_sixes() {
        let g = gcps_from_tiepoints(&[1.0, 2.0, 0.0, 10.0, 20.0, 0.0, 3.0, 4.0, 0.0, 30.0, 40.0, 0.0]);
        assert_eq!(g[1], Gcp { col: 3.0, row: 4.0, x: 30.0, y: 40.0 });
    }
}
