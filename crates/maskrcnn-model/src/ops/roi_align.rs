//! RoIAlign (He et al. 2017) with torchvision's exact sampling rules.
//!
//! Two forms share one sampling routine: a host kernel (used for mask targets and tests) and a
//! *sampling plan* — for every output cell, the feature positions and bilinear weights it reads —
//! that the model applies as a tensor gather, so the backward pass is an ordinary scatter-add.

/// RoIAlign settings, as torchvision's `roi_align` arguments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoiAlignParams {
    pub output_h: usize,
    pub output_w: usize,
    pub spatial_scale: f32,
    /// Samples per bin along each axis; `<= 0` means adaptive (`ceil(roi_size / output_size)`).
    pub sampling_ratio: i32,
    /// `false` is torchvision's Mask R-CNN setting (no half-pixel shift, rois at least 1x1).
    pub aligned: bool,
}

/// Calls `visit(cell, position, weight)` for every bilinear tap of every sample of one RoI, where
/// `cell = ph * output_w + pw`, `position = y * width + x` in the feature map, and weights already
/// include the 1/count averaging. Follows torchvision's `roi_align_kernel.cpp` `pre_calc` step.
pub fn visit_roi_samples(
    roi: &[f32; 4],
    height: usize,
    width: usize,
    p: &RoiAlignParams,
    mut visit: impl FnMut(usize, usize, f32),
) {
    let offset = if p.aligned { 0.5 } else { 0.0 };
    let start_w = roi[0] * p.spatial_scale - offset;
    let start_h = roi[1] * p.spatial_scale - offset;
    let end_w = roi[2] * p.spatial_scale - offset;
    let end_h = roi[3] * p.spatial_scale - offset;
    let mut roi_w = end_w - start_w;
    let mut roi_h = end_h - start_h;
    if !p.aligned {
        roi_w = roi_w.max(1.0);
        roi_h = roi_h.max(1.0);
    }
    let bin_h = roi_h / p.output_h as f32;
    let bin_w = roi_w / p.output_w as f32;
    let grid_h =
        if p.sampling_ratio > 0 { p.sampling_ratio as usize } else { (roi_h / p.output_h as f32).ceil() as usize };
    let grid_w =
        if p.sampling_ratio > 0 { p.sampling_ratio as usize } else { (roi_w / p.output_w as f32).ceil() as usize };
    let count = (grid_h * grid_w).max(1) as f32;
    let (hf, wf) = (height as f32, width as f32);
    for ph in 0..p.output_h {
        for pw in 0..p.output_w {
            let cell = ph * p.output_w + pw;
            for iy in 0..grid_h {
                let yy = start_h + ph as f32 * bin_h + (iy as f32 + 0.5) * bin_h / grid_h as f32;
                for ix in 0..grid_w {
                    let xx = start_w + pw as f32 * bin_w + (ix as f32 + 0.5) * bin_w / grid_w as f32;
                    let (mut y, mut x) = (yy, xx);
                    if y < -1.0 || y > hf || x < -1.0 || x > wf {
                        continue;
                    }
                    if y <= 0.0 {
                        y = 0.0;
                    }
                    if x <= 0.0 {
                        x = 0.0;
                    }
                    let mut y_low = y as usize;
                    let mut x_low = x as usize;
                    let y_high;
                    let x_high;
                    if y_low >= height - 1 {
                        y_low = height - 1;
                        y_high = y_low;
                        y = y_low as f32;
                    } else {
                        y_high = y_low + 1;
                    }
                    if x_low >= width - 1 {
                        x_low = width - 1;
                        x_high = x_low;
                        x = x_low as f32;
                    } else {
                        x_high = x_low + 1;
                    }
                    let ly = y - y_low as f32;
                    let lx = x - x_low as f32;
                    let hy = 1.0 - ly;
                    let hx = 1.0 - lx;
                    visit(cell, y_low * width + x_low, hy * hx / count);
                    visit(cell, y_low * width + x_high, hy * lx / count);
                    visit(cell, y_high * width + x_low, ly * hx / count);
                    visit(cell, y_high * width + x_high, ly * lx / count);
                }
            }
        }
    }
}

/// Host RoIAlign over one `[channels, height, width]` map; returns `[rois, channels, oh, ow]`.
pub fn roi_align_host(
    input: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    rois: &[[f32; 4]],
    p: &RoiAlignParams,
) -> Vec<f32> {
    let cells = p.output_h * p.output_w;
    let mut out = vec![0.0f32; rois.len() * channels * cells];
    let plane = height * width;
    for (r, roi) in rois.iter().enumerate() {
        let mut taps: Vec<(usize, usize, f32)> = Vec::new();
        visit_roi_samples(roi, height, width, p, |cell, pos, w| taps.push((cell, pos, w)));
        let dst = &mut out[r * channels * cells..(r + 1) * channels * cells];
        for c in 0..channels {
            let src = &input[c * plane..(c + 1) * plane];
            let d = &mut dst[c * cells..(c + 1) * cells];
            for &(cell, pos, w) in &taps {
                d[cell] += w * src[pos];
            }
        }
    }
    out
}

