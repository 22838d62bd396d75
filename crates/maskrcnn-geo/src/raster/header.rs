//! Opening a (Big)TIFF: the IFD tags that say how pixels are stored, checked up front so a
//! file we cannot read fails at open, naming the file, rather than mid-way through a job.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tiff::decoder::{ChunkType, Decoder, Limits};
use tiff::tags::{PlanarConfiguration, Tag};

use super::codecs::TAG_LERC_PARAMETERS;
use super::decode::ChunkSource;
use super::georef::{parse_gdal_metadata, parse_nodata, read_georeferencing, TAG_GDAL_METADATA, TAG_GDAL_NODATA};
use super::jpeg::JpegParams;
use super::window::ChunkCache;
use super::{ChunkLayout, GeoTiff, GeoTransform, RasterInfo, SampleType};

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

const SUPPORTED_COMPRESSIONS: [u16; 9] = [1, 5, 7, 8, 32946, 32773, 34887, 50000, 50001];

/// Largest decoded strip/tile accepted (bytes). Windowed reads decode whole chunks, so this bounds
/// the memory one chunk can take whatever its header declares.
pub const MAX_CHUNK_BYTES: u64 = 512 << 20;
/// IFDs followed when looking for overviews and masks (a COG has two per level at most).
const MAX_IFDS: usize = 256;

const SUBFILE_REDUCED: u32 = 1;
const SUBFILE_MASK: u32 = 4;
const PHOTOMETRIC_MASK: u16 = 4;

/// One IFD of the file, as seen while looking for overviews and masks.
struct IfdEntry {
    index: usize,
    subfile: u32,
    width: u32,
    height: u32,
}

impl GeoTiff {
    /// Open a (Big)TIFF and parse its georeferencing. Pixels are not read.
    pub fn open(path: impl AsRef<Path>) -> Result<GeoTiff> {
        open_level(path.as_ref(), 0)
    }

    /// Open reduced-resolution level `level` of a (Big)TIFF/COG: 0 is the full-resolution image,
    /// 1..=N the overviews in [`RasterInfo::overviews`] (largest first), with the geotransform
    /// scaled to the level's pixels. A level the file does not have is an error listing those it has.
    pub fn open_overview(path: impl AsRef<Path>, level: usize) -> Result<GeoTiff> {
        open_level(path.as_ref(), level)
    }
}

