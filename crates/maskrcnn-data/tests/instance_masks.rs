mod common;

use common::{copy_fixture, fixture};
use maskrcnn_data::instance_masks::InstanceMaskFolder;
use maskrcnn_data::Dataset;

#[test]
fn penn_fudan_layout_single_class() {
    let ds = InstanceMaskFolder::open(&fixture("instance_masks_tiny"), "person").unwrap();
    assert_eq!(ds.len(), 3);
    assert_eq!(ds.class_names(), &["person"]);
    assert!(ds.mask_path(0).unwrap().ends_with("masks/PedA_mask.png"));
    assert!(ds.mask_path(1).unwrap().ends_with("masks/PedB.png"), "stem without _mask");
    let a = ds.get(0).unwrap();
    assert_eq!((a.image.channels, a.image.height, a.image.width), (3, 20, 24));
    // Palette indices 1 and 2 are the instances, whatever colours the palette gives them.
    assert_eq!(a.target.labels, vec![1, 1]);
    assert_eq!(a.target.boxes, vec![[1.0, 2.0, 6.0, 12.0], [10.0, 5.0, 20.0, 19.0]]);
    assert_eq!(a.target.masks[1].iter().filter(|&&v| v == 1).count(), 140);
    let b = ds.get(1).unwrap();
    assert_eq!(b.target.boxes, vec![[3.0, 3.0, 13.0, 9.0]]);
    let c = ds.get(2).unwrap();
    assert!(c.target.is_empty(), "all-zero mask: background-only image");
}

#[test]
fn class_map_assigns_classes_per_value() {
    let dir = fixture("instance_masks_tiny");
    let ds = InstanceMaskFolder::open_with_class_map(&dir, &dir.join("class_map.json")).unwrap();
    assert_eq!(ds.class_names(), &["person", "bicycle"]);
    assert_eq!(ds.get(0).unwrap().target.labels, vec![1, 2]);
    assert_eq!(ds.get(1).unwrap().target.labels, vec![1], "value 5 is a person");
}

#[test]
fn errors_name_the_problem() {
    let dir = copy_fixture("instance_masks_tiny");
    std::fs::write(dir.path().join("class_map.json"), r#"{"1": "person"}"#).unwrap();
    let ds = InstanceMaskFolder::open_with_class_map(dir.path(), &dir.path().join("class_map.json")).unwrap();
    let msg = format!("{:#}", ds.get(0).unwrap_err());
    assert!(msg.contains("PedA_mask.png") && msg.contains("value 2"), "{msg}");

    std::fs::remove_file(dir.path().join("masks/PedB.png")).unwrap();
    let msg = format!("{:#}", InstanceMaskFolder::open(dir.path(), "p").unwrap_err());
    assert!(msg.contains("PedB") && msg.contains("1 image(s)"), "{msg}");

    let msg = format!("{:#}", InstanceMaskFolder::open(&dir.path().join("nope"), "p").unwrap_err());
    assert!(msg.contains("images/"), "{msg}");
}
