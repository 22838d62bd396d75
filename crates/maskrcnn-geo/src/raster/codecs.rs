//! Byte codecs of strips/tiles: LZW, Deflate, PackBits, ZSTD, and the LERC blobs (with their optional
//! Deflate/ZSTD wrapping) and WebP images GDAL writes.
//!
//! Every decompressor stops at the size the TIFF tags promise for the chunk: a header cannot make
//! one strip inflate to gigabytes, since the output is never allowed to grow past `expected`.
//! Errors are plain text; the caller names the file and the chunk.

use std::io::{Cursor, Read};

use tiff::decoder::DecodingResult;

/// Slack allowed beyond the raw sample bytes for a LERC blob before its Deflate/ZSTD wrapping is
/// refused: a blob holds the samples at worst raw, plus a validity mask and headers.
fn lerc_blob_cap(expected: usize) -> usize {
    expected.saturating_mul(2).saturating_add(1 << 20)
}

/// Reads at most `cap` bytes from `r`; more is reported as an error rather than read.
fn read_capped(r: impl Read, cap: usize, what: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(cap.min(64 << 20));
    r.take(cap as u64 + 1).read_to_end(&mut out).map_err(|e| format!("{what}: {e}"))?;
    Ok(out)
}

/// Deflate (zlib) data, inflated to at most `expected` bytes; the rest of the stream is not read.
pub(super) fn inflate(src: &[u8], expected: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; expected];
    let mut dec = flate2::read::ZlibDecoder::new(src);
    let mut filled = 0;
    while filled < expected {
        match dec.read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) => return Err(format!("Deflate: {e}")),
        }
    }
    out.truncate(filled);
    Ok(out)
}

/// Deflate data of unknown decoded size, up to `cap` bytes (LERC wrapping).
fn inflate_capped(src: &[u8], cap: usize) -> Result<Vec<u8>, String> {
    let out = read_capped(flate2::read::ZlibDecoder::new(src), cap, "Deflate")?;
    if out.len() > cap {
        return Err(format!("Deflate data inflates beyond {cap} bytes"));
    }
    Ok(out)
}

/// TIFF LZW (MSB first, early code-size switch), stopped once `expected` bytes are out.
pub(super) fn lzw(src: &[u8], expected: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; expected];
    let mut dec = weezl::decode::Decoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8);
    let (mut read, mut written) = (0, 0);
    while written < expected {
        let res = dec.decode_bytes(&src[read..], &mut out[written..]);
        read += res.consumed_in;
        written += res.consumed_out;
        match res.status {
            Ok(weezl::LzwStatus::Ok) if res.consumed_in == 0 && res.consumed_out == 0 => break,
            Ok(weezl::LzwStatus::Ok) => {}
            Ok(weezl::LzwStatus::Done) | Ok(weezl::LzwStatus::NoProgress) => break,
            // Some writers omit the end-of-information code; a full buffer is what counts.
            Err(e) if written < expected => return Err(format!("LZW: {e}")),
            Err(_) => break,
        }
    }
    out.truncate(written);
    Ok(out)
}

/// ZSTD frames (TIFF compression 50000, LERC_ZSTD's wrapping), decoded to at most `cap` bytes.
pub(super) fn zstd(src: &[u8], cap: usize) -> Result<Vec<u8>, String> {
    // ruzstd's default window limit (128 MiB) bounds what a frame header can make it reserve;
    // the output itself is capped below.
    let mut dec = ruzstd::decoding::FrameDecoder::new();
    let mut cursor = Cursor::new(src);
    let mut out = Vec::with_capacity(cap.min(64 << 20));
    // Frames follow each other until the data ends (libzstd writes one per chunk).
    while (cursor.position() as usize) < src.len() && out.len() <= cap {
        let stream = ruzstd::decoding::StreamingDecoder::new_with_decoder(&mut cursor, &mut dec)
            .map_err(|e| format!("ZSTD: {e}"))?;
        let left = cap + 1 - out.len();
        stream.take(left as u64).read_to_end(&mut out).map_err(|e| format!("ZSTD: {e}"))?;
        if out.len() > cap {
            break;
        }
    }
    if out.len() > cap {
        out.truncate(cap);
    }
    Ok(out)
}