fn open_level(path: &Path, level: usize) -> Result<GeoTiff> {
    let file = File::open(path).with_context(|| format!("cannot open raster {}", path.display()))?;
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
    check_first_ifd(&file, file_len).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut limits = Limits::default();
    // A tag value cannot hold more values than the file has bytes (the crate's own default, 256 MiB,
    // also applies to the first IFD, read before limits can be set).
    limits.decoding_buffer_size = (file_len.saturating_mul(32)).clamp(1 << 20, 1 << 30) as usize;
    let mut decoder = Decoder::new(BufReader::new(file))
        .map(|d| d.with_limits(limits))
        .with_context(|| format!("{} is not a readable TIFF", path.display()))?;
    let ctx = |what: &str| format!("{}: {what}", path.display());

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

    let ifds = list_ifds(&mut decoder, path)?;
    let (full_w, full_h) = (ifds[0].width, ifds[0].height);
    let mut overview_ifds: Vec<&IfdEntry> =
        ifds.iter().filter(|e| e.subfile & SUBFILE_REDUCED != 0 && e.subfile & SUBFILE_MASK == 0).collect();
    overview_ifds.sort_by_key(|e| std::cmp::Reverse((e.width, e.height)));
    let overviews: Vec<(u32, u32)> = overview_ifds.iter().map(|e| (e.width, e.height)).collect();
    let image_ifd = if level == 0 {
        &ifds[0]
    } else {
        let Some(e) = overview_ifds.get(level - 1) else {
            let have = if overviews.is_empty() {
                "it has no overviews (build them with `gdaladdo`)".to_string()
            } else {
                let sizes: Vec<String> =
                    overviews.iter().enumerate().map(|(i, (w, h))| format!("{}: {w}x{h}", i + 1)).collect();
                format!("it has levels 0 (full resolution) and {}", sizes.join(", "))
            };
            bail!("{}: overview level {level} does not exist; {have}", path.display());
        };
        e
    };
    let label = if level == 0 { "the image".to_string() } else { format!("overview {level}") };
    decoder.seek_to_image(image_ifd.index).with_context(|| ctx(&format!("cannot read the IFD of {label}")))?;
    let mut src = read_source(&mut decoder, path, file_len, label, false)?;
    src.sparse_fill = nodata.unwrap_or(0.0);
    let alpha_band = find_alpha(&mut decoder, src.bands).with_context(|| ctx("bad ExtraSamples"))?;
    // The mask of this level: same size, the mask bit set (and the reduced bit for overviews).
    let mask_ifd = ifds.iter().find(|e| {
        e.subfile & SUBFILE_MASK != 0
            && (e.subfile & SUBFILE_REDUCED != 0) == (level > 0)
            && (e.width, e.height) == (src.width, src.height)
    });
    let mask = match mask_ifd {
        Some(e) => {
            decoder.seek_to_image(e.index).with_context(|| ctx("cannot read the IFD of the internal mask"))?;
            Some(read_source(&mut decoder, path, file_len, "the internal mask".into(), true)?)
        }
        None => None,
    };

    let geotransform = geotransform.map(|gt| {
        // As GDAL's overview datasets: the same extent over fewer, larger pixels.
        let (rx, ry) = (full_w as f64 / src.width as f64, full_h as f64 / src.height as f64);
        let g = gt.0;
        GeoTransform([g[0], g[1] * rx, g[2] * ry, g[3], g[4] * rx, g[5] * ry])
    });
    let raw_file = File::open(path).with_context(|| format!("cannot open raster {}", path.display()))?;
    let bigtiff = {
        use std::io::Read;
        let mut head = [0u8; 4];
        (&raw_file).read_exact(&mut head)?;
        head[2..4] == [43, 0] || head[2..4] == [0, 43]
    };
    let layout = if src.tiled {
        ChunkLayout::Tiled { tile_width: src.chunk_width, tile_height: src.chunk_height }
    } else {
        ChunkLayout::Striped { rows_per_strip: src.chunk_height }
    };
    let info = RasterInfo {
        path: path.to_path_buf(),
        width: src.width,
        height: src.height,
        bands: src.bands,
        sample_type: src.sample_type,
        geotransform,
        crs,
        nodata,
        layout,
        compression: src.compression,
        planar_separate: src.planar_separate,
        bigtiff,
        gdal_metadata,
        overview_level: level,
        overviews,
        alpha_band,
        has_internal_mask: mask.is_some(),
    };
    Ok(GeoTiff {
        info,
        src,
        cache: ChunkCache::new(64 << 20),
        mask: mask.map(|m| (m, ChunkCache::new(16 << 20))),
        chunks_decoded: 0,
    })
}

/// Checks that no entry of the first IFD declares more value bytes than the whole file holds,
/// before the `tiff` crate reads it: the crate reserves what a count says (up to 256 MiB) for the
/// first IFD, before limits can be set. The later IFDs are read under `decoding_buffer_size`.
fn check_first_ifd(mut file: &File, file_len: u64) -> std::result::Result<(), String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut head = [0u8; 16];
    let n = file.read(&mut head).map_err(|e| e.to_string())?;
    let le = match &head[..2] {
        b"II" => true,
        b"MM" => false,
        _ => return Err("not a TIFF (no II/MM byte-order mark)".into()),
    };
    let u16_at = |b: &[u8]| if le { u16::from_le_bytes([b[0], b[1]]) } else { u16::from_be_bytes([b[0], b[1]]) };
    let u32_at = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let u64_at = |b: &[u8]| {
        let a: [u8; 8] = b[..8].try_into().unwrap();
        if le {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        }
    };
    if n < 8 {
        return Err(format!("{n} bytes are too short for a TIFF header"));
    }
    let bigtiff = u16_at(&head[2..4]) == 43;
    if bigtiff && n < 16 {
        return Err(format!("{n} bytes are too short for a BigTIFF header"));
    }
    let ifd = if bigtiff { u64_at(&head[8..16]) } else { u32_at(&head[4..8]) as u64 };
    let (count_len, entry_len) = if bigtiff { (8u64, 20u64) } else { (2, 12) };
    if ifd.saturating_add(count_len) > file_len {
        return Err(format!("the first IFD is at byte {ifd}, past the end of the {file_len}-byte file"));
    }
    file.seek(SeekFrom::Start(ifd)).map_err(|e| e.to_string())?;
    let mut cnt = [0u8; 8];
    file.read_exact(&mut cnt[..count_len as usize]).map_err(|e| e.to_string())?;
    let entries = if bigtiff { u64_at(&cnt) } else { u16_at(&cnt) as u64 };
    if entries.saturating_mul(entry_len) > file_len - ifd - count_len {
        return Err(format!("the first IFD declares {entries} entries, more than the {file_len}-byte file holds"));
    }
    let mut table = vec![0u8; (entries * entry_len) as usize];
    file.read_exact(&mut table).map_err(|e| e.to_string())?;
    for e in table.chunks_exact(entry_len as usize) {
        let (tag, ty) = (u16_at(&e[0..2]), u16_at(&e[2..4]));
        let count = if bigtiff { u64_at(&e[4..12]) } else { u32_at(&e[4..8]) as u64 };
        let size: u64 = match ty {
            3 | 8 => 2,
            4 | 9 | 11 | 13 => 4,
            5 | 10 | 12 | 16 | 17 | 18 => 8,
            _ => 1,
        };
        let bytes = count.saturating_mul(size);
        if bytes > file_len {
            return Err(format!(
                "TIFF tag {tag} declares {count} values ({bytes} bytes), more than the whole {file_len}-byte file"
            ));
        }
    }
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    Ok(())
}

