//! Reading imagery (8/16-bit, float, N-band) and instance-id label rasters, and writing the
//! small PNG/TIFF files that fixtures and the synthetic generator need.

use std::fs::File;
use std::io::{BufReader, BufWriter, Seek, Write};
use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context, Result};

use crate::scaling::SampleType;
use crate::ImageTensor;

/// Most samples (pixels x bands) one image or label raster may decode to: 1 GiB as `f32`/`u32`,
/// a 16384x16384 single-band raster. Checked against the declared size before decoding, so a
/// header that lies (a few bytes claiming 2^31 x 2^31 pixels) is an error, not an abort; PNG and
/// JPEG imagery are bounded alike by the `image` crate's 512 MiB allocation limit.
pub const MAX_IMAGE_SAMPLES: usize = 1 << 28;

fn check_declared_size(width: usize, height: usize, bands: usize) -> Result<()> {
    let samples = width.checked_mul(height).and_then(|n| n.checked_mul(bands));
    ensure!(
        samples.is_some_and(|n| n <= MAX_IMAGE_SAMPLES),
        "declared size {width}x{height} with {bands} band(s) is more than the {MAX_IMAGE_SAMPLES} samples an image \
         may hold (a corrupt header, or a raster to cut into chips)"
    );
    Ok(())
}

/// Extensions recognised as rasters when looking files up by stem, in preference order.
pub const RASTER_EXTENSIONS: &[&str] = &["tif", "tiff", "png", "jpg", "jpeg"];

fn extension_lowercase(path: &Path) -> String {
    path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase()
}

pub fn is_raster_path(path: &Path) -> bool {
    RASTER_EXTENSIONS.contains(&extension_lowercase(path).as_str())
}

/// An image as read from disk: raw values plus how the file stored them, which decides how
/// they are scaled for a model without a stored scale ([`crate::scaling::PixelScale`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TypedImage {
    pub image: ImageTensor,
    /// The file's sample type; half floats and formats the decoder converts report `F32`.
    pub sample_type: SampleType,
}

/// Reads an image as CHW raw values.
///
/// TIFFs are read with every sample per pixel kept (RGB, RGBN, 8-band, ...; chunky or planar;
/// u8/u16/u32/i16/f32/f64). PNG and JPEG go through the `image` crate: palette images are
/// expanded to RGB, 16-bit values are kept, and an alpha channel is dropped since it is
/// transparency, not a band.
pub fn read_image(path: &Path) -> Result<ImageTensor> {
    read_image_typed(path).map(|typed| typed.image)
}

/// [`read_image`], also saying which sample type the file holds.
pub fn read_image_typed(path: &Path) -> Result<TypedImage> {
    let ext = extension_lowercase(path);
    let result = if ext == "tif" || ext == "tiff" { read_tiff(path) } else { read_with_image_crate(path) };
    result.with_context(|| format!("reading image {}", path.display()))
}

fn read_with_image_crate(path: &Path) -> Result<TypedImage> {
    use image::DynamicImage as D;
    let bytes = std::fs::read(path)?;
    if let Some(problem) = crate::jpeg_check::jpeg_truncation(&bytes) {
        anyhow::bail!("{problem}");
    }
    let img = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format()?.decode()?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (image, sample_type) = match img {
        D::ImageLuma8(b) => (ImageTensor::from_interleaved(1, h, w, b.as_raw()), SampleType::U8),
        D::ImageLumaA8(b) => (ImageTensor::from_interleaved(1, h, w, &drop_alpha(b.as_raw(), 2)), SampleType::U8),
        D::ImageRgb8(b) => (ImageTensor::from_interleaved(3, h, w, b.as_raw()), SampleType::U8),
        D::ImageRgba8(b) => (ImageTensor::from_interleaved(3, h, w, &drop_alpha(b.as_raw(), 4)), SampleType::U8),
        D::ImageLuma16(b) => (ImageTensor::from_interleaved(1, h, w, b.as_raw()), SampleType::U16),
        D::ImageLumaA16(b) => (ImageTensor::from_interleaved(1, h, w, &drop_alpha(b.as_raw(), 2)), SampleType::U16),
        D::ImageRgb16(b) => (ImageTensor::from_interleaved(3, h, w, b.as_raw()), SampleType::U16),
        D::ImageRgba16(b) => (ImageTensor::from_interleaved(3, h, w, &drop_alpha(b.as_raw(), 4)), SampleType::U16),
        D::ImageRgb32F(b) => (ImageTensor::from_interleaved(3, h, w, b.as_raw()), SampleType::F32),
        D::ImageRgba32F(b) => (ImageTensor::from_interleaved(3, h, w, &drop_alpha(b.as_raw(), 4)), SampleType::F32),
        other => (ImageTensor::from_interleaved(3, h, w, other.to_rgb32f().as_raw()), SampleType::F32),
    };
    Ok(TypedImage { image: image?, sample_type })
}