/// PackBits runs, stopped once `expected` bytes are out.
pub(super) fn unpack_bits(src: &[u8], expected: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(expected);
    let mut i = 0;
    while i < src.len() && out.len() < expected {
        let n = src[i] as i8;
        i += 1;
        if n >= 0 {
            let len = (n as usize + 1).min(expected - out.len());
            let end = (i + len).min(src.len());
            out.extend_from_slice(&src[i..end]);
            i += n as usize + 1;
        } else if n != -128 {
            if let Some(&b) = src.get(i) {
                let len = ((1 - n as isize) as usize).min(expected - out.len());
                out.extend(std::iter::repeat_n(b, len));
            }
            i += 1;
        }
    }
    out
}

/// The LercParameters tag (50674): [LERC version, additional compression: 0 none, 1 Deflate, 2 ZSTD].
pub(super) const TAG_LERC_PARAMETERS: u16 = 50674;

/// What a LERC chunk must decode to: its pixel grid and samples per pixel, in the TIFF's sample type.
pub(super) struct LercTarget {
    pub(super) width: usize,
    pub(super) height: usize,
    pub(super) samples: usize,
    /// Additional compression from LercParameters.
    pub(super) wrapping: u32,
}

/// One LERC strip/tile as libtiff decodes it: pixel-interleaved samples; pixels outside a LERC
/// validity mask are NaN for floats (libtiff's choice) and 0 otherwise.
pub(super) fn lerc(stored: &[u8], t: &LercTarget, raw_bytes: usize) -> Result<DecodingResult, String> {
    let unwrapped;
    let blob: &[u8] = match t.wrapping {
        0 => stored,
        1 => {
            unwrapped = inflate_capped(stored, lerc_blob_cap(raw_bytes))?;
            &unwrapped
        }
        2 => {
            unwrapped = zstd(stored, lerc_blob_cap(raw_bytes))?;
            &unwrapped
        }
        w => return Err(format!("LERC with unknown additional compression {w} (LercParameters tag)")),
    };
    let info = lerc::decode_info(blob).map_err(|e| format!("LERC: {e}"))?;
    let (w, h, depth, bands) = (info.width as usize, info.height as usize, info.depth as usize, info.bands as usize);
    // libtiff writes either one band of `samples` values per pixel, or (floats with NaNs in some
    // samples only) `samples` bands of one value, each with its own mask, or (8-bit with a trailing
    // alpha that is only 0 or 255 in this chunk) the other samples with the alpha as LERC's mask.
    let interleaved = bands == 1 && depth == t.samples;
    let banded = depth == 1 && bands == t.samples && t.samples > 1;
    let alpha_mask = bands == 1 && depth + 1 == t.samples && info.data_type == lerc::DataType::Byte;
    if alpha_mask && w == t.width && h == t.height {
        let image = lerc::decode(blob).map_err(|e| format!("LERC: {e}"))?;
        let lerc::SampleData::U8(v) = image.data else { return Err("LERC: 8-bit blob decoded to other data".into()) };
        let mask = image.valid_masks.first();
        let mut out = Vec::with_capacity(w * h * t.samples);
        for (px, colour) in v.chunks_exact(depth).enumerate() {
            let valid = mask.is_none_or(|m| m.is_valid(px));
            out.extend(colour.iter().map(|&c| if valid { c } else { 0 }));
            out.push(if valid { 255 } else { 0 });
        }
        return Ok(DecodingResult::U8(out));
    }
    if w != t.width || h != t.height || !(interleaved || banded) {
        return Err(format!(
            "LERC blob is {w}x{h} with {bands} band(s) of depth {depth}; the TIFF tags need {}x{} with {} samples",
            t.width, t.height, t.samples
        ));
    }
    let image = lerc::decode(blob).map_err(|e| format!("LERC: {e}"))?;
    let plane = w * h;
    let masks = &image.valid_masks;
    let valid = |band: usize, px: usize| masks.get(band).or(masks.first()).is_none_or(|m| m.is_valid(px));
    let samples = t.samples;
    macro_rules! arrange {
        ($v:expr, $invalid:expr, $variant:ident) => {{
            let v = $v;
            let mut out = Vec::with_capacity(v.len());
            for px in 0..plane {
                for s in 0..samples {
                    let (value, band) = if interleaved { (v[px * samples + s], 0) } else { (v[s * plane + px], s) };
                    out.push(if valid(band, px) { value } else { $invalid });
                }
            }
            DecodingResult::$variant(out)
        }};
    }
    Ok(match image.data {
        lerc::SampleData::I8(v) => arrange!(v, 0, I8),
        lerc::SampleData::U8(v) => arrange!(v, 0, U8),
        lerc::SampleData::I16(v) => arrange!(v, 0, I16),
        lerc::SampleData::U16(v) => arrange!(v, 0, U16),
        lerc::SampleData::I32(v) => arrange!(v, 0, I32),
        lerc::SampleData::U32(v) => arrange!(v, 0, U32),
        lerc::SampleData::F32(v) => arrange!(v, f32::NAN, F32),
        lerc::SampleData::F64(v) => arrange!(v, f64::NAN, F64),
    })
}

