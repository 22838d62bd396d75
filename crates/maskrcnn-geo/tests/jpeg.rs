//! JPEG-compressed GeoTIFFs as GDAL writes them (YCbCr with 2x2 chroma subsampling and shared
//! JPEGTables, or plain RGB; tiled and striped), decoded by our reader and compared with GDAL's
//! own decode of the same file. Needs `gdal_translate` (Debian: `apt-get install gdal-bin`).
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use maskrcnn_geo::raster::*;
use tiff::decoder::Decoder;
use tiff::tags::Tag;

use common::{write_tiff, Dtype, TiffSpec};

const WIDTH: u32 = 300;
const HEIGHT: u32 = 200;
/// Largest difference allowed between our decode and GDAL's (libjpeg's IDCT, upsampling and
/// colour conversion round differently from zune-jpeg's by a level or so).
const TOLERANCE: f32 = 2.0;
/// For YCbCr, the few samples allowed beyond [`TOLERANCE`] stay within this.
const YCBCR_MAX: f32 = 4.0;

fn gdal_translate(args: &[&str], from: &Path, to: &Path) {
    let out = Command::new("gdal_translate").arg("-q").args(args).arg(from).arg(to).output().unwrap_or_else(|e| {
        panic!("gdal_translate is required for the JPEG GeoTIFF tests (Debian/Ubuntu: apt-get install gdal-bin): {e}")
    });
    assert!(out.status.success(), "gdal_translate {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A 300x200 RGB GeoTIFF (uncompressed) with distinct colours per band, to feed GDAL.
fn source(dir: &Path) -> PathBuf {
    let path = dir.join("source.tif");
    let mut spec = TiffSpec::new(WIDTH, HEIGHT, 3, Dtype::U8);
    spec.geo = Some((733601.0, 3725139.0, 0.5, 32616));
    write_tiff(&path, &spec);
    path
}

/// `name` written by GDAL as JPEG with `options`, and GDAL's uncompressed decode of it.
fn jpeg_and_gdal_decode(dir: &Path, name: &str, options: &[&str]) -> (PathBuf, PathBuf) {
    let jpeg = dir.join(format!("{name}.tif"));
    let mut args = vec!["-co", "COMPRESS=JPEG", "-co", "JPEG_QUALITY=85"];
    for o in options {
        args.extend(["-co", o]);
    }
    gdal_translate(&args, &source(dir), &jpeg);
    let reference = dir.join(format!("{name}_gdal.tif"));
    gdal_translate(&["-of", "GTiff", "-co", "COMPRESS=NONE"], &jpeg, &reference);
    (jpeg, reference)
}

fn read_all(path: &Path) -> (RasterInfo, Vec<f32>) {
    let mut r = GeoTiff::open(path).unwrap();
    let info = r.info().clone();
    let data = r.read_window(PixelWindow::new(0, 0, info.width, info.height), &[]).unwrap().data;
    (info, data)
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn tag_u16s(path: &Path, tag: Tag) -> Option<Vec<u16>> {
    let mut d = Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap())).unwrap();
    d.find_tag(tag).unwrap().map(|v| v.into_u16_vec().unwrap())
}

fn check_against_gdal(name: &str, options: &[&str], ycbcr: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (jpeg, reference) = jpeg_and_gdal_decode(dir.path(), name, options);
    // The files have what the test is about: GDAL's YCbCr layout, or plain RGB.
    assert_eq!(tag_u16s(&jpeg, Tag::PhotometricInterpretation), Some(vec![if ycbcr { 6 } else { 2 }]), "{name}");
    if ycbcr {
        assert_eq!(tag_u16s(&jpeg, Tag::Unknown(530)), Some(vec![2, 2]), "{name}: YCbCrSubsampling");
    }
    let mut d = Decoder::new(std::io::BufReader::new(std::fs::File::open(&jpeg).unwrap())).unwrap();
    assert!(d.find_tag(Tag::JPEGTables).unwrap().is_some(), "{name}: GDAL writes shared JPEGTables");

    let (info, ours) = read_all(&jpeg);
    assert_eq!((info.compression, info.bands, info.sample_type), (7, 3, SampleType::U8), "{name}");
    assert_eq!(info.geotransform, Some(GeoTransform([733601.0, 0.5, 0.0, 3725139.0, 0.0, -0.5])), "{name}");
    let (_, gdal) = read_all(&reference);
    let diff = max_difference(&ours, &gdal);
    if ycbcr {
        // Colour conversion magnifies the decoders' last-bit IDCT differences (1.772 x Cb), so a
        // few samples in ten thousand land 3-4 levels off; before the fix they were ~74 off.
        let within = ours.iter().zip(&gdal).filter(|(a, b)| (*a - *b).abs() <= TOLERANCE).count();
        let mean = ours.iter().zip(&gdal).map(|(a, b)| (a - b).abs()).sum::<f32>() / ours.len() as f32;
        assert!(diff <= YCBCR_MAX, "{name}: our decode differs from GDAL's by up to {diff} levels");
        assert!(within as f64 >= 0.999 * ours.len() as f64, "{name}: only {within} of {} within 2 levels", ours.len());
        assert!(mean < 0.25, "{name}: mean difference {mean} from GDAL's decode");
    } else {
        assert!(diff <= TOLERANCE, "{name}: our decode differs from GDAL's by up to {diff} levels");
    }
    // JPEG is lossy, but the decode must still look like the source (catches both decoders
    // agreeing on garbage): 2x2 chroma subsampling of the pattern's sawtooth edges costs about
    // 11 levels on average, unconverted YCbCr about 74.
    let (_, original) = read_all(&dir.path().join("source.tif"));
    let mean = ours.iter().zip(&original).map(|(a, b)| (a - b).abs()).sum::<f32>() / ours.len() as f32;
    assert!(mean < 20.0, "{name}: mean difference {mean} from the uncompressed source");

    // A window starting inside a strip/tile, spanning edge chunks, one band.
    let mut r = GeoTiff::open(&jpeg).unwrap();
    let win = PixelWindow::new(250, 150, 50, 50);
    let part = r.read_window(win, &[2]).unwrap().data;
    let plane = (WIDTH * HEIGHT) as usize;
    for (i, v) in part.iter().enumerate() {
        let (x, y) = (win.x as usize + i % 50, win.y as usize + i / 50);
        assert_eq!(*v, ours[plane + y * WIDTH as usize + x], "{name}: band 2 at ({x}, {y})");
    }
}

#[test]
fn ycbcr_tiled_jpeg_matches_gdal() {
    check_against_gdal("ycbcr_tiled", &["PHOTOMETRIC=YCBCR", "TILED=YES", "BLOCKXSIZE=64", "BLOCKYSIZE=64"], true);
}

#[test]
fn ycbcr_striped_jpeg_matches_gdal() {
    // 32-row strips: the last one (8 rows) is a shorter JPEG image.
    check_against_gdal("ycbcr_striped", &["PHOTOMETRIC=YCBCR", "BLOCKYSIZE=32"], true);
}

#[test]
fn rgb_tiled_jpeg_matches_gdal() {
    check_against_gdal("rgb_tiled", &["PHOTOMETRIC=RGB", "TILED=YES", "BLOCKXSIZE=64", "BLOCKYSIZE=64"], false);
}

#[test]
fn rgb_striped_jpeg_matches_gdal() {
    check_against_gdal("rgb_striped", &["PHOTOMETRIC=RGB", "BLOCKYSIZE=32"], false);
}

/// Position of the first value of `tag` in a classic little-endian TIFF, and its type size.
fn first_tag_value(bytes: &[u8], tag: u16) -> (usize, usize) {
    assert_eq!(&bytes[..4], b"II*\0", "GDAL writes classic little-endian TIFF here");
    let u16_at = |p: usize| u16::from_le_bytes([bytes[p], bytes[p + 1]]);
    let u32_at = |p: usize| u32::from_le_bytes(bytes[p..p + 4].try_into().unwrap());
    let ifd = u32_at(4) as usize;
    for k in 0..u16_at(ifd) as usize {
        let e = ifd + 2 + 12 * k;
        if u16_at(e) == tag {
            let size = match u16_at(e + 2) {
                3 => 2,
                4 => 4,
                t => panic!("tag {tag} has type {t}"),
            };
            let inline = size * u32_at(e + 4) as usize <= 4;
            return (if inline { e + 8 } else { u32_at(e + 8) as usize }, size);
        }
    }
    panic!("tag {tag} not found");
}

/// A tiled YCbCr JPEG GeoTIFF whose tile 0 byte count is halved: that tile's JPEG stream stops
/// mid-scan, the other tiles are intact.
fn jpeg_with_tile0_cut(dir: &Path) -> PathBuf {
    let (jpeg, _) =
        jpeg_and_gdal_decode(dir, "cut", &["PHOTOMETRIC=YCBCR", "TILED=YES", "BLOCKXSIZE=64", "BLOCKYSIZE=64"]);
    let mut bytes = std::fs::read(&jpeg).unwrap();
    let (at, size) = first_tag_value(&bytes, 325);
    let mut count = [0u8; 4];
    count[..size].copy_from_slice(&bytes[at..at + size]);
    let half = u32::from_le_bytes(count) / 2;
    bytes[at..at + size].copy_from_slice(&half.to_le_bytes()[..size]);
    let cut = dir.join("cut_tile0.tif");
    std::fs::write(&cut, &bytes).unwrap();
    cut
}

#[test]
fn truncated_jpeg_tile_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cut = jpeg_with_tile0_cut(dir.path());

    let mut r = GeoTiff::open(&cut).unwrap();
    let err = r.read_window(PixelWindow::new(0, 0, 10, 10), &[]).unwrap_err().to_string();
    assert!(err.contains(&cut.display().to_string()), "{err}");
    assert!(err.contains("strip/tile 0") && err.contains("JPEG"), "{err}");
    // Other tiles are intact and still read.
    assert!(r.read_window(PixelWindow::new(64, 64, 10, 10), &[]).is_ok());
}

/// `detect_raster_streaming` over a raster with one corrupt tile: that tile is reported in the
/// summary and every other tile still goes through the detector.
#[test]
fn detection_goes_on_past_a_corrupt_tile() {
    let dir = tempfile::tempdir().unwrap();
    let cut = jpeg_with_tile0_cut(dir.path());

    let mut raster = GeoTiff::open(&cut).unwrap();
    let options = maskrcnn_geo::DetectOptions { tile_size: 64, overlap: 0, ..Default::default() };
    let mut calls = 0;
    let summary = maskrcnn_geo::detect_raster_streaming(
        &mut raster,
        |_tile: &maskrcnn_geo::TileImage| {
            calls += 1;
            Ok(Vec::new())
        },
        &options,
        |_| Ok(()),
        |_| {},
    )
    .unwrap();
    assert_eq!(summary.unreadable_tiles.len(), 1, "{:?}", summary.unreadable_tiles);
    assert!(summary.unreadable_tiles[0].1.contains("JPEG"), "{:?}", summary.unreadable_tiles);
    assert_eq!(summary.tiles_processed, calls);
    assert!(calls >= 3, "the other tiles are processed ({calls})");
}
