mod common;

use common::fixture;
use maskrcnn_data::{open_dataset, split_indices, Dataset, DatasetFormat, Subset};

#[test]
fn detects_each_layout() {
    let (f, ds) = open_dataset(&fixture("coco_tiny/instances.json"), None).unwrap();
    assert_eq!((f, ds.len()), (DatasetFormat::Coco, 3));
    assert_eq!(ds.get(0).unwrap().target.len(), 4, "images/ beside the JSON is used");
    let (f, ds) = open_dataset(&fixture("esri_tiny"), None).unwrap();
    assert_eq!((f, ds.num_classes()), (DatasetFormat::EsriRcnnMasks, 2));
    let (f, ds) = open_dataset(&fixture("instance_masks_tiny"), None).unwrap();
    assert_eq!((f, ds.class_names()), (DatasetFormat::InstanceMaskFolder, &["object".to_string()][..]));
    let msg = format!("{:#}", open_dataset(&fixture("coco_tiny/images"), None).err().unwrap());
    assert!(msg.contains("not a recognised dataset"), "{msg}");
    let (_, ds) = open_dataset(&fixture("esri_tiny"), None).unwrap();
    let (train, val) = split_indices(ds.len(), 0.34, 1);
    let sub = Subset { inner: ds.as_ref(), indices: val.clone() };
    assert_eq!(sub.len(), 1);
    assert_eq!(sub.get(0).unwrap().file_name, ds.get(val[0]).unwrap().file_name);
    assert_eq!(train.len(), 2);
}
