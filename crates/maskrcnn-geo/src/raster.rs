//! GeoTIFF input without GDAL: header/georeferencing parsing and windowed reads.
//!
//! Only the strips or tiles that intersect a requested window are decoded, and decoded chunks
//! are kept in a small byte-bounded cache (adjacent overlapping tiles re-use them), so memory
//! stays proportional to the window, not the file.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use tiff::decoder::{ChunkType, Decoder, DecodingResult, Limits};
use tiff::tags::{PlanarConfiguration, Tag};

const TAG_MODEL_PIXEL_SCALE: u16 = 33550;
const TAG_MODEL_TIEPOINT: u16 = 33922;
const TAG_MODEL_TRANSFORMATION: u16 = 34264;
const TAG_GEO_KEY_DIRECTORY: u16 = 34735;
const TAG_GEO_DOUBLE_PARAMS: u16 = 34736;
const TAG_GEO_ASCII_PARAMS: u16 = 34737;
const TAG_GDAL_METADATA: u16 = 42112;
const TAG_GDAL_NODATA: u16 = 42113;

const KEY_MODEL_TYPE: u16 = 1024;
const KEY_RASTER_TYPE: u16 = 1025;
const KEY_GT_CITATION: u16 = 1026;
const KEY_GEOGRAPHIC_TYPE: u16 = 2048;
const KEY_GEOG_CITATION: u16 = 2049;
const KEY_PROJECTED_CS_TYPE: u16 = 3072;
const KEY_PCS_CITATION: u16 = 3073;
const USER_DEFINED: u16 = 32767;
const RASTER_PIXEL_IS_POINT: u16 = 2;

/// Affine pixel→map transform in GDAL order:
/// `x_map = gt[0] + col*gt[1] + row*gt[2]`, `y_map = gt[3] + col*gt[4] + row*gt[5]`,
/// where (col, row) are pixel-corner coordinates (the top-left corner of pixel (0,0) is (0,0)).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GeoTransform(pub [f64; 6]);

impl GeoTransform {
    /// Pixel coordinates are used as map coordinates (for rasters without georeferencing).
    pub const IDENTITY: GeoTransform = GeoTransform([0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);

    pub fn pixel_to_map(&self, col: f64, row: f64) -> (f64, f64) {
        let g = &self.0;
        (g[0] + col * g[1] + row * g[2], g[3] + col * g[4] + row * g[5])
    }

    /// Inverse of [`GeoTransform::pixel_to_map`]; errors on a degenerate (non-invertible) transform.
    pub fn map_to_pixel(&self, x: f64, y: f64) -> Result<(f64, f64)> {
        let g = &self.0;
        let det = g[1] * g[5] - g[2] * g[4];
        if det == 0.0 || !det.is_finite() {
            bail!("geotransform {:?} is not invertible", g);
        }
        let dx = x - g[0];
        let dy = y - g[3];
        Ok(((dx * g[5] - dy * g[2]) / det, (dy * g[1] - dx * g[4]) / det))
    }

    /// Area of one pixel in map units² (absolute value of the determinant).
    pub fn pixel_area(&self) -> f64 {
        (self.0[1] * self.0[5] - self.0[2] * self.0[4]).abs()
    }

    /// Mean pixel size in map units (square root of the pixel area).
    pub fn pixel_size(&self) -> f64 {
        self.pixel_area().sqrt()
    }

    /// Transform of the sub-raster whose pixel (0,0) is pixel (col, row) of this raster.
    pub fn shifted(&self, col: f64, row: f64) -> GeoTransform {
        let (x0, y0) = self.pixel_to_map(col, row);
        let g = &self.0;
        GeoTransform([x0, g[1], g[2], y0, g[4], g[5]])
    }

    /// True when the determinant is negative, i.e. rows go "down" in map space (north-up images).
    /// Ring orientation flips under such a transform.
    pub fn flips_orientation(&self) -> bool {
        self.0[1] * self.0[5] - self.0[2] * self.0[4] < 0.0
    }
}

/// Coordinate reference system as found in the file.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Crs {
    /// EPSG code from ProjectedCSTypeGeoKey / GeographicTypeGeoKey (None when user-defined).
    pub epsg: Option<u32>,
    /// WKT from an "ESRI PE String" citation or GDAL_METADATA, when present.
    pub wkt: Option<String>,
    /// Free-text citations (GTCitation, PCSCitation, GeogCitation), for reporting.
    pub citation: Option<String>,
}

impl Crs {
    pub fn from_epsg(code: u32) -> Crs {
        Crs { epsg: Some(code), wkt: None, citation: None }
    }

    /// True for EPSG:4326 (WGS 84 geographic), where RFC 7946 GeoJSON applies as-is.
    pub fn is_wgs84(&self) -> bool {
        self.epsg == Some(4326)
    }

    /// "EPSG:32616", or a shortened citation, for messages.
    pub fn describe(&self) -> String {
        match (&self.epsg, &self.citation) {
            (Some(code), _) => format!("EPSG:{code}"),
            (None, Some(c)) => format!("user-defined ({c})"),
            (None, None) if self.wkt.is_some() => "user-defined (WKT)".to_string(),
            _ => "unknown".to_string(),
        }
    }
}

