//! Opening a (Big)TIFF: the IFD tags that say how pixels are stored, checked up front so a
//! file we cannot read fails at open, naming the file, rather than mid-way through a job.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tiff::decoder::{ChunkType, Decoder, Limits};
use tiff::tags::{PlanarConfiguration, Tag};

use super::decode::RawChunks;
use super::georef::{parse_gdal_metadata, parse_nodata, read_georeferencing, TAG_GDAL_METADATA, TAG_GDAL_NODATA};
use super::jpeg::JpegParams;
use super::window::ChunkCache;
use super::{ChunkLayout, GeoTiff, RasterInfo, SampleType};

const PHOTOMETRIC_YCBCR: u16 = 6;

/// Name of a TIFF Compression tag value, for messages.
pub(super) fn compression_name(c: u16) -> &'static str {
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
        let compression: u16 =
            decoder.find_tag_unsigned(Tag::Compression).with_context(|| ctx("bad Compression tag"))?.unwrap_or(1);
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

        let gdal_metadata = match decoder.find_tag(Tag::Unknown(TAG_GDAL_METADATA)) {
            Ok(Some(v)) => parse_gdal_metadata(&v.into_string().unwrap_or_default()),
            _ => Vec::new(),
        };
        // Its errors name the file and say how to fix it.
        let (geotransform, crs) = read_georeferencing(&mut decoder, path, &gdal_metadata)?;
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
        let predictor: u16 =
            decoder.find_tag_unsigned(Tag::Predictor).with_context(|| ctx("bad Predictor"))?.unwrap_or(1);
        if !matches!(predictor, 1..=3) {
            bail!("{}: unsupported TIFF predictor {predictor}", path.display());
        }
        let photometric: Option<u16> = decoder
            .find_tag_unsigned(Tag::PhotometricInterpretation)
            .with_context(|| ctx("bad PhotometricInterpretation"))?;
        let ycbcr = photometric == Some(PHOTOMETRIC_YCBCR);
        if ycbcr && (compression != 7 || planar_separate || bands != 3) {
            bail!(
                "{}: YCbCr photometric is supported only for 3-band pixel-interleaved JPEG; convert with e.g. \
                 `gdal_translate -co PHOTOMETRIC=RGB -co COMPRESS=DEFLATE in.tif out.tif`",
                path.display()
            );
        }
        let jpeg = if compression == 7 {
            if sample_type != SampleType::U8 {
                bail!("{}: only 8-bit JPEG is supported, this file has {:?} samples", path.display(), sample_type);
            }
            let tables = match decoder.find_tag(Tag::JPEGTables).with_context(|| ctx("bad JPEGTables"))? {
                Some(v) => Some(v.into_u8_vec().with_context(|| ctx("bad JPEGTables"))?),
                None => None,
            };
            Some(JpegParams { tables, ycbcr_to_rgb: ycbcr, components: if planar_separate { 1 } else { bands } })
        } else {
            None
        };
        let raw = RawChunks {
            file: raw_file,
            offsets: offsets.clone(),
            counts: counts.clone(),
            little_endian,
            predictor,
            bytes_per_sample: bits[0] as usize / 8,
            jpeg,
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
            chunks_across,
            chunks_down,
            chunk_width,
            chunk_height,
            cache: ChunkCache::new(64 << 20),
            chunks_decoded: 0,
            raw,
        })
    }
}
