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

/// Objects as an instance-id raster (0 = background) and a fake detector that returns each
/// object's true mask clipped to the tile, with a score that depends on the tile, so that seams
/// and the merger's best-member rule both matter.
pub struct Truth {
    pub width: u32,
    pub height: u32,
    pub labels: Vec<u32>,
}

impl Truth {
    pub fn new(width: u32, height: u32) -> Truth {
        Truth { width, height, labels: vec![0; (width * height) as usize] }
    }

    /// Discs of varying size on a lattice (37 px down, 41 px across), many cut by seams.
    pub fn disc_lattice(width: u32, height: u32) -> Truth {
        let mut t = Truth::new(width, height);
        let mut id = 1;
        for cy in (20..height).step_by(37) {
            for cx in (15..width).step_by(41) {
                let r = 8.0 + ((cx * 7 + cy * 3) % 13) as f64;
                t.disc(id, cx as f64, cy as f64, r);
                id += 1;
            }
        }
        t
    }

    pub fn disc(&mut self, id: u32, cx: f64, cy: f64, r: f64) {
        for y in 0..self.height {
            for x in 0..self.width {
                if ((x as f64 + 0.5 - cx).powi(2) + (y as f64 + 0.5 - cy).powi(2)).sqrt() < r {
                    self.labels[(y * self.width + x) as usize] = id;
                }
            }
        }
    }

    pub fn rect(&mut self, id: u32, x0: u32, y0: u32, x1: u32, y1: u32) {
        for y in y0..y1 {
            for x in x0..x1 {
                self.labels[(y * self.width + x) as usize] = id;
            }
        }
    }

    pub fn pixel_count(&self, id: u32) -> usize {
        self.labels.iter().filter(|&&v| v == id).count()
    }

    /// Tile-sized masks, one per object the tile sees, in id order.
    pub fn detect(&self, img: &maskrcnn_geo::TileImage) -> Vec<maskrcnn_geo::TileInstance> {
        let w = img.tile.window;
        let mut ids: Vec<u32> = Vec::new();
        for y in w.y..w.bottom() {
            for x in w.x..w.right() {
                let v = self.labels[(y * self.width + x) as usize];
                if v != 0 && !ids.contains(&v) {
                    ids.push(v);
                }
            }
        }
        ids.sort();
        ids.into_iter()
            .map(|id| {
                let mut mask = vec![0u8; (w.width * w.height) as usize];
                for y in 0..w.height {
                    for x in 0..w.width {
                        mask[(y * w.width + x) as usize] =
                            (self.labels[((w.y + y) * self.width + w.x + x) as usize] == id) as u8;
                    }
                }
                let score = 0.5 + 0.01 * ((id * 7 + img.tile.index as u32 * 3) % 40) as f32;
                let mask = maskrcnn_geo::TileMask::whole(w.width, w.height, mask);
                maskrcnn_geo::TileInstance { class_id: id % 3, score, mask }
            })
            .collect()
    }

    /// As [`Truth::detect`], each mask handed over as its tight box, as a model's pasted masks are.
    pub fn detect_boxed(&self, img: &maskrcnn_geo::TileImage) -> Vec<maskrcnn_geo::TileInstance> {
        let mut found = self.detect(img);
        for inst in &mut found {
            inst.mask = boxed_mask(&inst.mask.data, img.width, img.height);
        }
        found
    }
}

/// A tiled (64 px) Deflate GeoTIFF at 0.5 m in EPSG:32616 with one chunk (the third of the second
/// chunk row) destroyed, so the tiles over it are unreadable and a run must report them.
pub fn raster_with_a_bad_chunk(dir: &Path, width: u32, height: u32) -> PathBuf {
    let path = dir.join("scene.tif");
    let mut spec = TiffSpec::new(width, height, 3, Dtype::U8);
    spec.tile = Some((64, 64));
    spec.compression = Comp::Deflate;
    spec.geo = Some((500000.0, 4000000.0, 0.5, 32616));
    write_tiff(&path, &spec);
    let mut bytes = std::fs::read(&path).unwrap();
    let offsets = tag_longs(&bytes, 324);
    let at = offsets[width.div_ceil(64) as usize + 2] as usize;
    bytes[at..at + 16].fill(0xff);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The LONG values of `tag` in a little-endian classic TIFF's first IFD.
pub fn tag_longs(b: &[u8], tag: u16) -> Vec<u32> {
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let ifd = u32_at(4) as usize;
    for e in 0..u16_at(ifd) as usize {
        let entry = ifd + 2 + 12 * e;
        if u16_at(entry) == tag {
            assert_eq!(u16_at(entry + 2), 4, "tag {tag} is LONG");
            let count = u32_at(entry + 4) as usize;
            let data = if count == 1 { entry + 8 } else { u32_at(entry + 8) as usize };
            return (0..count).map(|i| u32_at(data + 4 * i)).collect();
        }
    }
    panic!("no tag {tag}");
}
