//! Hostile inputs to the model: images of every shape (slivers, single pixels, none, far above
//! `max_size`) and configurations with zero or absurd sizes. Each must give correct output or a
//! clean error naming the problem, never a panic.

use std::panic::{catch_unwind, AssertUnwindSafe};

use burn::tensor::{Device, Tensor};
use maskrcnn_model::config::MaskHeadKind;
use maskrcnn_model::model::ForwardTrace;
use maskrcnn_model::train::trainer::step_rng;
use maskrcnn_model::train::{RandomSampler, TrainTarget};
use maskrcnn_model::transform::ImageChw;
use maskrcnn_model::{MaskRcnn, MaskRcnnConfig};

/// The small test network behind torchvision's default transform (800 / 1333), so the
/// resize and padding are those a real model applies.
fn sliver_config(mask_head: MaskHeadKind) -> MaskRcnnConfig {
    let mut config = MaskRcnnConfig::small(3, 128, 16);
    config.transform.min_size = 800;
    config.transform.max_size = 1333;
    config.mask_head = mask_head;
    config
}

/// A deterministic textured image (a constant one would give no gradients to look at).
fn image(height: usize, width: usize) -> ImageChw {
    let data = (0..3 * height * width).map(|i| ((i * 7919) % 251) as f32 / 251.0).collect();
    ImageChw { channels: 3, height, width, data }
}

/// Runs `f`, turning a panic into an `Err` with its message so one test reports every case.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|e| {
        let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
        format!("{what}: panicked: {}", msg.unwrap_or_default())
    })
}

/// Detections must lie inside their image, with finite scores and valid labels.
fn check_detections(
    what: &str,
    dets: &[maskrcnn_model::Detection],
    h: usize,
    w: usize,
    classes: usize,
) -> Result<(), String> {
    for d in dets {
        let [x1, y1, x2, y2] = d.bbox;
        // Boxes are clipped in the resized image and scaled back in f32, as torchvision does, so
        // the far edge can overshoot by a rounding step.
        let (wf, hf) = (w as f32 * (1.0 + 1e-6) + 1e-3, h as f32 * (1.0 + 1e-6) + 1e-3);
        let inside = 0.0 <= x1 && x1 <= x2 && x2 <= wf && 0.0 <= y1 && y1 <= y2 && y2 <= hf;
        if !inside || !(0.0..=1.0).contains(&d.score) || !(1..classes).contains(&d.label) {
            return Err(format!("{what}: bad detection {:?} score {} label {}", d.bbox, d.score, d.label));
        }
        let m = &d.mask;
        if m.x0 + m.width > w || m.y0 + m.height > h || m.probs.len() != m.width * m.height {
            return Err(format!("{what}: mask window {}+{} x {}+{} outside {w}x{h}", m.x0, m.width, m.y0, m.height));
        }
    }
    Ok(())
}

