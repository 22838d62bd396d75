//! Fuzzing the image readers: PNG, JPEG and TIFF imagery (`read_image_typed`), instance-id and
//! class label rasters (`read_label_raster`), and an instance-mask folder sample (ids split into
//! masks). Seeds are tiny files written here; mutations are byte edits plus header edits with
//! the checksums fixed (PNG chunk CRCs, TIFF tag values), so the decoders get past their first
//! check. Short in CI; `MASKRCNN_FUZZ_CASES=100000 cargo test --release -p maskrcnn-data --test
//! fuzz_images` for a long run.

#[path = "../../maskrcnn-masks/tests/fuzz_common/mod.rs"]
mod fuzz_common;

use std::path::Path;

use fuzz_common::{mutate_bytes, Rng, INTERESTING_U64};
use maskrcnn_data::image_io::{
    read_image_typed, read_label_raster, write_png_u16, write_png_u8, write_tiff, TiffSampleType,
};
use maskrcnn_data::instance_masks::InstanceMaskFolder;
use maskrcnn_data::{Dataset, ImageTensor};

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Recomputes the CRC of every whole chunk, so an edit inside a chunk reaches the decoder.
fn fix_png_crcs(png: &mut [u8]) {
    let mut at = PNG_SIGNATURE.len();
    while at + 12 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let Some(end) = (at + 8).checked_add(len).filter(|&e| e + 4 <= png.len()) else { break };
        let crc = crc32(&png[at + 4..end]);
        png[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        at = end + 4;
    }
}

/// Byte edits, or an IHDR field set to a hostile value, with CRCs fixed half the time.
fn mutate_png(rng: &mut Rng, seed: &[u8], others: &[&[u8]]) -> Vec<u8> {
    let tokens: &[&[u8]] = &[b"IHDR", b"IDAT", b"IEND", b"PLTE", b"tRNS", b"\0\0\0\0"];
    let mut png = if rng.chance(3) {
        let mut png = seed.to_vec();
        // IHDR data starts at 16: width, height (4 bytes each), depth, colour, compression, filter, interlace.
        match rng.below(3) {
            0 => {
                let at = 16 + 4 * rng.below(2);
                let v = *rng.pick(&INTERESTING_U64) as u32;
                let v = if rng.chance(2) { v } else { [65535u32, 65536, 1 << 20, 0x7fff_ffff][rng.below(4)] };
                png[at..at + 4].copy_from_slice(&v.to_be_bytes());
            }
            1 => png[24] = *rng.pick(&[1u8, 2, 4, 8, 16, 3, 0, 255]),
            _ => png[25 + rng.below(4)] = *rng.pick(&[0u8, 1, 2, 3, 4, 6, 7, 255]),
        }
        png
    } else {
        mutate_bytes(rng, seed, others, tokens)
    };
    if png.starts_with(PNG_SIGNATURE) && rng.below(4) != 0 {
        fix_png_crcs(&mut png);
    }
    png
}

