mod common;

use common::{fixture, shared_data};
use maskrcnn_data::coco::CocoDataset;
use maskrcnn_data::{mask_to_box, Dataset};

fn tiny() -> CocoDataset {
    CocoDataset::open(&fixture("coco_tiny/instances.json"), &fixture("coco_tiny/images")).unwrap()
}

#[test]
fn categories_map_to_contiguous_labels_and_back() {
    let ds = tiny();
    assert_eq!(ds.class_names(), &["building", "tank", "ship", "unused"]);
    assert_eq!(ds.category_ids(), &[3, 7, 12, 20]);
    assert_eq!(ds.label_to_category_id(1), Some(3));
    assert_eq!(ds.label_to_category_id(3), Some(12));
    assert_eq!(ds.label_to_category_id(0), None);
    assert_eq!(ds.label_to_category_id(5), None);
    assert_eq!(ds.category_id_to_label(7), Some(2));
    assert_eq!(ds.category_id_to_label(8), None);
}

#[test]
fn report_counts_kept_crowd_and_dropped() {
    let ds = tiny();
    let r = ds.report();
    assert_eq!(r.images, 3);
    assert_eq!(r.images_without_annotations, 1);
    assert_eq!(r.annotations, 5);
    assert_eq!(r.crowd_annotations, 1);
    assert_eq!(r.dropped_degenerate, 2, "zero-width box and fully-outside polygon");
    assert_eq!(ds.len(), 3, "images without instances are kept");
}

#[test]
fn masks_match_pycocotools_areas() {
    let ds = tiny();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("coco_tiny/expected.json")).unwrap()).unwrap();
    let areas = &expected["pycocotools_mask_area"];
    let mut checked = 0;
    for index in 0..ds.len() {
        let sample = ds.get(index).unwrap();
        let ids = ds.annotation_ids(index);
        assert_eq!(ids.len(), sample.target.len());
        for (i, id) in ids.iter().enumerate() {
            let id = id.unwrap().to_string();
            let area: u64 = sample.target.masks[i].iter().map(|&v| v as u64).sum();
            assert_eq!(area, areas[&id]["area"].as_u64().unwrap(), "annotation {id}");
            checked += 1;
        }
    }
    assert_eq!(checked, 5);
}

#[test]
fn sample_contents() {
    let ds = tiny();
    let s = ds.get(0).unwrap();
    assert_eq!((s.image.channels, s.image.height, s.image.width), (3, 30, 40));
    assert_eq!(s.image_id, 101);
    assert_eq!(s.target.labels, vec![1, 2, 3, 2]);
    assert_eq!(s.target.iscrowd, vec![false, false, true, false]);
    // Partly outside: clipped at the right edge.
    assert_eq!(s.target.boxes[1], [32.0, 2.0, 40.0, 10.0]);
    assert_eq!(s.target.boxes[0], [5.0, 5.0, 15.0, 12.0]);
    // Every box agrees with its rasterised mask within a pixel.
    for (b, m) in s.target.boxes.iter().zip(&s.target.masks) {
        let tight = mask_to_box(m, 30, 40).unwrap();
        for k in 0..4 {
            assert!((b[k] - tight[k]).abs() <= 1.0, "box {b:?} vs mask box {tight:?}");
        }
    }
    let gray = ds.get(1).unwrap();
    assert_eq!(gray.image.channels, 3, "grayscale expanded to RGB");
    assert_eq!(gray.image.plane(0), gray.image.plane(2));
    assert!(gray.target.is_empty());
    let native = tiny().with_gray_to_rgb(false).get(1).unwrap();
    assert_eq!(native.image.channels, 1);
    let sub = ds.get(2).unwrap();
    assert_eq!(sub.file_name, "sub/c.png");
    assert_eq!(sub.target.labels, vec![3]);
}

fn load(json: &str) -> String {
    let err = CocoDataset::from_json_str(json, std::path::Path::new("/nonexistent")).unwrap_err();
    format!("{err:#}")
}