/// The IFD chain (after the first, at most [`MAX_IFDS`]), leaving the decoder anywhere.
fn list_ifds(decoder: &mut Decoder<BufReader<File>>, path: &Path) -> Result<Vec<IfdEntry>> {
    let mut out = Vec::new();
    loop {
        let subfile: u32 = decoder.find_tag_unsigned(Tag::NewSubfileType).ok().flatten().unwrap_or(0);
        let (width, height) =
            decoder.dimensions().with_context(|| format!("{}: no image dimensions", path.display()))?;
        out.push(IfdEntry { index: out.len(), subfile, width, height });
        if !decoder.more_images() || out.len() >= MAX_IFDS {
            break;
        }
        // A broken later IFD must not stop the image itself from being read: the chain ends there.
        if decoder.next_image().is_err() {
            break;
        }
    }
    Ok(out)
}

/// The 1-based band that ExtraSamples marks as (associated or unassociated) alpha.
fn find_alpha(decoder: &mut Decoder<BufReader<File>>, bands: usize) -> Result<Option<usize>> {
    let extra: Vec<u16> = decoder.find_tag_unsigned_vec(Tag::ExtraSamples)?.unwrap_or_default();
    if extra.len() > bands {
        bail!("ExtraSamples lists {} samples but the image has {bands}", extra.len());
    }
    let first_extra = bands - extra.len();
    Ok(extra.iter().position(|&e| e == 1 || e == 2).map(|i| first_extra + i + 1))
}