fn drop_alpha<T: Copy>(samples: &[T], channels: usize) -> Vec<T> {
    samples.chunks_exact(channels).flat_map(|p| p[..channels - 1].iter().copied()).collect()
}

/// Pixel samples of a decoded raster, in the file's own type.
enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Samples {
    fn len(&self) -> usize {
        match self {
            Samples::U8(v) => v.len(),
            Samples::U16(v) => v.len(),
            Samples::U32(v) => v.len(),
            Samples::I8(v) => v.len(),
            Samples::I16(v) => v.len(),
            Samples::I32(v) => v.len(),
            Samples::F32(v) => v.len(),
            Samples::F64(v) => v.len(),
        }
    }

    fn sample_type(&self) -> SampleType {
        match self {
            Samples::U8(_) => SampleType::U8,
            Samples::U16(_) => SampleType::U16,
            Samples::U32(_) => SampleType::U32,
            Samples::I8(_) => SampleType::I8,
            Samples::I16(_) => SampleType::I16,
            Samples::I32(_) => SampleType::I32,
            Samples::F32(_) => SampleType::F32,
            Samples::F64(_) => SampleType::F64,
        }
    }

    fn get_f64(&self, i: usize) -> f64 {
        match self {
            Samples::U8(v) => v[i] as f64,
            Samples::U16(v) => v[i] as f64,
            Samples::U32(v) => v[i] as f64,
            Samples::I8(v) => v[i] as f64,
            Samples::I16(v) => v[i] as f64,
            Samples::I32(v) => v[i] as f64,
            Samples::F32(v) => v[i] as f64,
            Samples::F64(v) => v[i],
        }
    }
}

/// A decoded TIFF: samples either interleaved (chunky) or one plane per band (planar).
struct TiffRaster {
    bands: usize,
    height: usize,
    width: usize,
    planar: bool,
    samples: Samples,
}

impl TiffRaster {
    fn sample(&self, band: usize, pixel: usize) -> f64 {
        let i = if self.planar { band * self.height * self.width + pixel } else { pixel * self.bands + band };
        self.samples.get_f64(i)
    }
}

