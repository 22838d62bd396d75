//! Decoding one strip/tile of one IFD (the image, an overview or an internal mask): reading its
//! stored bytes, decompressing (see `codecs`), undoing the predictor and typing the samples.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use anyhow::{anyhow, Result};
use tiff::decoder::DecodingResult;

use super::codecs::{self, LercTarget};
use super::header::compression_name;
use super::jpeg::{self, JpegParams};
use super::window::DecodedChunk;
use super::SampleType;

/// Everything needed to decode the strips/tiles of one IFD ourselves. The `tiff` crate (0.11.3)
/// fails on edge tiles that use the horizontal predictor ("no lzw end code found"; GDAL reads
/// those files), returns JPEG YCbCr data unconverted and knows neither ZSTD, WebP nor LERC, so
/// all chunks are decoded here from the raw bytes; the crate only parses the IFDs.
pub(super) struct ChunkSource {
    pub(super) path: PathBuf,
    /// "the image", "overview 2", "the internal mask", for messages.
    pub(super) label: String,
    pub(super) file: File,
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) chunk_width: u32,
    pub(super) chunk_height: u32,
    pub(super) chunks_across: u32,
    pub(super) chunks_down: u32,
    pub(super) tiled: bool,
    pub(super) offsets: Vec<u64>,
    pub(super) counts: Vec<u64>,
    pub(super) little_endian: bool,
    pub(super) compression: u16,
    pub(super) predictor: u16,
    /// 1 for bilevel masks, else 8 times the sample's bytes.
    pub(super) bits_per_sample: u16,
    pub(super) sample_type: SampleType,
    pub(super) bands: usize,
    pub(super) planar_separate: bool,
    /// Set for JPEG compression.
    pub(super) jpeg: Option<JpegParams>,
    /// LercParameters' additional compression (0 none, 1 Deflate, 2 ZSTD).
    pub(super) lerc_wrapping: u32,
    /// What a strip/tile the file leaves out (offset and byte count 0, GDAL's SPARSE_OK) holds:
    /// the nodata value, else 0, as GDAL reads it.
    pub(super) sparse_fill: f64,
}

impl ChunkSource {
    pub(super) fn samples_in_chunk(&self) -> usize {
        if self.planar_separate {
            1
        } else {
            self.bands
        }
    }

    pub(super) fn chunks_per_plane(&self) -> u32 {
        self.chunks_across * self.chunks_down
    }

    fn error(&self, idx: u32, msg: &str) -> anyhow::Error {
        anyhow!(
            "{}: cannot decode strip/tile {idx} of {} ({} compression): {msg} (truncated or corrupt file?)",
            self.path.display(),
            self.label,
            compression_name(self.compression)
        )
    }

    /// The stored (compressed) bytes of strip/tile `idx` (within the file: checked at open).
    fn read_stored(&self, idx: u32) -> Result<Vec<u8>> {
        let (offset, count) = (self.offsets[idx as usize], self.counts[idx as usize]);
        let mut stored = vec![0u8; count as usize];
        (&self.file).seek(SeekFrom::Start(offset))?;
        (&self.file).read_exact(&mut stored).map_err(|e| self.error(idx, &e.to_string()))?;
        Ok(stored)
    }

    /// (pixels per row, rows) of strip/tile `idx` that lie inside the image.
    pub(super) fn chunk_extent(&self, idx: u32) -> (u32, u32) {
        let in_plane = idx % self.chunks_per_plane();
        let (cx, cy) = (in_plane % self.chunks_across, in_plane / self.chunks_across);
        (
            self.chunk_width.min(self.width - cx * self.chunk_width),
            self.chunk_height.min(self.height - cy * self.chunk_height),
        )
    }

    /// Rows a strip/tile holds in the file: tiles are always whole, the last strip is cut short.
    fn stored_rows(&self, idx: u32) -> usize {
        if self.tiled {
            self.chunk_height as usize
        } else {
            self.chunk_extent(idx).1 as usize
        }
    }

    /// Decoded bytes of the largest strip/tile: what open checks against the memory bound.
    pub(super) fn max_chunk_bytes(&self) -> u64 {
        let row = (self.chunk_width as u64 * self.samples_in_chunk() as u64 * self.bits_per_sample as u64).div_ceil(8);
        row * self.chunk_height as u64
    }