#[test]
fn every_aspect_ratio_predicts_inside_the_image() {
    let mut failures = Vec::new();
    for head in [MaskHeadKind::Standard, MaskHeadKind::PointRend] {
        let config = sliver_config(head);
        let model = MaskRcnn::new(config.clone(), &Device::flex()).unwrap();
        // (height, width, resized size torchvision-style with each side at least 1 px)
        let cases: &[(usize, usize, (usize, usize))] = &[
            (3000, 1, (1333, 1)),
            (1, 3000, (1, 1333)),
            (4, 3000, (1, 1333)),
            (3000, 4, (1333, 1)),
            (60000, 1, (1333, 1)),
            (1, 60000, (1, 1333)),
            (1, 1, (800, 800)),
            (2, 3, (800, 1200)),
            (31, 4000, (10, 1333)),
            (3000, 4500, (800, 1200)),
        ];
        for &(h, w, resized) in cases {
            if head == MaskHeadKind::PointRend && resized.0 * resized.1 > 100_000 {
                continue; // full-size inputs exercise the transform, which the mask head does not change
            }
            let what = format!("{head:?} {h}x{w}");
            let input = image(h, w);
            let mut trace = Some(ForwardTrace::default());
            let result = no_panic(&what, || model.predict_traced(std::slice::from_ref(&input), &mut trace));
            match result {
                Err(e) => failures.push(e),
                Ok(dets) => {
                    let t = trace.as_ref().unwrap();
                    if t.image_sizes != [resized] {
                        failures.push(format!("{what}: resized to {:?}, expected {resized:?}", t.image_sizes));
                    }
                    let [_, _, ph, pw] = t.batch.as_ref().unwrap().dims();
                    if ph % 32 != 0 || pw % 32 != 0 || ph < resized.0 || pw < resized.1 {
                        failures.push(format!("{what}: padded batch {ph}x{pw}"));
                    }
                    if let Err(e) = check_detections(&what, &dets[0], h, w, config.num_classes) {
                        failures.push(e);
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn images_without_pixels_are_errors_or_have_no_detections() {
    let model = MaskRcnn::new(MaskRcnnConfig::small(3, 64, 8), &Device::flex()).unwrap();
    for (h, w) in [(0, 0), (0, 5), (7, 0)] {
        let empty = ImageChw { channels: 3, height: h, width: w, data: Vec::new() };
        let err = model.try_predict(std::slice::from_ref(&empty)).unwrap_err();
        assert!(format!("{err:#}").contains("it has none"), "{h}x{w}: {err:#}");
        // In a batch, the empty image has no detections and the others are unaffected.
        let batch = [image(40, 30), empty.clone(), image(40, 30)];
        let dets = no_panic("batch with an empty image", || model.predict(&batch)).unwrap();
        assert_eq!(dets.len(), 3);
        assert!(dets[1].is_empty());
        assert_eq!(dets[0], dets[2]);
        assert_eq!(dets[0], model.predict(&[image(40, 30)])[0]);
        let mut rng = step_rng(0, 0);
        let Err(err) = model.forward_train(&[empty], &[TrainTarget::default()], &mut RandomSampler { rng: &mut rng })
        else {
            panic!("training on an image without pixels must fail");
        };
        assert!(format!("{err:#}").contains("image 0: the image is"), "{err:#}");
    }
    let wrong_bands = ImageChw { channels: 4, height: 2, width: 2, data: vec![0.0; 16] };
    let err = model.try_predict(&[wrong_bands]).unwrap_err();
    assert!(format!("{err:#}").contains("4 bands, the model expects 3"), "{err:#}");
    let short_buffer = ImageChw { channels: 3, height: 2, width: 2, data: vec![0.0; 11] };
    let err = model.try_predict(&[short_buffer]).unwrap_err();
    assert!(format!("{err:#}").contains("holds 11 values"), "{err:#}");
}

#[test]
fn slivers_train_without_panicking() {
    let mut failures = Vec::new();
    for head in [MaskHeadKind::Standard, MaskHeadKind::PointRend] {
        let config = sliver_config(head);
        let model = MaskRcnn::new(config, &Device::flex().autodiff()).unwrap();
        let cases: &[(usize, usize)] = if head == MaskHeadKind::Standard {
            &[(3000, 1), (4, 3000), (1, 60000), (1, 1)]
        } else {
            &[(3000, 1), (4, 3000)]
        };
        for &(h, w) in cases {
            let what = format!("{head:?} training on {h}x{w}");
            // One object covering the middle third of the long side.
            let (bx, by) = if w >= h { (w as f32 / 3.0, 0.0) } else { (0.0, h as f32 / 3.0) };
            let b = [bx, by, if w >= h { 2.0 * bx } else { w as f32 }, if w >= h { h as f32 } else { 2.0 * by }];
            let mut mask = vec![0u8; h * w];
            for y in 0..h {
                for x in 0..w {
                    if (x as f32) >= b[0] && (x as f32) < b[2] && (y as f32) >= b[1] && (y as f32) < b[3] {
                        mask[y * w + x] = 1;
                    }
                }
            }
            let target = TrainTarget { boxes: vec![b], labels: vec![1], masks: vec![mask] };
            let mut rng = step_rng(3, 0);
            let result = no_panic(&what, || {
                model.forward_train(&[image(h, w)], &[target], &mut RandomSampler { rng: &mut rng })
            });
            match result {
                Err(e) => failures.push(e),
                Ok(Err(e)) => failures.push(format!("{what}: {e:#}")),
                Ok(Ok(losses)) => {
                    let values = losses.values();
                    if values.iter().any(|v| !v.is_finite()) {
                        failures.push(format!("{what}: losses {values:?}"));
                    }
                    let total: Tensor<1> = losses.total();
                    if let Err(e) = no_panic(&what, || total.backward()) {
                        failures.push(e);
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn sliver_feature_maps_get_their_true_scale() {
    // A 1x1333 image padded to 32x1344: its stride-4 map is 8x336. From the height alone the
    // scale would read as 8; torchvision asserts here. The width gives the true 1/4.
    let feature: Tensor<4> = Tensor::zeros([1, 2, 8, 336], &Device::flex());
    assert_eq!(maskrcnn_model::roi_heads::poolers::level_scale(&feature, &[(1, 1333)]), 0.25);
    let feature: Tensor<4> = Tensor::zeros([1, 2, 336, 8], &Device::flex());
    assert_eq!(maskrcnn_model::roi_heads::poolers::level_scale(&feature, &[(1333, 1)]), 0.25);
    let feature: Tensor<4> = Tensor::zeros([1, 2, 200, 272], &Device::flex());
    assert_eq!(maskrcnn_model::roi_heads::poolers::level_scale(&feature, &[(800, 1066)]), 0.25);
}

type Edit = fn(&mut MaskRcnnConfig);

/// Each invalid configuration and the text its error must contain (the field and its range).
fn invalid_configs() -> Vec<(&'static str, Edit, &'static str)> {
    vec![
        ("num_classes 0", |c| c.num_classes = 0, "num_classes (background included) must be in 2..=32768, got 0"),
        ("num_classes 1", |c| c.num_classes = 1, "num_classes (background included) must be in 2..=32768"),
        ("num_classes huge", |c| c.num_classes = 10_000_000, "num_classes"),
        ("depth 0", |c| c.backbone.depth = 0, "backbone.depth must be one of 18, 34, 50, 101, 152, got 0"),
        (
            "returned_layers empty",
            |c| c.backbone.returned_layers.clear(),
            "backbone.returned_layers must be consecutive",
        ),
        ("returned_layers 5", |c| c.backbone.returned_layers = vec![4, 5], "backbone.returned_layers"),
        ("returned_layers gap", |c| c.backbone.returned_layers = vec![1, 3], "backbone.returned_layers"),
        ("returned_layers reversed", |c| c.backbone.returned_layers = vec![2, 1], "backbone.returned_layers"),
        ("trainable_layers 6", |c| c.backbone.trainable_layers = 6, "backbone.trainable_layers must be in 0..=5"),
        (
            "fpn out_channels 0",
            |c| c.backbone.fpn_out_channels = 0,
            "backbone.fpn_out_channels must be in 1..=16384, got 0",
        ),
        ("fpn out_channels huge", |c| c.backbone.fpn_out_channels = 1 << 20, "backbone.fpn_out_channels"),
        ("in_channels 0", |c| c.backbone.in_channels = 0, "backbone.in_channels must be in 1..=1024, got 0"),
        ("min_size 0", |c| c.transform.min_size = 0, "transform.min_size must be in 1..=8192, got 0"),
        ("max_size 0", |c| c.transform.max_size = 0, "transform.max_size must be in 1..=8192, got 0"),
        ("max_size huge", |c| c.transform.max_size = 1_000_000, "transform.max_size"),
        ("size_divisible 0", |c| c.transform.size_divisible = 0, "transform.size_divisible must be in 1..=1024"),
        (
            "image_mean short",
            |c| c.transform.image_mean.pop().map_or((), drop),
            "one value per input band (3), got 2/3",
        ),
        (
            "image_std 0",
            |c| c.transform.image_std[1] = 0.0,
            "transform.image_std must be a finite number above 0, got 0",
        ),
        ("image_mean NaN", |c| c.transform.image_mean[0] = f32::NAN, "transform.image_mean must be finite"),
        (
            "pixel_scale 0",
            |c| c.transform.pixel_scale = Some(0.0),
            "transform.pixel_scale must be a finite number above 0",
        ),
        (
            "anchor lists short",
            |c| c.rpn.anchor_sizes.pop().map_or((), drop),
            "rpn.anchor_sizes must hold one list per feature map (3",
        ),
        ("anchor list empty", |c| c.rpn.anchor_sizes = vec![vec![]; 3], "rpn.anchor_sizes lists must be non-empty"),
        ("anchor lists unequal", |c| c.rpn.anchor_sizes[1].push(48.0), "equally long"),
        (
            "anchor size 0",
            |c| c.rpn.anchor_sizes[0][0] = 0.0,
            "rpn.anchor_sizes must be a finite number above 0, got 0",
        ),
        ("anchor size inf", |c| c.rpn.anchor_sizes[0][0] = f32::INFINITY, "rpn.anchor_sizes must be a finite number"),
        ("aspect ratios empty", |c| c.rpn.aspect_ratios.clear(), "rpn.aspect_ratios must hold at least one ratio"),
        (
            "aspect ratio negative",
            |c| c.rpn.aspect_ratios[0] = -1.0,
            "rpn.aspect_ratios must be a finite number above 0",
        ),
        ("pre_nms_top_n_test 0", |c| c.rpn.pre_nms_top_n_test = 0, "rpn.pre_nms_top_n_test must be in 1..=1000000"),
        ("post_nms_top_n_train 0", |c| c.rpn.post_nms_top_n_train = 0, "rpn.post_nms_top_n_train"),
        ("rpn nms 1.5", |c| c.rpn.nms_thresh = 1.5, "rpn.nms_thresh must be in [0, 1], got 1.5"),
        ("rpn fg -0.1", |c| c.rpn.fg_iou_thresh = -0.1, "rpn.fg_iou_thresh must be in [0, 1]"),
        ("rpn bg > fg", |c| c.rpn.bg_iou_thresh = 0.8, "rpn.bg_iou_thresh must not exceed rpn.fg_iou_thresh"),
        ("rpn batch 0", |c| c.rpn.batch_size_per_image = 0, "rpn.batch_size_per_image must be in 1..=1000000"),
        ("rpn positive 2", |c| c.rpn.positive_fraction = 2.0, "rpn.positive_fraction must be in [0, 1], got 2"),
        ("rpn positive NaN", |c| c.rpn.positive_fraction = f32::NAN, "rpn.positive_fraction must be in [0, 1]"),
        ("rpn score -1", |c| c.rpn.score_thresh = -1.0, "rpn.score_thresh"),
        ("box roi size 0", |c| c.roi_heads.box_roi_output_size = 0, "roi_heads.box_roi_output_size must be in 1..=128"),
        (
            "mask roi size 0",
            |c| c.roi_heads.mask_roi_output_size = 0,
            "roi_heads.mask_roi_output_size must be in 1..=128, got 0",
        ),
        (
            "sampling ratio huge",
            |c| c.roi_heads.sampling_ratio = 100_000,
            "roi_heads.sampling_ratio must be at most 128",
        ),
        ("representation 0", |c| c.roi_heads.representation_size = 0, "roi_heads.representation_size"),
        ("box score 1.1", |c| c.roi_heads.box_score_thresh = 1.1, "roi_heads.box_score_thresh must be in [0, 1]"),
        ("box nms -1", |c| c.roi_heads.box_nms_thresh = -1.0, "roi_heads.box_nms_thresh"),
        ("box bg > fg", |c| c.roi_heads.box_bg_iou_thresh = 0.9, "roi_heads.box_bg_iou_thresh must not exceed"),
        ("box batch 0", |c| c.roi_heads.box_batch_size_per_image = 0, "roi_heads.box_batch_size_per_image"),
        ("box positive 1.5", |c| c.roi_heads.box_positive_fraction = 1.5, "roi_heads.box_positive_fraction"),
        (
            "bbox weight 0",
            |c| c.roi_heads.bbox_reg_weights[2] = 0.0,
            "roi_heads.bbox_reg_weights must be a finite number above 0",
        ),
        ("mask layers empty", |c| c.roi_heads.mask_layers.clear(), "roi_heads.mask_layers must hold at least one"),
        ("mask layer 0", |c| c.roi_heads.mask_layers[0] = 0, "roi_heads.mask_layers must be in 1..=16384, got 0"),
        ("mask dilation 0", |c| c.roi_heads.mask_dilation = 0, "roi_heads.mask_dilation must be in 1..=128, got 0"),
        ("mask predictor 0", |c| c.roi_heads.mask_predictor_channels = 0, "roi_heads.mask_predictor_channels"),
    ]
}

#[test]
fn invalid_configs_are_refused_naming_the_field() {
    let device = Device::flex();
    let base = MaskRcnnConfig::small(3, 64, 8);
    let mut failures = Vec::new();
    for (name, edit, expected) in invalid_configs() {
        let mut config = base.clone();
        edit(&mut config);
        match no_panic(name, || config.validate()) {
            Err(e) => failures.push(e),
            Ok(Ok(())) => failures.push(format!("{name}: accepted")),
            Ok(Err(e)) if !format!("{e:#}").contains(expected) => {
                failures.push(format!("{name}: error `{e:#}` lacks `{expected}`"))
            }
            Ok(Err(_)) => {}
        }
        match no_panic(name, || MaskRcnn::new(config.clone(), &device).map(|_| ())) {
            Err(e) => failures.push(e),
            Ok(Ok(())) => failures.push(format!("{name}: model built")),
            Ok(Err(_)) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_config_json_in_a_model_folder_is_a_one_line_error() {
    let device = Device::flex();
    let mut model = MaskRcnn::new(MaskRcnnConfig::small(3, 64, 8), &device).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    maskrcnn_model::weights::save_model_dir(&mut model, tmp.path()).unwrap();
    let config_path = tmp.path().join("config.json");
    let text = std::fs::read_to_string(&config_path).unwrap();
    for (field, from, to) in [
        ("roi_heads.mask_dilation", "\"mask_dilation\": 1", "\"mask_dilation\": 0"),
        ("backbone.fpn_out_channels", "\"fpn_out_channels\": 8", "\"fpn_out_channels\": 0"),
        ("roi_heads.mask_roi_output_size", "\"mask_roi_output_size\": 14", "\"mask_roi_output_size\": 0"),
        ("transform.min_size", "\"min_size\": 64", "\"min_size\": 0"),
    ] {
        assert!(text.contains(from), "{from} not in the saved config");
        std::fs::write(&config_path, text.replace(from, to)).unwrap();
        let err = no_panic(field, || maskrcnn_model::weights::load_model(tmp.path(), &device).map(|_| ()))
            .unwrap()
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(field) && msg.contains("invalid model configuration"), "{field}: {msg}");
    }
}

#[test]
fn edge_configs_that_are_valid_run() {
    let device = Device::flex();
    for (name, edit) in [
        ("no detections per image", (|c| c.roi_heads.box_detections_per_img = 0) as Edit),
        ("min_size above max_size (the long side becomes max_size)", |c| {
            c.transform.min_size = 200;
            c.transform.max_size = 50;
        }),
        ("one-pixel sizes", |c| {
            c.transform.min_size = 1;
            c.transform.max_size = 1;
            c.transform.size_divisible = 1;
        }),
        ("adaptive sampling ratio", |c| c.roi_heads.sampling_ratio = -1),
        ("dilated mask head", |c| c.roi_heads.mask_dilation = 2),
        ("one-pixel RoIs", |c| {
            c.roi_heads.box_roi_output_size = 1;
            c.roi_heads.mask_roi_output_size = 1;
        }),
        ("no positive anchors sampled", |c| c.rpn.positive_fraction = 0.0),
        ("no negative anchors", |c| c.rpn.bg_iou_thresh = 0.0),
        ("every box kept", |c| c.roi_heads.box_score_thresh = 0.0),
    ] {
        let mut config = MaskRcnnConfig::small(3, 64, 8);
        edit(&mut config);
        config.validate().unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let model = MaskRcnn::new(config.clone(), &device).unwrap();
        let dets = no_panic(name, || model.predict(&[image(48, 64)])).unwrap();
        check_detections(name, &dets[0], 48, 64, config.num_classes).unwrap();
        if config.roi_heads.box_detections_per_img == 0 {
            assert!(dets[0].is_empty(), "{name}");
        }
        let trainable = MaskRcnn::new(config, &device.clone().autodiff()).unwrap();
        let mut mask = vec![0u8; 48 * 64];
        for y in 10..30 {
            mask[y * 64 + 20..y * 64 + 44].fill(1);
        }
        let target = TrainTarget { boxes: vec![[20.0, 10.0, 44.0, 30.0]], labels: vec![2], masks: vec![mask] };
        let mut rng = step_rng(1, 0);
        let losses = no_panic(name, || {
            trainable.forward_train(&[image(48, 64)], &[target], &mut RandomSampler { rng: &mut rng })
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(losses.values().iter().all(|v| v.is_finite()), "{name}: {:?}", losses.values());
    }
    for config in [
        MaskRcnnConfig::default(),
        MaskRcnnConfig::small(2, 128, 32),
        MaskRcnnConfig::for_classes(101, &["a".into(), "b".into()], 7, 2),
    ] {
        config.validate().unwrap();
    }
}
