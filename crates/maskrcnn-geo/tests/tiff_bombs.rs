//! Hostile headers: each file declares far more than it holds (or than a strip/tile may decode
//! to). Opening or reading must fail with a one-line error naming the bound, quickly and in
//! bounded memory, never abort, hang or allocate what the header claims; honest huge files must
//! still read by window.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use maskrcnn_geo::raster::{GeoTiff, PixelWindow};

const SHORT: u16 = 3;
const LONG: u16 = 4;

/// A classic little-endian TIFF with one IFD: `entries` (tag, type, values) and `data` appended
/// after the IFD at offset `data_offset(entries.len())`. Values that do not fit in 4 bytes are
/// stored after the data.
fn tiff(entries: &[(u16, u16, Vec<u32>)], data: &[u8]) -> Vec<u8> {
    let ifd_len = 2 + entries.len() * 12 + 4;
    let data_start = 8 + ifd_len;
    let mut extra_start = data_start + data.len();
    let mut out = b"II*\0".to_vec();
    out.extend(8u32.to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    let mut extra = Vec::new();
    let mut sorted = entries.to_vec();
    sorted.sort_by_key(|e| e.0);
    for (tag, ty, vals) in &sorted {
        out.extend(tag.to_le_bytes());
        out.extend(ty.to_le_bytes());
        out.extend((vals.len() as u32).to_le_bytes());
        let bytes: Vec<u8> = vals
            .iter()
            .flat_map(|&v| if *ty == SHORT { (v as u16).to_le_bytes().to_vec() } else { v.to_le_bytes().to_vec() })
            .collect();
        if bytes.len() <= 4 {
            let mut field = bytes.clone();
            field.resize(4, 0);
            out.extend(field);
        } else {
            out.extend((extra_start as u32).to_le_bytes());
            extra_start += bytes.len();
            extra.extend(bytes);
        }
    }
    out.extend(0u32.to_le_bytes());
    out.extend_from_slice(data);
    out.extend(extra);
    out
}

fn data_offset(n_entries: usize) -> u32 {
    (8 + 2 + n_entries * 12 + 4) as u32
}

fn base(width: u32, height: u32, compression: u32) -> Vec<(u16, u16, Vec<u32>)> {
    vec![
        (256, LONG, vec![width]),
        (257, LONG, vec![height]),
        (258, SHORT, vec![8]),
        (259, SHORT, vec![compression]),
        (262, SHORT, vec![1]),
        (277, SHORT, vec![1]),
    ]
}

/// Opens (and, when that works, reads a corner of) `bytes`; returns the error and the time taken.
fn attempt(dir: &Path, name: &str, bytes: &[u8]) -> (Result<(), String>, Duration) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let t = Instant::now();
    let r = GeoTiff::open(&path).and_then(|mut g| g.read_window(PixelWindow::new(0, 0, 1, 1), &[]).map(|_| ()));
    (r.map_err(|e| format!("{e:#}")), t.elapsed())
}

fn expect_refused(dir: &Path, name: &str, bytes: &[u8], needle: &str) {
    let (r, took) = attempt(dir, name, bytes);
    let err = r.expect_err(&format!("{name}: hostile file was accepted"));
    println!("{name:<32} {:>5} bytes {:>6.1} ms  {err}", bytes.len(), took.as_secs_f64() * 1e3);
    assert!(err.contains(needle), "{name}: error should mention {needle:?}: {err}");
    assert!(!err.contains('\n'), "{name}: error should be one line: {err}");
    assert!(took < Duration::from_secs(2), "{name}: took {took:?}");
}

#[test]
fn huge_declared_strip_is_refused_with_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    // 100,000 x 100,000 in one strip, stored in 16 bytes.
    let mut e = base(100_000, 100_000, 8);
    let n = e.len() + 3;
    e.extend([(273, LONG, vec![data_offset(n)]), (278, LONG, vec![100_000]), (279, LONG, vec![16])]);
    expect_refused(dir.path(), "one_strip_100000x100000.tif", &tiff(&e, &[0u8; 16]), "512 MiB bound");

    // One giant 65536 x 65536 tile.
    let mut e = base(65_536, 65_536, 8);
    let n = e.len() + 4;
    e.extend([
        (322, LONG, vec![65_536]),
        (323, LONG, vec![65_536]),
        (324, LONG, vec![data_offset(n)]),
        (325, LONG, vec![16]),
    ]);
    expect_refused(dir.path(), "one_tile_65536.tif", &tiff(&e, &[0u8; 16]), "512 MiB bound");
}