    pub(super) fn decode(&self, idx: u32) -> Result<DecodedChunk> {
        if self.counts[idx as usize] == 0 {
            let n = self.chunk_width as usize * self.stored_rows(idx) * self.samples_in_chunk();
            return Ok(DecodedChunk { data: filled(self.sample_type, n, self.sparse_fill), stride: self.chunk_width });
        }
        match self.compression {
            7 => self.decode_jpeg(idx),
            34887 => self.decode_lerc(idx),
            50001 => self.decode_webp(idx),
            _ => self.decode_bytes(idx),
        }
    }

    fn decode_jpeg(&self, idx: u32) -> Result<DecodedChunk> {
        let Some(params) = &self.jpeg else { return Err(self.error(idx, "JPEG chunk without JPEG parameters")) };
        let stored = self.read_stored(idx)?;
        let spp = self.samples_in_chunk();
        let (w, h) = self.chunk_extent(idx);
        let limit = (self.chunk_width as usize, self.stored_rows(idx));
        let image = jpeg::decode(&stored, params, limit).map_err(|e| self.error(idx, &e))?;
        if image.components != spp || image.width < w as usize || image.height < h as usize {
            return Err(self.error(
                idx,
                &format!(
                    "JPEG image is {}x{} with {} components, the TIFF tags need at least {w}x{h} with {spp}",
                    image.width, image.height, image.components
                ),
            ));
        }
        Ok(DecodedChunk { data: DecodingResult::U8(image.data), stride: image.width as u32 })
    }

    fn decode_webp(&self, idx: u32) -> Result<DecodedChunk> {
        let stored = self.read_stored(idx)?;
        if self.sample_type != SampleType::U8 || self.planar_separate {
            return Err(self.error(idx, "WebP needs 8-bit pixel-interleaved samples"));
        }
        let (width, rows) = (self.chunk_width as usize, self.stored_rows(idx));
        let data = codecs::webp(&stored, width, rows, self.bands).map_err(|e| self.error(idx, &e))?;
        Ok(DecodedChunk { data: DecodingResult::U8(data), stride: self.chunk_width })
    }

    fn decode_lerc(&self, idx: u32) -> Result<DecodedChunk> {
        let stored = self.read_stored(idx)?;
        let target = LercTarget {
            width: self.chunk_width as usize,
            height: self.stored_rows(idx),
            samples: self.samples_in_chunk(),
            wrapping: self.lerc_wrapping,
        };
        let raw_bytes = target.width * target.height * target.samples * (self.sample_type.bits() as usize / 8);
        let data = codecs::lerc(&stored, &target, raw_bytes).map_err(|e| self.error(idx, &e))?;
        if !same_type(&data, self.sample_type) {
            return Err(self.error(idx, &format!("LERC data is not of the TIFF's {:?} samples", self.sample_type)));
        }
        Ok(DecodedChunk { data, stride: self.chunk_width })
    }

    fn decode_bytes(&self, idx: u32) -> Result<DecodedChunk> {
        let rows = self.stored_rows(idx);
        let stride = self.chunk_width as usize;
        let spp = self.samples_in_chunk();
        let row_bytes = (stride * spp * self.bits_per_sample as usize).div_ceil(8);
        let expected = row_bytes * rows;
        let compressed = self.read_stored(idx)?;
        let mut bytes = match self.compression {
            1 => compressed,
            5 => codecs::lzw(&compressed, expected).map_err(|e| self.error(idx, &e))?,
            8 | 32946 => codecs::inflate(&compressed, expected).map_err(|e| self.error(idx, &e))?,
            32773 => codecs::unpack_bits(&compressed, expected),
            50000 => codecs::zstd(&compressed, expected).map_err(|e| self.error(idx, &e))?,
            c => return Err(self.error(idx, &format!("unsupported compression {c}"))),
        };
        if bytes.len() < expected {
            return Err(self.error(idx, &format!("decompressed to {} bytes, expected {expected}", bytes.len())));
        }
        bytes.truncate(expected);
        if self.bits_per_sample == 1 {
            // Bilevel (internal masks): MSB first, rows padded to whole bytes; expanded to 0/1.
            let mut out = Vec::with_capacity(stride * rows);
            for row in bytes.chunks_exact(row_bytes) {
                out.extend((0..stride).map(|c| (row[c / 8] >> (7 - c % 8)) & 1));
            }
            return Ok(DecodedChunk { data: DecodingResult::U8(out), stride: stride as u32 });
        }
        let bps = self.sample_type.bits() as usize / 8;
        let le = self.little_endian;
        match self.predictor {
            2 => {
                for row in bytes.chunks_exact_mut(row_bytes) {
                    undo_horizontal_predictor(row, spp, bps, le);
                }
            }
            3 => {
                if !matches!(self.sample_type, SampleType::F32 | SampleType::F64) {
                    return Err(self.error(idx, "floating-point predictor on integer samples"));
                }
                for row in bytes.chunks_exact_mut(row_bytes) {
                    undo_float_predictor(row, spp, bps);
                }
            }
            _ => {}
        }
        let data = typed_from_bytes(&bytes, self.sample_type, le || self.predictor == 3);
        Ok(DecodedChunk { data, stride: stride as u32 })
    }
}