/// How the pixels of the decoder's current IFD are stored, checked so that a file we cannot read
/// (or whose header promises more than the file or a sane amount of memory holds) fails at open.
fn read_source(
    decoder: &mut Decoder<BufReader<File>>,
    path: &Path,
    file_len: u64,
    label: String,
    is_mask: bool,
) -> Result<ChunkSource> {
    let ctx = |what: &str| format!("{} ({label}): {what}", path.display());
    let (width, height) = decoder.dimensions().with_context(|| ctx("no image dimensions"))?;
    let compression: u16 =
        decoder.find_tag_unsigned(Tag::Compression).with_context(|| ctx("bad Compression tag"))?.unwrap_or(1);
    if !SUPPORTED_COMPRESSIONS.contains(&compression) {
        bail!(
            "{}: unsupported TIFF compression {} ({}); supported: none, LZW, Deflate, PackBits, JPEG, ZSTD, WebP, \
             LERC. Convert with e.g. `gdal_translate -co COMPRESS=DEFLATE in.tif out.tif`",
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
    if bits.is_empty() || formats.is_empty() || bits.iter().any(|&b| b != bits[0]) {
        bail!("{}: bands with different bit depths {:?} are not supported", path.display(), bits);
    }
    let photometric: Option<u16> = decoder
        .find_tag_unsigned(Tag::PhotometricInterpretation)
        .with_context(|| ctx("bad PhotometricInterpretation"))?;
    if is_mask && (photometric != Some(PHOTOMETRIC_MASK) || bands != 1 || !matches!(bits[0], 1 | 8)) {
        bail!(
            "{}: the internal mask is not a 1- or 8-bit single-band transparency mask (Photometric {:?}, {bands} \
             samples of {} bits)",
            path.display(),
            photometric,
            bits[0]
        );
    }
    let sample_type = match (formats[0], bits[0]) {
        (1, 1) if is_mask => SampleType::U8,
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
    let planar_separate =
        decoder.find_tag_unsigned::<u16>(Tag::PlanarConfiguration).with_context(|| ctx("bad PlanarConfiguration"))?
            == Some(PlanarConfiguration::Planar as u16);

    let chunk_type = decoder.get_chunk_type();
    let (chunk_width, chunk_height) = decoder.chunk_dimensions();
    if chunk_width == 0 || chunk_height == 0 {
        bail!("{}: zero-sized strips/tiles", path.display());
    }
    let tiled = chunk_type == ChunkType::Tile;
    // Strips never extend beyond the image (RowsPerStrip may say 2^32-1 for "one strip").
    let (chunk_width, chunk_height) =
        if tiled { (chunk_width, chunk_height) } else { (width, chunk_height.min(height)) };
    let (offsets_tag, counts_tag) =
        if tiled { (Tag::TileOffsets, Tag::TileByteCounts) } else { (Tag::StripOffsets, Tag::StripByteCounts) };
    let offsets = decoder.get_tag_u64_vec(offsets_tag).with_context(|| ctx("missing strip/tile offsets"))?;
    let counts = decoder.get_tag_u64_vec(counts_tag).with_context(|| ctx("missing strip/tile byte counts"))?;
    let chunks_across = width.div_ceil(chunk_width);
    let chunks_down = height.div_ceil(chunk_height);
    let planes = if planar_separate { bands as u64 } else { 1 };
    let want_chunks = chunks_across as u64 * chunks_down as u64 * planes;
    if (offsets.len() as u64) < want_chunks || (counts.len() as u64) < want_chunks {
        bail!(
            "{}: file is corrupt: {width}x{height} pixels in {}x{} {} need {want_chunks} offsets and byte counts, \
             the file lists {} and {}",
            path.display(),
            chunk_width,
            chunk_height,
            if tiled { "tiles" } else { "strips" },
            offsets.len(),
            counts.len()
        );
    }
    for (i, (o, c)) in offsets.iter().zip(&counts).enumerate().take(want_chunks as usize) {
        if o.saturating_add(*c) > file_len {
            bail!(
                "{}: file is truncated or corrupt: strip/tile {i} spans bytes {o}..{} but the file has {file_len} bytes",
                path.display(),
                o.saturating_add(*c)
            );
        }
    }
    let predictor: u16 = decoder.find_tag_unsigned(Tag::Predictor).with_context(|| ctx("bad Predictor"))?.unwrap_or(1);
    if !matches!(predictor, 1..=3) {
        bail!("{}: unsupported TIFF predictor {predictor}", path.display());
    }
    if predictor == 3 && !sample_type.is_float() {
        bail!("{}: floating-point predictor (3) on integer samples", path.display());
    }
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
    let lerc_wrapping = if compression == 34887 {
        let params: Vec<u32> = decoder
            .find_tag_unsigned_vec(Tag::Unknown(TAG_LERC_PARAMETERS))
            .with_context(|| ctx("bad LercParameters tag"))?
            .unwrap_or_default();
        params.get(1).copied().unwrap_or(0)
    } else {
        0
    };
    let little_endian = matches!(decoder.byte_order(), tiff::tags::ByteOrder::LittleEndian);
    let src = ChunkSource {
        path: path.to_path_buf(),
        label,
        file: File::open(path).with_context(|| format!("cannot open raster {}", path.display()))?,
        width,
        height,
        chunk_width,
        chunk_height,
        chunks_across,
        chunks_down,
        tiled,
        offsets,
        counts,
        little_endian,
        compression,
        predictor,
        bits_per_sample: bits[0],
        sample_type,
        bands,
        planar_separate,
        jpeg,
        lerc_wrapping,
        sparse_fill: 0.0,
    };
    if src.max_chunk_bytes() > MAX_CHUNK_BYTES {
        bail!(
            "{}: one {} of {} is {}x{} pixels x {} samples = {} MiB decoded, over the {} MiB bound per strip/tile; \
             re-tile it with `gdal_translate -co TILED=YES in.tif out.tif`",
            path.display(),
            if tiled { "tile" } else { "strip" },
            src.label,
            chunk_width,
            chunk_height,
            src.samples_in_chunk(),
            src.max_chunk_bytes() >> 20,
            MAX_CHUNK_BYTES >> 20
        );
    }
    Ok(src)
}