/// Native sample type of a raster band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SampleType {
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F32,
    F64,
}

/// How the pixels are laid out in the file (what a windowed read has to decode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkLayout {
    Striped { rows_per_strip: u32 },
    Tiled { tile_width: u32, tile_height: u32 },
}

/// Everything known about a raster without reading pixels.
#[derive(Debug, Clone)]
pub struct RasterInfo {
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    /// Samples per pixel (bands), numbered 1..=bands in band selections.
    pub bands: usize,
    pub sample_type: SampleType,
    /// None when the file has no ModelPixelScale+ModelTiepoint or ModelTransformation tag;
    /// use [`RasterInfo::geotransform_or_identity`] to work in pixel coordinates then.
    pub geotransform: Option<GeoTransform>,
    pub crs: Option<Crs>,
    pub nodata: Option<f64>,
    pub layout: ChunkLayout,
    /// TIFF Compression tag value (1 none, 5 LZW, 8/32946 Deflate, 32773 PackBits, 7 JPEG).
    pub compression: u16,
    pub planar_separate: bool,
    pub bigtiff: bool,
    /// Items of the GDAL_METADATA XML tag (name → value), e.g. AREA_OR_POINT or band stats.
    pub gdal_metadata: Vec<(String, String)>,
}

impl RasterInfo {
    pub fn is_georeferenced(&self) -> bool {
        self.geotransform.is_some()
    }

    pub fn geotransform_or_identity(&self) -> GeoTransform {
        self.geotransform.unwrap_or(GeoTransform::IDENTITY)
    }

    /// Pixel-corner bounds in map coordinates: (min_x, min_y, max_x, max_y).
    pub fn map_bounds(&self) -> (f64, f64, f64, f64) {
        let gt = self.geotransform_or_identity();
        let corners = [
            gt.pixel_to_map(0.0, 0.0),
            gt.pixel_to_map(self.width as f64, 0.0),
            gt.pixel_to_map(0.0, self.height as f64),
            gt.pixel_to_map(self.width as f64, self.height as f64),
        ];
        let mut b = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for (x, y) in corners {
            b = (b.0.min(x), b.1.min(y), b.2.max(x), b.3.max(y));
        }
        b
    }
}

/// A rectangle of pixels: columns x..x+width, rows y..y+height.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PixelWindow {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl PixelWindow {
    pub fn new(x: u32, y: u32, width: u32, height: u32) -> PixelWindow {
        PixelWindow { x, y, width, height }
    }
    pub fn right(&self) -> u32 {
        self.x + self.width
    }
    pub fn bottom(&self) -> u32 {
        self.y + self.height
    }
    pub fn intersection(&self, other: &PixelWindow) -> Option<PixelWindow> {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = self.right().min(other.right());
        let y1 = self.bottom().min(other.bottom());
        (x1 > x0 && y1 > y0).then(|| PixelWindow::new(x0, y0, x1 - x0, y1 - y0))
    }
}

/// Window samples in their native type, band-major (all of band 0, then band 1, ...).
#[derive(Debug, Clone, PartialEq)]
pub enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

macro_rules! samples_map {
    ($s:expr, $v:ident => $body:expr) => {
        match $s {
            Samples::U8($v) => $body,
            Samples::U16($v) => $body,
            Samples::U32($v) => $body,
            Samples::U64($v) => $body,
            Samples::I8($v) => $body,
            Samples::I16($v) => $body,
            Samples::I32($v) => $body,
            Samples::I64($v) => $body,
            Samples::F32($v) => $body,
            Samples::F64($v) => $body,
        }
    };
}

impl Samples {
    fn zeros(t: SampleType, n: usize) -> Samples {
        match t {
            SampleType::U8 => Samples::U8(vec![0; n]),
            SampleType::U16 => Samples::U16(vec![0; n]),
            SampleType::U32 => Samples::U32(vec![0; n]),
            SampleType::U64 => Samples::U64(vec![0; n]),
            SampleType::I8 => Samples::I8(vec![0; n]),
            SampleType::I16 => Samples::I16(vec![0; n]),
            SampleType::I32 => Samples::I32(vec![0; n]),
            SampleType::I64 => Samples::I64(vec![0; n]),
            SampleType::F32 => Samples::F32(vec![0.0; n]),
            SampleType::F64 => Samples::F64(vec![0.0; n]),
        }
    }