fn decode_tiff(path: &Path) -> Result<TiffRaster> {
    use tiff::decoder::{Decoder, DecodingResult, Limits};
    use tiff::tags::Tag;
    let mut bytes = std::fs::read(path)?;
    let open = |bytes: &[u8]| -> Result<Decoder<std::io::Cursor<Vec<u8>>>> {
        // The size check below is the real bound; these keep the decoder's own buffers (tag
        // arrays, compressed strips) to what a raster within it can need.
        let mut limits = Limits::default();
        limits.decoding_buffer_size = MAX_IMAGE_SAMPLES * 8;
        limits.ifd_value_size = 64 << 20;
        limits.intermediate_buffer_size = MAX_IMAGE_SAMPLES * 8;
        Ok(Decoder::new(std::io::Cursor::new(bytes.to_vec()))?.with_limits(limits))
    };
    let mut decoder = open(&bytes)?;
    let samples_per_pixel: usize = decoder.find_tag_unsigned(Tag::SamplesPerPixel)?.unwrap_or(1);
    let mut color = decoder.colortype()?;
    if matches!(color, tiff::ColorType::RGB(_) | tiff::ColorType::RGBA(_))
        && color.num_samples() as usize != samples_per_pixel
    {
        // GDAL writes 4+ band 8-bit rasters (RGB + NIR, ...) as photometric RGB with extra
        // samples, which the tiff crate decodes as 3 or 4 samples per pixel. Relabelling the
        // photometric tag as min-is-black makes it decode every sample as a plain band.
        patch_photometric_to_min_is_black(&mut bytes)?;
        decoder = open(&bytes)?;
        color = decoder.colortype()?;
    }
    let (w, h) = decoder.dimensions()?;
    let (width, height) = (w as usize, h as usize);
    let bands = color.num_samples() as usize;
    check_declared_size(width, height, bands)?;
    if matches!(color, tiff::ColorType::Palette(_)) {
        bail!("palette TIFFs are not supported as imagery; store the band values directly");
    }
    let mut buffer = DecodingResult::U8(Vec::new());
    let layout = decoder.read_image_to_buffer(&mut buffer)?;
    let planar = layout.planes > 1;
    let samples = match buffer {
        DecodingResult::U8(v) => Samples::U8(v),
        DecodingResult::U16(v) => Samples::U16(v),
        DecodingResult::U32(v) => Samples::U32(v),
        DecodingResult::I8(v) => Samples::I8(v),
        DecodingResult::I16(v) => Samples::I16(v),
        DecodingResult::I32(v) => Samples::I32(v),
        DecodingResult::F32(v) => Samples::F32(v),
        DecodingResult::F64(v) => Samples::F64(v),
        DecodingResult::F16(v) => Samples::F32(v.into_iter().map(f32::from).collect()),
        DecodingResult::U64(_) | DecodingResult::I64(_) => {
            bail!("64-bit integer TIFF samples are not supported")
        }
    };
    // Sub-byte depths (1-bit masks) come back packed; refuse them rather than misread them.
    ensure!(
        color.bit_depth() >= 8,
        "TIFF has {}-bit samples; only 8, 16, 32 and 64-bit samples are supported",
        color.bit_depth()
    );
    ensure!(
        samples.len() == width * height * bands,
        "TIFF decoded to {} samples, expected {}x{}x{} (all planes of a planar file could not be read)",
        samples.len(),
        height,
        width,
        bands
    );
    Ok(TiffRaster { bands, height, width, planar, samples })
}

/// Rewrites the PhotometricInterpretation (262) of the first IFD to 1 (BlackIsZero), in place.
fn patch_photometric_to_min_is_black(bytes: &mut [u8]) -> Result<()> {
    let malformed = || anyhow!("malformed TIFF header");
    let little = match bytes.get(0..2) {
        Some(b"II") => true,
        Some(b"MM") => false,
        _ => return Err(malformed()),
    };
    let read = |b: &[u8], at: usize, n: usize| -> Result<u64> {
        let s = b.get(at..at + n).ok_or_else(malformed)?;
        let mut v = 0u64;
        for i in 0..n {
            let byte = if little { s[n - 1 - i] } else { s[i] };
            v = (v << 8) | byte as u64;
        }
        Ok(v)
    };
    let big_tiff = read(bytes, 2, 2)? == 43;
    let (ifd, count_len, entry_len, value_at) =
        if big_tiff { (read(bytes, 8, 8)? as usize, 8, 20, 12) } else { (read(bytes, 4, 4)? as usize, 2, 12, 8) };
    let count = read(bytes, ifd, count_len)? as usize;
    for i in 0..count {
        let entry = ifd + count_len + i * entry_len;
        if read(bytes, entry, 2)? == 262 {
            let one: [u8; 2] = if little { [1, 0] } else { [0, 1] };
            bytes[entry + value_at..entry + value_at + 2].copy_from_slice(&one);
            return Ok(());
        }
    }
    bail!("TIFF has no PhotometricInterpretation tag")
}

fn read_tiff(path: &Path) -> Result<TypedImage> {
    let raster = decode_tiff(path)?;
    let plane = raster.height * raster.width;
    let mut out = ImageTensor::zeros(raster.bands, raster.height, raster.width);
    for band in 0..raster.bands {
        let dst = out.plane_mut(band);
        for (pixel, v) in dst.iter_mut().enumerate().take(plane) {
            *v = raster.sample(band, pixel) as f32;
        }
    }
    Ok(TypedImage { image: out, sample_type: raster.samples.sample_type() })
}

