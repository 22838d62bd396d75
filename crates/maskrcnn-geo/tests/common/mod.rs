//! Test helpers: a hand-rolled TIFF writer (the `tiff` crate's encoder cannot write tiles) and
//! the location of the shared data folder.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use tiff::encoder::compression::{CompressionAlgorithm, Deflate, Lzw, Packbits};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dtype {
    U8,
    U16,
    F32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Comp {
    None,
    Lzw,
    Deflate,
    PackBits,
}

#[derive(Clone, Debug)]
pub struct TiffSpec {
    pub width: u32,
    pub height: u32,
    pub bands: usize,
    pub dtype: Dtype,
    /// Some((tw, th)) → tiled, None → strips of `rows_per_strip`.
    pub tile: Option<(u32, u32)>,
    pub rows_per_strip: u32,
    pub compression: Comp,
    pub bigtiff: bool,
    pub planar: bool,
    pub horizontal_predictor: bool,
    /// (origin_x, origin_y, pixel_size, epsg)
    pub geo: Option<(f64, f64, f64, u16)>,
    pub nodata: Option<&'static str>,
    /// Write this Compression tag value instead of the real one (for error tests).
    pub compression_tag_override: Option<u16>,
    /// Every sample gets this value instead of the pattern.
    pub constant: Option<f64>,
}

impl TiffSpec {
    pub fn new(width: u32, height: u32, bands: usize, dtype: Dtype) -> TiffSpec {
        TiffSpec {
            width,
            height,
            bands,
            dtype,
            tile: None,
            rows_per_strip: 5,
            compression: Comp::None,
            bigtiff: false,
            planar: false,
            horizontal_predictor: false,
            geo: None,
            nodata: None,
            compression_tag_override: None,
            constant: None,
        }
    }
}

/// Deterministic test pattern: distinct per band/row/column and within each type's range.
pub fn pattern(band: usize, x: u32, y: u32, dtype: Dtype) -> f64 {
    let v = (band as u32 * 61 + y * 7 + x * 3) as f64;
    match dtype {
        Dtype::U8 => v % 251.0,
        Dtype::U16 => (v * 37.0) % 65521.0,
        Dtype::F32 => v * 0.25 - 10.0,
    }
}

fn sample_bytes(v: f64, dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::U8 => vec![v as u8],
        Dtype::U16 => (v as u16).to_le_bytes().to_vec(),
        Dtype::F32 => (v as f32).to_le_bytes().to_vec(),
    }
}

fn bytes_per_sample(d: Dtype) -> usize {
    match d {
        Dtype::U8 => 1,
        Dtype::U16 => 2,
        Dtype::F32 => 4,
    }
}

/// Encode the chunk at pixel rect (x0,y0,cw,ch) with padding to (pw, ph) for tiles.
fn chunk_bytes(s: &TiffSpec, plane: Option<usize>, x0: u32, y0: u32, pw: u32, ph: u32) -> Vec<u8> {
    let bands: Vec<usize> = match plane {
        Some(b) => vec![b],
        None => (0..s.bands).collect(),
    };
    let bps = bytes_per_sample(s.dtype);
    let mut rows = Vec::new();
    for y in y0..y0 + ph {
        let mut row = Vec::new();
        for x in x0..x0 + pw {
            for &b in &bands {
                let v = if x < s.width && y < s.height {
                    s.constant.unwrap_or_else(|| pattern(b, x, y, s.dtype))
                } else {
                    0.0
                };
                row.extend(sample_bytes(v, s.dtype));
            }
        }
        if s.horizontal_predictor {
            // Difference each sample with the same sample of the previous pixel (TIFF predictor 2).
            let spp = bands.len();
            match s.dtype {
                Dtype::U8 => {
                    for i in (spp..row.len()).rev() {
                        row[i] = row[i].wrapping_sub(row[i - spp]);
                    }
                }
                Dtype::U16 => {
                    let mut vals: Vec<u16> = row.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
                    for i in (spp..vals.len()).rev() {
                        vals[i] = vals[i].wrapping_sub(vals[i - spp]);
                    }
                    row = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
                }
                Dtype::F32 => panic!("horizontal predictor is for integers"),
            }
        }
        rows.extend(row);
    }
    assert_eq!(rows.len(), (pw * ph) as usize * bands.len() * bps);
    let mut out = Vec::new();
    match s.compression {
        Comp::None => out = rows,
        Comp::Lzw => {
            Lzw.write_to(&mut out, &rows).unwrap();
        }
        Comp::Deflate => {
            Deflate::default().write_to(&mut out, &rows).unwrap();
        }
        Comp::PackBits => {
            Packbits.write_to(&mut out, &rows).unwrap();
        }
    }
    out
}