    pub fn len(&self) -> usize {
        samples_map!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lossy for 32/64-bit integers beyond 2^24 and for f64; exact for u8/u16/i16/f32.
    #[allow(clippy::unnecessary_cast)] // the macro also expands for Vec<f32>
    pub fn to_f32(&self) -> Vec<f32> {
        samples_map!(self, v => v.iter().map(|&s| s as f32).collect())
    }
}

/// Result of a windowed read.
#[derive(Debug, Clone)]
pub struct WindowData<T> {
    pub window: PixelWindow,
    /// 1-based band numbers, in the order of the planes in `data`.
    pub bands: Vec<usize>,
    /// Band-major (CHW): `data[b * width * height + row * width + col]`.
    pub data: T,
}

/// An open GeoTIFF, ready for windowed reads.
pub struct GeoTiff {
    info: RasterInfo,
    decoder: Decoder<BufReader<File>>,
    chunks_across: u32,
    chunks_down: u32,
    chunk_width: u32,
    chunk_height: u32,
    cache: ChunkCache,
    chunks_decoded: u64,
    raw: RawChunks,
}

/// What is needed to decode strips/tiles ourselves. The `tiff` crate (0.11.3) fails on edge
/// tiles that use the horizontal predictor ("no lzw end code found"; GDAL reads those files), so
/// uncompressed/LZW/Deflate/PackBits chunks are decompressed here from the raw bytes and the crate
/// decoder is only used for JPEG.
struct RawChunks {
    file: File,
    offsets: Vec<u64>,
    counts: Vec<u64>,
    little_endian: bool,
    predictor: u16,
    bytes_per_sample: usize,
}

/// A decoded strip/tile: `stride` pixels per row (tiles keep their right-hand padding).
struct DecodedChunk {
    data: DecodingResult,
    stride: u32,
}

struct ChunkCache {
    budget_bytes: usize,
    used_bytes: usize,
    order: VecDeque<u32>,
    chunks: HashMap<u32, Arc<DecodedChunk>>,
}

impl ChunkCache {
    fn get(&self, idx: u32) -> Option<Arc<DecodedChunk>> {
        self.chunks.get(&idx).cloned()
    }
    fn evict_to(&mut self, target_bytes: usize) {
        while self.used_bytes > target_bytes {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(c) = self.chunks.remove(&old) {
                self.used_bytes -= decoded_bytes(&c.data);
            }
        }
    }
    fn insert(&mut self, idx: u32, chunk: Arc<DecodedChunk>) {
        let bytes = decoded_bytes(&chunk.data);
        if bytes > self.budget_bytes {
            return;
        }
        self.evict_to(self.budget_bytes - bytes);
        self.used_bytes += bytes;
        self.order.push_back(idx);
        self.chunks.insert(idx, chunk);
    }
}

fn decoded_bytes(d: &DecodingResult) -> usize {
    match d {
        DecodingResult::U8(v) => v.len(),
        DecodingResult::I8(v) => v.len(),
        DecodingResult::U16(v) => v.len() * 2,
        DecodingResult::I16(v) => v.len() * 2,
        DecodingResult::F16(v) => v.len() * 2,
        DecodingResult::U32(v) => v.len() * 4,
        DecodingResult::I32(v) => v.len() * 4,
        DecodingResult::F32(v) => v.len() * 4,
        DecodingResult::U64(v) => v.len() * 8,
        DecodingResult::I64(v) => v.len() * 8,
        DecodingResult::F64(v) => v.len() * 8,
    }
}

fn compression_name(c: u16) -> &'static str {
    match c {
        1 => "none",
        2 => "CCITT RLE",
        3 => "CCITT Group 3 fax",
        4 => "CCITT Group 4 fax",
        5 => "LZW",
        6 => "old-style JPEG",
        7 => "JPEG",
        8 | 32946 => "Deflate",
        32773 => "PackBits",
        34887 => "LERC",
        34925 => "LZMA",
        50000 => "ZSTD",
        50001 => "WEBP",
        50002 => "JPEG-XL",
        _ => "unknown",
    }
}

const SUPPORTED_COMPRESSIONS: [u16; 6] = [1, 5, 7, 8, 32946, 32773];