#[test]
fn malformed_inputs_give_clear_errors() {
    assert!(load("").contains("empty"));
    assert!(load("{").contains("not a valid COCO"));
    assert!(load(r#"{"categories":[{"id":1,"name":"a"}]}"#).contains("\"images\""));
    assert!(load(r#"{"images":[]}"#).contains("\"categories\""));
    let base = r#""images":[{"id":1,"file_name":"x.png","height":10,"width":10}],"categories":[{"id":1,"name":"a"}]"#;
    let msg = load(&format!(
        r#"{{{base},"annotations":[{{"id":9,"image_id":1,"category_id":5,"bbox":[0,0,2,2],"segmentation":[[0,0,2,0,2,2]]}}]}}"#
    ));
    assert!(msg.contains("annotation id 9") && msg.contains("category id 5"), "{msg}");
    let msg = load(&format!(r#"{{{base},"annotations":[{{"id":9,"image_id":4,"category_id":1,"bbox":[0,0,2,2]}}]}}"#));
    assert!(msg.contains("image id 4"), "{msg}");
    let msg = load(&format!(
        r#"{{{base},"annotations":[{{"id":9,"image_id":1,"category_id":1,"bbox":[0,0,2,2],"segmentation":{{"size":[10,10],"counts":17}}}}]}}"#
    ));
    assert!(msg.contains("annotation id 9") && msg.contains("segmentation"), "{msg}");
    // An RLE of the wrong size is reported when the target is built.
    let ds = CocoDataset::from_json_str(
        &format!(
            r#"{{{base},"annotations":[{{"id":9,"image_id":1,"category_id":1,"bbox":[0,0,2,2],"segmentation":{{"size":[5,5],"counts":[25]}}}}]}}"#
        ),
        std::path::Path::new("/nonexistent"),
    )
    .unwrap();
    let msg = format!("{:#}", ds.target(0).unwrap_err());
    assert!(msg.contains("x.png") && msg.contains("differs"), "{msg}");
    // A missing image file names the path.
    let msg = format!("{:#}", ds.get(0).unwrap_err());
    assert!(msg.contains("x.png"), "{msg}");
}

#[test]
fn bbox_only_annotations_get_box_masks() {
    let json = r#"{"images":[{"id":1,"file_name":"x.png","height":10,"width":12}],"categories":[{"id":1,"name":"a"}],
        "annotations":[{"id":1,"image_id":1,"category_id":1,"bbox":[2,3,4,5],"segmentation":[]}]}"#;
    let ds = CocoDataset::from_json_str(json, std::path::Path::new("/nonexistent")).unwrap();
    assert_eq!(ds.report().without_segmentation, 1);
    let t = ds.target(0).unwrap();
    assert_eq!(t.masks[0].iter().map(|&v| v as u32).sum::<u32>(), 20);
    assert_eq!(mask_to_box(&t.masks[0], 10, 12), Some([2.0, 3.0, 6.0, 8.0]));
}

#[test]
fn coco128_permissive_official_annotations() {
    let root = shared_data("coco128-permissive");
    let ds = CocoDataset::open(&root.join("instances.json"), &root.join("images")).unwrap();
    assert_eq!(ds.len(), 33);
    assert_eq!(ds.num_classes(), 80);
    assert_eq!(ds.label_to_category_id(80), Some(90), "COCO's sparse ids end at 90");
    let r = ds.report().clone();
    assert_eq!(r.annotations + r.dropped_degenerate, 246);
    assert_eq!(r.crowd_annotations, 3);
    let mut instances = 0;
    let mut crowd_pixels = 0u64;
    let mut object_pixels = 0u64;
    for i in 0..ds.len() {
        let s = ds.get(i).unwrap();
        assert_eq!(s.image.channels, 3);
        for (k, m) in s.target.masks.iter().enumerate() {
            assert_eq!(m.len(), s.image.height * s.image.width);
            let area: u64 = m.iter().map(|&v| v as u64).sum();
            if s.target.iscrowd[k] {
                crowd_pixels += area;
            } else {
                object_pixels += area;
            }
            assert!(s.target.labels[k] >= 1 && s.target.labels[k] <= 80);
        }
        instances += s.target.len();
    }
    assert_eq!(instances, r.annotations);
    assert_eq!(r.dropped_degenerate, 0);
    // Totals of pycocotools' COCO.annToMask over the same file, computed once with the dev venv.
    assert_eq!(crowd_pixels, 145_403);
    assert_eq!(object_pixels, 3_506_949);
    println!("coco128-permissive: {r:?}, crowd pixels {crowd_pixels}");
}

/// Aerial COCO data (research licence: read in place, never copied into the repo).
#[test]
fn nwpu_vhr10_polygons_match_pycocotools_total() {
    let root = shared_data("nwpu-vhr10-train");
    let ds = CocoDataset::open(&root.join("instances.json"), &root.join("images")).unwrap();
    assert_eq!(ds.len(), 520);
    assert_eq!(ds.class_names()[2], "storage_tank");
    assert_eq!(ds.report().annotations, 2989);
    let mut pixels = 0u64;
    for i in 0..ds.len() {
        let t = ds.target(i).unwrap();
        pixels += t.masks.iter().flatten().map(|&v| v as u64).sum::<u64>();
    }
    // Sum of pycocotools' COCO.annToMask over every annotation, computed once with the dev venv.
    assert_eq!(pixels, 13_214_514);
    let s = ds.get(0).unwrap();
    assert_eq!(s.image.channels, 3);
}
