//! Each operator against torchvision/PyTorch on the random and edge cases in
//! `fixtures/parity/ops` (written by `tools/reference/parity/make_parity_fixtures.py`).

mod common;

use common::{assert_close, fixture, read_safetensors};
use maskrcnn::ops::boxes::Box;
use maskrcnn::ops::interpolate::resize_bilinear;
use maskrcnn::ops::paste_masks::paste_mask;
use maskrcnn::ops::point_sample::point_sample_host;
use maskrcnn::ops::roi_align::{roi_align_host, sampling_plan, RoiAlignParams};
use maskrcnn::ops::{batched_nms, nms, BoxCoder};
use maskrcnn::proposal::anchors::cell_anchors;
use maskrcnn::roi_heads::poolers::map_levels;
use maskrcnn::transform::resized_size;
use serde_json::Value;

fn boxes(v: &[f32]) -> Vec<Box> {
    v.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect()
}

#[test]
fn every_operator_matches_torchvision() {
    let meta: Value = serde_json::from_slice(&std::fs::read(fixture("parity/ops/ops.json")).unwrap()).unwrap();
    let t = read_safetensors(&fixture("parity/ops/ops.safetensors"));
    let get = |k: &Value| t[k.as_str().unwrap()].clone();
    let mut checked = 0;
    for (name, case) in meta["cases"].as_object().unwrap() {
        let expected = &t[name.as_str()].1;
        match case["op"].as_str().unwrap() {
            "roi_align" => {
                let (shape, input) = get(&case["input"]);
                let (_, rois) = get(&case["rois"]);
                let (c, h, w) = (shape[1], shape[2], shape[3]);
                let out = case["output_size"].as_array().unwrap();
                let p = RoiAlignParams {
                    output_h: out[0].as_u64().unwrap() as usize,
                    output_w: out[1].as_u64().unwrap() as usize,
                    spatial_scale: case["spatial_scale"].as_f64().unwrap() as f32,
                    sampling_ratio: case["sampling_ratio"].as_i64().unwrap() as i32,
                    aligned: case["aligned"].as_bool().unwrap(),
                };
                let mut host = Vec::new();
                let mut planned = Vec::new();
                for roi in rois.chunks_exact(5) {
                    let b = roi[0] as usize;
                    let image = &input[b * c * h * w..(b + 1) * c * h * w];
                    host.extend(roi_align_host(image, c, h, w, &[[roi[1], roi[2], roi[3], roi[4]]], &p));
                    let plan = sampling_plan(&[(0, [roi[1], roi[2], roi[3], roi[4]])], h, w, &p);
                    for ch in 0..c {
                        for cell in 0..plan.cells {
                            let v: f32 = (0..plan.taps_per_cell)
                                .map(|k| {
                                    let i = cell * plan.taps_per_cell + k;
                                    plan.weights[i] * image[ch * h * w + plan.rows[i] as usize]
                                })
                                .sum();
                            planned.push(v);
                        }
                    }
                }
                assert_close(name, &host, expected, 1e-5);
                assert_close(&format!("{name} (gather plan)"), &planned, expected, 1e-5);
            }
            "nms" => {
                let keep = nms(
                    &boxes(&get(&case["boxes"]).1),
                    &get(&case["scores"]).1,
                    case["iou_threshold"].as_f64().unwrap(),
                );
                assert_eq!(keep.iter().map(|&k| k as f32).collect::<Vec<_>>(), *expected, "{name}");
            }
            "batched_nms" => {
                let groups: Vec<usize> = get(&case["idxs"]).1.iter().map(|&g| g as usize).collect();
                let keep = batched_nms(
                    &boxes(&get(&case["boxes"]).1),
                    &get(&case["scores"]).1,
                    &groups,
                    case["iou_threshold"].as_f64().unwrap(),
                );
                assert_eq!(keep.iter().map(|&k| k as f32).collect::<Vec<_>>(), *expected, "{name}");
            }
            "box_decode" => {
                let w: Vec<f32> =
                    case["weights"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
                let coder = BoxCoder::new([w[0], w[1], w[2], w[3]]);
                let (shape, codes) = get(&case["rel_codes"]);
                let refs = boxes(&get(&case["boxes"]).1);
                let per_row = shape[1] / 4;
                let mut out = Vec::new();
                for (r, reference) in refs.iter().enumerate() {
                    for k in 0..per_row {
                        out.extend(coder.decode(&codes[(r * per_row + k) * 4..(r * per_row + k) * 4 + 4], reference));
                    }
                }
                assert_close(name, &out, expected, 1e-5);
            }
            "box_encode" => {
                let w: Vec<f32> =
                    case["weights"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
                let coder = BoxCoder::new([w[0], w[1], w[2], w[3]]);
                let gt = boxes(&get(&case["reference_boxes"]).1);
                let proposals = boxes(&get(&case["proposals"]).1);
                let out: Vec<f32> = gt.iter().zip(&proposals).flat_map(|(g, p)| coder.encode(g, p)).collect();
                assert_close(name, &out, expected, 1e-5);
            }
            "paste_masks_in_image" => {
                let (shape, masks) = get(&case["masks"]);
                let bxs = boxes(&get(&case["boxes"]).1);
                let hw = case["image_hw"].as_array().unwrap();
                let (h, w) = (hw[0].as_u64().unwrap() as usize, hw[1].as_u64().unwrap() as usize);
                let m = shape[2];
                let out: Vec<f32> = bxs
                    .iter()
                    .enumerate()
                    .flat_map(|(i, b)| paste_mask(&masks[i * m * m..(i + 1) * m * m], m, b, h, w).to_full(h, w))
                    .collect();
                assert_close(name, &out, expected, 1e-5);
            }
            "resize_bilinear" => {
                let (shape, input) = get(&case["input"]);
                let (min, max) =
                    (case["min_size"].as_u64().unwrap() as usize, case["max_size"].as_u64().unwrap() as usize);
                let size = resized_size(shape[1], shape[2], min, max);
                let hw = case["output_hw"].as_array().unwrap();
                assert_eq!(size, (hw[0].as_u64().unwrap() as usize, hw[1].as_u64().unwrap() as usize), "{name}: size");
                assert_close(name, &resize_bilinear(&input, shape[0], (shape[1], shape[2]), size), expected, 1e-5);
            }
            "point_sample" => {
                let (shape, input) = get(&case["input"]);
                let (_, points) = get(&case["points"]);
                let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
                let per = points.len() / (2 * n);
                let mut out = Vec::new();
                for b in 0..n {
                    let pts: Vec<[f32; 2]> =
                        points[b * per * 2..(b + 1) * per * 2].chunks_exact(2).map(|p| [p[0], p[1]]).collect();
                    out.extend(point_sample_host(&input[b * c * h * w..(b + 1) * c * h * w], c, h, w, &pts));
                }
                assert_close(name, &out, expected, 1e-5);
            }
            "level_mapper" => {
                let levels = map_levels(
                    &boxes(&get(&case["boxes"]).1),
                    case["k_min"].as_i64().unwrap() as i32,
                    case["k_max"].as_i64().unwrap() as i32,
                );
                assert_eq!(levels.iter().map(|&l| l as f32).collect::<Vec<_>>(), *expected, "{name}");
            }
            "cell_anchors" => {
                let sizes: Vec<f32> =
                    case["sizes"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
                let ratios: Vec<f32> =
                    case["aspect_ratios"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
                let out: Vec<f32> = cell_anchors(&sizes, &ratios).into_iter().flatten().collect();
                assert_eq!(out, *expected, "{name}");
            }
            other => panic!("{name}: unknown op {other}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 45, "every case in ops.json was checked");
}
