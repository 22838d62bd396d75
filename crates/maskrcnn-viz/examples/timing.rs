//! Rough timing of draw_instances: `cargo run --release -p maskrcnn-viz --example timing`.
use maskrcnn_viz::*;
use std::time::Instant;

fn main() {
    let (w, h) = (1024u32, 1024u32);
    let image = image::RgbImage::from_pixel(w, h, image::Rgb([80, 90, 100]));
    let masks: Vec<Vec<u8>> = (0..100u32)
        .map(|i| {
            let (cx, cy) = ((i % 10) * 100 + 50, (i / 10) * 100 + 50);
            (0..h)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .map(|(x, y)| ((x as i64 - cx as i64).pow(2) + (y as i64 - cy as i64).pow(2) < 40 * 40) as u8)
                .collect()
        })
        .collect();
    let instances: Vec<DrawInstance> = masks
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let (cx, cy) = (((i as u32 % 10) * 100 + 50) as f32, ((i as u32 / 10) * 100 + 50) as f32);
            DrawInstance {
                bbox: [cx - 40.0, cy - 40.0, cx + 40.0, cy + 40.0],
                mask: Some(MaskRef::new(m, w, h).unwrap()),
                label: format!("class{}", i % 7),
                score: Some(0.5 + (i % 50) as f32 / 100.0),
                color: class_color(i % 7),
            }
        })
        .collect();
    let start = Instant::now();
    let out = draw_instances(&image, &instances, &DrawOptions { mode: DrawMode::BBoxMask, ..Default::default() });
    println!("100 instances on {w}x{h}: {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
    out.save("/tmp/vizbench/timing.png").unwrap();
}
