//! JPEG-compressed strips/tiles (TIFF compression 7).
//!
//! Each strip/tile is an abbreviated JPEG stream whose quantisation and Huffman tables usually
//! live once in the JPEGTables tag; the two are spliced into one full stream and handed to
//! `jpeg-decoder`, which also upsamples subsampled chroma (libjpeg's "fancy" filter, as GDAL's
//! libjpeg uses) and converts colour. What the samples mean is decided by the TIFF Photometric tag, as libtiff (and so GDAL) does: YCbCr data is
//! converted to RGB, anything else is returned as stored. The chroma subsampling is taken from
//! the JPEG frame header, which libtiff also treats as the authority over the
//! YCbCrSubsampling tag.

use jpeg_decoder::{ColorTransform, Decoder};

const SOI: [u8; 2] = [0xFF, 0xD8];
const EOI: [u8; 2] = [0xFF, 0xD9];

/// How the JPEG strips/tiles of one file are decoded.
pub(super) struct JpegParams {
    /// The JPEGTables tag: SOI, tables, EOI.
    pub(super) tables: Option<Vec<u8>>,
    /// Photometric is YCbCr (with contiguous samples): convert to RGB.
    pub(super) ycbcr_to_rgb: bool,
    /// Samples per strip/tile pixel the TIFF tags promise (1, or the bands when interleaved).
    pub(super) components: usize,
}

/// A decoded strip/tile: interleaved 8-bit samples.
pub(super) struct JpegImage {
    pub(super) data: Vec<u8>,
    pub(super) width: usize,
    pub(super) height: usize,
    pub(super) components: usize,
}

/// Decodes one strip/tile. Errors (as text, the caller names file and chunk) on anything short
/// of a complete image: JPEG decoders tend to pad a truncated scan and carry on. A frame larger
/// than `max` (width, height: the strip/tile's size) is refused before anything is allocated.
pub(super) fn decode(stream: &[u8], params: &JpegParams, max: (usize, usize)) -> Result<JpegImage, String> {
    if !stream.starts_with(&SOI) {
        return Err("JPEG data does not start with a start-of-image marker".into());
    }
    // Only real markers can contain 0xFF 0xD9 (entropy-coded 0xFF bytes are followed by 0x00),
    // so a stream cut short cannot end in EOI by accident.
    let end = stream.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if !stream[..end].ends_with(&EOI) {
        return Err("JPEG data ends without an end-of-image marker".into());
    }
    let full = match &params.tables {
        Some(tables) => {
            if tables.len() < 4 || !tables.starts_with(&SOI) || !tables.ends_with(&EOI) {
                return Err("JPEGTables tag is not an SOI..EOI table stream".into());
            }
            let mut full = Vec::with_capacity(tables.len() + stream.len());
            full.extend_from_slice(&tables[..tables.len() - 2]);
            full.extend_from_slice(&stream[2..]);
            full
        }
        None => stream.to_vec(),
    };
    // jpeg-decoder panics on component counts other than 1, 3 and 4, and returns 4-component data
    // without a transform band-interleaved per line, so only 1 and 3 reach it.
    let (found, frame_w, frame_h) = frame_header(&full).ok_or("JPEG data without a frame header")?;
    if frame_w > max.0 || frame_h > max.1 {
        return Err(format!("JPEG frame is {frame_w}x{frame_h}, larger than the {}x{} strip/tile", max.0, max.1));
    }
    if found != params.components || !matches!(found, 1 | 3) {
        return Err(format!(
            "JPEG frame has {found} components; the TIFF tags need {} and 1 or 3 are supported",
            params.components
        ));
    }
    let mut decoder = Decoder::new(&full[..]);
    decoder.set_max_decoding_buffer_size(max.0.max(1) * max.1.max(1) * 4);
    // Forced from the Photometric tag, not guessed from JFIF/Adobe markers (libtiff leaves those
    // out, so a plain RGB stream would otherwise be taken for YCbCr). `RGB` copies the samples.
    decoder.set_color_transform(if params.ycbcr_to_rgb { ColorTransform::YCbCr } else { ColorTransform::RGB });
    let data = decoder.decode().map_err(|e| format!("JPEG data: {e}"))?;
    let info = decoder.info().ok_or("JPEG decoder returned no image information")?;
    let (width, height, components) =
        (usize::from(info.width), usize::from(info.height), info.pixel_format.pixel_bytes());
    if data.len() != width * height * components {
        return Err(format!(
            "JPEG decoded to {} bytes, expected {width}x{height}x{components} = {}",
            data.len(),
            width * height * components
        ));
    }
    Ok(JpegImage { data, width, height, components })
}

/// (components, width, height) of the first frame header (SOFn) of a JPEG stream.
fn frame_header(jpeg: &[u8]) -> Option<(usize, usize, usize)> {
    let mut pos = 2;
    loop {
        if *jpeg.get(pos)? != 0xFF {
            return None;
        }
        let marker = *jpeg.get(pos + 1)?;
        match marker {
            0xFF => pos += 1, // fill byte
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let sof = jpeg.get(pos + 5..pos + 10)?;
                let (h, w) = (u16::from_be_bytes([sof[0], sof[1]]), u16::from_be_bytes([sof[2], sof[3]]));
                return Some((sof[4] as usize, w as usize, h as usize));
            }
            0xD8..=0xDA => return None, // SOI, EOI or SOS before any frame header
            _ => {
                let len = u16::from_be_bytes([*jpeg.get(pos + 2)?, *jpeg.get(pos + 3)?]) as usize;
                pos += 2 + len;
            }
        }
    }
}
