//! JPEG-compressed strips/tiles (TIFF compression 7).
//!
//! Each strip/tile is an abbreviated JPEG stream whose quantisation and Huffman tables usually
//! live once in the JPEGTables tag; the two are spliced into one full stream and handed to
//! `zune-jpeg`, which also upsamples subsampled chroma and converts colour. What the samples
//! mean is decided by the TIFF Photometric tag, as libtiff (and so GDAL) does: YCbCr data is
//! converted to RGB, anything else is returned as stored. The chroma subsampling is taken from
//! the JPEG frame header, which libtiff also treats as the authority over the
//! YCbCrSubsampling tag.

use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

const SOI: [u8; 2] = [0xFF, 0xD8];
const EOI: [u8; 2] = [0xFF, 0xD9];

/// How the JPEG strips/tiles of one file are decoded.
pub(super) struct JpegParams {
    /// The JPEGTables tag: SOI, tables, EOI.
    pub(super) tables: Option<Vec<u8>>,
    /// Photometric is YCbCr (with contiguous samples): convert to RGB.
    pub(super) ycbcr_to_rgb: bool,
}

/// A decoded strip/tile: interleaved 8-bit samples.
pub(super) struct JpegImage {
    pub(super) data: Vec<u8>,
    pub(super) width: usize,
    pub(super) height: usize,
    pub(super) components: usize,
}

/// Decodes one strip/tile. Errors (as text, the caller names file and chunk) on anything short
/// of a complete image: zune-jpeg on its own fills a truncated scan with grey and carries on.
pub(super) fn decode(stream: &[u8], params: &JpegParams) -> Result<JpegImage, String> {
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
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX));
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(full), options);
    decoder.decode_headers().map_err(|e| format!("JPEG header: {e:?}"))?;
    let input = decoder.input_colorspace().ok_or("JPEG header without a colour space")?;
    let output = if params.ycbcr_to_rgb {
        if input != ColorSpace::YCbCr {
            return Err(format!("Photometric is YCbCr but the JPEG stream holds {input:?} data"));
        }
        ColorSpace::RGB
    } else {
        input
    };
    decoder.set_options(options.jpeg_set_out_colorspace(output));
    let data = decoder.decode().map_err(|e| format!("JPEG data: {e:?}"))?;
    let info = decoder.info().ok_or("JPEG decoder returned no image information")?;
    let (width, height, components) = (usize::from(info.width), usize::from(info.height), output.num_components());
    if data.len() != width * height * components {
        return Err(format!(
            "JPEG decoded to {} bytes, expected {width}x{height}x{components} = {}",
            data.len(),
            width * height * components
        ));
    }
    Ok(JpegImage { data, width, height, components })
}