enum Val {
    Short(Vec<u16>),
    Long8OrLong(Vec<u64>),
    Double(Vec<f64>),
    Ascii(String),
}

pub fn write_tiff(path: &Path, s: &TiffSpec) {
    let mut file: Vec<u8> = Vec::new();
    if s.bigtiff {
        file.extend(b"II");
        file.extend(43u16.to_le_bytes());
        file.extend(8u16.to_le_bytes());
        file.extend(0u16.to_le_bytes());
        file.extend(0u64.to_le_bytes()); // IFD offset patched later
    } else {
        file.extend(b"II");
        file.extend(42u16.to_le_bytes());
        file.extend(0u32.to_le_bytes());
    }
    let planes: Vec<Option<usize>> = if s.planar { (0..s.bands).map(Some).collect() } else { vec![None] };
    let mut offsets = Vec::new();
    let mut counts = Vec::new();
    for &plane in &planes {
        match s.tile {
            Some((tw, th)) => {
                for ty in 0..s.height.div_ceil(th) {
                    for tx in 0..s.width.div_ceil(tw) {
                        let data = chunk_bytes(s, plane, tx * tw, ty * th, tw, th);
                        offsets.push(file.len() as u64);
                        counts.push(data.len() as u64);
                        file.extend(data);
                    }
                }
            }
            None => {
                for sy in 0..s.height.div_ceil(s.rows_per_strip) {
                    let y0 = sy * s.rows_per_strip;
                    let rows = s.rows_per_strip.min(s.height - y0);
                    let data = chunk_bytes(s, plane, 0, y0, s.width, rows);
                    offsets.push(file.len() as u64);
                    counts.push(data.len() as u64);
                    file.extend(data);
                }
            }
        }
    }
    if file.len() % 2 == 1 {
        file.push(0);
    }
    let bits = (bytes_per_sample(s.dtype) * 8) as u16;
    let fmt = if s.dtype == Dtype::F32 { 3 } else { 1 };
    let comp = match s.compression {
        Comp::None => 1,
        Comp::Lzw => 5,
        Comp::Deflate => 8,
        Comp::PackBits => 32773,
    };
    let mut tags: Vec<(u16, Val)> = vec![
        (256, Val::Long8OrLong(vec![s.width as u64])),
        (257, Val::Long8OrLong(vec![s.height as u64])),
        (258, Val::Short(vec![bits; s.bands])),
        (259, Val::Short(vec![s.compression_tag_override.unwrap_or(comp)])),
        (262, Val::Short(vec![if s.bands == 3 && s.dtype == Dtype::U8 { 2 } else { 1 }])),
        (277, Val::Short(vec![s.bands as u16])),
        (284, Val::Short(vec![if s.planar { 2 } else { 1 }])),
        (339, Val::Short(vec![fmt; s.bands])),
    ];
    if s.horizontal_predictor {
        tags.push((317, Val::Short(vec![2])));
    }
    if s.bands > 1 && !(s.bands == 3 && s.dtype == Dtype::U8) {
        tags.push((338, Val::Short(vec![0; s.bands - 1])));
    } else if s.bands == 4 {
        tags.push((338, Val::Short(vec![0])));
    }
    match s.tile {
        Some((tw, th)) => {
            tags.push((322, Val::Long8OrLong(vec![tw as u64])));
            tags.push((323, Val::Long8OrLong(vec![th as u64])));
            tags.push((324, Val::Long8OrLong(offsets)));
            tags.push((325, Val::Long8OrLong(counts)));
        }
        None => {
            tags.push((273, Val::Long8OrLong(offsets)));
            tags.push((278, Val::Long8OrLong(vec![s.rows_per_strip as u64])));
            tags.push((279, Val::Long8OrLong(counts)));
        }
    }
    if let Some((ox, oy, px, epsg)) = s.geo {
        tags.push((33550, Val::Double(vec![px, px, 0.0])));
        tags.push((33922, Val::Double(vec![0.0, 0.0, 0.0, ox, oy, 0.0])));
        let model_type = if epsg == 4326 { 2 } else { 1 };
        let crs_key = if epsg == 4326 { 2048 } else { 3072 };
        tags.push((34735, Val::Short(vec![1, 1, 0, 3, 1024, 0, 1, model_type, 1025, 0, 1, 1, crs_key, 0, 1, epsg])));
    }
    if let Some(nd) = s.nodata {
        tags.push((42113, Val::Ascii(nd.to_string())));
    }
    tags.sort_by_key(|t| t.0);

    let ifd_offset = file.len() as u64;
    if s.bigtiff {
        file[8..16].copy_from_slice(&ifd_offset.to_le_bytes());
    } else {
        file[4..8].copy_from_slice(&(ifd_offset as u32).to_le_bytes());
    }
    let (count_size, entry_size, inline) = if s.bigtiff { (8, 20, 8) } else { (2, 12, 4) };
    let ifd_len = count_size + tags.len() * entry_size + inline;
    let mut extra: Vec<u8> = Vec::new();
    let extra_base = ifd_offset as usize + ifd_len;
    let mut ifd: Vec<u8> = Vec::new();
    if s.bigtiff {
        ifd.extend((tags.len() as u64).to_le_bytes());
    } else {
        ifd.extend((tags.len() as u16).to_le_bytes());
    }
    for (tag, val) in &tags {
        let (ty, count, bytes): (u16, usize, Vec<u8>) = match val {
            Val::Short(v) => (3, v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Val::Long8OrLong(v) if s.bigtiff => (16, v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Val::Long8OrLong(v) => (4, v.len(), v.iter().flat_map(|x| (*x as u32).to_le_bytes()).collect()),
            Val::Double(v) => (12, v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Val::Ascii(t) => {
                let mut b = t.as_bytes().to_vec();
                b.push(0);
                (2, b.len(), b)
            }
        };
        ifd.extend(tag.to_le_bytes());
        ifd.extend(ty.to_le_bytes());
        if s.bigtiff {
            ifd.extend((count as u64).to_le_bytes());
        } else {
            ifd.extend((count as u32).to_le_bytes());
        }
        if bytes.len() <= inline {
            let mut b = bytes.clone();
            b.resize(inline, 0);
            ifd.extend(b);
        } else {
            let off = (extra_base + extra.len()) as u64;
            if s.bigtiff {
                ifd.extend(off.to_le_bytes());
            } else {
                ifd.extend((off as u32).to_le_bytes());
            }
            extra.extend(bytes);
            if extra.len() % 2 == 1 {
                extra.push(0);
            }
        }
    }
    ifd.extend(vec![0u8; inline]); // no next IFD
    assert_eq!(ifd.len(), ifd_len);
    file.extend(ifd);
    file.extend(extra);
    std::fs::write(path, file).unwrap();
}

/// `<repo>/../shared/data`, found by walking up from this crate to the folder with Cargo.lock.
pub fn shared_data_dir() -> Option<PathBuf> {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        if dir.join("Cargo.lock").exists() {
            let data = dir.join("../shared/data");
            return data.exists().then_some(data);
        }
        if !dir.pop() {
            return None;
        }
    }
}

/// The SpaceNet sample folder, or a loud failure explaining what is missing.
pub fn spacenet_dir() -> PathBuf {
    let dir = shared_data_dir().map(|d| d.join("spacenet-atlanta-sample"));
    match dir {
        Some(d) if d.join("sample_geotiff.tif").exists() => d,
        _ => panic!(
            "shared data missing: expected ../shared/data/spacenet-atlanta-sample/sample_geotiff.tif beside the \
             repository root (the folder containing Cargo.lock)"
        ),
    }
}

/// Small xorshift so tests are deterministic without a rand dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A tile-sized mask (`width x height`) given as the tight box around its set pixels, as a
/// model's pasted mask arrives; an all-empty mask becomes a 0x0 box.
pub fn boxed_mask(mask: &[u8], width: u32, height: u32) -> maskrcnn_geo::TileMask {
    let w = width as usize;
    let set: Vec<(usize, usize)> =
        mask.iter().enumerate().filter(|(_, &v)| v != 0).map(|(i, _)| (i % w, i / w)).collect();
    if set.is_empty() {
        return maskrcnn_geo::TileMask { x0: 0, y0: 0, width: 0, height: 0, data: Vec::new() };
    }
    let x0 = set.iter().map(|p| p.0).min().unwrap();
    let x1 = set.iter().map(|p| p.0).max().unwrap() + 1;
    let y0 = set.iter().map(|p| p.1).min().unwrap();
    let y1 = set.iter().map(|p| p.1).max().unwrap() + 1;
    assert!(y1 <= height as usize);
    let data = (y0..y1).flat_map(|y| mask[y * w + x0..y * w + x1].to_vec()).collect();
    maskrcnn_geo::TileMask { x0: x0 as u32, y0: y0 as u32, width: (x1 - x0) as u32, height: (y1 - y0) as u32, data }
}