#[test]
fn offset_arrays_longer_than_the_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // 4 M strips of one row, whose offset/count arrays would need 32 MB: the file has ~200 bytes.
    let rows = 4 << 20;
    let mut e = base(1, rows, 1);
    e.extend([(273, LONG, vec![0, 0]), (278, LONG, vec![1]), (279, LONG, vec![0, 0])]);
    let mut bytes = tiff(&e, &[]);
    // Rewrite the counts of StripOffsets and StripByteCounts (entries 5 and 8 once sorted) to 4 M.
    for idx in [5usize, 8] {
        let at = 10 + idx * 12 + 4;
        bytes[at..at + 4].copy_from_slice(&rows.to_le_bytes());
    }
    expect_refused(
        dir.path(),
        "four_million_strips.tif",
        &bytes,
        "tag 273 declares 4194304 values (16777216 bytes), more than the whole 138-byte file",
    );

    // 100,000 x 100,000 in 256x256 tiles: 152,881 tiles listed in a 1 kB file.
    let mut e = base(100_000, 100_000, 8);
    let tiles = 391u32 * 391;
    e.extend([(322, LONG, vec![256]), (323, LONG, vec![256]), (324, LONG, vec![0, 0]), (325, LONG, vec![0, 0])]);
    let mut bytes = tiff(&e, &[0u8; 900]);
    for idx in [8usize, 9] {
        let at = 10 + idx * 12 + 4;
        bytes[at..at + 4].copy_from_slice(&tiles.to_le_bytes());
    }
    expect_refused(dir.path(), "tiles_100000_in_1k.tif", &bytes, "values (611524 bytes), more than the whole");
}

#[test]
fn chunks_beyond_the_end_of_the_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = base(64, 64, 8);
    e.extend([(273, LONG, vec![100]), (278, LONG, vec![64]), (279, LONG, vec![6_000_000_000u64 as u32])]);
    expect_refused(dir.path(), "strip_past_eof.tif", &tiff(&e, &[0u8; 16]), "truncated or corrupt");
}

#[test]
fn a_deflate_bomb_stops_at_the_strip_size() {
    let dir = tempfile::tempdir().unwrap();
    // 1 GiB of zeros deflated (about 1 MB) in a strip declared as 1000 x 1000 bytes.
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        enc.write_all(&zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    let mut e = base(1000, 1000, 8);
    let n = e.len() + 3;
    e.extend([(273, LONG, vec![data_offset(n)]), (278, LONG, vec![1000]), (279, LONG, vec![bomb.len() as u32])]);
    let path = dir.path().join("deflate_bomb.tif");
    std::fs::write(&path, tiff(&e, &bomb)).unwrap();
    let t = Instant::now();
    let mut g = GeoTiff::open(&path).unwrap();
    let w = g.read_window(PixelWindow::new(0, 0, 1000, 1000), &[]).unwrap();
    let took = t.elapsed();
    println!(
        "deflate bomb: {} compressed bytes for 1 GiB, read 1000x1000 in {:.1} ms",
        bomb.len(),
        took.as_secs_f64() * 1e3
    );
    assert!(w.data.iter().all(|&v| v == 0.0));
    assert!(took < Duration::from_millis(500), "inflating went past the strip: {took:?}");
}

#[test]
fn a_jpeg_frame_larger_than_its_tile_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A baseline SOF0 header claiming 60000 x 60000 x 3 in a 16 x 16 strip.
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xC0, 0, 17, 8, 0xEA, 0x60, 0xEA, 0x60, 3];
    jpeg.extend([1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0]);
    jpeg.extend([0xFF, 0xD9]);
    let mut e = base(16, 16, 7);
    e[2] = (258, SHORT, vec![8, 8, 8]);
    e[4] = (262, SHORT, vec![2]);
    e[5] = (277, SHORT, vec![3]);
    let n = e.len() + 3;
    e.extend([(273, LONG, vec![data_offset(n)]), (278, LONG, vec![16]), (279, LONG, vec![jpeg.len() as u32])]);
    expect_refused(dir.path(), "jpeg_frame_60000.tif", &tiff(&e, &jpeg), "larger than the 16x16 strip/tile");
}

#[test]
fn an_honest_huge_sparse_raster_reads_by_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.tif");
    let status = Command::new("gdal_create")
        .args(["-q", "-of", "GTiff", "-outsize", "100000", "100000", "-bands", "3", "-ot", "Byte"])
        .args(["-co", "TILED=YES", "-co", "COMPRESS=DEFLATE", "-co", "SPARSE_OK=TRUE", "-co", "BIGTIFF=YES"])
        .arg(&path)
        .status()
        .expect("gdal_create not runnable: install gdal-bin");
    assert!(status.success());
    let t = Instant::now();
    let mut g = GeoTiff::open(&path).unwrap();
    let w = g.read_window(PixelWindow::new(50_000, 50_000, 300, 300), &[]).unwrap();
    let took = t.elapsed();
    println!(
        "huge sparse 100000x100000x3 ({} bytes): open + 300x300 window in {:.1} ms, {} tiles decoded",
        std::fs::metadata(&path).unwrap().len(),
        took.as_secs_f64() * 1e3,
        g.chunks_decoded()
    );
    assert!(w.data.iter().all(|&v| v == 0.0));
    assert!(g.chunks_decoded() <= 4);
}