impl GeoTiff {
    /// Open a (Big)TIFF and parse its georeferencing. Pixels are not read.
    pub fn open(path: impl AsRef<Path>) -> Result<GeoTiff> {
        let path = path.as_ref();
        let file = File::open(path).with_context(|| format!("cannot open raster {}", path.display()))?;
        let file_len = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        let mut limits = Limits::default();
        // Offsets/bytecounts arrays of large tiled rasters exceed the crate's 1 MiB default.
        limits.ifd_value_size = 1 << 30;
        let mut decoder = Decoder::new(BufReader::new(file))
            .map(|d| d.with_limits(limits))
            .with_context(|| format!("{} is not a readable TIFF", path.display()))?;
        let ctx = |what: &str| format!("{}: {what}", path.display());

        let (width, height) = decoder.dimensions().with_context(|| ctx("no image dimensions"))?;
        let compression: u16 = decoder
            .find_tag_unsigned(Tag::Compression)
            .with_context(|| ctx("bad Compression tag"))?
            .unwrap_or(1);
        if !SUPPORTED_COMPRESSIONS.contains(&compression) {
            bail!(
                "{}: unsupported TIFF compression {} ({}); supported: none, LZW, Deflate, PackBits, JPEG. \
                 Convert with e.g. `gdal_translate -co COMPRESS=DEFLATE in.tif out.tif`",
                path.display(),
                compression,
                compression_name(compression)
            );
        }
        let bands: usize = decoder
            .find_tag_unsigned::<u16>(Tag::SamplesPerPixel)
            .with_context(|| ctx("bad SamplesPerPixel"))?
            .unwrap_or(1) as usize;
        let bits: Vec<u16> = decoder
            .find_tag_unsigned_vec(Tag::BitsPerSample)
            .with_context(|| ctx("bad BitsPerSample"))?
            .unwrap_or_else(|| vec![1]);
        let formats: Vec<u16> = decoder
            .find_tag_unsigned_vec(Tag::SampleFormat)
            .with_context(|| ctx("bad SampleFormat"))?
            .unwrap_or_else(|| vec![1]);
        if bits.iter().any(|&b| b != bits[0]) {
            bail!("{}: bands with different bit depths {:?} are not supported", path.display(), bits);
        }
        let sample_type = match (formats[0], bits[0]) {
            (1, 8) => SampleType::U8,
            (1, 16) => SampleType::U16,
            (1, 32) => SampleType::U32,
            (1, 64) => SampleType::U64,
            (2, 8) => SampleType::I8,
            (2, 16) => SampleType::I16,
            (2, 32) => SampleType::I32,
            (2, 64) => SampleType::I64,
            (3, 32) => SampleType::F32,
            (3, 64) => SampleType::F64,
            (f, b) => bail!(
                "{}: unsupported sample type (SampleFormat {f}, {b} bits); supported: 8/16/32/64-bit integers, float32/64",
                path.display()
            ),
        };
        let planar_separate = decoder
            .find_tag_unsigned::<u16>(Tag::PlanarConfiguration)
            .with_context(|| ctx("bad PlanarConfiguration"))?
            == Some(PlanarConfiguration::Planar as u16);

        let chunk_type = decoder.get_chunk_type();
        let (chunk_width, chunk_height) = decoder.chunk_dimensions();
        if chunk_width == 0 || chunk_height == 0 {
            bail!("{}: zero-sized strips/tiles", path.display());
        }
        let layout = match chunk_type {
            ChunkType::Strip => ChunkLayout::Striped { rows_per_strip: chunk_height },
            ChunkType::Tile => ChunkLayout::Tiled { tile_width: chunk_width, tile_height: chunk_height },
        };
        let (offsets_tag, counts_tag) = match chunk_type {
            ChunkType::Strip => (Tag::StripOffsets, Tag::StripByteCounts),
            ChunkType::Tile => (Tag::TileOffsets, Tag::TileByteCounts),
        };
        let offsets = decoder.get_tag_u64_vec(offsets_tag).with_context(|| ctx("missing strip/tile offsets"))?;
        let counts = decoder.get_tag_u64_vec(counts_tag).with_context(|| ctx("missing strip/tile byte counts"))?;
        for (i, (o, c)) in offsets.iter().zip(&counts).enumerate() {
            if o.saturating_add(*c) > file_len {
                bail!(
                    "{}: file is truncated or corrupt: strip/tile {i} spans bytes {o}..{} but the file has {file_len} bytes",
                    path.display(),
                    o + c
                );
            }
        }

        let geotransform = read_geotransform(&mut decoder).with_context(|| ctx("bad georeferencing tags"))?;
        let (crs, raster_is_point) = read_geokeys(&mut decoder).with_context(|| ctx("bad GeoKeyDirectory"))?;
        let geotransform = geotransform.map(|gt| {
            // GDAL's default: a PixelIsPoint tiepoint refers to the pixel centre.
            if raster_is_point {
                gt.shifted(-0.5, -0.5)
            } else {
                gt
            }
        });
        let gdal_metadata = match decoder.find_tag(Tag::Unknown(TAG_GDAL_METADATA)) {
            Ok(Some(v)) => parse_gdal_metadata(&v.into_string().unwrap_or_default()),
            _ => Vec::new(),
        };
        let mut crs = crs;
        if let Some(wkt) = gdal_metadata.iter().map(|(_, v)| v).find(|v| looks_like_wkt(v)) {
            crs.get_or_insert_with(Crs::default).wkt.get_or_insert_with(|| wkt.clone());
        }
        let nodata = match decoder.find_tag(Tag::Unknown(TAG_GDAL_NODATA)) {
            Ok(Some(v)) => {
                let s = v.into_string().unwrap_or_default();
                let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
                Some(parse_nodata(s).with_context(|| ctx(&format!("GDAL_NODATA value {s:?} is not a number")))?)
            }
            _ => None,
        };
        let raw_file = File::open(path).with_context(|| format!("cannot open raster {}", path.display()))?;
        let (bigtiff, little_endian) = {
            use std::io::Read;
            let mut head = [0u8; 4];
            (&raw_file).read_exact(&mut head)?;
            (head[2..4] == [43, 0] || head[2..4] == [0, 43], head[0] == b'I')
        };
        let predictor: u16 = decoder.find_tag_unsigned(Tag::Predictor).with_context(|| ctx("bad Predictor"))?.unwrap_or(1);
        if !matches!(predictor, 1..=3) {
            bail!("{}: unsupported TIFF predictor {predictor}", path.display());
        }
        let raw = RawChunks {
            file: raw_file,
            offsets: offsets.clone(),
            counts: counts.clone(),
            little_endian,
            predictor,
            bytes_per_sample: bits[0] as usize / 8,
        };

        let chunks_across = width.div_ceil(chunk_width);
        let chunks_down = height.div_ceil(chunk_height);
        let info = RasterInfo {
            path: path.to_path_buf(),
            width,
            height,
            bands,
            sample_type,
            geotransform,
            crs,
            nodata,
            layout,
            compression,
            planar_separate,
            bigtiff,
            gdal_metadata,
        };
        Ok(GeoTiff {
            info,
            decoder,
            chunks_across,
            chunks_down,
            chunk_width,
            chunk_height,
            cache: ChunkCache { budget_bytes: 64 << 20, used_bytes: 0, order: VecDeque::new(), chunks: HashMap::new() },
            chunks_decoded: 0,
            raw,
        })
    }

