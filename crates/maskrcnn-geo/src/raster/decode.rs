//! Decompression of raw strips/tiles (none, LZW, Deflate, PackBits) and the TIFF predictors.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use anyhow::{anyhow, bail, Result};
use tiff::decoder::DecodingResult;

use super::header::compression_name;
use super::jpeg::{self, JpegParams};
use super::window::DecodedChunk;
use super::{ChunkLayout, GeoTiff, SampleType};

/// What is needed to decode strips/tiles ourselves. The `tiff` crate (0.11.3) fails on edge
/// tiles that use the horizontal predictor ("no lzw end code found"; GDAL reads those files) and
/// returns JPEG YCbCr data unconverted, so all chunks are decoded here from the raw bytes.
pub(super) struct RawChunks {
    pub(super) file: File,
    pub(super) offsets: Vec<u64>,
    pub(super) counts: Vec<u64>,
    pub(super) little_endian: bool,
    pub(super) predictor: u16,
    pub(super) bytes_per_sample: usize,
    /// Set for JPEG compression.
    pub(super) jpeg: Option<JpegParams>,
}

impl GeoTiff {
    pub(super) fn decode_error(&self, idx: u32, msg: &str) -> anyhow::Error {
        anyhow!(
            "{}: cannot decode strip/tile {idx} ({} compression): {msg} (truncated or corrupt file?)",
            self.info.path.display(),
            compression_name(self.info.compression)
        )
    }

    /// The stored (compressed) bytes of strip/tile `idx`.
    fn read_stored(&self, idx: u32) -> Result<Vec<u8>> {
        let (offset, count) = (self.raw.offsets[idx as usize], self.raw.counts[idx as usize]);
        let mut stored = vec![0u8; count as usize];
        (&self.raw.file).seek(SeekFrom::Start(offset))?;
        (&self.raw.file).read_exact(&mut stored).map_err(|e| self.decode_error(idx, &e.to_string()))?;
        Ok(stored)
    }

    /// (pixels per row, rows) of strip/tile `idx` that lie inside the image.
    fn chunk_extent(&self, idx: u32) -> (u32, u32) {
        let in_plane = idx % (self.chunks_across * self.chunks_down);
        let (cx, cy) = (in_plane % self.chunks_across, in_plane / self.chunks_across);
        (
            self.chunk_width.min(self.info.width - cx * self.chunk_width),
            self.chunk_height.min(self.info.height - cy * self.chunk_height),
        )
    }

    pub(super) fn decode_jpeg_chunk(&self, idx: u32) -> Result<DecodedChunk> {
        let Some(params) = &self.raw.jpeg else { bail!("internal: JPEG chunk without JPEG parameters") };
        let stored = self.read_stored(idx)?;
        let image = jpeg::decode(&stored, params).map_err(|e| self.decode_error(idx, &e))?;
        let spp = if self.info.planar_separate { 1 } else { self.info.bands };
        let (w, h) = self.chunk_extent(idx);
        if image.components != spp || image.width < w as usize || image.height < h as usize {
            return Err(self.decode_error(
                idx,
                &format!(
                    "JPEG image is {}x{} with {} components, the TIFF tags need at least {w}x{h} with {spp}",
                    image.width, image.height, image.components
                ),
            ));
        }
        Ok(DecodedChunk { data: DecodingResult::U8(image.data), stride: image.width as u32 })
    }

    pub(super) fn decode_raw_chunk(&mut self, idx: u32) -> Result<DecodedChunk> {
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
        let compressed = self.read_stored(idx)?;
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
            return Err(self.decode_error(idx, &format!("decompressed to {} bytes, expected {expected}", bytes.len())));
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
                    if little_endian {
                        <$ty>::from_le_bytes(arr)
                    } else {
                        <$ty>::from_be_bytes(arr)
                    }
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
