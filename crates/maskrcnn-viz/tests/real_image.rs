//! Drawing on a real COCO photo with its real annotations (needs ../shared/data beside the repo).

#[path = "support/coco.rs"]
mod coco;

use maskrcnn_viz::*;

#[test]
fn real_annotations_are_blended_outlined_and_tagged() {
    let dir = coco::coco_dir();
    let json = coco::load_instances_json(&dir);
    let (image, objects) = coco::load_annotated(&dir, &json, "000000000030.jpg");
    assert_eq!(image.dimensions(), (640, 428));
    assert!(!objects.is_empty());
    let instances: Vec<DrawInstance> = objects
        .iter()
        .map(|o| DrawInstance {
            bbox: o.bbox_xyxy,
            mask: Some(MaskRef::new(&o.mask, 640, 428).unwrap()),
            label: o.category_name.clone(),
            score: None,
            color: class_color(o.category_id as usize),
        })
        .collect();
    let out = draw_instances(&image, &instances, &DrawOptions { mode: DrawMode::BBoxMask, ..Default::default() });
    assert_eq!(out.dimensions(), image.dimensions());

    let covered = |x: u32, y: u32| objects.iter().any(|o| o.mask[(y * 640 + x) as usize] != 0);
    let in_any_box = |x: u32, y: u32| {
        objects.iter().any(|o| {
            (x as f32) >= o.bbox_xyxy[0] - 40.0
                && (x as f32) <= o.bbox_xyxy[2] + 3.0
                && (y as f32) >= o.bbox_xyxy[1] - 40.0
                && (y as f32) <= o.bbox_xyxy[3] + 3.0
        })
    };
    let mut unchanged_far = 0;
    let mut far = 0;
    let mut blended_ok = 0;
    let mut interior = 0;
    for y in 3..425 {
        for x in 3..637 {
            if !in_any_box(x, y) {
                far += 1;
                unchanged_far += (out.get_pixel(x, y) == image.get_pixel(x, y)) as u32;
            }
            // Interior pixels of exactly one mask, 3+ px from its edge, away from boxes and tags.
            let owners: Vec<&coco::GtObject> = objects.iter().filter(|o| o.mask[(y * 640 + x) as usize] != 0).collect();
            if owners.len() == 1 && (x - 3..=x + 3).all(|sx| (y - 3..=y + 3).all(|sy| covered(sx, sy))) {
                let o = owners[0];
                let near_box_edge = [o.bbox_xyxy[0], o.bbox_xyxy[2]].iter().any(|bx| (x as f32 - bx).abs() < 4.0)
                    || [o.bbox_xyxy[1], o.bbox_xyxy[3]].iter().any(|by| (y as f32 - by).abs() < 4.0);
                if near_box_edge || (y as f32) < o.bbox_xyxy[1] + 30.0 {
                    continue;
                }
                interior += 1;
                let color = class_color(o.category_id as usize);
                let src = image.get_pixel(x, y).0;
                let expected: Vec<u8> =
                    (0..3).map(|c| ((src[c] as f32 + color[c] as f32) / 2.0).round() as u8).collect();
                blended_ok += (out.get_pixel(x, y).0.to_vec() == expected) as u32;
            }
        }
    }
    println!(
        "far pixels: {far}, unchanged: {unchanged_far}; interior pixels: {interior}, exactly blended: {blended_ok}"
    );
    assert!(far > 10_000 && unchanged_far == far, "pixels away from every object must be untouched");
    assert!(interior > 1_000, "found only {interior} interior pixels");
    // Other instances' boxes may cross an interior: allow a small share.
    assert!(blended_ok as f64 / interior as f64 > 0.97, "{blended_ok}/{interior} interior pixels are exact 50% blends");
}

#[test]
fn loss_curves_from_the_committed_metrics_fixture() {
    let path = coco::repo_root().join("fixtures/viz/metrics.jsonl");
    let log = read_metrics_jsonl(&path).unwrap();
    assert_eq!((log.steps.len(), log.epochs.len()), (200, 5));
    let series = loss_series(&log);
    let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["loss", "loss_box_reg", "loss_classifier", "loss_mask", "loss_objectness", "loss_rpn_box_reg", "val_loss"]
    );
    assert_eq!(series[0].points.len(), 200);
    assert_eq!(series[6].points.last().unwrap().0, 199.0);
    let image = loss_curves_from_metrics_jsonl(&path).unwrap();
    assert_eq!(image.dimensions(), (960, 540));
    assert!(epoch_metrics_plot(&log, 640, 400).is_some());
}