    pub fn info(&self) -> &RasterInfo {
        &self.info
    }

    /// How many strips/tiles have been decoded so far (cache hits excluded): lets callers and
    /// tests verify that windowed reads touch only what they need.
    pub fn chunks_decoded(&self) -> u64 {
        self.chunks_decoded
    }

    /// Bytes of decoded strips/tiles kept for re-use by later windows (default 64 MiB; 0 disables).
    pub fn set_cache_budget(&mut self, bytes: usize) {
        self.cache.budget_bytes = bytes;
        self.cache.evict_to(bytes);
    }

    /// Read a window in the native sample type. `bands` are 1-based (e.g. `[3, 2, 1]`); an empty
    /// slice means all bands in file order. Only intersecting strips/tiles are decoded.
    pub fn read_window_typed(&mut self, window: PixelWindow, bands: &[usize]) -> Result<WindowData<Samples>> {
        let info = self.info.clone();
        let path = info.path.display().to_string();
        if window.width == 0 || window.height == 0 {
            bail!("{path}: empty window {window:?}");
        }
        if window.right() > info.width || window.bottom() > info.height {
            bail!("{path}: window {window:?} exceeds the raster ({}x{})", info.width, info.height);
        }
        let bands: Vec<usize> = if bands.is_empty() { (1..=info.bands).collect() } else { bands.to_vec() };
        if let Some(b) = bands.iter().find(|&&b| b == 0 || b > info.bands) {
            bail!("{path}: band {b} requested but the raster has bands 1..={}", info.bands);
        }
        let plane = window.width as usize * window.height as usize;
        let mut out = Samples::zeros(info.sample_type, plane * bands.len());
        let samples_in_chunk = if info.planar_separate { 1 } else { info.bands };
        let chunks_per_plane = self.chunks_across * self.chunks_down;

        let cx0 = window.x / self.chunk_width;
        let cx1 = (window.right() - 1) / self.chunk_width;
        let cy0 = window.y / self.chunk_height;
        let cy1 = (window.bottom() - 1) / self.chunk_height;
        // Planes to decode: with separate planes each band lives in its own chunks.
        let planes: Vec<usize> = if info.planar_separate { bands.iter().map(|b| b - 1).collect() } else { vec![0] };
        for &plane_idx in &planes {
            for cy in cy0..=cy1 {
                for cx in cx0..=cx1 {
                    let chunk_idx = plane_idx as u32 * chunks_per_plane + cy * self.chunks_across + cx;
                    let chunk = self.chunk(chunk_idx)?;
                    // Edge chunks hold only the pixels inside the image (the crate crops padding).
                    let cw = self.chunk_width.min(info.width - cx * self.chunk_width);
                    let ch = self.chunk_height.min(info.height - cy * self.chunk_height);
                    let chunk_win = PixelWindow::new(cx * self.chunk_width, cy * self.chunk_height, cw, ch);
                    let Some(isect) = chunk_win.intersection(&window) else { continue };
                    // (source sample within pixel, destination band slot)
                    let targets: Vec<(usize, usize)> = if info.planar_separate {
                        bands.iter().enumerate().filter(|(_, &b)| b - 1 == plane_idx).map(|(slot, _)| (0, slot)).collect()
                    } else {
                        bands.iter().enumerate().map(|(slot, &b)| (b - 1, slot)).collect()
                    };
                    let stride = chunk.stride as usize;
                    let geom = CopyGeometry { chunk_win, isect, window, samples_in_chunk, plane, stride };
                    copy_chunk(&chunk.data, &mut out, &targets, &geom)
                        .with_context(|| format!("{path}: strip/tile {chunk_idx} has an unexpected sample type"))?;
                }
            }
        }
        Ok(WindowData { window, bands, data: out })
    }

    /// Read a window converted to f32 (band-major). See [`GeoTiff::read_window_typed`].
    pub fn read_window(&mut self, window: PixelWindow, bands: &[usize]) -> Result<WindowData<Vec<f32>>> {
        let typed = self.read_window_typed(window, bands)?;
        Ok(WindowData { window: typed.window, bands: typed.bands, data: typed.data.to_f32() })
    }

    fn chunk(&mut self, idx: u32) -> Result<Arc<DecodedChunk>> {
        if let Some(c) = self.cache.get(idx) {
            return Ok(c);
        }
        let decoded = if self.info.compression == 7 {
            let data = self.decoder.read_chunk(idx).map_err(|e| self.decode_error(idx, &e.to_string()))?;
            let cx = (idx % (self.chunks_across * self.chunks_down)) % self.chunks_across;
            DecodedChunk { data, stride: self.chunk_width.min(self.info.width - cx * self.chunk_width) }
        } else {
            self.decode_raw_chunk(idx)?
        };
        self.chunks_decoded += 1;
        let decoded = Arc::new(decoded);
        self.cache.insert(idx, decoded.clone());
        Ok(decoded)
    }

