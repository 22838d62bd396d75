use crate::rle::Rle;

// Polygon and box rasterisation live here rather than in `rle.rs`, so that the RLE core does
// not depend on the polygon walk that is built on it.
impl Rle {
    /// Rasterises polygons (flat `[x0,y0,x1,y1,...]` in pixel coordinates, pixel centres at
    /// +0.5) with `rleFrPoly` each and unions them with `rleMerge`, which is what
    /// pycocotools' `frPyObjects` + `merge` (and `COCO.annToRLE`) do.
    pub fn from_polygons(polygons: &[Vec<f64>], height: usize, width: usize) -> Rle {
        let parts: Vec<Rle> = polygons.iter().map(|p| rle_from_polygon(p, height, width)).collect();
        if parts.is_empty() {
            // pycocotools returns a 0x0 RLE here; an empty mask of the right size is what
            // callers can actually use and has the same (zero) area and IoU.
            return Rle::empty(height, width);
        }
        Rle::merge(&parts, false)
    }

    /// A box `[x, y, w, h]` rasterised as its polygon (`rleFrBbox`).
    pub fn from_bbox(bbox: [f64; 4], height: usize, width: usize) -> Rle {
        let [x0, y0, bw, bh] = bbox;
        let (x1, y1) = (x0 + bw, y0 + bh);
        rle_from_polygon(&[x0, y0, x0, y1, x1, y1, x1, y0], height, width)
    }
}

/// `rleFrPoly` from pycocotools' maskApi.c, ported operation by operation (C `int` casts
/// truncate toward zero, as Rust `as` does), because COCO's published numbers depend on
/// exactly which boundary pixels this walk includes.
fn rle_from_polygon(xy: &[f64], height: usize, width: usize) -> Rle {
    const SCALE: f64 = 5.0;
    let k = xy.len() / 2;
    let h = height as i64;
    if k == 0 {
        return Rle::empty(height, width);
    }
    // Upsample the vertices by 5 and walk every segment densely.
    let mut x: Vec<i64> = (0..k).map(|j| (SCALE * xy[j * 2] + 0.5) as i64).collect();
    let mut y: Vec<i64> = (0..k).map(|j| (SCALE * xy[j * 2 + 1] + 0.5) as i64).collect();
    x.push(x[0]);
    y.push(y[0]);
    let mut u: Vec<i64> = Vec::new();
    let mut v: Vec<i64> = Vec::new();
    for j in 0..k {
        let (mut xs, mut xe, mut ys, mut ye) = (x[j], x[j + 1], y[j], y[j + 1]);
        let dx = (xe - xs).abs();
        let dy = (ys - ye).abs();
        let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
        if flip {
            std::mem::swap(&mut xs, &mut xe);
            std::mem::swap(&mut ys, &mut ye);
        }
        // A repeated vertex gives 0/0 = NaN here, exactly as in C; that lone point always
        // sits between points of the same column and so never reaches the output.
        let s = if dx >= dy { (ye - ys) as f64 / dx as f64 } else { (xe - xs) as f64 / dy as f64 };
        if dx >= dy {
            for d in 0..=dx {
                let t = if flip { dx - d } else { d };
                u.push(t + xs);
                v.push((ys as f64 + s * t as f64 + 0.5) as i64);
            }
        } else {
            for d in 0..=dy {
                let t = if flip { dy - d } else { d };
                v.push(t + ys);
                u.push((xs as f64 + s * t as f64 + 0.5) as i64);
            }
        }
    }
    // Keep the points where the walk crosses a pixel-column centre, downsampled back.
    let mut boundary_positions: Vec<u32> = Vec::new();
    let last_column = width as f64 - 1.0;
    for j in 1..u.len() {
        if u[j] == u[j - 1] {
            continue;
        }
        let xd = (if u[j] < u[j - 1] { u[j] } else { u[j] - 1 }) as f64;
        let xd = (xd + 0.5) / SCALE - 0.5;
        if xd.floor() != xd || xd < 0.0 || xd > last_column {
            continue;
        }
        let yd = v[j].min(v[j - 1]) as f64;
        let mut yd = (yd + 0.5) / SCALE - 0.5;
        if yd < 0.0 {
            yd = 0.0;
        } else if yd > height as f64 {
            yd = height as f64;
        }
        let yd = yd.ceil();
        boundary_positions.push(((xd as i64) * h + yd as i64) as u32);
    }
    // Sorted crossing positions become run lengths; zero-length runs fold into the
    // previous run (two crossings at one pixel cancel out).
    boundary_positions.push((height * width) as u32);
    boundary_positions.sort_unstable();
    let mut previous = 0u32;
    for a in boundary_positions.iter_mut() {
        let t = *a;
        *a = a.wrapping_sub(previous);
        previous = t;
    }
    let a = boundary_positions;
    let mut counts: Vec<u32> = Vec::with_capacity(a.len());
    counts.push(a[0]);
    let mut j = 1;
    while j < a.len() {
        if a[j] > 0 {
            counts.push(a[j]);
            j += 1;
        } else {
            j += 1;
            if j < a.len() {
                *counts.last_mut().expect("counts starts non-empty") += a[j];
                j += 1;
            }
        }
    }
    Rle { height, width, counts }
}
