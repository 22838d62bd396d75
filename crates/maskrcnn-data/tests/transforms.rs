mod common;

use common::fixture;
use maskrcnn_data::coco::CocoDataset;
use maskrcnn_data::esri::EsriRcnnMasksDataset;
use maskrcnn_data::transforms::{augment, dihedral, sample_rng, AugmentConfig};
use maskrcnn_data::{mask_to_box, Dataset, Sample};

fn check(s: &Sample, tolerance: f32) {
    for (b, m) in s.target.boxes.iter().zip(&s.target.masks) {
        let tight = mask_to_box(m, s.image.height, s.image.width).expect("empty masks are dropped");
        for k in 0..4 {
            assert!((b[k] - tight[k]).abs() <= tolerance, "{}: box {b:?} vs mask box {tight:?}", s.file_name);
        }
    }
}

/// Real readers' samples through every dihedral transform and random augmentation: boxes keep
/// matching masks (COCO boxes are continuous polygon boxes, so within a pixel).
#[test]
fn augmented_reader_samples_keep_boxes_on_masks() {
    let coco = CocoDataset::open(&fixture("coco_tiny/instances.json"), &fixture("coco_tiny/images")).unwrap();
    let esri = EsriRcnnMasksDataset::open(&fixture("esri_tiny")).unwrap();
    let datasets: [&dyn Dataset; 2] = [&coco, &esri];
    for ds in datasets {
        for i in 0..ds.len() {
            let original = ds.get(i).unwrap();
            check(&original, 1.0);
            for k in 0..8 {
                let mut s = original.clone();
                dihedral(&mut s, k);
                check(&s, 1.0);
                assert_eq!(s.target.len(), original.target.len());
            }
            for epoch in 0..10 {
                let mut s = original.clone();
                let config = AugmentConfig { scale_range: (0.7, 1.4), ..AugmentConfig::overhead(24) };
                let record = augment(&mut s, &config, &mut sample_rng(42, epoch, i as u64));
                assert_eq!((s.image.height, s.image.width), (24, 24));
                assert_eq!(s.target.len() + record.instances_removed, original.target.len());
                check(&s, 1.0);
            }
        }
    }
}