    fn decode_error(&self, idx: u32, msg: &str) -> anyhow::Error {
        anyhow!(
            "{}: cannot decode strip/tile {idx} ({} compression): {msg} (truncated or corrupt file?)",
            self.info.path.display(),
            compression_name(self.info.compression)
        )
    }

    fn decode_raw_chunk(&mut self, idx: u32) -> Result<DecodedChunk> {
        use std::io::{Read, Seek, SeekFrom};
        let info = &self.info;
        let raw = &self.raw;
        let per_plane = self.chunks_across * self.chunks_down;
        let cy = (idx % per_plane) / self.chunks_across;
        let rows = match info.layout {
            ChunkLayout::Striped { .. } => self.chunk_height.min(info.height - cy * self.chunk_height),
            ChunkLayout::Tiled { .. } => self.chunk_height,
        } as usize;
        let stride = self.chunk_width as usize;
        let spp = if info.planar_separate { 1 } else { info.bands };
        let bps = raw.bytes_per_sample;
        let row_bytes = stride * spp * bps;
        let expected = row_bytes * rows;
        let (offset, count) = (raw.offsets[idx as usize], raw.counts[idx as usize]);
        let mut compressed = vec![0u8; count as usize];
        (&raw.file).seek(SeekFrom::Start(offset))?;
        (&raw.file).read_exact(&mut compressed).map_err(|e| self.decode_error(idx, &e.to_string()))?;
        let mut bytes = match info.compression {
            1 => compressed,
            5 => {
                let mut out = Vec::with_capacity(expected);
                let mut dec = weezl::decode::Decoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8);
                let res = dec.into_vec(&mut out).decode(&compressed);
                // Some writers omit the end-of-information code; a full buffer is what counts.
                if let Err(e) = res.status {
                    if out.len() < expected {
                        return Err(self.decode_error(idx, &format!("LZW: {e}")));
                    }
                }
                out
            }
            8 | 32946 => {
                let mut out = Vec::with_capacity(expected);
                flate2::read::ZlibDecoder::new(&compressed[..])
                    .read_to_end(&mut out)
                    .map_err(|e| self.decode_error(idx, &format!("Deflate: {e}")))?;
                out
            }
            32773 => unpack_bits(&compressed, expected),
            c => bail!("{}: unsupported compression {c}", info.path.display()),
        };
        if bytes.len() < expected {
            return Err(self.decode_error(
                idx,
                &format!("decompressed to {} bytes, expected {expected}", bytes.len()),
            ));
        }
        bytes.truncate(expected);
        let le = raw.little_endian;
        let predictor = raw.predictor;
        if predictor == 3 {
            if info.sample_type != SampleType::F32 && info.sample_type != SampleType::F64 {
                bail!("{}: floating-point predictor on integer samples", info.path.display());
            }
            for row in bytes.chunks_mut(row_bytes) {
                undo_float_predictor(row, spp, bps);
            }
        }
        let data = typed_from_bytes(&bytes, info.sample_type, le || predictor == 3);
        let mut data = data;
        if predictor == 2 {
            undo_horizontal_predictor(&mut data, stride * spp, spp);
        }
        Ok(DecodedChunk { data, stride: stride as u32 })
    }
}

fn unpack_bits(src: &[u8], expected: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(expected);
    let mut i = 0;
    while i < src.len() && out.len() < expected {
        let n = src[i] as i8;
        i += 1;
        if n >= 0 {
            let len = n as usize + 1;
            let end = (i + len).min(src.len());
            out.extend_from_slice(&src[i..end]);
            i = end;
        } else if n != -128 {
            if let Some(&b) = src.get(i) {
                out.extend(std::iter::repeat_n(b, (1 - n as isize) as usize));
            }
            i += 1;
        }
    }
    out
}

/// TIFF predictor 3: bytes of each row were split into planes (most significant first) and
/// byte-differenced; restore native little-endian sample bytes.
fn undo_float_predictor(row: &mut [u8], spp: usize, bps: usize) {
    for i in spp..row.len() {
        row[i] = row[i].wrapping_add(row[i - spp]);
    }
    let n = row.len() / bps;
    let planes = row.to_vec();
    for k in 0..n {
        for b in 0..bps {
            row[k * bps + b] = planes[(bps - 1 - b) * n + k];
        }
    }
}

fn typed_from_bytes(bytes: &[u8], t: SampleType, little_endian: bool) -> DecodingResult {
    macro_rules! conv {
        ($ty:ty, $n:expr, $variant:ident) => {{
            let v: Vec<$ty> = bytes
                .chunks_exact($n)
                .map(|c| {
                    let arr: [u8; $n] = c.try_into().unwrap();
                    if little_endian { <$ty>::from_le_bytes(arr) } else { <$ty>::from_be_bytes(arr) }
                })
                .collect();
            DecodingResult::$variant(v)
        }};
    }
    match t {
        SampleType::U8 => DecodingResult::U8(bytes.to_vec()),
        SampleType::I8 => DecodingResult::I8(bytes.iter().map(|&b| b as i8).collect()),
        SampleType::U16 => conv!(u16, 2, U16),
        SampleType::I16 => conv!(i16, 2, I16),
        SampleType::U32 => conv!(u32, 4, U32),
        SampleType::I32 => conv!(i32, 4, I32),
        SampleType::U64 => conv!(u64, 8, U64),
        SampleType::I64 => conv!(i64, 8, I64),
        SampleType::F32 => conv!(f32, 4, F32),
        SampleType::F64 => conv!(f64, 8, F64),
    }
}