/// An integer label raster (instance ids or class values), band-major like [`ImageTensor`].
#[derive(Debug, Clone, PartialEq)]
pub struct LabelRaster {
    pub bands: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<u32>,
}

impl LabelRaster {
    pub fn band(&self, band: usize) -> &[u32] {
        let n = self.height * self.width;
        &self.data[band * n..(band + 1) * n]
    }
}

/// Reads an instance-id / class-value raster without any colour conversion: palette PNGs give
/// their palette indices, 16-bit PNGs and TIFFs their integer values. Negative or fractional
/// values are an error; a float TIFF is accepted when every value is a whole number (ArcGIS
/// sometimes exports labels as float), with NaN treated as background.
pub fn read_label_raster(path: &Path) -> Result<LabelRaster> {
    let ext = extension_lowercase(path);
    let result = match ext.as_str() {
        "png" => read_label_png(path),
        "tif" | "tiff" => read_label_tiff(path),
        _ => Err(anyhow!("unsupported label raster extension '.{ext}' (use .png or .tif; JPEG would corrupt ids)")),
    };
    result.with_context(|| format!("reading label raster {}", path.display()))
}

fn read_label_tiff(path: &Path) -> Result<LabelRaster> {
    let raster = decode_tiff(path)?;
    let plane = raster.height * raster.width;
    let mut data = vec![0u32; plane * raster.bands];
    for band in 0..raster.bands {
        for pixel in 0..plane {
            let v = raster.sample(band, pixel);
            data[band * plane + pixel] = label_value(v)
                .with_context(|| format!("band {band}, row {}, col {}", pixel / raster.width, pixel % raster.width))?;
        }
    }
    Ok(LabelRaster { bands: raster.bands, height: raster.height, width: raster.width, data })
}

fn label_value(v: f64) -> Result<u32> {
    if v.is_nan() {
        return Ok(0);
    }
    ensure!(v >= 0.0 && v.fract() == 0.0 && v <= u32::MAX as f64, "label value {v} is not a non-negative integer");
    Ok(v as u32)
}

fn read_label_png(path: &Path) -> Result<LabelRaster> {
    use png::{BitDepth, ColorType, Transformations};
    let file = File::open(path)?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(Transformations::IDENTITY);
    let mut reader = decoder.read_info()?;
    let (declared_width, declared_height) = reader.info().size();
    check_declared_size(declared_width as usize, declared_height as usize, 1)?;
    let size = reader.output_buffer_size().ok_or_else(|| anyhow!("PNG is too large to decode"))?;
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf)?;
    let (width, height) = (info.width as usize, info.height as usize);
    let channels = match info.color_type {
        ColorType::Grayscale | ColorType::Indexed => 1,
        ColorType::GrayscaleAlpha => 2,
        ColorType::Rgb => 3,
        ColorType::Rgba => 4,
    };
    ensure!(
        channels == 1,
        "label PNG must be single-channel (grayscale or palette indices), found {:?}; \
         colour-coded instance masks are not supported",
        info.color_type
    );
    let line = info.line_size;
    let mut data = vec![0u32; width * height];
    for row in 0..height {
        let bytes = &buf[row * line..(row + 1) * line];
        let out = &mut data[row * width..(row + 1) * width];
        match info.bit_depth {
            BitDepth::Eight => out.iter_mut().zip(bytes).for_each(|(o, &b)| *o = b as u32),
            BitDepth::Sixteen => out
                .iter_mut()
                .zip(bytes.chunks_exact(2))
                .for_each(|(o, b)| *o = u16::from_be_bytes([b[0], b[1]]) as u32),
            low => {
                let bits = low as usize;
                let mask = (1u32 << bits) - 1;
                for (col, o) in out.iter_mut().enumerate() {
                    let bit_offset = col * bits;
                    let byte = bytes[bit_offset / 8] as u32;
                    *o = (byte >> (8 - bits - bit_offset % 8)) & mask;
                }
            }
        }
    }
    Ok(LabelRaster { bands: 1, height, width, data })
}

