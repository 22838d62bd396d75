//! PointRend's `point_sample`: bilinear reads at normalised points with `grid_sample`'s
//! `align_corners=False` convention and zero padding, as gather taps.

/// For points `(x, y)` in `[0, 1]` coordinates of a `height x width` map, calls
/// `visit(point, position, weight)` for each of the (up to four) in-bounds bilinear taps.
pub fn visit_point_taps(points: &[[f32; 2]], height: usize, width: usize, mut visit: impl FnMut(usize, usize, f32)) {
    for (i, pt) in points.iter().enumerate() {
        // grid = 2p - 1, then unnormalise with align_corners=False: ((g + 1) * size - 1) / 2.
        let gx = 2.0 * pt[0] - 1.0;
        let gy = 2.0 * pt[1] - 1.0;
        let x = ((gx + 1.0) * width as f32 - 1.0) / 2.0;
        let y = ((gy + 1.0) * height as f32 - 1.0) / 2.0;
        let x0 = x.floor();
        let y0 = y.floor();
        let (tx, ty) = (x - x0, y - y0);
        let corners = [
            (x0, y0, (1.0 - tx) * (1.0 - ty)),
            (x0 + 1.0, y0, tx * (1.0 - ty)),
            (x0, y0 + 1.0, (1.0 - tx) * ty),
            (x0 + 1.0, y0 + 1.0, tx * ty),
        ];
        for (cx, cy, w) in corners {
            if cx >= 0.0 && cy >= 0.0 && (cx as usize) < width && (cy as usize) < height {
                visit(i, cy as usize * width + cx as usize, w);
            }
        }
    }
}

/// Host `point_sample` of one `[channels, height, width]` map: returns `[channels, points]`.
pub fn point_sample_host(input: &[f32], channels: usize, height: usize, width: usize, points: &[[f32; 2]]) -> Vec<f32> {
    let mut out = vec![0.0f32; channels * points.len()];
    let mut taps = Vec::new();
    visit_point_taps(points, height, width, |i, pos, w| taps.push((i, pos, w)));
    for c in 0..channels {
        let plane = &input[c * height * width..(c + 1) * height * width];
        for &(i, pos, w) in &taps {
            out[c * points.len() + i] += w * plane[pos];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_centres_read_exact_values() {
        let (h, w) = (4, 5);
        let input: Vec<f32> = (0..h * w).map(|v| v as f32).collect();
        // Centre of pixel (x=2, y=1) is ((2 + 0.5) / 5, (1 + 0.5) / 4).
        let out = point_sample_host(&input, 1, h, w, &[[2.5 / 5.0, 1.5 / 4.0]]);
        assert!((out[0] - 7.0).abs() < 1e-5, "{out:?}");
        // The image corner is half outside: zero padding halves it twice.
        let corner = point_sample_host(&input, 1, h, w, &[[0.0, 0.0]]);
        assert!((corner[0] - 0.0).abs() < 1e-6);
        let edge = point_sample_host(&vec![1.0; h * w], 1, h, w, &[[0.0, 0.5]]);
        assert!((edge[0] - 0.5).abs() < 1e-5, "{edge:?}");
    }
}