/// TIFF predictor 2: each sample was stored as the difference to the same sample of the
/// previous pixel in the row (integer wrap-around; for floats plain addition).
fn undo_horizontal_predictor(data: &mut DecodingResult, row_len: usize, spp: usize) {
    macro_rules! acc {
        ($v:expr, $add:expr) => {
            for row in $v.chunks_mut(row_len) {
                for i in spp..row.len() {
                    row[i] = $add(row[i], row[i - spp]);
                }
            }
        };
    }
    match data {
        DecodingResult::U8(v) => acc!(v, u8::wrapping_add),
        DecodingResult::I8(v) => acc!(v, i8::wrapping_add),
        DecodingResult::U16(v) => acc!(v, u16::wrapping_add),
        DecodingResult::I16(v) => acc!(v, i16::wrapping_add),
        DecodingResult::U32(v) => acc!(v, u32::wrapping_add),
        DecodingResult::I32(v) => acc!(v, i32::wrapping_add),
        DecodingResult::U64(v) => acc!(v, u64::wrapping_add),
        DecodingResult::I64(v) => acc!(v, i64::wrapping_add),
        DecodingResult::F32(v) => acc!(v, |a: f32, b: f32| a + b),
        DecodingResult::F64(v) => acc!(v, |a: f64, b: f64| a + b),
        DecodingResult::F16(_) => {}
    }
}

struct CopyGeometry {
    chunk_win: PixelWindow,
    isect: PixelWindow,
    window: PixelWindow,
    samples_in_chunk: usize,
    plane: usize,
    /// Pixels per row in the decoded chunk buffer.
    stride: usize,
}

fn copy_typed<T: Copy>(src: &[T], dst: &mut [T], targets: &[(usize, usize)], g: &CopyGeometry) {
    let cw = g.stride;
    for row in g.isect.y..g.isect.bottom() {
        let src_row = (row - g.chunk_win.y) as usize;
        let dst_row = (row - g.window.y) as usize;
        for col in g.isect.x..g.isect.right() {
            let src_px = (src_row * cw + (col - g.chunk_win.x) as usize) * g.samples_in_chunk;
            let dst_px = dst_row * g.window.width as usize + (col - g.window.x) as usize;
            for &(sample, slot) in targets {
                dst[slot * g.plane + dst_px] = src[src_px + sample];
            }
        }
    }
}

fn copy_chunk(src: &DecodingResult, dst: &mut Samples, targets: &[(usize, usize)], g: &CopyGeometry) -> Result<()> {
    match (src, dst) {
        (DecodingResult::U8(s), Samples::U8(d)) => copy_typed(s, d, targets, g),
        (DecodingResult::U16(s), Samples::U16(d)) => copy_typed(s, d, targets, g),
        (DecodingResult::U32(s), Samples::U32(d)) => copy_typed(s, d, targets, g),
        (DecodingResult::U64(s), Samples::U64(d)) => copy_typed(s, d, targets, g),
        (DecodingResult::I8(s), Samples::I8(d)) => copy_typed(s, d, targets, g),
        (DecodingResult::I16(s), Samples::I16(d)) => copy_typed(s, d, targets, g),
        (DecodingResult::I32(s), Samples::I32(d)) => copy_typed(s, d, targets, g),
        (DecodingResult::I64(s), Samples::I64(d)) => copy_typed(s, d, targets, g),
        (DecodingResult::F32(s), Samples::F32(d)) => copy_typed(s, d, targets, g),
        (DecodingResult::F64(s), Samples::F64(d)) => copy_typed(s, d, targets, g),
        _ => bail!("decoded sample type does not match the header"),
    }
    Ok(())
}

fn read_geotransform(decoder: &mut Decoder<BufReader<File>>) -> Result<Option<GeoTransform>> {
    if let Some(v) = decoder.find_tag(Tag::Unknown(TAG_MODEL_TRANSFORMATION))? {
        let m = v.into_f64_vec()?;
        if m.len() < 16 {
            bail!("ModelTransformation has {} values, expected 16", m.len());
        }
        return Ok(Some(GeoTransform([m[3], m[0], m[1], m[7], m[4], m[5]])));
    }
    let scale = decoder.find_tag(Tag::Unknown(TAG_MODEL_PIXEL_SCALE))?.map(|v| v.into_f64_vec()).transpose()?;
    let tie = decoder.find_tag(Tag::Unknown(TAG_MODEL_TIEPOINT))?.map(|v| v.into_f64_vec()).transpose()?;
    match (scale, tie) {
        (Some(s), Some(t)) if s.len() >= 2 && t.len() >= 6 => {
            let (i, j, x, y) = (t[0], t[1], t[3], t[4]);
            Ok(Some(GeoTransform([x - i * s[0], s[0], 0.0, y + j * s[1], 0.0, -s[1]])))
        }
        // Tiepoints without a scale are ground control points; warping is out of scope, so the
        // raster is treated as not georeferenced (the caller reports it).
        _ => Ok(None),
    }
}

