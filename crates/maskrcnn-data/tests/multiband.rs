mod common;

use common::{copy_fixture, shared_data};
use maskrcnn_data::esri::EsriRcnnMasksDataset;
use maskrcnn_data::image_io::{read_image, write_tiff, TiffSampleType};
use maskrcnn_data::stats::{compute_band_stats, BandStats, BandStatsAccumulator};
use maskrcnn_data::{Dataset, ImageTensor};

/// The SpaceNet tiles are cut from the big GeoTIFF on a 90 px grid and named by their top-left
/// UTM corner (0.5 m pixels): every tile must equal its block of the 16-bit image, and the
/// statistics over the 100 tiles must equal those of the whole image.
#[test]
fn spacenet_uint16_tiles_match_their_source_image() {
    let root = shared_data("spacenet-atlanta-sample");
    let big = read_image(&root.join("sample_geotiff.tif")).unwrap();
    assert_eq!((big.channels, big.height, big.width), (1, 900, 900));
    let max = big.data.iter().cloned().fold(f32::MIN, f32::max);
    assert!(max > 255.0, "16-bit values must not be scaled to 8 bits (max {max})");

    let mut tiles = 0;
    let mut acc = BandStatsAccumulator::new(1);
    for entry in std::fs::read_dir(root.join("tiles_90px")).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let parts: Vec<f64> = stem.rsplitn(3, '_').take(2).map(|v| v.parse().unwrap()).collect();
        let (northing, easting) = (parts[0], parts[1]);
        let row = ((3_725_139.0 - northing) / 45.0 * 90.0) as usize;
        let col = ((easting - 733_601.0) / 45.0 * 90.0) as usize;
        let tile = read_image(&path).unwrap();
        assert_eq!((tile.channels, tile.height, tile.width), (1, 90, 90));
        for y in 0..90 {
            for x in 0..90 {
                assert_eq!(tile.get(0, y, x), big.get(0, row + y, col + x), "{stem} at ({y},{x})");
            }
        }
        acc.add_image(&tile).unwrap();
        tiles += 1;
    }
    assert_eq!(tiles, 100);
    let from_tiles = acc.finish().unwrap();
    let mut whole = BandStatsAccumulator::new(1);
    whole.add_image(&big).unwrap();
    let whole = whole.finish().unwrap();
    assert_eq!(from_tiles.pixel_count, vec![810_000]);
    assert_eq!((from_tiles.min[0], from_tiles.max[0]), (whole.min[0], whole.max[0]));
    assert!((from_tiles.mean[0] - whole.mean[0]).abs() < 1e-9);
    assert!((from_tiles.std[0] - whole.std[0]).abs() < 1e-9);
    println!("spacenet band stats: {:?}", whole);
}

/// A 4-band 16-bit export (RGB + NIR as GDAL writes it: photometric RGB plus an extra sample)
/// read through the Esri reader, with band statistics checked against a direct computation.
#[test]
fn multispectral_16bit_export_and_band_stats() {
    let dir = copy_fixture("esri_tiny");
    let mut expected_sum = [0f64; 4];
    let mut all: Vec<Vec<f64>> = vec![Vec::new(); 4];
    for i in 0..3 {
        let mut img = ImageTensor::zeros(4, 32, 32);
        for b in 0..4 {
            for (p, v) in img.plane_mut(b).iter_mut().enumerate() {
                *v = ((p * 37 + i * 1000 + b * 7919) % 4096) as f32 + if b == 3 { 20000.0 } else { 0.0 };
                expected_sum[b] += *v as f64;
                all[b].push(*v as f64);
            }
        }
        write_tiff(&dir.path().join(format!("images/00000000{i}.tif")), &img, TiffSampleType::U16, i == 1).unwrap();
    }
    let ds = EsriRcnnMasksDataset::open(dir.path()).unwrap();
    let s = ds.get(0).unwrap();
    assert_eq!(s.image.channels, 4);
    assert_eq!(s.target.len(), 4);
    let stats = compute_band_stats(&ds).unwrap();
    assert_eq!(stats.images, 3);
    for b in 0..4 {
        let n = all[b].len() as f64;
        let mean = expected_sum[b] / n;
        let var = all[b].iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        assert!((stats.mean[b] - mean).abs() < 1e-9, "band {b}");
        assert!((stats.std[b] - var.sqrt()).abs() < 1e-9, "band {b}");
        let max = all[b].iter().cloned().fold(f64::MIN, f64::max);
        assert_eq!(stats.max[b], max);
    }
    assert!(stats.min[3] >= 20000.0);
    // Stored with the model and read back unchanged.
    let path = dir.path().join("stats.json");
    stats.save(&path).unwrap();
    assert_eq!(BandStats::load(&path).unwrap(), stats);
}