/// For each output cell of each RoI, the rows of a `[batch * height * width, channels]` feature
/// matrix it reads and their weights, padded to `taps_per_cell` with zero weights.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingPlan {
    pub rows: Vec<i64>,
    pub weights: Vec<f32>,
    pub taps_per_cell: usize,
    pub num_rois: usize,
    pub cells: usize,
}

/// Builds the plan for RoIs given with their batch index; taps on the same position are merged.
pub fn sampling_plan(rois: &[(usize, [f32; 4])], height: usize, width: usize, p: &RoiAlignParams) -> SamplingPlan {
    let cells = p.output_h * p.output_w;
    let mut per_cell: Vec<Vec<(usize, f32)>> = vec![Vec::new(); rois.len() * cells];
    for (r, (batch, roi)) in rois.iter().enumerate() {
        let base = batch * height * width;
        let slots = &mut per_cell[r * cells..(r + 1) * cells];
        visit_roi_samples(roi, height, width, p, |cell, pos, w| {
            let list = &mut slots[cell];
            match list.iter_mut().find(|(q, _)| *q == base + pos) {
                Some(entry) => entry.1 += w,
                None => list.push((base + pos, w)),
            }
        });
    }
    let taps_per_cell = per_cell.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut rows = Vec::with_capacity(per_cell.len() * taps_per_cell);
    let mut weights = Vec::with_capacity(per_cell.len() * taps_per_cell);
    for list in &per_cell {
        for k in 0..taps_per_cell {
            let (row, w) = list.get(k).copied().unwrap_or((0, 0.0));
            rows.push(row as i64);
            weights.push(w);
        }
    }
    SamplingPlan { rows, weights, taps_per_cell, num_rois: rois.len(), cells }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(out: usize, scale: f32, sr: i32, aligned: bool) -> RoiAlignParams {
        RoiAlignParams { output_h: out, output_w: out, spatial_scale: scale, sampling_ratio: sr, aligned }
    }

    #[test]
    fn constant_map_gives_constant_output_inside() {
        let input = vec![3.0f32; 2 * 10 * 10];
        let out = roi_align_host(&input, 2, 10, 10, &[[1.0, 1.0, 8.0, 8.0]], &params(2, 1.0, 2, false));
        assert!(out.iter().all(|v| (v - 3.0).abs() < 1e-6), "{out:?}");
    }

    #[test]
    fn linear_ramp_is_sampled_at_bin_centres() {
        // f(y, x) = x: RoIAlign of a ramp returns the mean sample x of each bin.
        let (h, w) = (8, 8);
        let input: Vec<f32> = (0..h * w).map(|i| (i % w) as f32).collect();
        let out = roi_align_host(&input, 1, h, w, &[[2.0, 2.0, 6.0, 6.0]], &params(2, 1.0, 2, false));
        // bins of width 2 starting at x=2: samples at 2.5, 3.5 -> 3.0 ; 4.5, 5.5 -> 5.0
        assert!((out[0] - 3.0).abs() < 1e-6 && (out[1] - 5.0).abs() < 1e-6, "{out:?}");
    }

    #[test]
    fn plan_matches_host_kernel() {
        let (c, h, w) = (3, 9, 11);
        let input: Vec<f32> = (0..c * h * w).map(|i| ((i * 37) % 101) as f32 / 10.0).collect();
        let rois = [[0.5, 1.2, 7.7, 8.1], [-3.0, -2.0, 4.0, 3.0], [2.0, 2.0, 2.3, 2.1], [9.0, 7.0, 30.0, 20.0]];
        for p in [params(3, 1.0, 2, false), params(2, 0.5, -1, false), params(4, 1.0, 0, true)] {
            let host = roi_align_host(&input, c, h, w, &rois, &p);
            let with_batch: Vec<(usize, [f32; 4])> = rois.iter().map(|r| (0, *r)).collect();
            let plan = sampling_plan(&with_batch, h, w, &p);
            for r in 0..rois.len() {
                for ch in 0..c {
                    for cell in 0..plan.cells {
                        let mut v = 0.0;
                        for k in 0..plan.taps_per_cell {
                            let i = (r * plan.cells + cell) * plan.taps_per_cell + k;
                            v += plan.weights[i] * input[ch * h * w + plan.rows[i] as usize];
                        }
                        let expected = host[(r * c + ch) * plan.cells + cell];
                        assert!((v - expected).abs() < 1e-5, "{v} vs {expected}");
                    }
                }
            }
        }
    }
}