/// Sets a random field of a random tag of the first IFD (little-endian TIFFs) to a hostile value.
fn mutate_tiff(rng: &mut Rng, seed: &[u8], others: &[&[u8]]) -> Vec<u8> {
    if !rng.chance(2) || !seed.starts_with(b"II*\0") {
        return mutate_bytes(rng, seed, others, &[b"II*\0", b"MM\0*", b"\xff\xff\xff\xff"]);
    }
    let mut tiff = seed.to_vec();
    let ifd = u32::from_le_bytes(tiff[4..8].try_into().unwrap()) as usize;
    let count = u16::from_le_bytes(tiff[ifd..ifd + 2].try_into().unwrap()) as usize;
    for _ in 0..1 + rng.below(2) {
        let entry = ifd + 2 + 12 * rng.below(count);
        match rng.below(4) {
            // Field type (BYTE, SHORT, LONG, RATIONAL, ..., LONG8) or something invalid.
            0 => {
                tiff[entry + 2..entry + 4].copy_from_slice(&(*rng.pick(&[1u16, 3, 4, 5, 12, 16, 0, 99])).to_le_bytes())
            }
            1 => tiff[entry + 4..entry + 8].copy_from_slice(&(*rng.pick(&INTERESTING_U64) as u32).to_le_bytes()),
            _ => {
                let v = if rng.chance(2) { *rng.pick(&INTERESTING_U64) as u32 } else { rng.below(70000) as u32 };
                tiff[entry + 8..entry + 12].copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    tiff
}

fn ramp(channels: usize, h: usize, w: usize) -> Vec<u8> {
    (0..channels * h * w).map(|i| (i * 37 % 251) as u8).collect()
}

/// Seed files: (extension, bytes).
fn image_seeds(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let (h, w) = (6, 7);
    let mut out = Vec::new();
    let mut add = |ext: &'static str, write: &dyn Fn(&Path)| {
        let path = dir.join(format!("seed{}.{ext}", out.len()));
        write(&path);
        out.push((ext, std::fs::read(&path).unwrap()));
    };
    add("png", &|p| write_png_u8(p, 3, h, w, &ramp(3, h, w)).unwrap());
    add("png", &|p| write_png_u8(p, 4, h, w, &ramp(4, h, w)).unwrap());
    add("png", &|p| write_png_u8(p, 1, h, w, &ramp(1, h, w)).unwrap());
    add("png", &|p| write_png_u16(p, 1, h, w, &(0..(h * w) as u16).map(|v| v * 999).collect::<Vec<_>>()).unwrap());
    add("png", &|p| std::fs::write(p, palette_png(h, w, png::BitDepth::Four)).unwrap());
    add("jpg", &|p| {
        let img = image::RgbImage::from_raw(w as u32, h as u32, ramp(3, h, w)).unwrap();
        img.save(p).unwrap();
    });
    let tensor = ImageTensor::from_interleaved(4, h, w, &ramp(4, h, w)).unwrap();
    add("tif", &|p| write_tiff(p, &tensor, TiffSampleType::U8, false).unwrap());
    add("tif", &|p| write_tiff(p, &tensor, TiffSampleType::U16, true).unwrap());
    add("tif", &|p| write_tiff(p, &tensor, TiffSampleType::F32, false).unwrap());
    out
}

/// A palette PNG whose indices are instance ids (what label readers must not expand).
fn palette_png(h: usize, w: usize, depth: png::BitDepth) -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w as u32, h as u32);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(depth);
        enc.set_palette((0..16 * 3).map(|i| (i * 16) as u8).collect::<Vec<u8>>());
        let bits = depth as usize;
        let line = (w * bits).div_ceil(8);
        let mut data = vec![0u8; line * h];
        for row in 0..h {
            for col in 0..w {
                let v = ((row * w + col) % (1 << bits.min(4))) as u8;
                let bit = col * bits;
                data[row * line + bit / 8] |= v << (8 - bits - bit % 8);
            }
        }
        let mut writer = enc.write_header().unwrap();
        writer.write_image_data(&data).unwrap();
    }
    bytes
}

fn label_seeds(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let (h, w) = (6, 7);
    let ids: Vec<u16> = (0..h * w).map(|i| [0u16, 1, 1, 2, 300, 300, 0][i % 7]).collect();
    let path = dir.join("labels16.png");
    write_png_u16(&path, 1, h, w, &ids).unwrap();
    let p16 = std::fs::read(&path).unwrap();
    let path = dir.join("labels8.png");
    write_png_u8(&path, 1, h, w, &ids.iter().map(|&v| v as u8).collect::<Vec<_>>()).unwrap();
    let p8 = std::fs::read(&path).unwrap();
    let tensor = ImageTensor { channels: 1, height: h, width: w, data: ids.iter().map(|&v| v as f32).collect() };
    let path = dir.join("labels.tif");
    write_tiff(&path, &tensor, TiffSampleType::U16, false).unwrap();
    let tif = std::fs::read(&path).unwrap();
    let path = dir.join("labelsf.tif");
    write_tiff(&path, &tensor, TiffSampleType::F32, false).unwrap();
    let tiff_f32 = std::fs::read(&path).unwrap();
    vec![
        ("png", p16),
        ("png", p8),
        ("png", palette_png(h, w, png::BitDepth::Two)),
        ("png", palette_png(h, w, png::BitDepth::One)),
        ("tif", tif),
        ("tif", tiff_f32),
    ]
}

