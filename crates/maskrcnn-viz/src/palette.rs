//! Deterministic class colours: the same class id always gets the same colour, in every image,
//! grid and report, so colours can be compared across pictures.

/// Hand-picked saturated colours that stay distinguishable from each other and visible on
/// aerial imagery (pale colours like beige or white are left out: they vanish on roofs and roads).
const DISTINCT_COLORS: [[u8; 3]; 16] = [
    [230, 25, 75],   // red
    [60, 180, 75],   // green
    [255, 225, 25],  // yellow
    [0, 130, 200],   // blue
    [245, 130, 48],  // orange
    [145, 30, 180],  // purple
    [70, 240, 240],  // cyan
    [240, 50, 230],  // magenta
    [210, 245, 60],  // lime
    [250, 190, 212], // pink
    [0, 128, 128],   // teal
    [170, 110, 40],  // brown
    [128, 0, 0],     // maroon
    [170, 255, 195], // mint
    [128, 128, 0],   // olive
    [0, 0, 128],     // navy
];

/// Colour for a class id. Ids below 16 index a fixed table; larger ids step the hue by the
/// golden angle, which keeps consecutive ids far apart on the colour wheel for any number of classes.
pub fn class_color(class_id: usize) -> [u8; 3] {
    if let Some(color) = DISTINCT_COLORS.get(class_id) {
        return *color;
    }
    let k = (class_id - DISTINCT_COLORS.len()) as f64;
    let hue = (k * 137.507_764_050_037_85 + 17.0) % 360.0;
    // Alternate brightness too, so two ids with near hues still differ.
    let value = if class_id.is_multiple_of(2) { 0.95 } else { 0.72 };
    hsv_to_rgb(hue, 0.85, value)
}

fn hsv_to_rgb(hue_degrees: f64, saturation: f64, value: f64) -> [u8; 3] {
    let c = value * saturation;
    let h = hue_degrees / 60.0;
    let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = value - c;
    let to_u8 = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    [to_u8(r), to_u8(g), to_u8(b)]
}

/// Black or white, whichever reads better on `background` (ITU-R BT.601 luma).
pub fn contrasting_text_color(background: [u8; 3]) -> [u8; 3] {
    let luma = 0.299 * background[0] as f32 + 0.587 * background[1] as f32 + 0.114 * background[2] as f32;
    if luma > 140.0 {
        [0, 0, 0]
    } else {
        [255, 255, 255]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distance(a: [u8; 3], b: [u8; 3]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (*x as f64 - y as f64).powi(2)).sum::<f64>().sqrt()
    }

    #[test]
    fn fixed_palette_colours_are_far_apart() {
        let mut min = f64::MAX;
        for i in 0..16 {
            for j in 0..i {
                min = min.min(distance(class_color(i), class_color(j)));
            }
        }
        assert!(min > 60.0, "closest pair of the first 16 class colours is only {min:.1} apart");
    }

    #[test]
    fn colours_are_deterministic_and_neighbours_differ_for_many_classes() {
        for id in 0..500 {
            assert_eq!(class_color(id), class_color(id));
            assert!(distance(class_color(id), class_color(id + 1)) > 40.0, "ids {id} and {} too close", id + 1);
        }
        let unique: std::collections::HashSet<_> = (0..200).map(class_color).collect();
        assert_eq!(unique.len(), 200);
    }

    #[test]
    fn hsv_primary_hues() {
        assert_eq!(hsv_to_rgb(0.0, 1.0, 1.0), [255, 0, 0]);
        assert_eq!(hsv_to_rgb(120.0, 1.0, 1.0), [0, 255, 0]);
        assert_eq!(hsv_to_rgb(240.0, 1.0, 1.0), [0, 0, 255]);
    }

    #[test]
    fn text_colour_contrasts() {
        assert_eq!(contrasting_text_color([255, 225, 25]), [0, 0, 0]);
        assert_eq!(contrasting_text_color([0, 0, 128]), [255, 255, 255]);
    }
}
