use maskrcnn_data::coco::CocoDataset;
use maskrcnn_data::synthetic::{generate, write_coco, SyntheticConfig};
use maskrcnn_data::Dataset;

/// The files written for the README's first command read back, through the COCO reader,
/// as exactly the in-memory dataset.
#[test]
fn written_coco_reads_back_identically() {
    let config = SyntheticConfig { num_images: 5, image_size: 128, seed: 3, ..Default::default() };
    let ds = generate(&config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = write_coco(&ds, dir.path()).unwrap();
    let coco = CocoDataset::open(&json, &dir.path().join("images")).unwrap();
    assert_eq!(coco.class_names(), ds.class_names());
    assert_eq!(coco.len(), 5);
    assert_eq!(coco.report().dropped_degenerate, 0);
    let mut instances = 0;
    for i in 0..5 {
        let a = ds.get(i).unwrap();
        let b = coco.get(i).unwrap();
        assert_eq!(a, b, "image {i}");
        instances += a.target.len();
    }
    assert!(instances >= 5);
    assert_eq!(coco.report().annotations, instances);
}