/// Returns (CRS, raster-is-point).
fn read_geokeys(decoder: &mut Decoder<BufReader<File>>) -> Result<(Option<Crs>, bool)> {
    let Some(dir) = decoder.find_tag(Tag::Unknown(TAG_GEO_KEY_DIRECTORY))? else {
        return Ok((None, false));
    };
    let dir: Vec<u16> = dir.into_u16_vec()?;
    let ascii = match decoder.find_tag(Tag::Unknown(TAG_GEO_ASCII_PARAMS))? {
        Some(v) => v.into_string().unwrap_or_default(),
        None => String::new(),
    };
    let _doubles = decoder.find_tag(Tag::Unknown(TAG_GEO_DOUBLE_PARAMS))?;
    if dir.len() < 4 {
        bail!("GeoKeyDirectory has {} values, expected at least 4", dir.len());
    }
    let n = dir[3] as usize;
    let mut shorts: HashMap<u16, u16> = HashMap::new();
    let mut strings: HashMap<u16, String> = HashMap::new();
    for k in 0..n {
        let Some(e) = dir.get(4 + 4 * k..8 + 4 * k) else { bail!("GeoKeyDirectory is shorter than its {n} keys") };
        let (key, loc, count, value) = (e[0], e[1], e[2] as usize, e[3] as usize);
        match loc {
            0 => {
                shorts.insert(key, e[3]);
            }
            TAG_GEO_ASCII_PARAMS => {
                let s: String = ascii.chars().skip(value).take(count).collect();
                strings.insert(key, s.trim_end_matches(['|', '\0']).to_string());
            }
            _ => {}
        }
    }
    let raster_is_point = shorts.get(&KEY_RASTER_TYPE) == Some(&RASTER_PIXEL_IS_POINT);
    let model_type = shorts.get(&KEY_MODEL_TYPE).copied();
    let projected = shorts.get(&KEY_PROJECTED_CS_TYPE).copied().filter(|&c| c != USER_DEFINED && c != 0);
    let geographic = shorts.get(&KEY_GEOGRAPHIC_TYPE).copied().filter(|&c| c != USER_DEFINED && c != 0);
    let epsg = match model_type {
        Some(2) => geographic,
        _ => projected.or(if model_type == Some(1) { None } else { geographic }),
    }
    .map(u32::from);
    let citations: Vec<&String> =
        [KEY_GT_CITATION, KEY_PCS_CITATION, KEY_GEOG_CITATION].iter().filter_map(|k| strings.get(k)).collect();
    let mut wkt = None;
    for c in &citations {
        if let Some(pos) = c.find("ESRI PE String = ") {
            wkt = Some(c[pos + "ESRI PE String = ".len()..].to_string());
        } else if looks_like_wkt(c) {
            wkt = Some(c.to_string());
        }
    }
    let citation = citations.first().map(|s| s.to_string());
    if epsg.is_none() && wkt.is_none() && citation.is_none() {
        return Ok((None, raster_is_point));
    }
    Ok((Some(Crs { epsg, wkt, citation }), raster_is_point))
}

fn looks_like_wkt(s: &str) -> bool {
    let s = s.trim_start();
    ["PROJCS[", "GEOGCS[", "PROJCRS[", "GEOGCRS[", "COMPD_CS[", "BOUNDCRS[", "GEODCRS["].iter().any(|p| s.starts_with(p))
}

fn parse_nodata(s: &str) -> Result<f64> {
    match s.to_ascii_lowercase().as_str() {
        "nan" | "-nan" => Ok(f64::NAN),
        "inf" | "+inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        _ => Ok(s.parse::<f64>()?),
    }
}

/// Minimal parser for GDAL's `<GDALMetadata><Item name="..">value</Item>...` XML.
fn parse_gdal_metadata(xml: &str) -> Vec<(String, String)> {
    let mut items = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<Item") {
        rest = &rest[start + 5..];
        let Some(tag_end) = rest.find('>') else { break };
        let attrs = &rest[..tag_end];
        let name = attrs
            .split("name=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("")
            .to_string();
        rest = &rest[tag_end + 1..];
        let Some(close) = rest.find("</Item>") else { break };
        let value = xml_unescape(&rest[..close]);
        items.push((name, value));
        rest = &rest[close..];
    }
    items
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geotransform_roundtrip() {
        let gt = GeoTransform([733601.0, 0.5, 0.0, 3725139.0, 0.0, -0.5]);
        let (x, y) = gt.pixel_to_map(10.0, 20.0);
        assert_eq!((x, y), (733606.0, 3725129.0));
        let (c, r) = gt.map_to_pixel(x, y).unwrap();
        assert!((c - 10.0).abs() < 1e-9 && (r - 20.0).abs() < 1e-9);
        assert!(gt.flips_orientation());
        assert_eq!(gt.pixel_area(), 0.25);
    }

    #[test]
    fn gdal_metadata_items() {
        let xml = "<GDALMetadata>\n  <Item name=\"AREA_OR_POINT\">Area</Item>\n  <Item name=\"X\" sample=\"0\">a &amp; b</Item>\n</GDALMetadata>";
        let items = parse_gdal_metadata(xml);
        assert_eq!(items, vec![("AREA_OR_POINT".into(), "Area".into()), ("X".into(), "a & b".into())]);
    }
}