/// Writes 8-bit samples (1 = gray, 3 = RGB, 4 = RGBA; interleaved HWC) as PNG.
pub fn write_png_u8(path: &Path, channels: usize, height: usize, width: usize, hwc: &[u8]) -> Result<()> {
    write_png(path, channels, height, width, png::BitDepth::Eight, hwc)
}

/// Writes 16-bit samples (interleaved HWC) as PNG.
pub fn write_png_u16(path: &Path, channels: usize, height: usize, width: usize, hwc: &[u16]) -> Result<()> {
    let bytes: Vec<u8> = hwc.iter().flat_map(|v| v.to_be_bytes()).collect();
    write_png(path, channels, height, width, png::BitDepth::Sixteen, &bytes)
}

fn write_png(
    path: &Path,
    channels: usize,
    height: usize,
    width: usize,
    depth: png::BitDepth,
    bytes: &[u8],
) -> Result<()> {
    let color = match channels {
        1 => png::ColorType::Grayscale,
        2 => png::ColorType::GrayscaleAlpha,
        3 => png::ColorType::Rgb,
        4 => png::ColorType::Rgba,
        n => bail!("PNG cannot hold {n} channels"),
    };
    let run = || -> Result<()> {
        let file = BufWriter::new(File::create(path)?);
        let mut encoder = png::Encoder::new(file, width as u32, height as u32);
        encoder.set_color(color);
        encoder.set_depth(depth);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(bytes)?;
        writer.finish()?;
        Ok(())
    };
    run().with_context(|| format!("writing PNG {}", path.display()))
}

/// Sample type for [`write_tiff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TiffSampleType {
    U8,
    U16,
    F32,
}

/// Writes an uncompressed baseline TIFF with any number of bands, chunky or planar. The `tiff`
/// crate's encoder only covers fixed colour types, and multispectral fixtures need 4+ bands.
/// Values are converted from the tensor with saturation for the integer types.
pub fn write_tiff(path: &Path, image: &ImageTensor, sample_type: TiffSampleType, planar: bool) -> Result<()> {
    let run = || -> Result<()> {
        let file = BufWriter::new(File::create(path)?);
        write_tiff_to(file, image, sample_type, planar)
    };
    run().with_context(|| format!("writing TIFF {}", path.display()))
}