/// One WebP strip/tile: 8-bit RGB or RGBA, `samples` per pixel (alpha filled opaque when the
/// WebP image has none, as libwebp's RGBA output does).
pub(super) fn webp(stored: &[u8], width: usize, height: usize, samples: usize) -> Result<Vec<u8>, String> {
    if !matches!(samples, 3 | 4) {
        return Err(format!("WebP holds 3 or 4 samples per pixel, the TIFF tags say {samples}"));
    }
    let mut dec = image_webp::WebPDecoder::new(Cursor::new(stored)).map_err(|e| format!("WebP: {e}"))?;
    let (w, h) = dec.dimensions();
    if w as usize != width || h as usize != height {
        return Err(format!("WebP image is {w}x{h}, the TIFF tags need {width}x{height}"));
    }
    dec.set_memory_limit(width * height * 4 + (16 << 20));
    let has_alpha = dec.has_alpha();
    let got = if has_alpha { 4 } else { 3 };
    let mut buf = vec![0u8; width * height * got];
    dec.read_image(&mut buf).map_err(|e| format!("WebP: {e}"))?;
    if got == samples {
        return Ok(buf);
    }
    let mut out = Vec::with_capacity(width * height * samples);
    for px in buf.chunks_exact(got) {
        out.extend_from_slice(&px[..3]);
        if samples == 4 {
            out.push(255);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn inflate_stops_at_the_expected_size() {
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 50 << 20]).unwrap();
        let bomb = enc.finish().unwrap();
        let out = inflate(&bomb, 1000).unwrap();
        assert_eq!(out.len(), 1000);
    }

    #[test]
    fn zstd_stops_at_the_cap() {
        let data = vec![3u8; 64 << 20];
        let bomb = ruzstd::encoding::compress_to_vec(&data[..], ruzstd::encoding::CompressionLevel::Fastest);
        let t = std::time::Instant::now();
        assert_eq!(zstd(&bomb, 1000).unwrap(), vec![3u8; 1000]);
        assert!(t.elapsed() < std::time::Duration::from_millis(200), "{:?}", t.elapsed());
        assert_eq!(zstd(&bomb, 64 << 20).unwrap().len(), 64 << 20);
    }

    #[test]
    fn lzw_and_packbits_stop_at_the_expected_size() {
        let data = vec![7u8; 100_000];
        let enc = weezl::encode::Encoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8).encode(&data).unwrap();
        assert_eq!(lzw(&enc, 10).unwrap(), vec![7u8; 10]);
        assert_eq!(lzw(&enc, 100_000).unwrap(), data);
        // 0x81: a run of 128 copies of the next byte.
        let runs = [0x81u8, 9].repeat(1000);
        assert_eq!(unpack_bits(&runs, 300), vec![9u8; 300]);
    }
}
