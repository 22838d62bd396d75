//! GeoTIFFs written by GDAL (fixtures/geo, see make_fixtures.sh): real-world layouts the
//! synthetic writer does not produce (GDAL's predictors, BigTIFF, PixelIsPoint, EPSG:4326).
mod common;

use std::path::PathBuf;

use maskrcnn_geo::raster::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/geo").join(name)
}

const CROP: PixelWindow = PixelWindow { x: 300, y: 200, width: 100, height: 80 };

#[test]
fn gdal_crops_have_the_crop_geotransform_and_pixels() {
    let mut big = GeoTiff::open(common::spacenet_dir().join("sample_geotiff.tif")).unwrap();
    let truth = big.read_window(CROP, &[]).unwrap().data;
    let want_gt = GeoTransform([733751.0, 0.5, 0.0, 3725039.0, 0.0, -0.5]);
    for (name, nodata, bigtiff, clamp) in [
        ("u16_tiled_lzw_pred2.tif", 0.0, false, f32::MAX),
        ("f32_striped_deflate_pred3_bigtiff.tif", 0.0, true, f32::MAX),
        // PixelIsPoint: GDAL moved the tiepoint half a pixel; reading must move it back.
        ("u8_packbits_pixelispoint.tif", 255.0, false, 255.0),
    ] {
        let mut r = GeoTiff::open(fixture(name)).unwrap();
        let info = r.info().clone();
        assert_eq!(info.geotransform, Some(want_gt), "{name}");
        assert_eq!(info.crs.as_ref().and_then(|c| c.epsg), Some(32616), "{name}");
        assert_eq!(info.nodata, Some(nodata), "{name}");
        assert_eq!(info.bigtiff, bigtiff, "{name}");
        let got = r.read_window(PixelWindow::new(0, 0, 100, 80), &[]).unwrap().data;
        let want: Vec<f32> = truth.iter().map(|v| v.min(clamp)).collect();
        assert_eq!(got, want, "{name}");
        // A window that starts mid-chunk.
        let part = r.read_window(PixelWindow::new(33, 17, 40, 30), &[1]).unwrap().data;
        assert_eq!(part[0], want[17 * 100 + 33], "{name}");
        assert_eq!(part[29 * 40 + 39], want[46 * 100 + 72], "{name}");
    }
}

#[test]
fn gdal_wgs84_raster() {
    let r = GeoTiff::open(fixture("wgs84_u16.tif")).unwrap();
    let info = r.info();
    assert!(info.crs.as_ref().unwrap().is_wgs84());
    let gt = info.geotransform.unwrap().0;
    assert!((gt[0] - -84.481).abs() < 1e-12 && (gt[3] - 33.637).abs() < 1e-12, "{gt:?}");
    assert!((gt[1] - 0.000025).abs() < 1e-15 && (gt[5] + 0.000025).abs() < 1e-15);
    assert_eq!((info.width, info.height), (40, 40));
}
