mod common;

use common::{copy_fixture, fixture};
use maskrcnn_data::esri::EsriRcnnMasksDataset;
use maskrcnn_data::{mask_to_box, Dataset};

#[test]
fn reads_classes_chips_and_negatives() {
    let ds = EsriRcnnMasksDataset::open(&fixture("esri_tiny")).unwrap();
    // Classes sorted by value: 1 Building, 2 Pool.
    assert_eq!(ds.class_names(), &["Building", "Pool"]);
    assert_eq!(ds.label_to_class_value(2), Some(2));
    assert_eq!(ds.len(), 3);
    let r = ds.report();
    assert_eq!(r.negative_chips, vec!["000000002"]);
    assert_eq!(r.label_files, 3);
    assert_eq!(r.folders_by_value, vec![("2".to_string(), "Pool".to_string())]);
    assert!(r.missing_metadata.is_empty());
    let info = ds.info();
    assert!(info.is_map_space());
    assert_eq!(info.band_names, vec!["Red", "Green", "Blue"]);
    assert_eq!(info.tile_stats.len(), 3);
    assert_eq!(info.image_height, Some(32));
}

#[test]
fn each_label_value_is_one_instance() {
    let ds = EsriRcnnMasksDataset::open(&fixture("esri_tiny")).unwrap();
    let s = ds.get(0).unwrap();
    assert_eq!((s.image.channels, s.image.height, s.image.width), (3, 32, 32));
    assert_eq!(s.file_name, "000000000");
    // Building ids 1, 2, 3 then the 16-bit Pool id 300.
    assert_eq!(s.target.labels, vec![1, 1, 1, 2]);
    assert_eq!(
        s.target.boxes,
        vec![[2.0, 2.0, 10.0, 8.0], [4.0, 12.0, 9.0, 20.0], [20.0, 25.0, 31.0, 31.0], [20.0, 10.0, 28.0, 16.0]]
    );
    let areas: Vec<u32> = s.target.masks.iter().map(|m| m.iter().map(|&v| v as u32).sum()).collect();
    assert_eq!(areas, vec![48, 40, 66, 48]);
    for (b, m) in s.target.boxes.iter().zip(&s.target.masks) {
        assert_eq!(mask_to_box(m, 32, 32).as_ref(), Some(b));
    }
    assert!(s.target.iscrowd.iter().all(|c| !c));
    let s1 = ds.get(1).unwrap();
    assert_eq!(s1.target.boxes, vec![[0.0, 0.0, 32.0, 4.0]]);
    let negative = ds.get(2).unwrap();
    assert!(negative.target.is_empty());
    assert_eq!(negative.image.channels, 3);
}

fn open_err(dir: &std::path::Path) -> String {
    format!("{:#}", EsriRcnnMasksDataset::open(dir).unwrap_err())
}

#[test]
fn unknown_class_folder_is_an_error() {
    let dir = copy_fixture("esri_tiny");
    std::fs::create_dir(dir.path().join("labels/Tree")).unwrap();
    let msg = open_err(dir.path());
    assert!(msg.contains("labels/Tree") && msg.contains("Building"), "{msg}");
}

#[test]
fn same_class_by_name_and_value_is_an_error() {
    let dir = copy_fixture("esri_tiny");
    std::fs::create_dir(dir.path().join("labels/Pool")).unwrap();
    let msg = open_err(dir.path());
    assert!(msg.contains("both class \"Pool\""), "{msg}");
}

#[test]
fn wrong_metadata_mode_missing_emd_and_empty_labels() {
    let dir = copy_fixture("esri_tiny");
    std::fs::write(dir.path().join("esri_accumulated_stats.json"), r#"{"MetaDataMode":"PASCAL_VOC_rectangles"}"#)
        .unwrap();
    let msg = open_err(dir.path());
    assert!(msg.contains("PASCAL_VOC_rectangles") && msg.contains("RCNN_Masks"), "{msg}");

    let dir = copy_fixture("esri_tiny");
    std::fs::remove_file(dir.path().join("esri_model_definition.emd")).unwrap();
    assert!(open_err(dir.path()).contains(".emd"));

    let dir = copy_fixture("esri_tiny");
    std::fs::remove_dir_all(dir.path().join("labels")).unwrap();
    std::fs::create_dir(dir.path().join("labels")).unwrap();
    assert!(open_err(dir.path()).contains("no class folders"));

    let dir = copy_fixture("esri_tiny");
    std::fs::write(dir.path().join("esri_model_definition.emd"), "").unwrap();
    assert!(open_err(dir.path()).contains("empty"));
}

#[test]
fn missing_optional_metadata_is_reported() {
    let dir = copy_fixture("esri_tiny");
    std::fs::remove_file(dir.path().join("map.txt")).unwrap();
    std::fs::remove_file(dir.path().join("esri_accumulated_stats.json")).unwrap();
    let ds = EsriRcnnMasksDataset::open(dir.path()).unwrap();
    assert_eq!(ds.report().missing_metadata, vec!["esri_accumulated_stats.json", "map.txt"]);
    assert_eq!(ds.get(0).unwrap().target.len(), 4);
}

#[test]
fn label_size_mismatch_is_an_error() {
    let dir = copy_fixture("esri_tiny");
    maskrcnn_data::image_io::write_png_u8(&dir.path().join("labels/Building/000000001.png"), 1, 4, 4, &[0; 16])
        .unwrap();
    std::fs::remove_file(dir.path().join("labels/Building/000000001.tif")).unwrap();
    // map.txt says .tif; the reader falls back to other extensions by stem.
    let ds = EsriRcnnMasksDataset::open(dir.path()).unwrap();
    let msg = format!("{:#}", ds.get(1).unwrap_err());
    assert!(msg.contains("000000001.png") && msg.contains("4x4"), "{msg}");
}
