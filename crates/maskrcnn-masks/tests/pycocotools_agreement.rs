//! Expected strings, areas and boxes were computed with pycocotools 2.0.11
//! (`mask.frPyObjects` + `mask.merge`, `mask.encode`, `mask.iou`) and pasted here.
use maskrcnn_masks::{bbox_iou, mask_boundary, mask_iou, MaskError, Rle, Segmentation};

const H: usize = 20;
const W: usize = 30;

type PolygonCase = (Vec<Vec<f64>>, &'static str, u64, [f64; 4]);

fn poly_cases() -> Vec<PolygonCase> {
    vec![
        (
            vec![vec![2.0, 3.0, 15.5, 4.2, 12.3, 17.9, 3.1, 12.0]],
            "[14`05K1O001O10O01O1O0000L4L4Lh8",
            133,
            [2.0, 3.0, 14.0, 14.0],
        ),
        // Partly outside the top-left corner.
        (
            vec![vec![-5.0, -3.0, 10.0, -2.0, 12.0, 8.0, -4.0, 9.5]],
            "09;000000000000O10001O4LS;",
            97,
            [0.0, 0.0, 12.0, 9.0],
        ),
        // Partly outside the bottom-right corner.
        (vec![vec![25.0, 15.0, 40.0, 16.0, 35.0, 30.0, 22.0, 25.0]], "a?3?200000000", 28, [24.0, 15.0, 6.0, 5.0]),
        // Two overlapping parts of one object.
        (
            vec![vec![1.0, 1.0, 8.0, 1.0, 8.0, 8.0, 1.0, 8.0], vec![5.0, 5.0, 14.0, 5.0, 14.0, 14.0, 5.0, 14.0]],
            "e07=0000006J0004L0000000000k9",
            121,
            [1.0, 1.0, 13.0, 13.0],
        ),
        (vec![vec![0.0, 0.0, 30.0, 0.0, 30.0, 20.0, 0.0, 20.0]], "0hb0", 600, [0.0, 0.0, 30.0, 20.0]),
        // Repeated vertices exercise the 0/0 segment.
        (
            vec![vec![10.2, 5.7, 10.2, 5.7, 18.9, 6.1, 14.4, 13.3, 14.4, 13.3]],
            "R72b02N2N1OO1N2N2Og6",
            32,
            [11.0, 6.0, 8.0, 7.0],
        ),
        // Small negative coordinates: C truncates toward zero, not floor.
        (vec![vec![-0.15, -0.3, 6.45, 0.05, 3.25, 7.5]], "01c02N3M1OM3NR?", 23, [0.0, 0.0, 6.0, 7.0]),
    ]
}

#[test]
fn polygons_rasterise_like_pycocotools() {
    for (polygons, expected, area, bbox) in poly_cases() {
        let rle = Rle::from_polygons(&polygons, H, W);
        assert_eq!(rle.to_coco_string(), expected, "polygons {polygons:?}");
        assert_eq!(rle.area(), area);
        assert_eq!(rle.to_bbox(), bbox);
        let parsed = Rle::from_coco_string(expected, H, W).unwrap();
        assert_eq!(parsed, rle);
        assert_eq!(Rle::from_mask(&rle.to_mask(), H, W), rle);
    }
}

#[test]
fn bbox_rasterises_like_pycocotools() {
    let rle = Rle::from_bbox([3.3, 4.7, 10.2, 6.6], H, W);
    assert_eq!(rle.to_coco_string(), "Q26>0000000000000000000k9");
    assert_eq!(rle.area(), 66);
    assert_eq!(rle.to_bbox(), [3.0, 5.0, 11.0, 6.0]);
}

#[test]
fn encode_matches_pycocotools() {
    let rows: [[u8; 5]; 7] = [
        [1, 0, 0, 0, 1],
        [1, 1, 1, 1, 1],
        [1, 0, 1, 0, 1],
        [0, 1, 1, 0, 0],
        [0, 0, 1, 1, 1],
        [0, 1, 1, 1, 1],
        [1, 0, 0, 1, 1],
    ];
    let mask: Vec<u8> = rows.iter().flatten().copied().collect();
    let rle = Rle::from_mask(&mask, 7, 5);
    assert_eq!(rle.to_coco_string(), "033NN00000140L05OM");
    assert_eq!(rle.to_mask(), mask);

    let (h, w) = (60, 70);
    let mut big = vec![0u8; h * w];
    for y in 10..50 {
        for x in 20..24 {
            big[y * w + x] = 1;
        }
    }
    for y in 0..3 {
        for x in 0..2 {
            big[y * w + x] = 1;
        }
    }
    big[59 * w + 69] = 1;
    let rle = Rle::from_mask(&big, h, w);
    assert_eq!(rle.to_coco_string(), "03i10RR1U1ilN00000me2iN");
    assert_eq!(rle.area(), 167);
    assert_eq!(rle.to_bbox(), [0.0, 0.0, 70.0, 60.0]);
    assert_eq!(Rle::from_coco_string("03i10RR1U1ilN00000me2iN", h, w).unwrap().to_mask(), big);
}

#[test]
fn bbox_of_run_spanning_columns_covers_full_height() {
    // pycocotools: toBbox of a 5x4 mask with pixels (3..5, col 0) and (0..2, col 1) is [0,0,2,5].
    let mut mask = vec![0u8; 20];
    for (y, x) in [(3, 0), (4, 0), (0, 1), (1, 1)] {
        mask[y * 4 + x] = 1;
    }
    let rle = Rle::from_mask(&mask, 5, 4);
    assert_eq!(rle.to_coco_string(), "34=");
    assert_eq!(rle.to_bbox(), [0.0, 0.0, 2.0, 5.0]);
}

#[test]
fn iou_and_merge_match_pycocotools() {
    let cases = poly_cases();
    let a = Rle::from_polygons(&cases[0].0, H, W);
    let c = Rle::from_polygons(&cases[3].0, H, W);
    let d = Rle::from_polygons(&cases[5].0, H, W);
    let ious = mask_iou(&[a.clone(), c.clone(), d.clone()], &[c.clone(), d.clone(), a.clone()], &[false, true, false]);
    let expected = [
        [0.6387096774193548, 0.11278195488721804, 1.0],
        [1.0, 0.09917355371900827, 0.6387096774193548],
        [0.0851063829787234, 1.0, 0.1],
    ];
    for (row, exp) in ious.iter().zip(expected) {
        for (v, e) in row.iter().zip(exp) {
            assert!((v - e).abs() < 1e-15, "{ious:?}");
        }
    }
    let boxes =
        bbox_iou(&[[1., 2., 10., 10.], [5., 5., 3., 4.]], &[[2., 2., 8., 9.], [0., 0., 6., 6.]], &[false, true]);
    assert_eq!(boxes, vec![vec![0.72, 0.2], vec![0.16666666666666666, 0.08333333333333333]]);
    assert_eq!(Rle::merge(&[a.clone(), c.clone()], true).to_coco_string(), "[14`01O005K1O02N000000000Ol9");
    let union = Rle::merge(&[a.clone(), c.clone()], false);
    let expected_union: Vec<u8> = a.to_mask().iter().zip(c.to_mask()).map(|(x, y)| x | y).collect();
    assert_eq!(union.to_mask(), expected_union);
}

#[test]
fn mismatched_sizes_are_reported() {
    assert!(matches!(
        Rle::try_merge(&[Rle::empty(2, 2), Rle::empty(3, 2)], false),
        Err(MaskError::SizeMismatch { .. })
    ));
    assert_eq!(
        mask_iou(&[Rle::from_bbox([0., 0., 2., 2.], 4, 4)], &[Rle::from_bbox([0., 0., 2., 2.], 5, 4)], &[false]),
        vec![vec![-1.0]]
    );
}

#[test]
fn malformed_strings_are_errors_not_panics() {
    for bad in ["", "0", "03i", "\u{7f}", "zz", "0hb", "o", "oooooooooo0", "0 hb0", "ä"] {
        let result = Rle::from_coco_string(bad, H, W);
        assert!(result.is_err(), "{bad:?} decoded to {result:?}");
    }
    // Negative run from a delta.
    assert!(Rle::from_coco_string("001O", 1, 1).is_err());
    assert!(Rle::from_coco_string("0hb0", H, W).is_ok());
    // A trailing empty background run is legal.
    assert!(Rle::from_coco_string("0hb00", H, W).is_ok());
}

#[test]
fn segmentation_json_forms() {
    let polygon: Segmentation = serde_json::from_str("[[2.0,3.0,15.5,4.2,12.3,17.9,3.1,12.0]]").unwrap();
    assert_eq!(polygon.to_rle(H, W).unwrap().to_coco_string(), "[14`05K1O001O10O01O1O0000L4L4Lh8");
    let compressed: Segmentation = serde_json::from_str(r#"{"size":[20,30],"counts":"0hb0"}"#).unwrap();
    assert_eq!(compressed.to_rle(H, W).unwrap().area(), 600);
    let uncompressed: Segmentation = serde_json::from_str(r#"{"size":[2,3],"counts":[1,4,1]}"#).unwrap();
    let rle = uncompressed.to_rle(2, 3).unwrap();
    assert_eq!(rle.to_mask(), vec![0, 1, 1, 1, 1, 0]);
    assert!(uncompressed.to_rle(3, 2).is_err(), "size mismatch must be reported");
    let short: Segmentation = serde_json::from_str(r#"{"size":[2,3],"counts":[1,4]}"#).unwrap();
    assert!(matches!(short.to_rle(2, 3), Err(MaskError::CountsDoNotCoverMask { .. })));
    let degenerate: Segmentation = serde_json::from_str("[[1,2,3,4]]").unwrap();
    assert!(degenerate.to_rle(H, W).is_err());
    let roundtrip = serde_json::to_string(&Segmentation::from_rle(&rle)).unwrap();
    assert_eq!(roundtrip, r#"{"size":[2,3],"counts":"14"}"#.replace("14", &rle.to_coco_string()));
}

#[test]
fn boundary_band_of_a_square() {
    // 10x10 image: diagonal 14.1, ratio 0.1 -> round(1.41) = 1 pixel band.
    let (h, w) = (10, 10);
    let mut mask = vec![0u8; h * w];
    for y in 2..8 {
        for x in 0..6 {
            mask[y * w + x] = 1;
        }
    }
    let boundary = mask_boundary(&mask, h, w, 0.1);
    for y in 0..h {
        for x in 0..w {
            let inside = (2..8).contains(&y) && x < 6;
            // Interior is rows 3..7, cols 1..5: column 0 touches the image edge and is boundary.
            let interior = (3..7).contains(&y) && (1..5).contains(&x);
            assert_eq!(boundary[y * w + x], u8::from(inside && !interior), "({y},{x})");
        }
    }
    // ratio 0.2 -> round(2.83) = 3: a 6-wide square erodes completely.
    assert_eq!(mask_boundary(&mask, h, w, 0.2), mask);
}
