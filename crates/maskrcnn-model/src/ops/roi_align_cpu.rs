//! RoIAlign at inference on host memory: per RoI and output cell, the bilinear taps of
//! [`visit_roi_samples`] accumulate `weight · feature_row[..C]` on a channels-last map, straight
//! into a per-RoI `[cells, C]` buffer, then one transpose writes `[C, oh, ow]`.
//!
//! No tap is materialised and no sampling plan is built (the plan's per-cell lists were an
//! allocation per cell and a search per tap); taps are summed in [`roi_align_host`]'s order, so the
//! values are that routine's.
//!
//! [`roi_align_host`]: crate::ops::roi_align::roi_align_host

use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::ops::boxes::Box;
use crate::ops::roi_align::{visit_roi_samples, RoiAlignParams};
use crate::tensor_util::{tensor_from_vec, tensor_to_vec};

/// RoIAlign of `rois` (`(image index, box)`) over a channels-last map `features`
/// (`[batch * height * width, channels]`, row-major); returns `[rois, channels, oh, ow]` values.
pub fn roi_align_channels_last(
    features: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    rois: &[(usize, Box)],
    p: &RoiAlignParams,
) -> Vec<f32> {
    let cells = p.output_h * p.output_w;
    let mut out = vec![0.0f32; rois.len() * channels * cells];
    if channels == 0 || cells == 0 {
        return out;
    }
    out.par_chunks_mut(channels * cells).zip(rois.par_iter()).for_each_init(
        || vec![0.0f32; cells * channels],
        |acc, (dst, (image, roi))| {
            acc.fill(0.0);
            let base = image * height * width;
            visit_roi_samples(roi, height, width, p, |cell, pos, weight| {
                let row = &features[(base + pos) * channels..][..channels];
                for (a, &f) in acc[cell * channels..][..channels].iter_mut().zip(row) {
                    *a += weight * f;
                }
            });
            for (cell, values) in acc.chunks_exact(channels).enumerate() {
                for (ch, &v) in values.iter().enumerate() {
                    dst[ch * cells + cell] = v;
                }
            }
        },
    );
    out
}

/// [`roi_align_channels_last`] on a `[batch * height * width, channels]` tensor; `[R, C, oh, ow]`.
pub fn roi_align_level_host(
    flat: Tensor<2>,
    rois: &[(usize, Box)],
    (c, h, w): (usize, usize, usize),
    params: &RoiAlignParams,
) -> Tensor<4> {
    let device = flat.device();
    let features = tensor_to_vec(flat);
    let out = roi_align_channels_last(&features, c, h, w, rois, params);
    tensor_from_vec(out, [rois.len(), c, params.output_h, params.output_w], &device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::roi_align::roi_align_host;

    #[test]
    fn equals_the_host_sampling_routine() {
        let (batch, c, h, w) = (2, 5, 13, 17);
        let nchw: Vec<f32> = (0..batch * c * h * w).map(|i| ((i * 7919) % 1013) as f32 / 97.0 - 5.0).collect();
        // Channels-last copy of the same maps.
        let mut nhwc = vec![0.0f32; nchw.len()];
        for b in 0..batch {
            for ch in 0..c {
                for pos in 0..h * w {
                    nhwc[(b * h * w + pos) * c + ch] = nchw[(b * c + ch) * h * w + pos];
                }
            }
        }
        let rois: Vec<(usize, Box)> = vec![
            (0, [0.5, 1.2, 7.7, 8.1]),
            (1, [-3.0, -2.0, 4.0, 3.0]),
            (0, [2.0, 2.0, 2.3, 2.1]),
            (1, [9.0, 7.0, 30.0, 20.0]),
            (1, [15.5, 11.5, 16.9, 12.9]),
        ];
        let params = [
            RoiAlignParams { output_h: 7, output_w: 7, spatial_scale: 1.0, sampling_ratio: 2, aligned: false },
            RoiAlignParams { output_h: 3, output_w: 5, spatial_scale: 0.5, sampling_ratio: -1, aligned: false },
            RoiAlignParams { output_h: 4, output_w: 4, spatial_scale: 0.25, sampling_ratio: 0, aligned: true },
        ];
        for p in params {
            let ours = roi_align_channels_last(&nhwc, c, h, w, &rois, &p);
            let cells = p.output_h * p.output_w;
            for (r, (image, roi)) in rois.iter().enumerate() {
                let map = &nchw[image * c * h * w..(image + 1) * c * h * w];
                let expected = roi_align_host(map, c, h, w, &[*roi], &p);
                // Same taps in the same order: equal to the last bit.
                assert_eq!(&ours[r * c * cells..(r + 1) * c * cells], &expected[..], "roi {r}, {p:?}");
            }
        }
    }
}