fn filled(t: SampleType, n: usize, v: f64) -> DecodingResult {
    match t {
        SampleType::U8 => DecodingResult::U8(vec![v as u8; n]),
        SampleType::I8 => DecodingResult::I8(vec![v as i8; n]),
        SampleType::U16 => DecodingResult::U16(vec![v as u16; n]),
        SampleType::I16 => DecodingResult::I16(vec![v as i16; n]),
        SampleType::U32 => DecodingResult::U32(vec![v as u32; n]),
        SampleType::I32 => DecodingResult::I32(vec![v as i32; n]),
        SampleType::U64 => DecodingResult::U64(vec![v as u64; n]),
        SampleType::I64 => DecodingResult::I64(vec![v as i64; n]),
        SampleType::F32 => DecodingResult::F32(vec![v as f32; n]),
        SampleType::F64 => DecodingResult::F64(vec![v; n]),
    }
}

fn same_type(d: &DecodingResult, t: SampleType) -> bool {
    matches!(
        (d, t),
        (DecodingResult::U8(_), SampleType::U8)
            | (DecodingResult::I8(_), SampleType::I8)
            | (DecodingResult::U16(_), SampleType::U16)
            | (DecodingResult::I16(_), SampleType::I16)
            | (DecodingResult::U32(_), SampleType::U32)
            | (DecodingResult::I32(_), SampleType::I32)
            | (DecodingResult::F32(_), SampleType::F32)
            | (DecodingResult::F64(_), SampleType::F64)
    )
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

/// TIFF predictor 2: each sample was stored as the difference to the same sample of the previous
/// pixel in the row. libtiff (so GDAL) differences the samples as unsigned integers of their width
/// whatever the SampleFormat, floats included (their bit patterns), with wrap-around; so does this.
fn undo_horizontal_predictor(row: &mut [u8], spp: usize, bps: usize, little_endian: bool) {
    macro_rules! acc {
        ($ty:ty, $n:expr) => {{
            let get = |b: &[u8]| {
                let arr: [u8; $n] = b.try_into().unwrap();
                if little_endian {
                    <$ty>::from_le_bytes(arr)
                } else {
                    <$ty>::from_be_bytes(arr)
                }
            };
            let stride = spp * $n;
            for i in (stride..row.len().saturating_sub($n - 1)).step_by($n) {
                let v = get(&row[i..i + $n]).wrapping_add(get(&row[i - stride..i - stride + $n]));
                let bytes = if little_endian { v.to_le_bytes() } else { v.to_be_bytes() };
                row[i..i + $n].copy_from_slice(&bytes);
            }
        }};
    }
    match bps {
        1 => acc!(u8, 1),
        2 => acc!(u16, 2),
        4 => acc!(u32, 4),
        8 => acc!(u64, 8),
        _ => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizontal_predictor_on_floats_adds_bit_patterns() {
        // Differences of the u32 bit patterns of 1.5 and 2.25, as libtiff stores them.
        let (a, b) = (1.5f32.to_bits(), 2.25f32.to_bits());
        let mut row: Vec<u8> = [a, b.wrapping_sub(a)].iter().flat_map(|v| v.to_le_bytes()).collect();
        undo_horizontal_predictor(&mut row, 1, 4, true);
        let DecodingResult::F32(v) = typed_from_bytes(&row, SampleType::F32, true) else { panic!() };
        assert_eq!(v, vec![1.5, 2.25]);
    }

    #[test]
    fn horizontal_predictor_big_endian_u16_with_two_samples() {
        let vals: [u16; 4] = [10, 65530, 5, 20]; // pixel 2 = pixel 1 + (5, 20), wrapping
        let mut row: Vec<u8> = vals.iter().flat_map(|v| v.to_be_bytes()).collect();
        undo_horizontal_predictor(&mut row, 2, 2, false);
        let DecodingResult::U16(v) = typed_from_bytes(&row, SampleType::U16, false) else { panic!() };
        assert_eq!(v, vec![10, 65530, 15, 14]);
    }
}