fn mutate(rng: &mut Rng, seeds: &[(&'static str, Vec<u8>)], pick: usize) -> Vec<u8> {
    let (ext, seed) = &seeds[pick];
    let others: Vec<&[u8]> = seeds.iter().filter(|s| s.0 == *ext).map(|s| s.1.as_slice()).collect();
    match *ext {
        "png" => mutate_png(rng, seed, &others),
        "tif" => mutate_tiff(rng, seed, &others),
        _ => mutate_bytes(rng, seed, &others, &[b"\xff\xd8", b"\xff\xc0", b"\xff\xda", b"\xff\xd9", b"\xff\xc4"]),
    }
}

#[test]
fn fuzz_image_readers() {
    let dir = fuzz_common::scratch_dir("image_readers");
    let seeds = image_seeds(&dir);
    for (ext, bytes) in &seeds {
        let path = dir.join(format!("check.{ext}"));
        std::fs::write(&path, bytes).unwrap();
        read_image_typed(&path).unwrap_or_else(|e| panic!("seed .{ext} must read: {e:#}"));
    }
    let exts: Vec<&str> = seeds.iter().map(|s| s.0).collect();
    let current = std::cell::Cell::new(0);
    fuzz_common::run(
        "image_readers",
        fuzz_common::cases(6000),
        |rng, _| {
            current.set(rng.below(seeds.len()));
            mutate(rng, &seeds, current.get())
        },
        |input| {
            let path = dir.join(format!("input.{}", exts[current.get()]));
            fuzz_common::write_input(&path, input);
            if let Ok(typed) = read_image_typed(&path) {
                let img = typed.image;
                assert_eq!(img.data.len(), img.channels * img.height * img.width, "CHW buffer size");
            }
        },
    );
}

#[test]
fn fuzz_label_rasters() {
    let dir = fuzz_common::scratch_dir("label_rasters");
    let seeds = label_seeds(&dir);
    for (ext, bytes) in &seeds {
        let path = dir.join(format!("check.{ext}"));
        std::fs::write(&path, bytes).unwrap();
        read_label_raster(&path).unwrap_or_else(|e| panic!("seed .{ext} must read: {e:#}"));
    }
    let exts: Vec<&str> = seeds.iter().map(|s| s.0).collect();
    let current = std::cell::Cell::new(0);
    fuzz_common::run(
        "label_rasters",
        fuzz_common::cases(6000),
        |rng, _| {
            current.set(rng.below(seeds.len()));
            mutate(rng, &seeds, current.get())
        },
        |input| {
            let path = dir.join(format!("input.{}", exts[current.get()]));
            fuzz_common::write_input(&path, input);
            if let Ok(raster) = read_label_raster(&path) {
                assert_eq!(raster.data.len(), raster.bands * raster.height * raster.width);
            }
        },
    );
}

/// A whole instance-mask sample: the image and a mutated mask PNG, split into instances.
#[test]
fn fuzz_instance_mask_samples() {
    let dir = fuzz_common::scratch_dir("instance_mask_samples");
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::create_dir_all(dir.join("masks")).unwrap();
    let (h, w) = (6, 7);
    write_png_u8(&dir.join("images/a.png"), 3, h, w, &ramp(3, h, w)).unwrap();
    let seeds: Vec<(&'static str, Vec<u8>)> = label_seeds(&dir).into_iter().filter(|s| s.0 == "png").collect();
    std::fs::write(dir.join("masks/a.png"), &seeds[0].1).unwrap();
    let folder = InstanceMaskFolder::open(&dir, "thing").unwrap();
    assert_eq!(folder.get(0).unwrap().target.len(), 3, "ids 1, 2 and 300");
    fuzz_common::run(
        "instance_mask_samples",
        fuzz_common::cases(6000),
        |rng, _| {
            let i = rng.below(seeds.len());
            mutate(rng, &seeds, i)
        },
        |input| {
            fuzz_common::write_input(&dir.join("masks/a.png"), input);
            if let Ok(sample) = folder.get(0) {
                let t = &sample.target;
                assert_eq!(t.masks.len(), t.boxes.len());
                for (mask, b) in t.masks.iter().zip(&t.boxes) {
                    assert_eq!(mask.len(), h * w);
                    assert!(b[0] < b[2] && b[1] < b[3], "non-empty instance box {b:?}");
                }
            }
        },
    );
}

// ---- regressions: the reported crash and inputs the fuzzer found ----

/// Reported: a 256x256 mask PNG holding all 65,535 16-bit ids needed 65,535 full-size masks
/// (4 GiB, 8 GB with the copies) and aborted. It is now one clear error, raised before any
/// mask is allocated.
#[test]
fn mask_with_65535_instances_is_refused_within_bounded_memory() {
    let dir = fuzz_common::scratch_dir("many_ids");
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::create_dir_all(dir.join("masks")).unwrap();
    let n = 256;
    write_png_u8(&dir.join("images/many.png"), 3, n, n, &ramp(3, n, n)).unwrap();
    let ids: Vec<u16> = (0..n * n).map(|i| i as u16).collect();
    write_png_u16(&dir.join("masks/many.png"), 1, n, n, &ids).unwrap();
    let folder = InstanceMaskFolder::open(&dir, "thing").unwrap();
    let start = std::time::Instant::now();
    let (result, peak) = fuzz_common::peak_during(|| folder.get(0));
    let err = format!("{:#}", result.expect_err("65,535 instances exceed the mask budget"));
    assert!(start.elapsed().as_secs_f64() < 2.0, "took {:?}", start.elapsed());
    assert!(peak < 256 << 20, "peak {peak} bytes");
    assert!(err.contains("masks/many.png") && err.contains("65535 instances") && err.contains("GiB"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");

    // 4,000 instances of the same size fit the budget and split in one pass over the pixels.
    let ids: Vec<u16> = (0..n * n).map(|i| (i % 4000) as u16 + 1).collect();
    write_png_u16(&dir.join("masks/many.png"), 1, n, n, &ids).unwrap();
    let start = std::time::Instant::now();
    let sample = folder.get(0).unwrap();
    assert_eq!(sample.target.len(), 4000);
    assert!(start.elapsed().as_secs_f64() < 5.0, "took {:?}", start.elapsed());
}

/// A label PNG whose header claims 65535 x 65535 pixels (CRC fixed) made the reader allocate the
/// declared 4 GiB output buffer before reading any data (abort; wider rows already hit the PNG
/// decoder's own limit). Now a one-line error.
#[test]
fn label_png_with_a_huge_declared_size_is_an_error() {
    let dir = fuzz_common::scratch_dir("huge_label_png");
    let mut png = label_seeds(&dir).swap_remove(0).1;
    for (w, h) in [(0x7fff_ffffu32, 0x7fff_ffffu32), (1 << 20, 1 << 20), (65535, 65535)] {
        png[16..20].copy_from_slice(&w.to_be_bytes());
        png[20..24].copy_from_slice(&h.to_be_bytes());
        fix_png_crcs(&mut png);
        let path = dir.join("huge.png");
        std::fs::write(&path, &png).unwrap();
        let err = format!("{:#}", read_label_raster(&path).expect_err("no data for that size"));
        assert!(err.contains("huge.png"), "{err}");
        if w == 65535 {
            // Rows short enough for the PNG decoder's own limit; ours stops the output buffer.
            assert!(err.contains("declared size 65535x65535"), "{err}");
        }
    }
}

/// A TIFF whose width and height tags claim 65535 x 65535 x 4 bands: the reader decoded without
/// limits and allocated the whole declared image (16 GiB, abort) before finding the strips short.
#[test]
fn tiff_with_a_huge_declared_size_is_an_error() {
    let dir = fuzz_common::scratch_dir("huge_tiff");
    let (_, mut tiff) = image_seeds(&dir).into_iter().find(|s| s.0 == "tif").unwrap();
    let ifd = u32::from_le_bytes(tiff[4..8].try_into().unwrap()) as usize;
    let count = u16::from_le_bytes(tiff[ifd..ifd + 2].try_into().unwrap()) as usize;
    for i in 0..count {
        let entry = ifd + 2 + 12 * i;
        let tag = u16::from_le_bytes(tiff[entry..entry + 2].try_into().unwrap());
        // Width, height and rows per strip (one strip, so the strip count stays consistent).
        if tag == 256 || tag == 257 || tag == 278 {
            // Whatever the field type, a LONG holding 65535.
            tiff[entry + 2..entry + 4].copy_from_slice(&4u16.to_le_bytes());
            tiff[entry + 8..entry + 12].copy_from_slice(&65535u32.to_le_bytes());
        }
    }
    let path = dir.join("huge.tif");
    std::fs::write(&path, &tiff).unwrap();
    let (results, peak) =
        fuzz_common::peak_during(|| [read_image_typed(&path).map(|_| ()), read_label_raster(&path).map(|_| ())]);
    for result in results {
        let err = format!("{:#}", result.expect_err("declared size beyond the data"));
        assert!(err.contains("huge.tif") && err.contains("declared size 65535x65535"), "{err}");
    }
    assert!(peak < 256 << 20, "peak {peak} bytes");
}