fn write_tiff_to<W: Write + Seek>(
    mut w: W,
    image: &ImageTensor,
    sample_type: TiffSampleType,
    planar: bool,
) -> Result<()> {
    let (bands, height, width) = (image.channels, image.height, image.width);
    ensure!(bands >= 1 && height >= 1 && width >= 1, "cannot write an empty TIFF");
    let bytes_per_sample = match sample_type {
        TiffSampleType::U8 => 1usize,
        TiffSampleType::U16 => 2,
        TiffSampleType::F32 => 4,
    };
    let plane = height * width;
    let mut pixels = Vec::with_capacity(plane * bands * bytes_per_sample);
    let push = |pixels: &mut Vec<u8>, v: f32| match sample_type {
        TiffSampleType::U8 => pixels.push(v.round().clamp(0.0, 255.0) as u8),
        TiffSampleType::U16 => pixels.extend((v.round().clamp(0.0, 65535.0) as u16).to_le_bytes()),
        TiffSampleType::F32 => pixels.extend(v.to_le_bytes()),
    };
    if planar {
        for &v in &image.data {
            push(&mut pixels, v);
        }
    } else {
        for p in 0..plane {
            for b in 0..bands {
                push(&mut pixels, image.data[b * plane + p]);
            }
        }
    }
    let strips: Vec<(u32, u32)> = if planar {
        let len = plane * bytes_per_sample;
        (0..bands).map(|b| ((8 + b * len) as u32, len as u32)).collect()
    } else {
        vec![(8, pixels.len() as u32)]
    };
    ensure!(pixels.len() < (u32::MAX as usize) / 2, "image too large for a baseline TIFF");

    // Layout: header, pixel data, then out-of-line tag values, then the IFD.
    let mut extra: Vec<u8> = Vec::new();
    let extra_start = 8 + pixels.len() as u32;
    let mut out_of_line = |values: Vec<u8>| -> u32 {
        let offset = extra_start + extra.len() as u32;
        extra.extend(values);
        if extra.len() % 2 == 1 {
            extra.push(0);
        }
        offset
    };
    // (tag, type, count, value-or-offset bytes). Types: 3 = SHORT, 4 = LONG.
    let mut entries: Vec<(u16, u16, u32, [u8; 4])> = Vec::new();
    let short_array = |vals: &[u16], out: &mut dyn FnMut(Vec<u8>) -> u32| -> (u32, [u8; 4]) {
        let count = vals.len() as u32;
        if vals.len() <= 2 {
            let mut b = [0u8; 4];
            for (i, v) in vals.iter().enumerate() {
                b[i * 2..i * 2 + 2].copy_from_slice(&v.to_le_bytes());
            }
            (count, b)
        } else {
            let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
            (count, out(bytes).to_le_bytes())
        }
    };
    let long_array = |vals: &[u32], out: &mut dyn FnMut(Vec<u8>) -> u32| -> (u32, [u8; 4]) {
        if vals.len() == 1 {
            (1, vals[0].to_le_bytes())
        } else {
            let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
            (vals.len() as u32, out(bytes).to_le_bytes())
        }
    };
    let short1 = |v: u16| -> [u8; 4] {
        let mut b = [0u8; 4];
        b[..2].copy_from_slice(&v.to_le_bytes());
        b
    };
    entries.push((256, 4, 1, (width as u32).to_le_bytes()));
    entries.push((257, 4, 1, (height as u32).to_le_bytes()));
    let (c, v) = short_array(&vec![(bytes_per_sample * 8) as u16; bands], &mut out_of_line);
    entries.push((258, 3, c, v));
    entries.push((259, 3, 1, short1(1)));
    let photometric = if bands == 3 || bands == 4 { 2 } else { 1 };
    entries.push((262, 3, 1, short1(photometric)));
    let offsets: Vec<u32> = strips.iter().map(|s| s.0).collect();
    let counts: Vec<u32> = strips.iter().map(|s| s.1).collect();
    let (c, v) = long_array(&offsets, &mut out_of_line);
    entries.push((273, 4, c, v));
    entries.push((277, 3, 1, short1(bands as u16)));
    let rows_per_strip = height as u32;
    entries.push((278, 4, 1, rows_per_strip.to_le_bytes()));
    let (c, v) = long_array(&counts, &mut out_of_line);
    entries.push((279, 4, c, v));
    entries.push((284, 3, 1, short1(if planar { 2 } else { 1 })));
    let extra_samples = match photometric {
        2 => bands - 3,
        _ => bands - 1,
    };
    if extra_samples > 0 {
        // 0 = unspecified data: extra bands are spectral bands, not alpha.
        let (c, v) = short_array(&vec![0u16; extra_samples], &mut out_of_line);
        entries.push((338, 3, c, v));
    }
    let format = if sample_type == TiffSampleType::F32 { 3 } else { 1 };
    let (c, v) = short_array(&vec![format; bands], &mut out_of_line);
    entries.push((339, 3, c, v));
    entries.sort_by_key(|e| e.0);

    let ifd_offset = extra_start + extra.len() as u32;
    w.write_all(b"II")?;
    w.write_all(&42u16.to_le_bytes())?;
    w.write_all(&ifd_offset.to_le_bytes())?;
    w.write_all(&pixels)?;
    w.write_all(&extra)?;
    w.write_all(&(entries.len() as u16).to_le_bytes())?;
    for (tag, typ, count, value) in &entries {
        w.write_all(&tag.to_le_bytes())?;
        w.write_all(&typ.to_le_bytes())?;
        w.write_all(&count.to_le_bytes())?;
        w.write_all(value)?;
    }
    w.write_all(&0u32.to_le_bytes())?;
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(channels: usize, h: usize, w: usize, scale: f32) -> ImageTensor {
        let mut t = ImageTensor::zeros(channels, h, w);
        for (i, v) in t.data.iter_mut().enumerate() {
            *v = (i as f32 * scale) % 60000.0;
        }
        t
    }

    #[test]
    fn tiff_roundtrip_multiband_chunky_and_planar() {
        let dir = tempfile::tempdir().unwrap();
        for (bands, ty, scale) in [
            (1, TiffSampleType::U16, 97.0),
            (3, TiffSampleType::U8, 0.25),
            (4, TiffSampleType::U16, 301.0),
            (6, TiffSampleType::U16, 13.0),
            (5, TiffSampleType::F32, 0.5),
        ] {
            for planar in [false, true] {
                let img = ramp(bands, 7, 9, scale);
                let img = if ty == TiffSampleType::U8 {
                    ImageTensor { data: img.data.iter().map(|v| v.round().min(255.0)).collect(), ..img }
                } else if ty == TiffSampleType::U16 {
                    ImageTensor { data: img.data.iter().map(|v| v.round()).collect(), ..img }
                } else {
                    img
                };
                let path = dir.path().join(format!("t{bands}{planar}.tif"));
                write_tiff(&path, &img, ty, planar).unwrap();
                let back = read_image(&path).unwrap();
                assert_eq!(back, img, "bands {bands} {ty:?} planar {planar}");
            }
        }
    }

    #[test]
    fn png_16bit_values_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        let vals: Vec<u16> = (0..12).map(|i| i * 5000 + 1).collect();
        write_png_u16(&path, 3, 2, 2, &vals).unwrap();
        let img = read_image(&path).unwrap();
        assert_eq!((img.channels, img.height, img.width), (3, 2, 2));
        assert_eq!(img.get(0, 0, 0), 1.0);
        assert_eq!(img.get(2, 1, 1), 55001.0);
        let labels = read_label_raster(&{
            let p = dir.path().join("l.png");
            write_png_u16(&p, 1, 2, 3, &[0, 300, 300, 0, 65535, 1]).unwrap();
            p
        })
        .unwrap();
        assert_eq!(labels.data, vec![0, 300, 300, 0, 65535, 1]);
    }

    #[test]
    fn rgba_png_drops_alpha() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        write_png_u8(&path, 4, 1, 2, &[10, 20, 30, 255, 40, 50, 60, 0]).unwrap();
        let img = read_image(&path).unwrap();
        assert_eq!(img.channels, 3);
        assert_eq!(img.data, vec![10.0, 40.0, 20.0, 50.0, 30.0, 60.0]);
    }

    #[test]
    fn palette_png_labels_keep_indices() {
        // A 4-bit palette image: indices, not colours, must come back.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.png");
        {
            let file = BufWriter::new(File::create(&path).unwrap());
            let mut enc = png::Encoder::new(file, 3, 2);
            enc.set_color(png::ColorType::Indexed);
            enc.set_depth(png::BitDepth::Four);
            enc.set_palette(vec![0u8; 16 * 3]);
            let mut wr = enc.write_header().unwrap();
            // rows: [0, 5, 15] and [2, 2, 0] packed two per byte, rows padded to whole bytes.
            wr.write_image_data(&[0x05, 0xF0, 0x22, 0x00]).unwrap();
        }
        let labels = read_label_raster(&path).unwrap();
        assert_eq!(labels.data, vec![0, 5, 15, 2, 2, 0]);
    }

    #[test]
    fn bad_files_give_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.tif");
        std::fs::write(&path, b"not a tiff").unwrap();
        let msg = format!("{:#}", read_image(&path).unwrap_err());
        assert!(msg.contains("broken.tif"), "{msg}");
        let msg = format!("{:#}", read_label_raster(&dir.path().join("x.jpg")).unwrap_err());
        assert!(msg.contains("x.jpg") && msg.contains("JPEG"), "{msg}");
        let fractional = dir.path().join("f.tif");
        write_tiff(
            &fractional,
            &ImageTensor { channels: 1, height: 1, width: 2, data: vec![1.0, 2.5] },
            TiffSampleType::F32,
            false,
        )
        .unwrap();
        let msg = format!("{:#}", read_label_raster(&fractional).unwrap_err());
        assert!(msg.contains("2.5") && msg.contains("col 1"), "{msg}");
    }
}
